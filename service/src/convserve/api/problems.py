"""Render every error as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from convserve.admission import resource_exhaustion
from convserve.errors import PROBLEM_BASE, ConvServeError, OverloadedError, ResourceExhaustedError

__all__ = ["PROBLEM_MEDIA_TYPE", "install_problem_handlers", "problem_response",
           "validation_problem"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("convserve")

_HTTP_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Payload too large",
    415: "Unsupported media type",
    408: "Request timeout",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return ProblemResponse(body, status_code=int(body["status"]), headers=headers)


def _field(loc: tuple[int | str, ...] | list[int | str]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def validation_problem(errors: list[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
    """A 422 problem from pydantic's error list, one entry per field."""
    entries = []
    for err in errors:
        name = _field(tuple(err.get("loc", ())))
        if prefix:
            name = f"{prefix}.{name}" if name != "body" else prefix
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "extra_forbidden":
            message = "is not a field this endpoint takes"
        entries.append({"field": name, "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in entries[:5])
    if len(entries) > 5:
        summary += f"; and {len(entries) - 5} more"
    return {
        "type": PROBLEM_BASE + "validation-error",
        "title": "Request validation failed",
        "status": 422,
        "detail": summary or "the request body is not valid",
        "errors": entries,
    }


async def _convserve_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConvServeError)
    headers = None
    if isinstance(exc, OverloadedError):
        headers = {"Retry-After": str(exc.retry_after)}
    elif exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="convserve"'}
    return problem_response(exc.to_problem(), headers)


async def _request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    return problem_response(validation_problem([dict(e) for e in exc.errors()]))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    slug = _HTTP_TITLES.get(status, "error").lower().replace(" ", "-")
    body = {"type": PROBLEM_BASE + slug, "title": _HTTP_TITLES.get(status, "Error"),
            "status": status, "detail": detail}
    headers = dict(exc.headers) if exc.headers else None
    if status == 405:
        # Starlette names the methods of the first route whose path matched; a path served by
        # several routes (GET and DELETE /v1/models/{id}) allows all of theirs.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return problem_response(body, headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "\0"})
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _exhaustion_or_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """MemoryError, ENOSPC, ONNX Runtime allocation failures: a retryable 503, not a 500."""
    what = resource_exhaustion(exc)
    if what is None:
        raise exc  # not ours: the catch-all below logs it and answers 500
    log.warning("request refused: out of %s", what,
                extra={"path": request.url.path, "error": f"{type(exc).__name__}: {exc}"})
    error = ResourceExhaustedError(
        f"the server ran out of {what} for this request ({type(exc).__name__}); retry "
        "later, or send a smaller image", retry_after=2)
    return problem_response(error.to_problem(), {"Retry-After": str(error.retry_after)})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Reaching this is a bug: every expected failure is a ConvServeError. Log it with the
    # request id, answer a problem without internals.
    log.exception("unhandled error", extra={"path": request.url.path})
    body = {"type": PROBLEM_BASE + "internal-error", "title": "Internal server error",
            "status": 500, "detail": "an unexpected error occurred; it has been logged "
            f"with request id {getattr(request.state, 'request_id', '?')}"}
    return problem_response(body)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ConvServeError, _convserve_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(ValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind in (MemoryError, OSError, RuntimeError):
        app.add_exception_handler(kind, _exhaustion_or_unexpected)
    app.add_exception_handler(Exception, _unexpected_error)
