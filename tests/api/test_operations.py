"""Health, readiness, metrics, engines, API keys, CORS, request ids, overload and timeouts."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convserve.api.runtime import Runtime
from convserve.errors import ComputeTimeoutError
from convserve.main import create_app
from tests.api.conftest import ClientFactory, app_settings, wait_ready

D2L = {
    "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
    "kernel": {"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]},
    "format": "array",
}


def test_healthz_is_open_and_alive(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_503_until_engine_warm() -> None:
    app = create_app(app_settings())
    cold = TestClient(app)  # lifespan not started: no warm-up has run
    response = cold.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "type": "/problems/not-ready", "title": "Not ready", "status": 503,
        "detail": "the engines are still warming up",
    }
    with TestClient(app) as warm:
        wait_ready(warm)
        assert warm.get("/readyz").json() == {
            "status": "ready", "engine": "auto", "device": "cpu",
        }


def test_ready_reports_why_when_default_device_is_unusable(make_client: ClientFactory) -> None:
    app = create_app(app_settings(device="cuda"))
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        for _ in range(500):
            if runtime.warmup_error:
                break
            threading.Event().wait(0.01)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("warm-up failed: the default engine=")


def test_engines_lists_both_engines_with_devices(client: TestClient) -> None:
    body = client.get("/v1/engines").json()
    assert body["default_engine"] == "auto" and body["default_device"] == "cpu"
    by_name = {engine["name"]: engine for engine in body["engines"]}
    assert set(by_name) == {"auto", "numpy", "onnxruntime"}
    for engine in by_name.values():
        devices = {d["device"]: d for d in engine["devices"]}
        assert devices["cpu"]["available"] is True
        assert engine["version"]
        if not devices["cuda"]["available"]:
            assert devices["cuda"]["reason"]


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/v1/presets/sobel?channels=1")
    client.get("/v1/presets/nope")
    client.post("/v1/convolve", json={**D2L, "engine": "onnxruntime"})
    text = client.get("/metrics").text
    assert 'convserve_requests_total{method="GET",route="/v1/presets/{name}",status="200"}' in text
    assert 'convserve_requests_total{method="GET",route="/v1/presets/{name}",status="404"}' in text
    assert "/v1/presets/sobel" not in text
    assert 'convserve_convolution_seconds_count{device="cpu",engine="onnxruntime"}' in text
    assert "convserve_request_duration_seconds_bucket" in text
    assert "convserve_rejected_overload_total" in text


def test_request_id_is_echoed_and_logged_once(client: TestClient) -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("convserve.access")
    logger.addHandler(handler)
    try:
        response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        made = client.get("/healthz")
    finally:
        logger.removeHandler(handler)
    assert response.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    mine = [r for r in records if getattr(r, "request_id", None) == "abc-123"]
    assert len(mine) == 1
    assert mine[0].route == "/healthz" and mine[0].status == 200  # type: ignore[attr-defined]


class TestApiKeys:
    @pytest.fixture
    def secured(self, make_client: ClientFactory) -> TestClient:
        return make_client(api_keys=["k-one", "k-two"])

    def test_missing_key_is_401_problem(self, secured: TestClient) -> None:
        response = secured.get("/v1/presets")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["detail"].startswith("this server requires an API key")

    def test_wrong_key_is_401(self, secured: TestClient) -> None:
        response = secured.post("/v1/convolve", json=D2L, headers={"X-API-Key": "nope"})
        assert response.status_code == 401
        assert response.json()["detail"] == "the API key is not valid for this server"

    @pytest.mark.parametrize("headers", [{"Authorization": "Bearer k-one"},
                                         {"X-API-Key": "k-two"}])
    def test_either_header_works(self, secured: TestClient, headers: dict[str, str]) -> None:
        response = secured.post("/v1/convolve", json=D2L, headers=headers)
        assert response.status_code == 200
        assert response.json()["data"] == [[[56, 72], [104, 120]]]

    @pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
    def test_health_endpoints_stay_open(self, secured: TestClient, path: str) -> None:
        assert secured.get(path).status_code == 200

    def test_no_keys_means_open(self, client: TestClient) -> None:
        assert client.get("/v1/presets").status_code == 200


class TestCors:
    def test_preflight_allows_any_origin_by_default(self, client: TestClient) -> None:
        response = client.options("/v1/convolve", headers={
            "Origin": "http://frontend.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        })
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in response.headers

    def test_simple_request_exposes_headers(self, client: TestClient) -> None:
        response = client.post("/v1/convolve", json=D2L, headers={"Origin": "http://x.test"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "X-Request-ID" in response.headers["access-control-expose-headers"]

    def test_configured_origins_only(self, make_client: ClientFactory) -> None:
        client = make_client(cors_origins="http://good.test")
        good = client.options("/v1/convolve", headers={
            "Origin": "http://good.test", "Access-Control-Request-Method": "POST"})
        bad = client.options("/v1/convolve", headers={
            "Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
        assert good.headers["access-control-allow-origin"] == "http://good.test"
        assert "access-control-allow-origin" not in bad.headers


class Blocker:
    """Occupies compute slots of a real pool until released (a stand-in for slow work)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def occupy(self, slots: int) -> None:
        for _ in range(slots):
            thread = threading.Thread(target=self._hold, daemon=True)
            thread.start()
            self.threads.append(thread)
        for _ in range(500):
            if self.runtime.pool.in_flight >= slots:
                return
            threading.Event().wait(0.01)
        raise AssertionError("blocker did not take its slots")

    def _hold(self) -> None:
        try:
            asyncio.run(self.runtime.pool.run(self.release.wait))
        except ComputeTimeoutError:
            pass  # the blocker's own wait may outlive a short compute timeout

    def done(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture(params=[5.0])
def tight(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Blocker]]:
    """One worker thread, one queue place, compute timeout from the param."""
    app = create_app(app_settings(worker_threads=1, queue_size=1,
                                   compute_timeout_s=request.param))
    with TestClient(app) as client:
        wait_ready(client)
        blocker = Blocker(app.state.runtime)
        yield client, blocker
        blocker.done()


def test_overload_gives_503_with_retry_after_at_once(tight: tuple[TestClient, Blocker]) -> None:
    client, blocker = tight
    blocker.occupy(2)  # one running, one queued: the pool is full
    response = client.post("/v1/convolve", json=D2L)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["type"] == "/problems/overloaded"
    assert "CONVSERVE_QUEUE_SIZE" in body["detail"]
    assert "convserve_rejected_overload_total 1.0" in client.get("/metrics").text
    blocker.done()
    assert client.post("/v1/convolve", json=D2L).status_code == 200


@pytest.mark.parametrize("tight", [0.3], indirect=True)
def test_compute_timeout_gives_504_and_frees_the_queued_slot(
    tight: tuple[TestClient, Blocker],
) -> None:
    client, blocker = tight
    blocker.occupy(1)  # the only worker is busy; our request waits in the queue
    response = client.post("/v1/convolve", json=D2L)
    assert response.status_code == 504
    assert response.json()["type"] == "/problems/compute-timeout"
    assert "CONVSERVE_COMPUTE_TIMEOUT_S" in response.json()["detail"]
    assert blocker.runtime.pool.in_flight == 1  # the timed-out request gave its slot back
    blocker.done()
    ok = client.post("/v1/convolve", json=D2L)
    assert ok.status_code == 200
    assert np.array(ok.json()["data"]).tolist() == [[[56, 72], [104, 120]]]


def test_limits_endpoint_publishes_what_the_checks_use(make_client: ClientFactory) -> None:
    client = make_client(max_kernel_size=7, max_output_bytes=4096, warmup=False)
    limits = client.get("/v1/limits").json()
    assert limits["max_kernel_size"] == 7
    assert limits["max_output_bytes"] == 4096
    assert limits["env"]["max_kernel_size"] == "CONVSERVE_MAX_KERNEL_SIZE"
    refused = client.post("/v1/convolve", json={
        "input": {"array": [[[0.0] * 9] * 9]}, "kernel": {"weight": [[[[1.0] * 8] * 8]]}})
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"kernel 8x8 is larger than the limit of {limits['max_kernel_size']} per side "
        f"({limits['env']['max_kernel_size']})")


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in /metrics")


def test_layer_stacks_count_each_numpy_convolution_layer(make_client: ClientFactory) -> None:
    client = make_client(warmup=False)
    count = 'convserve_convolution_seconds_count{device="cpu",engine="numpy"}'
    before = client.get("/metrics").text
    start = _sample(before, count) if count in before else 0.0
    response = client.post("/v1/layers", json={
        "input": {"array": [[[0.5] * 6] * 6]}, "engine": "numpy", "return": "none",
        "layers": [{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "relu"},
                   {"type": "conv2d", "filters": 1, "kernel_size": 3}]})
    assert response.status_code == 200, response.text
    assert _sample(client.get("/metrics").text, count) == start + 2


def test_session_caches_are_on_metrics(make_client: ClientFactory) -> None:
    client = make_client(warmup=False, ort_cache_size=5)
    for _ in range(2):
        assert client.post("/v1/convolve", json={**D2L, "engine": "onnxruntime"}).is_success
    metrics = client.get("/metrics").text
    assert _sample(metrics, 'convserve_session_cache_capacity{cache="convolve"}') == 5
    assert _sample(metrics, 'convserve_session_cache_misses_total{cache="convolve"}') == 1
    assert _sample(metrics, 'convserve_session_cache_hits_total{cache="convolve"}') == 1
    assert _sample(metrics, 'convserve_session_cache_size{cache="layers"}') == 0
    assert _sample(metrics, 'convserve_session_cache_capacity{cache="convolve_packed"}') == 16


def test_problems_the_middleware_answers_carry_cors_headers(make_client: ClientFactory) -> None:
    client = make_client(max_upload_bytes=1000, warmup=False)
    response = client.post("/v1/convolve", content=b"x" * 2000,
                           headers={"content-type": "application/json",
                                    "origin": "http://frontend.example"})
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == "*"
    preflight = client.options("/v1/convolve", headers={
        "origin": "http://frontend.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
