"""The SDK's and CLI's model methods over real HTTP, sync and async."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from anyio.from_thread import start_blocking_portal

from convserve_client import (
    AsyncClient,
    Client,
    FeatureMaps,
    ModelInfo,
    ModelKernel,
    NotFoundError,
    UnprocessableEntityError,
)
from convserve_client.cli import main
from tests import onnx_models as m
from tests.client.test_client import Blocking
from tests.conftest import cuda_unavailable_reason

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, models_url: str) -> Iterator[Any]:
    if request.param == "sync":
        with Client(models_url, max_retries=0) as cs:
            yield cs
        return
    with start_blocking_portal() as portal:
        acs = portal.call(lambda: _async_client(models_url))
        try:
            yield Blocking(portal, acs)
        finally:
            portal.call(acs.close)


async def _async_client(url: str) -> AsyncClient:
    return AsyncClient(url, max_retries=0)


def test_model_lifecycle_and_features(api: Any, tmp_path: Path) -> None:
    path = tmp_path / "bn.onnx"
    path.write_bytes(m.serialize(m.bn_cnn(seed=21)))
    info: ModelInfo = api.upload_model(path)
    assert info.created_now and info.input.shape == (1, 2, 10, 9)
    assert [row.name for row in info.layers] == ["conv", "bn", "y"]
    again: ModelInfo = api.upload_model(path.read_bytes())
    assert (again.id, again.created_now) == (info.id, False)
    assert info.id in [item.id for item in api.models()]
    assert api.model(info.id).layer("bn").params == 20

    x = np.random.default_rng(2).normal(size=(2, 10, 9)).astype(np.float32)
    npy: FeatureMaps = api.features(info.id, x, ["conv"], format="npy")
    zipped: FeatureMaps = api.features(info.id, x, ["conv", 2], format="zip")
    as_json: FeatureMaps = api.features(info.id, x, "y", transport="json")
    assert npy["conv"].array is not None and zipped["conv"].array is not None
    np.testing.assert_array_equal(npy["conv"].array, zipped["conv"].array)
    assert zipped["y"].array is not None
    assert as_json["y"].channels[0].stats.max == pytest.approx(
        float(zipped["y"].array[0].max()), rel=1e-6)

    small = np.ones((2, 5, 6), np.float32)
    for transport in ("multipart", "json"):
        resized: FeatureMaps = api.features(info.id, small, ["conv"], format="zip",
                                            preprocess={"resize": "stretch", "scale": 2},
                                            transport=transport)
        assert resized.preprocess["scale"] == 2 and resized.preprocess["input_shape"] == [2, 5, 6]
        assert resized["conv"].shape == (5, 11, 6)

    kernel: ModelKernel = api.model_kernel(info.id, "conv")
    assert kernel.padding == (1, 2, 0, 1) and kernel.dilation == (1, 2)
    again_conv = api.convolve(x, **kernel.convolve_options(), format="npy")
    np.testing.assert_allclose(again_conv.array, npy["conv"].array, rtol=1e-5, atol=1e-6)

    with pytest.raises(UnprocessableEntityError, match="has no layer 'nope'"):
        api.features(info.id, x, ["nope"])
    api.delete_model(info.id)
    with pytest.raises(NotFoundError):
        api.model(info.id)


def test_features_on_a_device(api: Any) -> None:
    info: ModelInfo = api.upload_model(m.serialize(m.bn_cnn(seed=22)))
    x = np.random.default_rng(3).normal(size=(2, 10, 9)).astype(np.float32)
    on_cpu: FeatureMaps = api.features(info.id, x, ["y"], device="cpu")
    assert (on_cpu.device, on_cpu.provider) == ("cpu", "CPUExecutionProvider")
    npy: FeatureMaps = api.features(info.id, x, ["y"], format="npy", device="cpu")
    assert npy.device == "cpu"  # from the engine header: a .npy carries no device
    if cuda_unavailable_reason() is not None:
        for transport in ("multipart", "json"):
            with pytest.raises(UnprocessableEntityError, match="CUDAExecutionProvider"):
                api.features(info.id, x, ["y"], device="cuda", transport=transport)
        return
    on_cuda: FeatureMaps = api.features(info.id, x, ["y"], format="zip", device="cuda")
    on_cpu_zip: FeatureMaps = api.features(info.id, x, ["y"], format="zip", device="cpu")
    assert (on_cuda.device, on_cuda.provider) == ("cuda", "CUDAExecutionProvider")
    assert on_cuda["y"].array is not None and on_cpu_zip["y"].array is not None
    np.testing.assert_allclose(on_cuda["y"].array, on_cpu_zip["y"].array, rtol=1e-4,
                               atol=1e-5)


def run_cli(url: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["--url", url, *args])
    return status, out.getvalue()


def test_cli_model_commands(models_url: str, tmp_path: Path) -> None:
    path = tmp_path / "nhwc.onnx"
    path.write_bytes(m.serialize(m.nhwc_cnn(seed=5)))
    status, text = run_cli(models_url, "model", "upload", str(path), "--json")
    assert status == 0
    ident = json.loads(text)["id"]
    status, text = run_cli(models_url, "model", "show", ident)
    assert status == 0 and "NHWC" in text and "Transpose" in text
    status, text = run_cli(models_url, "model", "list")
    assert ident in text
    image = tmp_path / "x.npy"
    np.save(image, np.ones((3, 12, 12), np.float32))
    status, _ = run_cli(models_url, "model", "features", ident, str(image), "--layers", "conv",
                        "--format", "npy", "-o", str(tmp_path / "conv.npy"))
    assert status == 0 and np.load(tmp_path / "conv.npy").shape == (4, 6, 6)
    status, _ = run_cli(models_url, "model", "features", ident, str(image), "--layers", "conv",
                        "--device", "cpu", "--format", "npy", "-o", str(tmp_path / "cpu.npy"))
    assert status == 0
    np.testing.assert_array_equal(np.load(tmp_path / "cpu.npy"), np.load(tmp_path / "conv.npy"))
    if cuda_unavailable_reason() is not None:
        status, _ = run_cli(models_url, "model", "features", ident, str(image), "--layers",
                            "conv", "--device", "cuda")
        assert status == 1
    status, text = run_cli(models_url, "model", "features", ident, str(image), "--layers",
                           "1,relu", "-o", str(tmp_path / "maps"))
    assert status == 0 and (tmp_path / "maps" / "001" / "channel_003.png").is_file()
    status, text = run_cli(models_url, "model", "kernel", ident, "conv", "-o",
                           str(tmp_path / "kernel.json"))
    assert status == 0 and "padding [0, 1, 0, 1]" in text
    assert np.asarray(json.loads((tmp_path / "kernel.json").read_text())["weight"]).shape == \
        (4, 3, 3, 3)
    assert run_cli(models_url, "model", "delete", ident)[0] == 0
    assert run_cli(models_url, "model", "show", ident)[0] == 1
