"""Every error the client raises, as one tree.

    ConvServeError                      base of everything below
    └── APIError                        something went wrong talking to the server
        ├── APIConnectionError          no answer: refused, reset, DNS, TLS (retried)
        │   └── APITimeoutError         no answer within the timeout (retried)
        ├── APIResponseValidationError  a 2xx answer this client cannot read
        └── APIStatusError              a 4xx/5xx answer; carries status_code, problem, response
            ├── BadRequestError              400
            ├── AuthenticationError          401  missing or wrong API key
            ├── PermissionDeniedError        403
            ├── NotFoundError                404  e.g. unknown preset
            ├── RequestTimeoutError          408  the body arrived too slowly (retried)
            ├── PayloadTooLargeError         413  upload over CONVSERVE_MAX_UPLOAD_BYTES
            ├── UnsupportedMediaTypeError    415
            ├── UnprocessableEntityError     422  invalid kernel, option or input; see .problem
            ├── RateLimitError               429  (retried)
            └── InternalServerError          5xx
                ├── ServiceUnavailableError  503  overloaded or not ready (retried)
                └── GatewayTimeoutError      504  (retried unless the computation itself
                                                  outlived the server's budget)

A status answer's ``problem`` is the server's RFC 9457 body (``title``, ``detail`` with the
numbers involved, ``errors`` per field), so ``str(error)`` reads like
``422 Invalid argument: kernel.weight has shape (2, 2); OIHW needs 4 axes ...``.
Arguments this client cannot even send (a file that does not exist, an array with 4 axes)
raise the usual ``TypeError``, ``ValueError`` or ``OSError`` before any request is made.
"""

from __future__ import annotations

import httpx

from convserve_client._models import FieldError, Problem

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConvServeError",
    "GatewayTimeoutError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "status_error",
]


class ConvServeError(Exception):
    """Base of every error this client raises on purpose."""


class APIError(ConvServeError):
    """A request failed; ``request`` is the last one sent."""

    def __init__(self, message: str, *, request: httpx.Request) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The server could not be reached or dropped the connection (after every retry)."""

    def __init__(self, message: str | None = None, *, request: httpx.Request) -> None:
        super().__init__(message or f"could not connect to {request.url.copy_with(path='/')}",
                         request=request)


class APITimeoutError(APIConnectionError):
    """No answer within the timeout (after every retry)."""

    def __init__(self, *, request: httpx.Request, timeout: float | None = None) -> None:
        within = "" if timeout is None else f" within {timeout:g} s"
        super().__init__(f"{request.method} {request.url} got no answer{within}",
                         request=request)


class APIResponseValidationError(APIError):
    """The server answered 2xx with a body this client cannot read (a version mismatch, or
    not a convserve server at that URL)."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code


class APIStatusError(APIError):
    """The server answered 4xx or 5xx.

    Attributes
    ----------
    status_code : int
    problem : Problem
        The RFC 9457 body: ``title``, ``detail``, ``errors`` (``FieldError`` per field).
    response : httpx.Response
    request_id : str or None
        The server's ``X-Request-ID``, to find the request in its logs.
    retry_after : float or None
        Seconds the server asked to wait (``Retry-After``), when it said.
    """

    def __init__(self, problem: Problem, *, response: httpx.Response,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{response.status_code} {problem.title}: {problem.detail}",
                         request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.problem = problem
        self.request_id = response.headers.get("x-request-id")
        self.retry_after = retry_after

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def errors(self) -> tuple[FieldError, ...]:
        return self.problem.errors


class BadRequestError(APIStatusError):
    """400."""


class AuthenticationError(APIStatusError):
    """401: the server wants an API key (``api_key=`` or ``CONVSERVE_API_KEY``) or a valid one."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: unknown preset or path (is ``base_url`` right?)."""


class RequestTimeoutError(APIStatusError):
    """408: the request body did not arrive within the server's CONVSERVE_BODY_TIMEOUT_S."""


class PayloadTooLargeError(APIStatusError):
    """413: the upload or decoded image is over the server's limit (named in ``detail``)."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: a content type the endpoint does not take."""


class UnprocessableEntityError(APIStatusError):
    """422: the kernel, an option or the input is invalid; ``errors`` names the fields."""


class RateLimitError(APIStatusError):
    """429: too many requests."""


class InternalServerError(APIStatusError):
    """5xx."""


class ServiceUnavailableError(InternalServerError):
    """503: the server is overloaded or not ready yet; it sends ``Retry-After``."""


class GatewayTimeoutError(InternalServerError):
    """504: the computation (or a gateway in front of the server) took too long."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def status_error(
    response: httpx.Response, body: bytes, retry_after: float | None = None
) -> APIStatusError:
    """The ``APIStatusError`` subclass for ``response``'s status, with its problem parsed."""
    status = response.status_code
    problem = Problem.from_response_body(status, response.reason_phrase or str(status), body)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    return cls(problem, response=response, retry_after=retry_after)
