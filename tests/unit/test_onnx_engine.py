"""The ONNX Runtime engine with real sessions: results, graph layout, session cache, devices.

The exhaustive engine-vs-reference grid lives in test_parity.py; here a handful of cases (every
padding mode, asymmetric pads) check this engine against a float64 loop written below.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import onnx
import onnxruntime
import pytest

from convserve import EngineUnavailableError, InvalidArgumentError, ShapeError, conv2d, conv_spec
from convserve.conv import packing
from convserve.conv.graphs import IR_VERSION, OPSET, conv_model, conv_nodes
from convserve.conv.onnx_engine import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    CUDA_PROVIDER_OPTIONS,
    CacheStats,
    OnnxRuntimeEngine,
    check_active,
    make_session,
    select_providers,
)
from convserve.conv.packing import PACKED_MAX_WEIGHT_BYTES
from convserve.conv.spec import ConvSpec
from convserve.cores import available_cores
from tests.reference import ConvOptions

NUMPY_PAD: dict[str, Literal["constant", "reflect", "edge", "wrap"]] = {
    "zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap",
}
AVAILABLE = onnxruntime.get_available_providers()


def reference_conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    spec: ConvSpec,
) -> np.ndarray:
    """float64 ``(N, C_out, H_out, W_out)``: pad with NumPy, then sum shifted, strided slices."""
    top, bottom, left, right = spec.pads
    xp = np.pad(
        x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)),
        mode=NUMPY_PAD[spec.padding_mode],
    )
    (s_h, s_w), (d_h, d_w) = spec.stride, spec.dilation
    h_out, w_out = spec.out_height, spec.out_width
    y = np.zeros(spec.output_shape)
    for o in range(spec.out_channels):
        first = (o // spec.out_per_group) * spec.in_per_group
        for u in range(spec.kernel_h):
            for v in range(spec.kernel_w):
                patch = xp[:, first:first + spec.in_per_group,
                           u * d_h:u * d_h + s_h * (h_out - 1) + 1:s_h,
                           v * d_w:v * d_w + s_w * (w_out - 1) + 1:s_w]
                y[:, o] += np.einsum("nchw,c->nhw", patch, weight[o, :, u, v].astype(np.float64))
    if bias is not None:
        y += bias.astype(np.float64)[None, :, None, None]
    return y


def random_case(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32) if bias else None
    return x, w, b


@pytest.fixture(scope="module")
def engine() -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(intra_op_threads=1)


def test_d2l_multi_input_multi_output_example(engine: OnnxRuntimeEngine) -> None:
    x = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    k = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
    y = conv2d(x, np.stack([k, k + 1, k + 2]), engine=engine)
    assert y.dtype == np.float32
    assert y.tolist() == [[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "bias", "options"),
    [
        pytest.param((1, 3, 9, 11), (4, 3, 3, 3), True, {"padding": 1}, id="3to4-k3-p1-zeros"),
        pytest.param((2, 2, 8, 7), (3, 2, 3, 2), True, {"padding": (0, 2, 1, 3)},
                     id="n2-asym-zeros"),
        pytest.param((1, 2, 8, 9), (2, 2, 3, 3), False,
                     {"padding": (2, 1, 0, 3), "padding_mode": "reflect"}, id="asym-reflect"),
        pytest.param((1, 2, 6, 7), (2, 2, 2, 4), True,
                     {"padding": (1, 2, 3, 1), "padding_mode": "replicate"}, id="asym-replicate"),
        pytest.param((1, 1, 3, 4), (1, 1, 3, 3), True,
                     {"padding": (3, 3, 1, 4), "padding_mode": "circular"},
                     id="circular-pad-equals-size"),
        pytest.param((1, 6, 11, 10), (6, 1, 3, 3), True,
                     {"padding": 2, "stride": 2, "dilation": 2, "groups": 6,
                      "padding_mode": "reflect"}, id="s2-d2-depthwise-reflect"),
        pytest.param((1, 4, 9, 9), (6, 2, 4, 4), False,
                     {"padding": "same", "groups": 2, "padding_mode": "circular"},
                     id="same-even-kernel-g2-circular"),
        pytest.param((1, 3, 10, 13), (2, 3, 2, 5), True,
                     {"padding": (1, 0), "stride": (1, 3), "dilation": (2, 1)},
                     id="rect-kernel-s1x3-d2x1"),
        pytest.param((1, 2, 5, 5), (3, 2, 1, 1), True, {"padding": 3}, id="pad-wider-than-1x1"),
    ],
)
def test_conv2d_matches_float64_reference(
    engine: OnnxRuntimeEngine,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias: bool,
    options: ConvOptions,
) -> None:
    x, w, b = random_case(x_shape, w_shape, bias)
    y = conv2d(x, w, b, engine=engine, **options)
    spec = conv_spec(x.shape, w.shape, None if b is None else b.shape, **options)
    expected = reference_conv2d(x, w, b, spec)
    assert y.shape == expected.shape == spec.output_shape
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_three_dimensional_input_gives_three_dimensional_output(
    engine: OnnxRuntimeEngine,
) -> None:
    x, w, b = random_case((2, 5, 6), (3, 2, 3, 3), True)
    y = conv2d(x, w, b, padding=1, engine=engine)
    spec = conv_spec((1, 2, 5, 6), w.shape, b.shape if b is not None else None, padding=1)
    assert y.shape == (3, 5, 6)
    np.testing.assert_allclose(y, reference_conv2d(x[None], w, b, spec)[0], rtol=1e-4, atol=1e-5)


def test_conv_model_takes_weights_as_inputs_and_pads_zeros_on_the_conv() -> None:
    spec = conv_spec((1, 3, 8, 8), (4, 3, 3, 3), (4,), padding=(1, 2, 3, 4))
    model = conv_model(spec)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert [i.name for i in model.graph.input] == ["X", "W", "B"]
    assert list(model.graph.initializer) == []
    (conv,) = model.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    # (top, bottom, left, right) = (1, 2, 3, 4) in ONNX's begins-then-ends order
    assert attrs["pads"] == [1, 3, 2, 4]
    assert conv.input == ["X", "W", "B"]


@pytest.mark.parametrize(
    ("mode", "onnx_mode"),
    [("reflect", b"reflect"), ("replicate", b"edge"), ("circular", b"wrap")],
)
def test_conv_model_puts_other_padding_modes_in_a_pad_node(mode: str, onnx_mode: bytes) -> None:
    spec = conv_spec((1, 2, 8, 8), (3, 2, 3, 3), None, padding=(1, 2, 3, 4), padding_mode=mode)
    model = conv_model(spec)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Constant", "Pad", "Conv"]
    constant, pad, conv = model.graph.node
    pads = onnx.numpy_helper.to_array(onnx.helper.get_attribute_value(constant.attribute[0]))
    assert pads.tolist() == [0, 0, 1, 3, 0, 0, 2, 4]
    assert onnx.helper.get_attribute_value(pad.attribute[0]) == onnx_mode
    conv_pads = [onnx.helper.get_attribute_value(a) for a in conv.attribute if a.name == "pads"]
    assert conv_pads == [[0, 0, 0, 0]]
    assert [i.name for i in model.graph.input] == ["X", "W"]


def test_one_session_serves_every_kernel_of_the_same_shape() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    x, w1, b1 = random_case((1, 2, 7, 7), (3, 2, 3, 3), True, seed=1)
    _, w2, b2 = random_case((1, 2, 7, 7), (3, 2, 3, 3), True, seed=2)
    spec = conv_spec(x.shape, w1.shape, (3,), padding=1, padding_mode="reflect")
    y1 = conv2d(x, w1, b1, padding=1, padding_mode="reflect", engine=engine)
    y2 = conv2d(x, w2, b2, padding=1, padding_mode="reflect", engine=engine)
    np.testing.assert_allclose(y1, reference_conv2d(x, w1, b1, spec), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y2, reference_conv2d(x, w2, b2, spec), rtol=1e-4, atol=1e-5)
    assert engine.cache_stats() == CacheStats(hits=1, misses=1, evictions=0, size=1, capacity=64)


PACKED_CASES = [
    pytest.param((1, 3, 9, 11), (4, 3, 3, 3), True, {"padding": 1}, id="3to4-k3-p1"),
    pytest.param((2, 16, 8, 7), (16, 16, 3, 3), True, {"padding": (0, 2, 1, 3)},
                 id="n2-16to16-asym"),
    pytest.param((1, 8, 12, 12), (8, 1, 3, 3), False,
                 {"padding": 2, "stride": 2, "dilation": 2, "groups": 8}, id="s2-d2-depthwise"),
    pytest.param((1, 4, 9, 9), (6, 2, 4, 4), True,
                 {"padding": "same", "groups": 2, "padding_mode": "circular"},
                 id="same-even-kernel-g2-circular"),
    pytest.param((1, 8, 10, 13), (16, 8, 1, 1), True, {}, id="pointwise-8to16"),
]


@pytest.fixture
def packed_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the output-channel rule of ``packed`` (speed, not results) for small layers."""
    monkeypatch.setattr(packing, "PACKED_MIN_OUT_CHANNELS", 1)


@pytest.mark.usefixtures("packed_everywhere")
@pytest.mark.parametrize(("x_shape", "w_shape", "bias", "options"), PACKED_CASES)
def test_packed_weights_match_the_reference(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool, options: ConvOptions,
) -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    x, w, b = random_case(x_shape, w_shape, bias, seed=4)
    spec = conv_spec(x.shape, w.shape, None if b is None else b.shape, **options)
    y = engine.conv2d(x, w, b, spec, strategy="packed")
    expected = reference_conv2d(x, w, b, spec)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert engine.packed_cache_stats().misses == 1
    assert engine.cache_stats().misses == 0  # the inputs session was never made


@pytest.mark.usefixtures("packed_everywhere")
def test_packed_sessions_are_keyed_by_the_weights_bit_for_bit() -> None:
    """Equal weights in a new array reuse the session; weights that differ in one bit, or in
    the bias only, get their own, never a stale one."""
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    x, w, b = random_case((1, 4, 8, 8), (4, 4, 3, 3), True, seed=7)
    spec = conv_spec(x.shape, w.shape, b.shape if b is not None else None, padding=1)
    assert b is not None
    first = engine.conv2d(x, w, b, spec, strategy="packed")
    again = engine.conv2d(x, w.copy(), b.copy(), spec, strategy="packed")
    np.testing.assert_array_equal(again, first)
    assert engine.packed_cache_stats() == CacheStats(hits=1, misses=1, evictions=0, size=1,
                                                     capacity=16)
    nudged = w.copy()
    nudged.view(np.uint32)[2, 1, 0, 2] ^= 1  # the last bit of one weight
    other_bias = b + 1
    for weight, bias in ((nudged, b), (w, other_bias)):
        y = engine.conv2d(x, weight, bias, spec, strategy="packed")
        fresh = OnnxRuntimeEngine(intra_op_threads=1)  # its first session of these weights
        np.testing.assert_array_equal(y, fresh.conv2d(x, weight, bias, spec, strategy="packed"))
    assert engine.packed_cache_stats().misses == 3
    assert not np.array_equal(engine.conv2d(x, w, other_bias, spec, strategy="packed"), first)


@pytest.mark.usefixtures("packed_everywhere")
def test_packed_cache_is_bounded() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1, packed_cache_size=2)
    x, _, _ = random_case((1, 2, 6, 6), (2, 2, 3, 3), False)
    spec = conv_spec(x.shape, (2, 2, 3, 3), None)
    for seed in range(3):
        _, w, _ = random_case((1, 2, 6, 6), (2, 2, 3, 3), False, seed=seed)
        engine.conv2d(x, w, None, spec, strategy="packed")
    assert engine.packed_cache_stats() == CacheStats(hits=0, misses=3, evictions=1, size=2,
                                                     capacity=2)


def test_large_weights_and_banded_layers_run_as_inputs() -> None:
    """Weights over PACKED_MAX_WEIGHT_BYTES are never copied into a session of their own, and
    a layer cut into bands runs as inputs: both stay exact."""
    engine = OnnxRuntimeEngine(intra_op_threads=1, band_bytes=4096)
    c = int(np.sqrt(PACKED_MAX_WEIGHT_BYTES / 4 / 9)) + 1  # c x c x 3 x 3 floats: just over
    x, w, b = random_case((1, c, 4, 4), (c, c, 3, 3), True)
    assert w.nbytes > PACKED_MAX_WEIGHT_BYTES
    spec = conv_spec(x.shape, w.shape, (c,), padding=1)
    engine.band_bytes = None
    y = engine.conv2d(x, w, b, spec, strategy="packed")
    np.testing.assert_allclose(y, reference_conv2d(x, w, b, spec), rtol=1e-4, atol=1e-3)
    engine.band_bytes = 4096
    x2, w2, b2 = random_case((1, 2, 64, 40), (2, 2, 3, 3), True)
    spec2 = conv_spec(x2.shape, w2.shape, (2,), padding=1, padding_mode="reflect")
    assert engine.band_plan(spec2) is not None
    y2 = engine.conv2d(x2, w2, b2, spec2, strategy="packed")
    np.testing.assert_allclose(y2, reference_conv2d(x2, w2, b2, spec2), rtol=1e-4, atol=1e-4)
    assert engine.packed_cache_stats().misses == 0


@pytest.mark.parametrize(("x_shape", "w_shape", "packed"), [
    pytest.param((1, 3, 32, 32), (7, 3, 3, 3), False, id="7-output-channels"),
    pytest.param((1, 3, 32, 32), (8, 3, 3, 3), True, id="8-output-channels"),
    pytest.param((1, 16, 512, 513), (8, 16, 1, 1), False, id="input-over-16-MiB"),
    pytest.param((1, 1, 512, 512), (17, 1, 1, 1), False, id="output-over-16-MiB"),
    pytest.param((1, 16, 512, 512), (16, 16, 1, 1), True, id="16-MiB-each"),
])
def test_packed_runs_only_where_it_pays(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                        packed: bool) -> None:
    """Few output channels, or inputs or outputs over 16 MiB, run as inputs (exact either way)."""
    engine = OnnxRuntimeEngine(intra_op_threads=2)
    x, w, b = random_case(x_shape, w_shape, True)
    spec = conv_spec(x.shape, w.shape, (w_shape[0],))
    assert packing.packed_applies(spec) is packed
    y = engine.conv2d(x, w, b, spec, strategy="packed")
    assert engine.packed_cache_stats().misses == int(packed)
    assert engine.cache_stats().misses == int(not packed)
    np.testing.assert_allclose(y, engine.conv2d(x, w, b, spec), rtol=1e-4, atol=1e-4)


def test_unknown_strategy_is_refused(engine: OnnxRuntimeEngine) -> None:
    x, w, _ = random_case((1, 1, 4, 4), (1, 1, 3, 3), False)
    spec = conv_spec(x.shape, w.shape, None)
    with pytest.raises(InvalidArgumentError, match="strategy='fast' is not one of inputs, packed"):
        engine.conv2d(x, w, None, spec, strategy="fast")  # type: ignore[arg-type]


def test_conv_model_with_weights_takes_them_as_initializers() -> None:
    spec = conv_spec((1, 2, 5, 5), (3, 2, 3, 3), (3,), padding=1)
    w = np.ones(spec.weight_shape, np.float32)
    model = conv_model(spec, w, np.zeros(3, np.float32))
    assert [i.name for i in model.graph.input] == ["X"]
    assert sorted(t.name for t in model.graph.initializer) == ["B", "W"]
    onnx.checker.check_model(model)
    with pytest.raises(ValueError, match="do not fit"):
        conv_model(spec, w, None)


def test_session_cache_counts_hits_and_evicts_least_recently_used() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1, cache_size=2)
    a, b, c = (conv_spec((1, 1, size, size), (1, 1, 3, 3), None) for size in (5, 6, 7))
    session_a = engine.session(a)
    assert engine.session(a) is session_a
    session_b = engine.session(b)
    assert engine.session(a) is session_a  # a is now the most recently used
    engine.session(c)  # evicts b
    assert engine.cache_stats() == CacheStats(hits=2, misses=3, evictions=1, size=2, capacity=2)
    assert engine.session(a) is session_a
    assert engine.session(b) is not session_b  # rebuilt, evicting c
    assert engine.cache_stats() == CacheStats(hits=3, misses=4, evictions=2, size=2, capacity=2)


def test_cache_key_includes_options_that_change_the_graph() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    shapes = ((1, 2, 6, 6), (2, 2, 3, 3))
    specs = [
        conv_spec(*shapes, None, padding=1),
        conv_spec(*shapes, (2,), padding=1),
        conv_spec(*shapes, None, padding=1, padding_mode="reflect"),
        conv_spec(*shapes, None, padding=(1, 0, 1, 0)),
        conv_spec(*shapes, None, padding=1, stride=2),
        conv_spec(*shapes, None, padding=1, dilation=2),
    ]
    sessions = {id(engine.session(spec)) for spec in specs}
    assert len(sessions) == len(specs)
    assert engine.cache_stats().misses == len(specs)


def test_concurrent_calls_share_one_session_per_shape() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    x, w, b = random_case((1, 2, 16, 16), (2, 2, 3, 3), True)
    x2 = x[:, :, :12]
    start = threading.Barrier(4)

    def work(i: int) -> np.ndarray:
        if i < 4:
            start.wait()
        return conv2d(x if i % 2 else x2, w, b, padding=1, engine=engine)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(16)))
    for i, y in enumerate(results):
        assert y.shape == (1, 2, 16 if i % 2 else 12, 16)
        np.testing.assert_array_equal(y, results[i % 2])
    stats = engine.cache_stats()
    assert (stats.size, stats.hits + stats.misses) == (2, 16)


def test_session_options_honour_thread_count_and_engine_settings() -> None:
    spec = conv_spec((1, 1, 4, 4), (1, 1, 3, 3), None)
    options = OnnxRuntimeEngine(intra_op_threads=3).session(spec).get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert OnnxRuntimeEngine().intra_op_threads == available_cores()


@pytest.mark.parametrize(
    "kwargs", [{"intra_op_threads": 0}, {"cache_size": 0}], ids=["threads-0", "cache-0"]
)
def test_engine_rejects_non_positive_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidArgumentError, match="must be >= 1"):
        OnnxRuntimeEngine(**kwargs)


def test_conv2d_rejects_arrays_that_do_not_match_the_spec(engine: OnnxRuntimeEngine) -> None:
    spec = conv_spec((1, 2, 5, 5), (3, 2, 3, 3), (3,))
    x, w, _ = random_case((1, 2, 5, 5), (3, 2, 3, 3), False)
    with pytest.raises(ShapeError, match=r"bias\.shape=None do not match"):
        engine.conv2d(x, w, None, spec)
    with pytest.raises(ShapeError, match=r"x\.shape=\(1, 2, 5, 4\)"):
        engine.conv2d(x[..., :4], w, np.zeros(3, np.float32), spec)


def test_conv_nodes_compose_several_layers_into_one_graph(engine: OnnxRuntimeEngine) -> None:
    x, w1, b1 = random_case((1, 3, 10, 10), (4, 3, 3, 3), True, seed=3)
    _, w2, _ = random_case((1, 4, 10, 10), (2, 4, 3, 3), False, seed=4)
    first = conv_spec(x.shape, w1.shape, (4,), padding=1, padding_mode="reflect")
    second = conv_spec(first.output_shape, w2.shape, None, stride=2)
    assert b1 is not None
    helper, f32 = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        conv_nodes(first, "x", "w1", "b1", "h", prefix="l0_")
        + conv_nodes(second, "h", "w2", None, "y", prefix="l1_"),
        "two_layers",
        [helper.make_tensor_value_info("x", f32, list(x.shape))],
        [helper.make_tensor_value_info("y", f32, list(second.output_shape))],
        initializer=[onnx.numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"),
                                                                      (w2, "w2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    (y,) = make_session(model, "cpu", intra_op_threads=1).run(None, {"x": x})
    expected = conv2d(conv2d(x, w1, b1, padding=1, padding_mode="reflect", engine=engine), w2,
                      stride=2, engine=engine)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_select_providers_for_cpu_and_for_cuda_when_offered() -> None:
    both = [CUDA_PROVIDER, CPU_PROVIDER]
    assert select_providers("cpu", both) == [CPU_PROVIDER]
    assert select_providers("cuda", both) == [(CUDA_PROVIDER, CUDA_PROVIDER_OPTIONS), CPU_PROVIDER]
    # TF32 (10-bit mantissa products on Ampere and newer) would break the 1e-4 parity.
    cuda_options = select_providers("cuda", both)[0][1]
    assert isinstance(cuda_options, dict) and cuda_options["use_tf32"] == "0"


def test_select_providers_fails_fast_when_cuda_is_not_offered() -> None:
    with pytest.raises(EngineUnavailableError) as info:
        select_providers("cuda", ["AzureExecutionProvider", CPU_PROVIDER])
    detail = info.value.detail
    assert "CUDAExecutionProvider" in detail
    assert "offers only AzureExecutionProvider, CPUExecutionProvider" in detail
    assert "onnxruntime-gpu" in detail and "convserve[cuda]" in detail
    assert "CUDA 12" in detail and "cuDNN 9" in detail
    assert info.value.to_problem()["status"] == 422
    assert info.value.errors == [{"field": "device", "message": detail}]


def test_select_providers_rejects_unknown_device() -> None:
    with pytest.raises(InvalidArgumentError, match="device='tpu' is not one of cpu, cuda"):
        select_providers("tpu", [CPU_PROVIDER])


def test_check_active_accepts_sessions_that_run_where_asked() -> None:
    both = [CUDA_PROVIDER, CPU_PROVIDER]
    check_active("cuda", [CUDA_PROVIDER, CPU_PROVIDER], both)
    check_active("cpu", [CPU_PROVIDER], both)


def test_check_active_rejects_cuda_session_that_fell_back_to_cpu() -> None:
    with pytest.raises(EngineUnavailableError) as info:
        check_active("cuda", [CPU_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER])
    detail = info.value.detail
    assert "runs on CPUExecutionProvider, not CUDAExecutionProvider" in detail
    assert "available providers: CUDAExecutionProvider, CPUExecutionProvider" in detail
    assert "CUDA 12 / cuDNN 9" in detail and "convserve[cuda]" in detail


@pytest.mark.skipif(CUDA_PROVIDER in AVAILABLE, reason="this onnxruntime offers CUDA")
def test_cuda_request_without_cuda_provider_names_the_available_ones() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    with pytest.raises(EngineUnavailableError) as info:
        conv2d(np.ones((1, 4, 4), np.float32), np.ones((1, 1, 3, 3)), engine=engine,
               device="cuda")
    assert f"offers only {', '.join(AVAILABLE)}" in info.value.detail
    assert "onnxruntime-gpu" in info.value.detail
    assert engine.cache_stats().size == 0
    cpu, cuda = engine.devices()
    assert (cuda.device, cuda.available, cuda.reason) == ("cuda", False, info.value.detail)
    assert (cpu.device, cpu.available) == ("cpu", True)


def test_devices_report_versions_and_providers(engine: OnnxRuntimeEngine) -> None:
    cpu, cuda = engine.devices()
    for status in (cpu, cuda):
        assert status.details["onnxruntime"] == onnxruntime.__version__
        assert status.details["onnx"] == onnx.__version__
        assert status.details["available_providers"] == AVAILABLE
        assert status.details["opset"] == OPSET
    assert cpu.details["providers"] == [CPU_PROVIDER]
    assert cuda.available == (CUDA_PROVIDER in AVAILABLE)
    assert engine.version() == onnxruntime.__version__
    assert engine.name == "onnxruntime"


def test_missing_onnxruntime_is_reported_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a failed import looks like
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    assert engine.version() == "not installed"
    statuses = engine.devices()
    assert [(s.device, s.available) for s in statuses] == [("cpu", False), ("cuda", False)]
    assert all("onnxruntime package, which is not installed" in str(s.reason) for s in statuses)
    with pytest.raises(EngineUnavailableError) as info:
        conv2d(np.ones((1, 3, 3)), np.ones((1, 1, 3, 3)), engine=engine)
    assert "pip install 'convserve[cpu]'" in info.value.detail
    assert "convserve[cuda]" in info.value.detail


def test_module_imports_without_onnx_or_onnxruntime() -> None:
    code = (
        "import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
        "from convserve.conv.onnx_engine import OnnxRuntimeEngine\n"
        "print(OnnxRuntimeEngine(1).devices()[0].available)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.cuda
def test_cuda_session_runs_on_cuda_and_matches_cpu() -> None:
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    x, w, b = random_case((1, 3, 32, 32), (8, 3, 3, 3), True)
    spec = conv_spec(x.shape, w.shape, (8,), padding=1, padding_mode="reflect")
    assert engine.session(spec, "cuda").get_providers()[0] == CUDA_PROVIDER
    y = conv2d(x, w, b, padding=1, padding_mode="reflect", engine=engine, device="cuda")
    np.testing.assert_allclose(y, reference_conv2d(x, w, b, spec), rtol=1e-4, atol=1e-4)
    cuda = next(s for s in engine.devices() if s.device == "cuda")
    assert cuda.available and cuda.reason is None


def test_runs_ask_the_arena_to_shrink() -> None:
    from convserve.conv.onnx_engine import run_options

    assert run_options().get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"


def test_the_arena_shrinks_once_runs_have_drawn_its_budget() -> None:
    from convserve.conv.onnx_engine import ArenaBudget

    budget = ArenaBudget(100)
    assert [budget.shrink_after(40) for _ in range(6)] == [False, False, True] * 2
    assert budget.shrink_after(101) is True  # one run over the budget shrinks at once
    assert budget.shrink_after(1, force=True) is True  # the last band of a layer
    assert budget.shrink_after(100) is False  # the count started again


def test_arena_bytes_count_the_output_and_the_padded_copy() -> None:
    from convserve.conv.onnx_engine import arena_bytes

    zeros = conv_spec((1, 3, 10, 20), (4, 3, 3, 3), padding=1)
    assert arena_bytes(zeros) == 4 * 4 * 10 * 20
    reflect = conv_spec((1, 3, 10, 20), (4, 3, 3, 3), padding=1, padding_mode="reflect")
    assert arena_bytes(reflect) == 4 * 4 * 10 * 20 + 4 * 3 * 12 * 22


_SHRINK_CHILD = """
import numpy as np
from convserve import conv2d
from convserve.conv.onnx_engine import OnnxRuntimeEngine

def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmRSS"))

engine = OnnxRuntimeEngine(intra_op_threads=1)
x = np.ones((3, 3000, 3000), np.float32)  # 108 MB; reflect padding copies it inside the graph
w = np.ones((1, 3, 3, 3), np.float32)
conv2d(x[:, :8, :8], w, padding=1, padding_mode="reflect", engine=engine)  # load the runtime
before = rss()
y = conv2d(x, w, padding=1, padding_mode="reflect", engine=engine)
del y
print(rss() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_large_run_gives_its_working_memory_back() -> None:
    done = subprocess.run([sys.executable, "-c", _SHRINK_CHILD], capture_output=True, text=True,
                          check=True, timeout=120)
    grown = int(done.stdout.strip())
    assert grown < 60 * 2**20, f"the process kept {grown / 2**20:.0f} MB after the run"
