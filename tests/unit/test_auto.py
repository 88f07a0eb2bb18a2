"""``engine="auto"``: the subsample transform, the table lookup, the fallback and CUDA."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from convserve import EngineUnavailableError, conv2d
from convserve.conv.auto import (
    PATHS,
    TABLE_PATH,
    AutoEngine,
    AutoTable,
    Plan,
    family,
    features,
    subsample_spec,
)
from convserve.conv.spec import conv_spec

GAUSS3 = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]).astype(np.float32) / 16


def test_auto_is_the_default_engine_of_conv2d() -> None:
    assert inspect.signature(conv2d).parameters["engine"].default == "auto"


def test_subsample_turns_stride_2_dilation_2_into_a_stride_1_layer() -> None:
    spec = conv_spec((1, 3, 1024, 1024), (8, 3, 3, 3), (8,), stride=2, padding=2, dilation=2)
    sub = subsample_spec(spec)
    assert sub is not None
    assert (sub.row0, sub.col0) == (0, 0)
    assert sub.spec.input_shape == (1, 3, 512, 512)
    assert (sub.spec.stride, sub.spec.dilation, sub.spec.pads) == ((1, 1), (1, 1), (1, 1, 1, 1))
    assert sub.spec.output_shape == spec.output_shape == (1, 8, 512, 512)


def test_subsample_starts_on_the_odd_phase_after_an_odd_pad() -> None:
    spec = conv_spec((1, 1, 13, 14), (1, 1, 3, 3), stride=2, padding=3, dilation=4)
    sub = subsample_spec(spec)
    assert sub is not None
    assert (sub.row0, sub.col0) == (1, 1)
    assert sub.spec.dilation == (2, 2)
    x = np.arange(13 * 14, dtype=np.float32).reshape(1, 1, 13, 14)
    np.testing.assert_array_equal(sub.take(x, spec.stride)[0, 0, 0], x[0, 0, 1, 1::2])


@pytest.mark.parametrize(("shape", "stride", "padding", "dilation"), [
    pytest.param((1, 3, 1024, 1024), 2, 2, 2, id="W7-one-batch"),
    pytest.param((2, 2, 900, 733), 3, 4, 3, id="batch-2-odd-phase-stride-3"),
    pytest.param((1, 1, 2049, 1100), 2, 1, 2, id="one-channel-many-blocks"),
])
def test_a_large_subsample_is_copied_in_blocks_on_threads_exactly(
    shape: tuple[int, int, int, int], stride: int, padding: int, dilation: int,
) -> None:
    """Rows spanning more than 4 MiB are copied in blocks of 64 rows on several threads:
    every block, the last short one included, lands where the one-thread copy puts it."""
    spec = conv_spec(shape, (2, shape[1], 3, 3), stride=stride, padding=padding,
                     dilation=dilation)
    sub = subsample_spec(spec)
    assert sub is not None
    x = np.random.default_rng(3).random(shape, dtype=np.float32)
    assert x.nbytes > 4 << 20
    taken = sub.take(x, spec.stride)
    h, w = sub.spec.height, sub.spec.width
    expected = x[:, :, sub.row0 : sub.row0 + (h - 1) * stride + 1 : stride,
                 sub.col0 : sub.col0 + (w - 1) * stride + 1 : stride]
    assert taken.flags.c_contiguous and taken.shape == sub.spec.input_shape
    np.testing.assert_array_equal(taken, expected)
    np.testing.assert_array_equal(conv2d(x, np.ones((2, shape[1], 3, 3), np.float32),
                                         stride=stride, padding=padding, dilation=dilation,
                                         engine="auto"),
                                  conv2d(x, np.ones((2, shape[1], 3, 3), np.float32),
                                         stride=stride, padding=padding, dilation=dilation,
                                         engine="onnxruntime"))


@pytest.mark.parametrize(
    ("stride", "dilation", "mode"),
    [
        pytest.param(1, 2, "zeros", id="stride-1"),
        pytest.param(2, 1, "zeros", id="dilation-not-a-multiple"),
        pytest.param(2, 3, "zeros", id="dilation-3-stride-2"),
        pytest.param(2, 2, "reflect", id="reflect-padding"),
    ],
)
def test_subsample_does_not_apply(stride: int, dilation: int, mode: str) -> None:
    spec = conv_spec((1, 2, 16, 16), (2, 2, 3, 3), stride=stride, dilation=dilation, padding=2,
                     padding_mode=mode)
    assert subsample_spec(spec) is None


def test_families() -> None:
    assert family(conv_spec((1, 32, 8, 8), (32, 32, 1, 1))) == "pointwise-s1"
    assert family(conv_spec((1, 3, 8, 8), (3, 1, 3, 3), groups=3)) == "depthwise-s1"
    assert family(conv_spec((1, 1, 8, 8), (2, 1, 3, 3))) == "depthwise-s1"
    assert family(conv_spec((1, 3, 9, 9), (2, 3, 3, 3), stride=2)) == "dense-strided"
    assert family(conv_spec((1, 3, 9, 9), (2, 3, 3, 3), stride=2, dilation=2)) == (
        "dense-subsample"
    )


def _entry(spec_args: tuple[tuple[int, ...], tuple[int, ...]], order: list[str],
           **kw: int) -> dict[str, object]:
    spec = conv_spec(*spec_args, **kw)  # type: ignore[arg-type]
    return {"family": family(spec), "features": list(features(spec)), "order": order}


def test_table_takes_the_nearest_probe_of_the_same_family() -> None:
    table = AutoTable([
        _entry(((1, 3, 64, 64), (8, 3, 3, 3)), ["onnxruntime", "numpy:im2col"]),
        _entry(((1, 3, 2048, 2048), (8, 3, 3, 3)), ["numpy:im2col", "onnxruntime"]),
        _entry(((1, 3, 64, 64), (3, 1, 3, 3)), ["numpy:toeplitz", "onnxruntime"], groups=3),
    ])
    small = conv_spec((1, 3, 80, 80), (8, 3, 3, 3))
    large = conv_spec((1, 3, 1500, 1500), (8, 3, 3, 3))
    assert table.order(small)[0] == "onnxruntime"
    assert table.order(large)[0] == "numpy:im2col"
    assert table.order(conv_spec((1, 3, 9, 9), (3, 1, 3, 3), groups=3))[0] == "numpy:toeplitz"
    assert table.order(conv_spec((1, 4, 9, 9), (4, 4, 1, 1))) == ()  # no pointwise probe


def test_rank1_weights_take_a_probe_measured_with_rank1_weights() -> None:
    table = AutoTable([
        _entry(((1, 3, 512, 512), (3, 1, 3, 3)), ["onnxruntime", "numpy:toeplitz"], groups=3),
        _entry(((1, 3, 512, 512), (3, 1, 3, 3)), ["numpy:separable", "onnxruntime"], groups=3),
    ])
    auto = AutoEngine(table=table)
    spec = conv_spec((1, 3, 300, 300), (3, 1, 3, 3), groups=3)
    blur = np.broadcast_to(GAUSS3, (3, 1, 3, 3)).copy()
    rng = np.random.default_rng(1)
    assert auto.plan(spec, blur) == Plan("numpy:separable", "numpy")
    assert auto.plan(spec, rng.standard_normal((3, 1, 3, 3)).astype(np.float32)) == Plan(
        "onnxruntime", "onnxruntime"
    )


def test_without_a_table_auto_falls_back_to_onnxruntime() -> None:
    auto = AutoEngine(table=AutoTable([]))
    spec = conv_spec((1, 3, 32, 32), (4, 3, 3, 3))
    assert auto.plan(spec, np.ones((4, 3, 3, 3), np.float32)) == Plan("onnxruntime",
                                                                      "onnxruntime")


def test_a_path_that_does_not_apply_is_passed_over() -> None:
    """The probe's fastest path (direct, 1x1 unpadded) cannot run a padded 1x1 layer."""
    table = AutoTable([_entry(((1, 8, 64, 64), (8, 8, 1, 1)), ["numpy:direct", "numpy:im2col"])])
    spec = conv_spec((1, 8, 64, 64), (8, 8, 1, 1), padding=1)
    assert AutoEngine(table=table).plan(spec, np.ones((8, 8, 1, 1), np.float32)).path == (
        "numpy:im2col"
    )


def test_auto_on_cuda_is_onnxruntime_on_cuda_with_the_same_error() -> None:
    spec = conv_spec((1, 1, 4, 4), (1, 1, 3, 3))
    assert AutoEngine().plan(spec, np.ones((1, 1, 3, 3), np.float32), "cuda") == Plan(
        "onnxruntime", "onnxruntime"
    )
    x, w = np.ones((1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(EngineUnavailableError) as auto_error:
        conv2d(x, w, device="cuda")
    with pytest.raises(EngineUnavailableError) as ort_error:
        conv2d(x, w, engine="onnxruntime", device="cuda")
    assert auto_error.value.detail == ort_error.value.detail
    assert "CUDAExecutionProvider" in auto_error.value.detail


def test_the_kept_table_is_complete_and_consistent() -> None:
    """Every probe of the kept table names known families and paths, fastest first."""
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    families = {f"{k}-{m}" for k in ("pointwise", "depthwise", "dense")
                for m in ("s1", "subsample", "strided")}
    assert {e["id"] for e in table["entries"]} >= {f"W{i}" for i in range(1, 9)}
    for entry in table["entries"]:
        assert entry["family"] in families
        assert len(entry["features"]) == 5
        assert entry["order"] and set(entry["order"]) <= set(PATHS)
        assert "onnxruntime" in entry["order"]
        times = [entry["ms"][p] for p in entry["order"]]
        assert times == sorted(times)
