"""Retries: which failures are retried, how long the client waits, and when it gives up.

A transport that fails N times and then answers stands in for a flaky network or an
overloaded server (faults a real server cannot be made to produce on cue). The sleep function
is injected, so the computed waits are asserted and nothing sleeps for real.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from convserve_client import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    Client,
    GatewayTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from convserve_client._base_client import retry_after_seconds, retry_delay
from convserve_client._constants import (
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    RETRY_JITTER,
)

BASE = "http://convserve.test"
HEALTHY = {"status": "ok"}
Handler = Callable[[httpx.Request], httpx.Response]


def problem(status: int, slug: str = "overloaded", headers: dict[str, str] | None = None
            ) -> httpx.Response:
    body = {"type": f"/problems/{slug}", "title": slug, "status": status,
            "detail": f"{slug} (test)"}
    return httpx.Response(status, json=body, headers={
        "Content-Type": "application/problem+json", **(headers or {})})


class Flaky:
    """A transport handler that fails ``failures`` times (each by ``fail``), then answers."""

    def __init__(self, failures: int, fail: Handler,
                 answer: Handler = lambda _: httpx.Response(200, json=HEALTHY)) -> None:
        self.failures = failures
        self.fail = fail
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) <= self.failures:
            return self.fail(request)
        return self.answer(request)


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def sync_client(handler: Handler, sleeps: list[float], max_retries: int = 2) -> Client:
    return Client(BASE, max_retries=max_retries, sleep=sleeps.append,
                  http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def assert_backoff(sleeps: list[float]) -> None:
    """Each wait is the exponential step for its retry, shortened by at most the jitter."""
    for retry, slept in enumerate(sleeps):
        step = min(INITIAL_RETRY_DELAY * 2**retry, MAX_RETRY_DELAY)
        assert step * (1 - RETRY_JITTER) <= slept <= step, (retry, slept)


@pytest.mark.parametrize("fail", [
    pytest.param(refuse, id="connect-error"),
    pytest.param(lambda r: problem(503), id="503"),
    pytest.param(lambda r: problem(429, "rate-limited"), id="429"),
    pytest.param(lambda r: httpx.Response(502, text="<html>bad gateway</html>"), id="502-html"),
    pytest.param(lambda r: httpx.Response(504, text="gateway timeout"), id="504-gateway"),
])
def test_retries_then_succeeds_with_exponential_backoff(fail: Handler) -> None:
    handler = Flaky(2, fail)
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs:
        assert cs.health().status == "ok"
    assert len(handler.requests) == 3
    assert len(sleeps) == 2
    assert_backoff(sleeps)


def test_gives_up_after_max_retries_with_the_last_error() -> None:
    handler = Flaky(10, lambda r: problem(503))
    sleeps: list[float] = []
    with sync_client(handler, sleeps, max_retries=3) as cs, \
            pytest.raises(ServiceUnavailableError) as info:
        cs.health()
    assert len(handler.requests) == 4
    assert len(sleeps) == 3
    assert info.value.status_code == 503
    assert info.value.problem.detail == "overloaded (test)"


def test_connection_error_after_retries_names_the_server() -> None:
    handler = Flaky(10, refuse)
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs, pytest.raises(APIConnectionError) as info:
        cs.presets()
    assert len(handler.requests) == 3
    assert str(info.value).startswith(f"could not reach {BASE}/")
    assert "connection refused" in str(info.value)
    assert not isinstance(info.value, APITimeoutError)


def test_timeouts_are_retried_then_raise_api_timeout_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    handler = Flaky(10, slow)
    sleeps: list[float] = []
    with sync_client(handler, sleeps, max_retries=1) as cs, \
            pytest.raises(APITimeoutError) as info:
        cs.engines(timeout=2.5)
    assert len(handler.requests) == 2
    assert "within 2.5 s" in str(info.value)
    assert handler.requests[0].extensions["timeout"]["read"] == 2.5


def test_retry_after_seconds_is_honoured_exactly() -> None:
    handler = Flaky(2, lambda r: problem(503, headers={"Retry-After": "3"}))
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs:
        cs.health()
    assert sleeps == [3.0, 3.0]


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = {"Retry-After": "3", "Retry-After-Ms": "250"}
    handler = Flaky(1, lambda r: problem(429, "rate-limited", headers))
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs:
        cs.health()
    assert sleeps == [0.25]


def test_retry_after_http_date_is_honoured() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": date}), now=now) == 7.0


def test_retry_after_is_capped() -> None:
    handler = Flaky(1, lambda r: problem(503, headers={"Retry-After": "86400"}))
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs:
        cs.health()
    assert sleeps == [MAX_RETRY_AFTER]


@pytest.mark.parametrize("value", ["soon", "", "-5"])
def test_unreadable_or_negative_retry_after(value: str) -> None:
    seconds = retry_after_seconds(httpx.Headers({"Retry-After": value}))
    assert seconds == (0.0 if value == "-5" else None)


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    assert [retry_delay(n, None, rand=lambda: 0.0) for n in range(7)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert retry_delay(0, None, rand=lambda: 1.0) == 0.5 * (1 - RETRY_JITTER)
    assert retry_delay(3, 2.0, rand=lambda: 0.99) == 2.0


@pytest.mark.parametrize("status, error", [
    (400, "BadRequestError"), (401, "AuthenticationError"), (404, "NotFoundError"),
    (413, "PayloadTooLargeError"), (415, "UnsupportedMediaTypeError"),
    (422, "UnprocessableEntityError"), (500, "InternalServerError"),
])
def test_client_errors_and_500_are_not_retried(status: int, error: str) -> None:
    handler = Flaky(10, lambda r: problem(status, "nope"))
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs, pytest.raises(APIStatusError) as info:
        cs.health()
    assert type(info.value).__name__ == error
    assert len(handler.requests) == 1
    assert sleeps == []


def test_compute_timeout_504_is_not_retried() -> None:
    # The server's own 504 says the computation outlived its budget: it would again.
    handler = Flaky(10, lambda r: problem(504, "compute-timeout"))
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs, pytest.raises(GatewayTimeoutError):
        cs.health()
    assert len(handler.requests) == 1


def test_max_retries_zero_raises_at_once() -> None:
    handler = Flaky(1, lambda r: problem(429, "rate-limited"))
    sleeps: list[float] = []
    with sync_client(handler, sleeps, max_retries=0) as cs, pytest.raises(RateLimitError):
        cs.health()
    assert sleeps == []


def test_with_options_changes_retries_and_keeps_the_sleep() -> None:
    handler = Flaky(3, lambda r: problem(503))
    sleeps: list[float] = []
    with sync_client(handler, sleeps, max_retries=0) as cs:
        assert cs.with_options(max_retries=3).health().status == "ok"
    assert len(sleeps) == 3


def test_a_retried_upload_resends_the_same_body() -> None:
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)

    def answer(request: httpx.Request) -> httpx.Response:
        return problem(422, "invalid-argument")

    handler = Flaky(2, lambda r: problem(503), answer)
    sleeps: list[float] = []
    with sync_client(handler, sleeps) as cs, pytest.raises(UnprocessableEntityError):
        cs.convolve(x, kernel=np.ones((1, 1, 2, 2)))
    # Each attempt is built anew (fresh multipart boundary) from the same parts.
    bodies = [
        request.read().replace(
            request.headers["content-type"].partition("boundary=")[2].encode(), b"")
        for request in handler.requests
    ]
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2]
    assert x.tobytes() in bodies[0]


@pytest.mark.anyio
async def test_async_client_retries_with_async_sleep() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    handler = Flaky(2, lambda r: problem(503, headers={"Retry-After": "1.5"}))
    async with AsyncClient(BASE, sleep=sleep, http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(handler))) as cs:
        assert (await cs.health()).status == "ok"
    assert sleeps == [1.5, 1.5]
    assert len(handler.requests) == 3


@pytest.mark.anyio
async def test_async_client_gives_up_on_connection_errors() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    handler = Flaky(10, refuse)
    async with AsyncClient(BASE, sleep=sleep, http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(handler))) as cs:
        with pytest.raises(APIConnectionError):
            await cs.engines()
    assert len(handler.requests) == 3
    assert_backoff(sleeps)
