"""ASGI middleware: request ids, one structured log line per request, metrics, body limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convserve.api.metrics import Metrics
from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.errors import PayloadTooLargeError
from convserve.limits import Limits

__all__ = ["JsonLogFormatter", "RequestContextMiddleware"]

log = logging.getLogger("convserve.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _too_large_body(detail: str) -> bytes:
    problem = PayloadTooLargeError(detail).to_problem()
    return json.dumps(problem).encode()


class RequestContextMiddleware:
    """Give each HTTP request an id, bound its body size, log it and count it.

    The id comes from a well-formed incoming ``X-Request-ID`` or is made here; it is echoed in
    the response header and in the log line. Metrics are labelled by the route template
    (``/v1/presets/{name}``), never by the raw path.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, limits: Limits,
                 body_limits: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.limits = limits
        self.max_body_bytes = limits.max_upload_bytes
        # Exact paths with their own bound and its 413 detail (model uploads, 100 MB default).
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        method = scope["method"]

        max_body, too_large = self.body_limits.get(
            scope["path"], (self.max_body_bytes, self.limits.upload_too_large_detail()))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            status = 413
            await self._send_problem(send, 413, _too_large_body(too_large), request_id)
            self._finish(scope, method, status, started, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise PayloadTooLargeError(too_large)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self.metrics.in_progress.dec()
            self._finish(scope, method, status, started, request_id)

    @staticmethod
    async def _send_problem(send: Send, status: int, body: bytes, request_id: str) -> None:
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        })
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, method: str, status: int, started: float,
                request_id: str) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.latency.labels(template, method).observe(elapsed)
        client = scope.get("client")
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "path": scope.get("path"),
                "route": template,
                "status": status,
                "duration_ms": round(1000 * elapsed, 2),
                "client": client[0] if client else None,
            },
        )
