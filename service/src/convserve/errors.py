"""Every error convserve raises on purpose, as one tree.

Each class carries the HTTP ``status``, a problem ``type`` (a URI reference, RFC 9457) and a
short ``title``; the API renders any of them as ``application/problem+json`` with the
instance's ``detail`` and, for field problems, ``errors`` (``[{"field", "message"}]``).
The core raises them too, so ``convserve.conv2d`` users catch ``ConvServeError`` and never a
bare NumPy or ONNX Runtime exception.

    ConvServeError                       base; status 400
    ├── InvalidArgumentError             422  a value is out of range or inconsistent
    │   ├── ShapeError                   422  tensor shapes do not fit together
    │   └── EngineUnavailableError       422  engine or device not usable here (e.g. CUDA)
    ├── InvalidInputError                422  the uploaded bytes are not a usable image/array
    ├── UnsupportedMediaTypeError        415  a content type the endpoint does not take
    ├── NotFoundError                    404  unknown preset or resource
    ├── AuthenticationError              401  missing or wrong API key
    ├── LimitExceededError               422  a configured limit (names the setting)
    │   └── PayloadTooLargeError         413  upload bytes or decoded pixels over the limit
    ├── RequestTimeoutError              408  the request body did not arrive in time
    ├── OverloadedError                  503  compute queue full; carries ``retry_after``
    │   └── ResourceExhaustedError       503  memory or disk ran out (MemoryError, ENOSPC)
    └── ComputeTimeoutError              504  the computation outlived its time budget
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ComputeTimeoutError",
    "ConvServeError",
    "EngineUnavailableError",
    "InvalidArgumentError",
    "InvalidInputError",
    "LimitExceededError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "ResourceExhaustedError",
    "ShapeError",
    "UnsupportedMediaTypeError",
]

PROBLEM_BASE = "/problems/"


class ConvServeError(Exception):
    """Base of every convserve error.

    Parameters
    ----------
    detail : str
        What was wrong and what would be valid, with the numbers involved.
    field : str, optional
        The request field the problem concerns (``"padding"``, ``"kernel.weight"``); it becomes
        one entry of ``errors``.
    errors : list of dict, optional
        Several field problems, each ``{"field": str, "message": str}``.
    """

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if errors is None and field is not None:
            errors = [{"field": field, "message": detail}]
        self.errors = errors

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def with_field(self, field: str) -> ConvServeError:
        """Return this error attributed to ``field`` (prefixing any nested field name)."""
        if self.errors:
            self.errors = [
                {**e, "field": f"{field}.{e['field']}" if e.get("field") else field}
                for e in self.errors
            ]
        else:
            self.errors = [{"field": field, "message": self.detail}]
        self.field = field if self.field is None else f"{field}.{self.field}"
        return self

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 body for this error."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


class InvalidArgumentError(ConvServeError, ValueError):
    status = 422
    slug = "invalid-argument"
    title = "Invalid argument"


class ShapeError(InvalidArgumentError):
    slug = "shape-mismatch"
    title = "Shapes do not fit together"


class EngineUnavailableError(InvalidArgumentError):
    slug = "engine-unavailable"
    title = "Engine or device not available"


class InvalidInputError(ConvServeError, ValueError):
    status = 422
    slug = "invalid-input"
    title = "Input could not be decoded"


class UnsupportedMediaTypeError(ConvServeError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class NotFoundError(ConvServeError, LookupError):
    status = 404
    slug = "not-found"
    title = "Not found"


class AuthenticationError(ConvServeError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"


class LimitExceededError(ConvServeError):
    """A configured limit was exceeded; ``detail`` names the limit and its setting."""

    status = 422
    slug = "limit-exceeded"
    title = "Limit exceeded"


class PayloadTooLargeError(LimitExceededError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class OverloadedError(ConvServeError):
    status = 503
    slug = "overloaded"
    title = "Service overloaded"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ResourceExhaustedError(OverloadedError):
    slug = "resources-exhausted"
    title = "Server resources exhausted"


class RequestTimeoutError(ConvServeError):
    status = 408
    slug = "request-timeout"
    title = "Request body timed out"


class ComputeTimeoutError(ConvServeError):
    status = 504
    slug = "compute-timeout"
    title = "Computation timed out"
