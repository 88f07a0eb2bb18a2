"""Each error class from a real server's answer (or a real refused connection).

Statuses this server never sends (400, 403, 429, 500) are mapped in test_retries.py with a
mock transport; everything here comes over loopback HTTP from uvicorn.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
import pytest

from convserve_client import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    Client,
    ConvServeError,
    FieldError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from tests.client.conftest import API_KEY, D2L_K, D2L_X, UPLOAD_LIMIT
from tests.server import run_server

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- 404, 415, 422 from the default server ---------------------------------------------------


def test_unknown_preset_is_not_found_with_the_known_names(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.preset("sobell")
    error = info.value
    assert isinstance(error, APIStatusError) and isinstance(error, ConvServeError)
    assert error.status_code == 404
    assert error.problem.type == "/problems/not-found"
    assert error.title == "Not found"
    assert error.detail.startswith("unknown preset 'sobell'; known presets: ")
    assert "sobel" in error.detail
    assert error.errors[0].field == "preset"
    assert error.response.headers["content-type"] == "application/problem+json"
    assert error.request_id == error.response.headers["x-request-id"]
    assert str(error) == f"404 Not found: {error.detail}"


def test_nan_in_kernel_is_unprocessable_naming_the_field(client: Client) -> None:
    kernel = D2L_K[np.newaxis].copy()
    kernel[0, 0, 0, 0] = np.nan
    with pytest.raises(UnprocessableEntityError) as info:
        client.convolve(D2L_X, kernel=kernel)
    problem = info.value.problem
    assert (problem.status, problem.type) == (422, "/problems/invalid-argument")
    assert problem.detail == ("weight holds 1 NaN or infinite value(s); only finite numbers "
                              "are allowed")
    assert problem.errors == (FieldError("kernel.weight", problem.detail),)


def test_kernel_with_three_axes_is_a_shape_problem(client: Client) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        client.convolve(D2L_X, kernel=D2L_K, transport="json")
    assert info.value.problem.type == "/problems/shape-mismatch"
    assert info.value.detail == ("kernel.weight has shape (2, 2, 2); OIHW needs 4 axes "
                                 "(c_out, c_in/groups, k_h, k_w)")


def test_channel_outside_the_output_is_unprocessable(client: Client) -> None:
    with pytest.raises(UnprocessableEntityError, match=r"channel=3 is outside \[0, 1\)"):
        client.convolve(D2L_X, kernel=D2L_K[np.newaxis], format="png", channel=3)


def test_kernel_and_preset_together_fail_validation(client: Client) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        client.convolve(D2L_X, kernel=D2L_K[np.newaxis], preset="sobel")
    assert info.value.problem.type == "/problems/validation-error"
    assert "give exactly one of kernel" in info.value.detail


def test_wrong_content_type_is_unsupported_media_type(client: Client) -> None:
    mangled = client.with_options(headers={"Content-Type": "text/plain"})
    with pytest.raises(UnsupportedMediaTypeError) as info:
        mangled.convolve(D2L_X, kernel=D2L_K[np.newaxis])
    assert info.value.status_code == 415
    assert info.value.detail.startswith("content type 'text/plain' is not accepted")


def test_client_side_argument_errors_raise_before_any_request(client: Client) -> None:
    with pytest.raises(ValueError, match=r"shaped \(C, H, W\) or \(H, W\); got shape \(3,\)"):
        client.convolve(np.zeros(3), preset="sobel")
    with pytest.raises(ValueError, match="bias and layout belong to an explicit kernel"):
        client.convolve(D2L_X, preset="sobel", bias=[1.0])
    with pytest.raises(ValueError, match=r"at must be \(channel, y, x\)"):
        client.explain(D2L_X, kernel=D2L_K[np.newaxis], at=(0, 0))
    with pytest.raises(FileNotFoundError):
        client.convolve(Path("no-such-image.png"), preset="sobel")
    with pytest.raises(TypeError, match="must hold numbers"):
        client.convolve(np.array([["a", "b"], ["c", "d"]]), preset="sobel")


# --- 401 and 413 from a server with API keys and a small upload limit -------------------------


def test_missing_api_key_is_an_authentication_error(restricted_url: str) -> None:
    with Client(restricted_url, max_retries=0) as cs, pytest.raises(AuthenticationError) as info:
        cs.presets()
    assert info.value.status_code == 401
    assert info.value.detail == ("this server requires an API key: send 'Authorization: "
                                 "Bearer <key>' or 'X-API-Key: <key>'")
    assert info.value.response.headers["www-authenticate"] == 'Bearer realm="convserve"'


def test_wrong_api_key_is_an_authentication_error(restricted_url: str) -> None:
    with Client(restricted_url, api_key="wrong", max_retries=0) as cs, \
            pytest.raises(AuthenticationError, match="the API key is not valid for this server"):
        cs.engines()


def test_api_key_as_bearer_as_x_api_key_and_from_the_environment(
    restricted_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(restricted_url, api_key=API_KEY) as cs:
        assert cs.preset("sobel", channels=1).weight.shape == (2, 1, 3, 3)
    with Client(restricted_url, headers={"X-API-Key": API_KEY}) as cs:
        assert cs.engines().default_engine == "auto"
    monkeypatch.setenv("CONVSERVE_API_KEY", API_KEY)
    with Client(restricted_url) as cs:
        assert cs.api_key == API_KEY
        assert len(cs.presets()) > 10


def test_health_endpoints_stay_open_without_a_key(restricted_url: str) -> None:
    with Client(restricted_url) as cs:
        assert cs.health().status == "ok"
        assert cs.ready().ready is True


@pytest.mark.parametrize("transport", ["multipart", "json"])
def test_upload_over_the_limit_is_payload_too_large(
    restricted_url: str, cat_png: Path, transport: Literal["multipart", "json"]
) -> None:
    with Client(restricted_url, api_key=API_KEY, max_retries=0) as cs, \
            pytest.raises(PayloadTooLargeError) as info:
        cs.convolve(cat_png, preset="sobel", transport=transport)
    assert info.value.status_code == 413
    assert info.value.detail == (f"the request body is larger than {UPLOAD_LIMIT} bytes "
                                 "(CONVSERVE_MAX_UPLOAD_BYTES)")


def test_upload_under_the_limit_passes(restricted_url: str) -> None:
    with Client(restricted_url, api_key=API_KEY) as cs:
        assert cs.convolve(D2L_X, kernel=D2L_K[np.newaxis], format="npy").shape == (1, 2, 2)


# --- 503 and 504 from a server with one compute thread and no queue ---------------------------


@pytest.fixture(scope="module")
def strained_url() -> Iterator[str]:
    """One compute thread, no queue, 50 ms compute budget: a heavy request gets 504 and keeps
    the thread busy a while longer, and every request meanwhile gets 503."""
    with run_server({"CONVSERVE_WORKER_THREADS": "1", "CONVSERVE_QUEUE_SIZE": "0",
                     "CONVSERVE_COMPUTE_TIMEOUT_S": "0.05"}) as url:
        yield url


HEAVY_X = np.random.default_rng(0).random((4, 512, 512), dtype=np.float32)
HEAVY_W = np.ones((20, 4, 31, 31), dtype=np.float32)
"""About 18 GMACs (under CONVSERVE_MAX_MACS, 2e10), far beyond the 50 ms budget. Its 18.6 MB
output is over what ONNX Runtime's packed strategy takes (16 MiB), which ran a 16-filter
version in 90 ms, so close to the budget that the thread was free again before the next
request; as graph inputs it takes 0.15-0.2 s on two cores."""


def wait_idle(cs: Client) -> None:
    """Wait (really) until the previous test's heavy computation has left the thread."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cs.with_options(max_retries=0).convolve(D2L_X, kernel=D2L_K[np.newaxis],
                                                    dry_run=True)
            return
        except ServiceUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_overloaded_server_gives_504_then_503_with_retry_after(strained_url: str) -> None:
    sleeps: list[float] = []
    with Client(strained_url, max_retries=2, sleep=sleeps.append) as cs:
        wait_idle(cs)
        with pytest.raises(GatewayTimeoutError) as timed_out:
            cs.convolve(HEAVY_X, kernel=HEAVY_W, format="npy")
        # The server's own compute timeout is final: the same work would time out again.
        assert sleeps == []
        assert isinstance(timed_out.value, InternalServerError)
        assert timed_out.value.problem.type == "/problems/compute-timeout"
        assert "CONVSERVE_COMPUTE_TIMEOUT_S" in timed_out.value.detail
        # The heavy work still occupies the only thread: overloaded, retried twice, honouring
        # the server's Retry-After (the injected sleep returns at once).
        with pytest.raises(ServiceUnavailableError) as busy:
            cs.convolve(D2L_X, kernel=D2L_K[np.newaxis], dry_run=True)
    assert sleeps == [1.0, 1.0]
    error = busy.value
    assert error.status_code == 503
    assert error.retry_after == 1.0
    assert error.response.headers["retry-after"] == "1"
    assert error.problem.type == "/problems/overloaded"
    assert "CONVSERVE_WORKER_THREADS" in error.detail


@pytest.mark.anyio
async def test_async_client_sees_the_same_overload(strained_url: str) -> None:
    with Client(strained_url) as cs:
        wait_idle(cs)
    async with AsyncClient(strained_url, max_retries=0) as acs:
        with pytest.raises(GatewayTimeoutError):
            await acs.convolve(HEAVY_X, kernel=HEAVY_W, format="npy")
        with pytest.raises(ServiceUnavailableError) as busy:
            await acs.convolve(D2L_X, kernel=D2L_K[np.newaxis], dry_run=True)
    assert busy.value.retry_after == 1.0


# --- no answer -------------------------------------------------------------------------------


def test_nothing_listening_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with Client(url, max_retries=0) as cs, pytest.raises(APIConnectionError) as info:
        cs.health()
    assert not isinstance(info.value, APITimeoutError)
    assert str(info.value).startswith(f"could not reach {url}/")
    assert isinstance(info.value, APIError) and info.value.request.url.path == "/healthz"


def test_no_answer_in_time_is_a_timeout_error(server_url: str, cat_png: Path) -> None:
    with Client(server_url, max_retries=0) as cs, pytest.raises(APITimeoutError) as info:
        cs.convolve(cat_png, preset="kirsch", timeout=0.001)
    assert isinstance(info.value, APIConnectionError)
    assert "got no answer within 0.001 s" in str(info.value)


@pytest.mark.anyio
async def test_async_errors_carry_the_problem(server_url: str) -> None:
    async with AsyncClient(server_url, max_retries=0) as cs:
        with pytest.raises(NotFoundError, match="unknown preset 'nope'"):
            await cs.preset("nope")
        with pytest.raises(UnprocessableEntityError) as info:
            await cs.convolve(D2L_X, kernel=D2L_K[np.newaxis], padding=(1, 2, 3))
    assert info.value.errors[0].field == "padding"
    async with AsyncClient(f"http://127.0.0.1:{closed_port()}", max_retries=0) as cs:
        with pytest.raises(APIConnectionError):
            await cs.health()


def test_a_2xx_body_that_is_not_convserves_is_a_response_validation_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"hello": "world"}))
    with Client("http://elsewhere.test", http_client=httpx.Client(transport=transport)) as cs, \
            pytest.raises(APIResponseValidationError) as info:
        cs.presets()
    assert info.value.status_code == 200
    assert "is http://elsewhere.test a convserve server" in str(info.value)


def test_a_non_problem_error_body_still_gives_a_readable_error() -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(502, text="<html><body>Bad Gateway</body></html>"))
    with Client("http://proxy.test", max_retries=0,
                http_client=httpx.Client(transport=transport)) as cs, \
            pytest.raises(InternalServerError) as info:
        cs.health()
    assert info.value.problem.title == "Bad Gateway"
    assert info.value.detail == "<html><body>Bad Gateway</body></html>"
    assert str(info.value) == "502 Bad Gateway: <html><body>Bad Gateway</body></html>"
