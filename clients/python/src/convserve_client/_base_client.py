"""What the sync and async clients share: configuration, requests, retries, errors, parsing.

Each endpoint is described once as a :class:`Call` (method, path, body, how to read the
answer). ``Client`` sends it with ``httpx.Client`` and ``AsyncClient`` with
``httpx.AsyncClient``; only the sending loop and the sleep differ between them.

Every endpoint is a pure function of its inputs, so any request may be retried: after a
connection error or timeout, and after 408, 429, 502, 503 and 504 (except a 504 that says the
computation itself outlived the server's budget, which would only time out again).
"""

from __future__ import annotations

import email.utils
import logging
import os
import platform
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import httpx

from convserve_client._constants import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    RETRY_JITTER,
    RETRY_STATUSES,
    URL_ENV,
)
from convserve_client._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    status_error,
)
from convserve_client._inputs import (
    Transport,
    jsonable,
    kernel_json,
    request_body,
    weight_upload,
)
from convserve_client._models import (
    ConvolveResult,
    EnginesInfo,
    ExplainResult,
    Health,
    LayersResult,
    PresetInfo,
    Problem,
    Readiness,
    ResolvedPreset,
)
from convserve_client._types import NOT_GIVEN, NotGiven
from convserve_client._version import __version__

if TYPE_CHECKING:
    from convserve_client._types import (
        ArrayInput,
        ImageInput,
        IntOrPair,
        KernelFileInput,
        KernelInput,
        PaddingInput,
        TimeoutTypes,
    )

__all__ = ["BaseClient", "Call", "conv_options", "retry_after_seconds", "retry_delay"]

T = TypeVar("T")
HttpxClientT = TypeVar("HttpxClientT", httpx.Client, httpx.AsyncClient)

log = logging.getLogger("convserve_client")

_JSON_TYPES = ("application/json", "application/problem+json")


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` (delay or HTTP date) or ``Retry-After-Ms`` header asks for.

    Returns ``None`` when there is no such header or it cannot be read; never negative.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(
    retries_done: int, retry_after: float | None, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``retries_done + 1``.

    The server's ``Retry-After`` wins, capped at ``MAX_RETRY_AFTER``; otherwise exponential
    backoff from ``INITIAL_RETRY_DELAY`` doubling up to ``MAX_RETRY_DELAY``, shortened by up to
    ``RETRY_JITTER`` of itself at random so that many clients do not retry in step.
    """
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    backoff = min(INITIAL_RETRY_DELAY * 2.0**retries_done, MAX_RETRY_DELAY)
    return backoff * (1.0 - RETRY_JITTER * rand())


@dataclass
class Call(Generic[T]):
    """One API call: the request to send and how to read a successful answer."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: dict[str, Any] = field(default_factory=dict)
    timeout: TimeoutTypes | NotGiven = NOT_GIVEN
    retry: bool = True
    accept: frozenset[int] = frozenset()
    """Non-2xx statuses that ``parse`` reads instead of raising (``/readyz``'s 503)."""


def _timeout_seconds(timeout: TimeoutTypes) -> float | None:
    if isinstance(timeout, httpx.Timeout):
        return timeout.read
    return timeout


def _is_json(response: httpx.Response) -> bool:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type in _JSON_TYPES or media_type.endswith("+json")


def _json_object(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def conv_options(
    *,
    kernel: KernelInput | None,
    bias: ArrayInput | None,
    layout: Literal["OIHW", "HWIO"] | None,
    preset: str | None,
    preset_params: Mapping[str, float] | None,
    stride: IntOrPair | None,
    padding: PaddingInput | None,
    dilation: IntOrPair | None,
    groups: int | None,
    padding_mode: str | None,
    engine: str | None,
    device: str | None,
    color_mode: str | None,
) -> dict[str, Any]:
    """The options every convolution endpoint takes; ``None`` leaves the server's default."""
    if kernel is None and (bias is not None or layout is not None):
        raise ValueError("bias and layout belong to an explicit kernel; pass kernel= too")
    return {
        "kernel": None if kernel is None else kernel_json(kernel, bias, layout),
        "preset": preset,
        "preset_params": None if not preset_params else dict(preset_params),
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
        "engine": engine,
        "device": device,
        "color_mode": color_mode,
    }


class BaseClient(Generic[HttpxClientT]):
    """Configuration and the endpoint descriptions shared by ``Client`` and ``AsyncClient``."""

    base_url: str
    api_key: str | None
    timeout: TimeoutTypes
    max_retries: int
    _client: HttpxClientT
    _owns_client: bool

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: TimeoutTypes,
        max_retries: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries}")
        url = base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"base_url must be an http:// or https:// URL, not {url!r}")
        self.base_url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.timeout = timeout
        self.max_retries = max_retries
        self._custom_headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    @property
    def default_headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": f"convserve-client/{__version__} python/{platform.python_version()}",
            "Accept": "application/json, application/problem+json;q=0.9, */*;q=0.8",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self._custom_headers)
        return headers

    def _copy_config(
        self,
        other: BaseClient[HttpxClientT],
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: TimeoutTypes | NotGiven,
        max_retries: int | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        """Make ``other`` a copy of this client, sharing its connection pool."""
        BaseClient.__init__(
            other,
            base_url=base_url or self.base_url,
            api_key=api_key if api_key is not None else self.api_key,
            timeout=self.timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            headers={**self._custom_headers, **(headers or {})},
        )
        other._client = self._client
        other._owns_client = False

    # --- sending -----------------------------------------------------------------------

    def _build_request(self, call: Call[Any]) -> httpx.Request:
        body = dict(call.body)
        # The body's Content-Type unless the caller set one (with_options(headers=...)).
        headers = {**body.pop("headers", {}), **self.default_headers}
        timeout = self.timeout if isinstance(call.timeout, NotGiven) else call.timeout
        return self._client.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            headers=headers,
            timeout=timeout,
            **body,
        )

    def _call_timeout(self, call: Call[Any]) -> float | None:
        return _timeout_seconds(self.timeout if isinstance(call.timeout, NotGiven)
                                else call.timeout)

    def _max_retries(self, call: Call[Any]) -> int:
        return self.max_retries if call.retry else 0

    def _retry_after_error(
        self, call: Call[Any], request: httpx.Request, exc: httpx.HTTPError, retries_done: int
    ) -> float:
        """The delay before retrying after a transport error, or raise the client's error."""
        retryable = isinstance(
            exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        )
        if retryable and retries_done < self._max_retries(call):
            delay = retry_delay(retries_done, None)
            log.info("retrying %s %s in %.2f s after %s: %s", request.method, request.url.path,
                     delay, type(exc).__name__, exc)
            return delay
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(request=request, timeout=self._call_timeout(call)) from exc
        where = request.url.copy_with(path="/", query=None)
        raise APIConnectionError(f"could not reach {where}: {exc or type(exc).__name__}",
                                 request=request) from exc

    def _retry_after_response(
        self, call: Call[Any], response: httpx.Response, retries_done: int
    ) -> float | None:
        """The delay before retrying after ``response`` (already read), or ``None``."""
        if retries_done >= self._max_retries(call) or response.status_code in call.accept:
            return None
        if response.status_code not in RETRY_STATUSES:
            return None
        if response.status_code == 504 and _is_json(response):
            problem = Problem.from_response_body(504, "", response.content)
            if problem.type.endswith("/compute-timeout"):
                return None
        delay = retry_delay(retries_done, retry_after_seconds(response.headers))
        log.info("retrying %s %s in %.2f s after %d", response.request.method,
                 response.request.url.path, delay, response.status_code)
        return delay

    def _process_response(self, call: Call[T], response: httpx.Response) -> T:
        """Raise the status error for a 4xx/5xx answer; read a successful one."""
        if response.is_error and response.status_code not in call.accept:
            raise status_error(response, response.content, retry_after_seconds(response.headers))
        try:
            return call.parse(response)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise APIResponseValidationError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code} with a body this client cannot read "
                f"({type(exc).__name__}: {exc}); is {self.base_url} a convserve server of a "
                "compatible version?",
                response=response,
            ) from exc

    # --- endpoints -----------------------------------------------------------------------

    def _convolve_call(
        self,
        image: ImageInput,
        *,
        options: dict[str, Any],
        format: str,
        normalize: str | None,
        channel: int | None,
        dry_run: bool,
        transport: Transport,
        timeout: TimeoutTypes | NotGiven,
    ) -> Call[ConvolveResult]:
        fields = {**options, "format": format, "normalize": normalize, "channel": channel,
                  "dry_run": True if dry_run else None}

        def parse(response: httpx.Response) -> ConvolveResult:
            request_id = response.headers.get("x-request-id")
            if _is_json(response):
                return ConvolveResult.from_json(format, _json_object(response), request_id)
            return ConvolveResult.from_file(format, response.content, response.headers,
                                            channel=channel, request_id=request_id)

        return Call("POST", "/v1/convolve", parse,
                    body=request_body(image, fields, transport), timeout=timeout)

    def _explain_call(
        self,
        image: ImageInput,
        *,
        at: Sequence[int],
        options: dict[str, Any],
        transport: Transport,
        timeout: TimeoutTypes | NotGiven,
    ) -> Call[ExplainResult]:
        if isinstance(at, str) or len(at) != 3:
            raise ValueError(f"at must be (channel, y, x), not {at!r}")
        channel, y, x = (int(v) for v in at)
        fields = {**options, "at": {"channel": channel, "y": y, "x": x}}

        def parse(response: httpx.Response) -> ExplainResult:
            return ExplainResult.from_dict(_json_object(response), (channel, y, x),
                                           response.headers.get("x-request-id"))

        return Call("POST", "/v1/explain", parse,
                    body=request_body(image, fields, transport), timeout=timeout)

    def _layers_call(
        self,
        image: ImageInput,
        *,
        layers: Sequence[Mapping[str, Any]],
        return_: str | None,
        format: str,
        normalize: str | None,
        color_mode: str | None,
        engine: str | None,
        device: str | None,
        dry_run: bool,
        transport: Transport,
        timeout: TimeoutTypes | NotGiven,
        kernel_file: KernelFileInput | None = None,
    ) -> Call[LayersResult]:
        if isinstance(layers, Mapping | str) or not layers:
            raise ValueError("layers must be a non-empty list of layer objects, e.g. "
                             "[{'type': 'conv2d', 'preset': 'sobel'}, {'type': 'relu'}]")
        if kernel_file is not None and transport != "multipart":
            raise ValueError("kernel_file is sent as a file part, which a JSON body cannot "
                             "carry: leave transport='multipart'")
        files = None if kernel_file is None else {"kernel_file": weight_upload(kernel_file)}
        fields = {
            "layers": jsonable(list(layers)),
            "return": return_,
            "format": format,
            "normalize": normalize,
            "color_mode": color_mode,
            "engine": engine,
            "device": device,
            "dry_run": True if dry_run else None,
        }

        def parse(response: httpx.Response) -> LayersResult:
            request_id = response.headers.get("x-request-id")
            if _is_json(response):
                return LayersResult.from_json(format, _json_object(response),
                                              request_id=request_id)
            return LayersResult.from_file(format, response.content, response.headers,
                                          request_id)

        return Call("POST", "/v1/layers", parse,
                    body=request_body(image, fields, transport, files), timeout=timeout)

    def _presets_call(self, timeout: TimeoutTypes | NotGiven) -> Call[list[PresetInfo]]:
        def parse(response: httpx.Response) -> list[PresetInfo]:
            return [PresetInfo.from_dict(p) for p in _json_object(response)["presets"]]

        return Call("GET", "/v1/presets", parse, timeout=timeout)

    def _preset_call(
        self,
        name: str,
        channels: int,
        params: Mapping[str, float] | None,
        timeout: TimeoutTypes | NotGiven,
    ) -> Call[ResolvedPreset]:
        query: dict[str, Any] = {"channels": channels, **(params or {})}

        def parse(response: httpx.Response) -> ResolvedPreset:
            return ResolvedPreset.from_dict(_json_object(response))

        path = "/v1/presets/" + urllib.parse.quote(name, safe="")
        return Call("GET", path, parse, params=query, timeout=timeout)

    def _engines_call(self, timeout: TimeoutTypes | NotGiven) -> Call[EnginesInfo]:
        def parse(response: httpx.Response) -> EnginesInfo:
            return EnginesInfo.from_dict(_json_object(response))

        return Call("GET", "/v1/engines", parse, timeout=timeout)

    def _health_call(self, timeout: TimeoutTypes | NotGiven) -> Call[Health]:
        def parse(response: httpx.Response) -> Health:
            return Health(status=str(_json_object(response)["status"]))

        return Call("GET", "/healthz", parse, timeout=timeout)

    def _ready_call(self, timeout: TimeoutTypes | NotGiven) -> Call[Readiness]:
        def parse(response: httpx.Response) -> Readiness:
            data = _json_object(response)
            if response.status_code == 503:
                return Readiness(ready=False, status=str(data.get("title", "not ready")),
                                 detail=data.get("detail"),
                                 retry_after=retry_after_seconds(response.headers))
            return Readiness(ready=True, status=str(data.get("status", "ready")),
                             engine=data.get("engine"), device=data.get("device"))

        # Not-ready is an answer here, not an error: callers poll this.
        return Call("GET", "/readyz", parse, timeout=timeout, retry=False,
                    accept=frozenset({503}))

    def _openapi_call(self, timeout: TimeoutTypes | NotGiven) -> Call[dict[str, Any]]:
        return Call("GET", "/openapi.json", _json_object, timeout=timeout)

