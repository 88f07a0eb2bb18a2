"""The sample network: the same bytes on every build, a prebuilt file, one store for many."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convserve.limits import Limits
from convserve.models import ModelService
from convserve.models.sample import SAMPLE_FILENAME, main, sample_bytes, sample_model_bytes
from tests import onnx_models as m


@pytest.fixture(scope="module")
def built() -> bytes:
    return sample_model_bytes()


class Records(logging.Handler):
    """The records of the ``convserve`` logger while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def convserve_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("convserve")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_the_command_writes_the_same_bytes_every_build(built: bytes, tmp_path: Path) -> None:
    out = tmp_path / "share" / SAMPLE_FILENAME
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == built
    ident = hashlib.sha256(built).hexdigest()[:32]
    assert printed.getvalue().strip() == f"{out}: {len(built):,} bytes, model id {ident}"
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in out.parent.iterdir()] == [SAMPLE_FILENAME]  # no temporary left


def test_a_prebuilt_file_is_read_and_a_missing_one_is_built_and_logged(
        built: bytes, tmp_path: Path) -> None:
    other = m.serialize(m.bn_cnn())
    (tmp_path / "other.onnx").write_bytes(other)
    assert sample_bytes(tmp_path / "other.onnx") == other
    with convserve_log() as log:
        assert sample_bytes(tmp_path / "missing.onnx") == built
    (record,) = log.records
    assert record.levelno == logging.WARNING
    assert "CONVSERVE_SAMPLE_MODEL_FILE" in record.getMessage()
    assert "missing.onnx" in record.getMessage()


def test_services_sharing_a_store_store_the_sample_once(built: bytes, tmp_path: Path) -> None:
    prebuilt = tmp_path / SAMPLE_FILENAME
    prebuilt.write_bytes(built)
    # Two services, as two workers would have: separate objects, one directory.
    services = [ModelService(tmp_path / "store", Limits(), sessions=1, intra_op_threads=1,
                             sample_file=prebuilt) for _ in range(2)]
    results: list[tuple[dict[str, Any], bool]] = []
    start = threading.Barrier(2)

    def store(service: ModelService) -> None:
        start.wait()
        results.append(service.store_sample())

    threads = [threading.Thread(target=store, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for _, created in results) == [False, True]
    ident = hashlib.sha256(built).hexdigest()[:32]
    assert {meta["id"] for meta, _ in results} == {ident}
    stored = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert stored == [".lock", ".sample.lock", f"{ident}.json", f"{ident}.onnx"]
    assert [meta["filename"] for meta in services[0].store.list()] == [SAMPLE_FILENAME]
    assert services[1].sample_id() == ident


def test_an_evicted_sample_is_stored_again(built: bytes, tmp_path: Path) -> None:
    # Room for the sample or the Keras test model (38 MB each), not both.
    service = ModelService(tmp_path, Limits(model_store_bytes=len(built) + 2_000_000),
                           sessions=1, intra_op_threads=1)
    sample, created = service.store_sample()
    assert created
    other, _ = service.upload(m.keras_cnn_bytes())
    assert not service.store.has(sample["id"]) and service.store.has(other["id"])
    again, created = service.store_sample()
    assert created and again["id"] == sample["id"]
    assert not service.store.has(other["id"])
