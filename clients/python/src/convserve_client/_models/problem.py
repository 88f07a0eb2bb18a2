"""The RFC 9457 problem body of every 4xx/5xx answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FieldError", "Problem"]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field problem of a 4xx answer: ``field`` is dotted (``kernel.weight``)."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem, as the server sent it (or as close as a non-problem body allows).

    Attributes
    ----------
    type, title, status, detail
        The standard members; ``detail`` names the numbers and the valid values.
    errors : tuple of FieldError
        Field problems (validation errors), possibly empty.
    raw : Mapping
        The whole body, including any extension members.
    """

    type: str
    title: str
    status: int
    detail: str
    errors: tuple[FieldError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_response_body(cls, status: int, reason: str, body: bytes) -> Problem:
        """Parse a problem body; any other body becomes a problem whose detail is its text."""
        data: Any = None
        with contextlib.suppress(ValueError):  # not JSON: the text becomes the detail
            data = json.loads(body)
        if isinstance(data, dict):
            errors = tuple(
                FieldError(str(e.get("field", "")), str(e.get("message", "")))
                for e in data.get("errors") or ()
                if isinstance(e, dict)
            )
            detail = data.get("detail")
            if not isinstance(detail, str):
                detail = json.dumps(detail) if detail is not None else reason
            return cls(
                type=str(data.get("type", "about:blank")),
                title=str(data.get("title", reason)),
                status=int(data.get("status", status)),
                detail=detail,
                errors=errors,
                raw=data,
            )
        text = body.decode("utf-8", "replace").strip()
        return cls(type="about:blank", title=reason, status=status, detail=text[:500] or reason)


