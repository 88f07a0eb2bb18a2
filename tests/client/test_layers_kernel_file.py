"""``layers(kernel_file=...)`` of both clients, ``layers_many`` and ``convserve layers
--kernel-file``, against a real server: a network's weights from a file equal the same stack
given as explicit kernels."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from convserve_client import AsyncClient, Client, LayersResult, UnprocessableEntityError
from tests.client.test_cli import convserve
from tests.weightfiles import npy_file, npz_bytes, safetensors_bytes

if TYPE_CHECKING:
    from convserve_client._types import KernelFileInput

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback

RNG = np.random.default_rng(21)
X = RNG.random((3, 10, 9)).astype(np.float32)
STATE = {
    "features.0.weight": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
    "features.0.bias": RNG.standard_normal(4).astype(np.float32),
    "features.3.weight": RNG.standard_normal((2, 4, 3, 3)).astype(np.float32),
    "features.3.bias": RNG.standard_normal(2).astype(np.float32),
}
FILE_STACK: list[dict[str, Any]] = [
    {"type": "conv2d", "kernel_key": "features.0.weight", "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "kernel_key": "features.3.weight"},
]
KERNEL_STACK: list[dict[str, Any]] = [
    {"type": "conv2d", "kernel": {"weight": STATE["features.0.weight"],
                                  "bias": STATE["features.0.bias"]},
     "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "kernel": {"weight": STATE["features.3.weight"],
                                  "bias": STATE["features.3.bias"]}},
]


@pytest.fixture(scope="module")
def expected(server_url: str) -> np.ndarray:
    """The stack with its kernels given explicitly."""
    with Client(server_url, max_retries=0) as cs:
        result = cs.layers(X, layers=KERNEL_STACK, format="npy")
    assert result.array is not None and result.array.shape == (2, 3, 2)
    return result.array


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_bytes(STATE))
    return path


@pytest.mark.parametrize("kind", ["path", "npz-bytes", "state-dict"])
def test_layers_takes_a_kernel_file_as_a_path_bytes_or_a_state_dict(
    server_url: str, expected: np.ndarray, weights: Path, kind: str
) -> None:
    choices: dict[str, KernelFileInput] = {"path": weights, "npz-bytes": npz_bytes(**STATE),
                                           "state-dict": STATE}
    kernel_file = choices[kind]
    with Client(server_url, max_retries=0) as cs:
        result = cs.layers(X, layers=FILE_STACK, kernel_file=kernel_file, format="npy")
        described = cs.layers(X, layers=FILE_STACK, kernel_file=kernel_file, dry_run=True)
    assert result.array is not None
    np.testing.assert_array_equal(result.array, expected)
    assert described.raw["layers"][2]["kernel"]["weight_key"] == "features.3.weight"
    assert described.raw["layers"][2]["kernel"]["bias_key"] == "features.3.bias"


def test_a_npy_kernel_file_with_kernel_file_true(server_url: str) -> None:
    stack = [{"type": "conv2d", "kernel_file": True}]
    with Client(server_url, max_retries=0) as cs:
        from_file = cs.layers(X, layers=stack, format="npy",
                              kernel_file=npy_file(STATE["features.0.weight"]))
        explicit = cs.layers(X, layers=[{"type": "conv2d", "kernel": {
            "weight": STATE["features.0.weight"]}}], format="npy")
    assert from_file.array is not None and explicit.array is not None
    np.testing.assert_array_equal(from_file.array, explicit.array)


def test_async_layers_and_layers_many_send_the_file(
    server_url: str, expected: np.ndarray, weights: Path
) -> None:
    async def run() -> tuple[LayersResult, list[tuple[Any, Any]]]:
        async with AsyncClient(server_url, max_retries=0) as acs:
            one = await acs.layers(X, layers=FILE_STACK, kernel_file=weights, format="npy")
            many = [pair async for pair in acs.layers_many(
                [X, X], layers=FILE_STACK, kernel_file=weights, format="npy")]
            return one, many

    one, many = asyncio.run(run())
    assert one.array is not None
    np.testing.assert_array_equal(one.array, expected)
    with Client(server_url, max_retries=0) as cs:
        many += list(cs.layers_many([X], layers=FILE_STACK, kernel_file=str(weights),
                                    format="npy", concurrency=2))
    assert len(many) == 3
    for _, result in many:
        assert isinstance(result, LayersResult) and result.array is not None
        np.testing.assert_array_equal(result.array, expected)


def test_the_servers_problem_names_the_layer_and_json_transport_is_refused(
    server_url: str, weights: Path
) -> None:
    stack = [FILE_STACK[0], {"type": "conv2d", "kernel_key": "features.9.weight"}]
    with Client(server_url, max_retries=0) as cs:
        with pytest.raises(UnprocessableEntityError) as info:
            cs.layers(X, layers=stack, kernel_file=weights)
        with pytest.raises(ValueError, match="leave transport='multipart'"):
            cs.layers(X, layers=FILE_STACK, kernel_file=weights, transport="json")
        with pytest.raises(TypeError, match="kernel_file must be a path"):
            cs.layers(X, layers=FILE_STACK, kernel_file=42)  # type: ignore[arg-type]
    problem = info.value.problem
    assert [error.field for error in problem.errors] == ["layers.1.kernel_key"]
    assert problem.detail.startswith("layers.1.kernel_key: the .safetensors file has no "
                                     "tensor 'features.9.weight'; it holds ")


def test_cli_layers_with_kernel_file(server_url: str, expected: np.ndarray, weights: Path,
                                     tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "stack.json").write_text(json.dumps(FILE_STACK))
    done = convserve("layers", "x.npy", "--layers", "stack.json", "--kernel-file", str(weights),
                     "--format", "npy", "-o", "y.npy", url=server_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    table = convserve("layers", "x.npy", "--layers", "stack.json", "--kernel-file",
                      str(weights), "--dry-run", url=server_url, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.decode().splitlines()[3].split()[:3] == ["2", "conv2d", "2x3x2"]
    missing = convserve("layers", "x.npy", "--layers", "stack.json", "--kernel-file",
                        "nowhere.npz", url=server_url, cwd=tmp_path)
    assert missing.returncode == 2
    assert ("convserve layers: error: cannot read --kernel-file 'nowhere.npz': "
            in missing.stderr.decode())
    unread = convserve("layers", "x.npy", "--layers", "stack.json", url=server_url,
                       cwd=tmp_path)
    assert unread.returncode == 1
    assert "layers.0.kernel_key takes its weight from a kernel_file part" in (
        unread.stderr.decode())
