"""The NumPy engine's own contract: every strategy on every parity case, band edges, threads,
memory, the rank-1 test, devices and errors.

test_parity.py checks the strategy the engine picks by default; here each strategy is forced,
with bands of one row, two rows and the default height, so the band boundaries of every strategy
meet every padding mode, stride and dilation.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from convserve import EngineUnavailableError, ShapeError, conv2d, conv_spec
from convserve.conv import get_engine
from convserve.conv.numpy_engine import (
    _BLAS,
    CUDA_UNAVAILABLE_REASON,
    STRATEGIES,
    NumpyEngine,
    Strategy,
    choose_strategy,
    rank1_factors,
)
from convserve.conv.spec import ConvSpec
from tests.reference import ConvOptions, conv2d_reference
from tests.unit.test_parity import CASES, Layer, assert_matches, gaussian, make_arrays

SOBEL_X = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])


def spec_of(layer: Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> ConvSpec:
    return conv_spec(
        x.shape, w.shape, None if b is None else b.shape, stride=layer.stride,
        padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
        padding_mode=layer.padding_mode,
    )


def case_values(param: pytest.ParameterSet) -> tuple[str, Layer]:
    """The (case_id, layer) of one of test_parity's CASES."""
    case_id, layer = param.values
    assert isinstance(case_id, str) and isinstance(layer, Layer)
    return case_id, layer


def applicable(strategy: Strategy, case_id: str, layer: Layer) -> bool:
    x, w, b = make_arrays(case_id, layer)
    spec = spec_of(layer, x if x.ndim == 4 else x[None], w, b)
    if strategy == "direct":
        return (spec.kernel_h, spec.kernel_w, *spec.stride) == (1, 1, 1, 1) and not any(spec.pads)
    if strategy == "separable":
        return spec.in_per_group == 1 and rank1_factors(w) is not None
    return True


STRATEGY_CASES = [
    pytest.param(strategy, *param.values, id=f"{strategy}-{param.id}")
    for param in CASES
    for strategy in STRATEGIES
    if applicable(strategy, *case_values(param))
]


@pytest.mark.parametrize(("strategy", "case_id", "layer"), STRATEGY_CASES)
def test_every_strategy_matches_reference_at_any_band_height(
    strategy: Strategy, case_id: str, layer: Layer
) -> None:
    x, w, b = make_arrays(case_id, layer)
    x4 = x if x.ndim == 4 else x[None]
    spec = spec_of(layer, x4, w, b)
    expected = conv2d_reference(x4, w, b, layer.stride, layer.padding, layer.dilation,
                                layer.groups, layer.padding_mode)
    engine = NumpyEngine(threads=2)
    for band_rows in (1, 2, None):
        y = engine.conv2d(x4, w, b, spec, strategy=strategy,
                          band_rows=band_rows)
        assert_matches(y, expected)


def test_strategies_that_do_not_apply_are_refused() -> None:
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    spec = conv_spec(x.shape, w.shape)
    with pytest.raises(ValueError, match="strategy='direct' needs a 1x1 kernel"):
        NumpyEngine().conv2d(x, w, None, spec, strategy="direct")
    with pytest.raises(ValueError, match="strategy='separable' needs C_in/groups == 1"):
        NumpyEngine().conv2d(x, w, None, spec, strategy="separable")


def weight_for(kind: str, shape: tuple[int, int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "gaussian":
        return np.broadcast_to(gaussian(shape[2], 1.2), shape).astype(np.float32)
    if kind == "sobel":
        return np.broadcast_to(SOBEL_X, shape).astype(np.float32)
    if kind == "near-rank1":
        return (gaussian(shape[2], 1.2) + 1e-4 * rng.standard_normal(shape)).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kind", "options", "strategy"),
    [
        pytest.param((1, 3, 512, 512), (2, 3, 3, 3), "random", {"padding": 1}, "im2col",
                     id="W1-rgb-to-2-k3"),
        pytest.param((1, 3, 1024, 1024), (16, 3, 3, 3), "random", {"padding": 1}, "im2col",
                     id="W2-rgb-to-16-k3"),
        pytest.param((1, 1, 2048, 2048), (1, 1, 5, 5), "gaussian", {"padding": 2},
                     "toeplitz", id="W3-gaussian5-gray"),
        pytest.param((1, 64, 256, 256), (64, 64, 3, 3), "random", {"padding": 1}, "im2col",
                     id="W4-wide-64-to-64"),
        pytest.param((1, 3, 1024, 1024), (3, 1, 7, 7), "random", {"padding": 3, "groups": 3},
                     "toeplitz", id="W5-depthwise-k7"),
        pytest.param((1, 32, 512, 512), (32, 32, 1, 1), "random", {}, "direct",
                     id="W6-1x1"),
        pytest.param((1, 3, 1024, 1024), (8, 3, 3, 3), "random",
                     {"padding": 2, "stride": 2, "dilation": 2}, "im2col", id="W7-s2-d2"),
        pytest.param((1, 3, 4096, 4096), (4, 3, 3, 3), "random", {"padding": 1}, "im2col",
                     id="W8-4k-rgb-to-4"),
        pytest.param((1, 3, 64, 64), (3, 1, 3, 3), "gaussian", {"groups": 3}, "im2col",
                     id="gaussian3-depthwise"),
        pytest.param((1, 1, 64, 64), (2, 1, 3, 3), "sobel", {}, "im2col", id="sobel-gray"),
        pytest.param((1, 1, 64, 64), (1, 1, 13, 13), "gaussian", {}, "separable",
                     id="gaussian13-is-separable"),
        pytest.param((1, 1, 64, 64), (1, 1, 11, 11), "gaussian", {}, "toeplitz",
                     id="gaussian11-is-toeplitz"),
        pytest.param((1, 3, 64, 64), (3, 1, 5, 5), "random", {"groups": 3}, "toeplitz",
                     id="depthwise-k5"),
        pytest.param((1, 1, 64, 64), (1, 1, 5, 5), "near-rank1", {}, "toeplitz",
                     id="near-rank1-is-not-separable"),
        pytest.param((1, 1, 64, 64), (1, 1, 3, 3), "random", {}, "im2col",
                     id="gray-k3-too-little-to-copy"),
        pytest.param((1, 3, 64, 64), (6, 1, 7, 7), "random", {"groups": 3}, "toeplitz",
                     id="depthwise-m2-k7"),
        pytest.param((1, 3, 64, 64), (6, 1, 5, 5), "random", {"groups": 3}, "im2col",
                     id="depthwise-m2-k5"),
        pytest.param((1, 32, 64, 64), (32, 1, 3, 3), "random", {"groups": 32}, "toeplitz",
                     id="depthwise-32ch"),
        pytest.param((1, 1, 64, 64), (1, 1, 1, 1), "random", {"padding": 1}, "im2col",
                     id="1x1-padded"),
        pytest.param((1, 3, 64, 64), (2, 3, 5, 5), "random", {"stride": 2}, "im2col",
                     id="k5-stride2"),
    ],
)
def test_choose_strategy_by_shape_and_weights(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], kind: str,
    options: ConvOptions, strategy: Strategy,
) -> None:
    spec = conv_spec(x_shape, w_shape, **options)
    assert choose_strategy(spec, weight_for(kind, w_shape)) == strategy


def test_rank1_factors_reconstruct_gaussian_sobel_and_zero_kernels() -> None:
    kernels = np.stack([gaussian(5, 1.0), np.pad(SOBEL_X, 1), np.zeros((5, 5))])[:, None]
    factors = rank1_factors(kernels.astype(np.float32))
    assert factors is not None
    col, row = factors
    assert col.shape == (3, 5) and row.shape == (3, 5)
    np.testing.assert_allclose(col[:, :, None] * row[:, None, :], kernels[:, 0], atol=1e-7)


@pytest.mark.parametrize(
    "kernel",
    [np.eye(3), gaussian(5, 1.0) + 1e-4 * np.eye(5), np.array([[1.0, 2.0], [3.0, 4.0]])],
    ids=["identity-matrix", "gaussian-plus-1e-4-diagonal", "full-rank-2x2"],
)
def test_rank1_factors_refuse_kernels_of_higher_rank(kernel: np.ndarray) -> None:
    assert rank1_factors(kernel[None, None].astype(np.float32)) is None


def test_results_do_not_depend_on_thread_count() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 67, 41)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    spec = conv_spec(x.shape, w.shape, b.shape, padding=2, groups=2, padding_mode="reflect")
    for strategy in ("im2col", "toeplitz"):
        results = [
            NumpyEngine(threads).conv2d(x, w, b, spec, strategy=strategy)
            for threads in (1, 2, 3)
        ]
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_array_equal(results[0], results[2])


def test_concurrent_calls_share_one_engine_and_restore_blas_threads() -> None:
    engine = NumpyEngine(threads=2)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 30, 32)).astype(np.float32)
    weights = [rng.standard_normal((6, 16, 3, 3)).astype(np.float32) for _ in range(6)]
    expected = [conv2d_reference(x, w, padding=1) for w in weights]
    spec = conv_spec(x.shape, weights[0].shape, padding=1)
    blas_before = _BLAS.threads()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        try:
            for _ in range(3):
                assert_matches(engine.conv2d(x, weights[index], None, spec), expected[index])
        except BaseException as exc:  # collected and re-raised in the main thread
            with lock:
                errors.append(exc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, range(len(weights))))
    assert errors == []
    assert _BLAS.threads() == blas_before


def test_working_memory_is_a_few_bands_not_the_image() -> None:
    # 1024x1024 RGB in (12.6 MB), 4 maps out (16.8 MB): no strategy may pad or unfold the
    # whole image; the bands of two threads need a few MB.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    spec = conv_spec(x.shape, w.shape, padding=1, padding_mode="reflect")
    engine = NumpyEngine(threads=2)
    for strategy in ("im2col", "toeplitz"):
        tracemalloc.start()
        try:
            y = engine.conv2d(x, w, None, spec, strategy=strategy)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - y.nbytes < 8_000_000, f"{strategy} used {peak - y.nbytes} bytes"


def test_engine_rejects_arrays_that_do_not_match_the_spec() -> None:
    spec = conv_spec((1, 3, 8, 8), (2, 3, 3, 3))
    with pytest.raises(ShapeError) as info:
        NumpyEngine().conv2d(np.ones((1, 3, 8, 9), np.float32),
                             np.ones((2, 3, 3, 3), np.float32), None, spec)
    assert info.value.detail == (
        "arrays x.shape=(1, 3, 8, 9), weight.shape=(2, 3, 3, 3), bias.shape=None do not match "
        "the spec's (1, 3, 8, 8), (2, 3, 3, 3), None"
    )


def test_cuda_is_refused_with_the_reason() -> None:
    spec = conv_spec((1, 1, 3, 3), (1, 1, 1, 1))
    with pytest.raises(EngineUnavailableError) as info:
        NumpyEngine().conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32),
                             None, spec, "cuda")
    assert info.value.detail == f"device='cuda': {CUDA_UNAVAILABLE_REASON}"
    assert info.value.errors == [{"field": "device", "message": info.value.detail}]
    with pytest.raises(EngineUnavailableError, match="the NumPy engine runs on the CPU only"):
        conv2d(np.ones((1, 3, 3)), np.ones((1, 1, 1, 1)), engine="numpy", device="cuda")


def test_devices_version_and_name() -> None:
    engine = NumpyEngine(threads=3)
    assert engine.name == "numpy"
    assert engine.version() == np.__version__
    cpu, cuda = engine.devices()
    assert (cpu.device, cpu.available, cpu.reason, cpu.details) == ("cpu", True, None,
                                                                    {"threads": 3})
    assert (cuda.device, cuda.available, cuda.reason) == ("cuda", False, CUDA_UNAVAILABLE_REASON)
    assert CUDA_UNAVAILABLE_REASON == (
        "the NumPy engine runs on the CPU only; use engine=onnxruntime with onnxruntime-gpu "
        "for CUDA"
    )
    assert isinstance(get_engine("numpy"), NumpyEngine)
    assert NumpyEngine().threads >= 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_engine_used_before_fork_still_runs_in_the_child() -> None:
    # A pre-forking server may warm the engine up, then fork workers: the child inherits the
    # thread pool object without its threads, and must not wait on them forever.
    engine = NumpyEngine(threads=2)
    x = np.random.default_rng(6).standard_normal((1, 3, 64, 64)).astype(np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    spec = conv_spec(x.shape, w.shape, padding=1)
    expected = engine.conv2d(x, w, None, spec)
    with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit status only, never return to pytest
        same = False
        try:
            same = np.array_equal(engine.conv2d(x, w, None, spec), expected)
        finally:
            os._exit(0 if same else 1)
    deadline = time.monotonic() + 15
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's convolution hung")
    assert os.waitstatus_to_exitcode(done[1]) == 0
