"""A flow's :class:`~convserve.flows.Outcome` -> an HTTP response, and the documented errors."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.api.schemas import Problem
from convserve.flows import Outcome

__all__ = ["BINARY_MEDIA", "PROBLEMS", "outcome_headers", "respond"]

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": text}
    for status, text in {
        400: "A multipart/form-data body that cannot be parsed",
        401: "Missing or invalid API key",
        408: "The body did not arrive within CONVSERVE_BODY_TIMEOUT_S (retry)",
        404: "Unknown preset",
        413: "Upload or decoded image over the limit",
        415: "Content type other than multipart/form-data or application/json",
        422: "Invalid input, kernel or option; detail says what and what is allowed",
        503: "Compute queue full, memory budget exhausted or out of memory or disk "
             "(Retry-After)",
        504: "Computation timed out",
    }.items()
}
"""The problems every body-taking route documents."""

BINARY_MEDIA: dict[str, dict[str, Any]] = {
    "image/png": {},
    "application/zip": {},
    "application/octet-stream": {},
}


def outcome_headers(outcome: Outcome) -> dict[str, str]:
    """Output shape, resolved padding (one layer), engine and device, and stage timings."""
    headers = {"X-Convserve-Shape": ",".join(str(n) for n in outcome.shape)}
    if outcome.padding is not None:
        headers["X-Convserve-Padding"] = ",".join(str(p) for p in outcome.padding)
    headers["X-Convserve-Engine"] = f"{outcome.engine}/{outcome.device}"
    headers["Server-Timing"] = ", ".join(
        f"{stage};dur={ms}" for stage, ms in outcome.timing_ms.items()
    )
    if outcome.result.filename:
        headers["Content-Disposition"] = f'attachment; filename="{outcome.result.filename}"'
    return headers


def respond(outcome: Outcome) -> Response:
    """The response for ``outcome``: its bytes, media type and headers."""
    return Response(outcome.result.body, media_type=outcome.result.media_type,
                    headers=outcome_headers(outcome))
