"""The sample network at start-up (CONVSERVE_SAMPLE_MODEL): stored in the background, listed,
found by GET /v1/models/sample, stored again by POST after an eviction; a start never fails.

Test apps leave the sample out by default (``app_settings``); these turn it on.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from fastapi.testclient import TestClient

from convserve.api.runtime import Runtime
from convserve.models.sample import SAMPLE_FILENAME, write_sample
from tests import onnx_models as m
from tests.api.conftest import ClientFactory
from tests.unit.models.test_sample import convserve_log

SAMPLE_WAIT_S = 120.0
"""A bound on waiting for the start-up thread (a second or two on an idle machine)."""


def sample_stored(client: TestClient) -> None:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.sample_done.wait(SAMPLE_WAIT_S), "the start-up sample thread never ended"


def test_sample_is_stored_at_start_and_listed_with_the_id_post_answers(
        make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(model_dir=tmp_path, sample_model=True, warmup=False)
    assert client.get("/healthz").status_code == 200
    sample_stored(client)
    listed = client.get("/v1/models").json()["models"]
    assert [item["filename"] for item in listed] == [SAMPLE_FILENAME]
    ident = listed[0]["id"]
    assert client.get("/v1/models/sample").json() == {
        "id": ident, "stored": True, "store_at_start": True}
    posted = client.post("/v1/models/sample")
    assert (posted.status_code, posted.json()["id"]) == (200, ident)
    assert posted.headers["location"] == f"/v1/models/{ident}"
    assert client.get(f"/v1/models/{ident}").json()["total_params"] == m.KERAS_TOTAL


def test_a_second_app_on_the_same_store_finds_the_sample_stored(
        make_client: ClientFactory, tmp_path: Path) -> None:
    first = make_client(model_dir=tmp_path, sample_model=True, warmup=False)
    sample_stored(first)
    with convserve_log() as log:
        second = make_client(model_dir=tmp_path, sample_model=True, warmup=False)
        sample_stored(second)
    messages = [r.getMessage() for r in log.records if r.name == "convserve"]
    assert "sample network already stored" in messages
    assert len(first.get("/v1/models").json()["models"]) == 1
    assert len(list(tmp_path.glob("*.onnx"))) == 1


def test_prebuilt_file_is_what_start_and_post_store(make_client: ClientFactory,
                                                    tmp_path: Path) -> None:
    prebuilt = tmp_path / "share" / SAMPLE_FILENAME
    data = write_sample(prebuilt)
    ident = hashlib.sha256(data).hexdigest()[:32]
    client = make_client(model_dir=tmp_path / "store", sample_model=True,
                         sample_model_file=prebuilt, warmup=False)
    sample_stored(client)
    assert [item["id"] for item in client.get("/v1/models").json()["models"]] == [ident]
    # Deleted (or evicted), the sample is stored again on demand, with the same id.
    assert client.delete(f"/v1/models/{ident}").status_code == 204
    assert client.get("/v1/models/sample").json() == {
        "id": ident, "stored": False, "store_at_start": True}
    again = client.post("/v1/models/sample")
    assert (again.status_code, again.json()["id"]) == (201, ident)
    assert client.get("/v1/models/sample").json()["stored"] is True


def test_sample_switched_off_is_not_stored_but_can_be_asked_for(
        make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(model_dir=tmp_path, warmup=False)  # sample_model=False in tests
    sample_stored(client)
    assert client.get("/v1/models").json() == {"models": []}
    status = client.get("/v1/models/sample").json()
    assert (status["stored"], status["store_at_start"]) == (False, False)
    posted = client.post("/v1/models/sample")
    assert (posted.status_code, posted.json()["id"]) == (201, status["id"])


def test_a_store_too_small_for_the_sample_logs_it_and_starts_all_the_same(
        make_client: ClientFactory, tmp_path: Path) -> None:
    with convserve_log() as log:
        client = make_client(model_dir=tmp_path, sample_model=True,
                             model_store_bytes=1_000_000)
        sample_stored(client)
    assert client.get("/readyz").status_code == 200
    (warning,) = [r for r in log.records if r.levelno >= logging.WARNING]
    assert warning.getMessage().startswith("the sample network was not stored at start-up: ")
    assert "CONVSERVE_MODEL_STORE_BYTES" in warning.getMessage()
    assert client.get("/v1/models").json() == {"models": []}
    refused = client.post("/v1/models/sample")
    assert refused.status_code == 413
    assert "CONVSERVE_MODEL_STORE_BYTES" in refused.json()["detail"]


def test_an_unwritable_store_does_not_stop_the_start(make_client: ClientFactory,
                                                     tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store should be")
    with convserve_log() as log:
        client = make_client(model_dir=blocker / "models", sample_model=True)
        sample_stored(client)
    assert client.get("/readyz").status_code == 200
    assert any("CONVSERVE_MODEL_DIR" in r.getMessage() for r in log.records
               if r.levelno >= logging.WARNING)
    unavailable = client.get("/v1/models")
    assert unavailable.status_code == 503
    assert unavailable.json()["type"] == "/problems/model-store-unavailable"
