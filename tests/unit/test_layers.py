"""convserve.conv.layers: layer shapes and cost, pooling, initialisers, both runners, export."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime
import pytest

from convserve.conv.graphs import stack_model
from convserve.conv.initializers import initial_weights
from convserve.conv.layers import (
    Activation,
    ActivationKind,
    Conv2dLayer,
    Layer,
    Stack,
    activation_layer,
    conv2d_layer,
    pool2d_layer,
)
from convserve.conv.numpy_engine import NumpyEngine
from convserve.conv.runner import LayerRunner
from convserve.errors import EngineUnavailableError, InvalidArgumentError, ShapeError
from tests.reference import conv2d_reference

Shape = tuple[int, int, int]
Builder = Callable[[Shape], Layer]


def build(input_shape: Shape, *builders: Builder) -> Stack:
    layers = []
    shape = input_shape
    for make in builders:
        layer = make(shape)
        layers.append(layer)
        shape = layer.output_shape
    return Stack(input_shape, tuple(layers))


def pool_reference(x: np.ndarray, kind: str, k: tuple[int, int], s: tuple[int, int],
                   p: tuple[int, int], count_include_pad: bool = True) -> np.ndarray:
    """PyTorch's max_pool2d / avg_pool2d (ceil_mode=False) with explicit loops, float64."""
    c, h, w = x.shape
    h_out = (h + 2 * p[0] - k[0]) // s[0] + 1
    w_out = (w + 2 * p[1] - k[1]) // s[1] + 1
    y = np.zeros((c, h_out, w_out))
    for ch in range(c):
        for r in range(h_out):
            for col in range(w_out):
                r0, c0 = r * s[0] - p[0], col * s[1] - p[1]
                values = [x[ch, i, j] for i in range(r0, r0 + k[0]) for j in range(c0, c0 + k[1])
                          if 0 <= i < h and 0 <= j < w]
                if kind == "maxpool2d":
                    y[ch, r, col] = max(values)
                else:
                    y[ch, r, col] = sum(values) / (k[0] * k[1] if count_include_pad
                                                   else len(values))
    return y


@pytest.fixture(scope="module")
def runner() -> LayerRunner:
    return LayerRunner(NumpyEngine(threads=1), intra_op_threads=1, cache_size=8)


@pytest.mark.parametrize(
    ("kind", "kernel", "stride", "padding", "include", "shape"),
    [
        pytest.param("maxpool2d", 2, None, 0, True, (2, 7, 7), id="max-k2-stride-defaults-odd"),
        pytest.param("maxpool2d", (3, 2), (2, 1), (1, 1), True, (1, 6, 5), id="max-rect-pad"),
        pytest.param("avgpool2d", 3, 2, 1, True, (2, 7, 8), id="avg-pad-counted"),
        pytest.param("avgpool2d", 3, 2, 1, False, (2, 7, 8), id="avg-pad-not-counted"),
        pytest.param("avgpool2d", (2, 3), None, (1, 1), True, (1, 5, 9), id="avg-rect"),
        pytest.param("maxpool2d", 5, 1, 2, True, (1, 5, 5), id="max-same-size"),
    ],
)
def test_pooling_matches_pytorch_semantics_on_both_engines(
    runner: LayerRunner, kind: str, kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    padding: int | tuple[int, int], include: bool, shape: Shape,
) -> None:
    x = -np.random.default_rng(3).random(shape).astype(np.float32)  # all negative: pads lose
    layer = pool2d_layer(kind, shape, kernel, stride, padding, include)
    expected = pool_reference(x, kind, layer.kernel, layer.stride, layer.padding, include)
    assert layer.output_shape == expected.shape
    stack = Stack(shape, (layer,))
    for engine in ("numpy", "onnxruntime"):
        (y,) = runner.run(stack, x, engine)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7, err_msg=engine)


def test_pool_stride_defaults_to_kernel_and_floors() -> None:
    layer = pool2d_layer("maxpool2d", (3, 7, 9), 2)
    assert layer.stride == (2, 2)
    assert layer.output_shape == (3, 3, 4)
    assert layer.output_size_formula() == {
        "h_out": "floor((7 + 2*0 - 2) / 2) + 1 = 3", "w_out": "floor((9 + 2*0 - 2) / 2) + 1 = 4",
    }
    assert layer.flops == 3 * 3 * 4 * 4


def test_pool_padding_above_half_the_kernel_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        pool2d_layer("avgpool2d", (1, 8, 8), 3, padding=2)
    assert caught.value.detail == (
        "padding=[2, 2] must be at most half of kernel_size=[3, 3] on each axis (PyTorch's "
        "rule: a window must hold at least one input value)"
    )
    assert caught.value.field == "padding"


def test_pool_larger_than_its_input_is_a_shape_error() -> None:
    with pytest.raises(ShapeError) as caught:
        pool2d_layer("maxpool2d", (1, 3, 8), 4)
    assert caught.value.detail == (
        "output would be 0x2: input 3x8 padded by [0, 0] on each side is smaller than the "
        "pooling window 4x4"
    )


def test_count_include_pad_is_for_average_pooling_only() -> None:
    with pytest.raises(InvalidArgumentError, match="avgpool2d only"):
        pool2d_layer("maxpool2d", (1, 4, 4), 2, count_include_pad=False)


def test_vgg_like_stack_shapes_and_parameter_counts_follow_the_formula() -> None:
    def conv(filters: int, k: int = 3) -> Builder:
        return lambda s: conv2d_layer(s, filters=filters, kernel_size=k, padding=k // 2,
                                      activation=Activation("relu"))

    def pool(s: Shape) -> Layer:
        return pool2d_layer("maxpool2d", s, 2)

    stack = build((3, 32, 32), conv(16), conv(16), pool, conv(32), conv(32), pool, conv(10, 1))
    shapes = [layer.output_shape for layer in stack.layers]
    assert shapes == [(16, 32, 32), (16, 32, 32), (16, 16, 16), (32, 16, 16), (32, 16, 16),
                      (32, 8, 8), (10, 8, 8)]

    def formula(c_in: int, c_out: int, k: int) -> int:
        return c_out * c_in * k * k + c_out

    expected = [formula(3, 16, 3), formula(16, 16, 3), 0, formula(16, 32, 3),
                formula(32, 32, 3), 0, formula(32, 10, 1)]
    assert [layer.params for layer in stack.layers] == expected == [
        448, 2320, 0, 4640, 9248, 0, 330]
    assert stack.params == sum(expected)
    assert stack.macs == sum(
        (p - layer.output_shape[0]) * layer.output_shape[1] * layer.output_shape[2]
        for p, layer in zip(expected, stack.layers, strict=True) if p
    )


def test_grouped_seeded_conv_counts_parameters_per_group() -> None:
    layer = conv2d_layer((8, 10, 10), filters=16, kernel_size=(3, 5), groups=4, use_bias=False)
    assert layer.spec.weight_shape == (16, 2, 3, 5)
    assert layer.params == 16 * 2 * 3 * 5
    assert layer.materialized().arrays()[1] is None


@pytest.mark.parametrize(
    ("init", "spread"),
    [
        ("he_normal", lambda fi, fo: math.sqrt(2 / fi)),
        ("he_uniform", lambda fi, fo: math.sqrt(6 / fi) / math.sqrt(3)),
        ("glorot_normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
        ("glorot_uniform", lambda fi, fo: math.sqrt(6 / (fi + fo)) / math.sqrt(3)),
        ("lecun_normal", lambda fi, fo: math.sqrt(1 / fi)),
        ("lecun_uniform", lambda fi, fo: math.sqrt(3 / fi) / math.sqrt(3)),
        ("pytorch_default", lambda fi, fo: 1 / math.sqrt(fi) / math.sqrt(3)),
    ],
)
def test_initialisers_have_their_standard_deviation_and_are_seeded(
    init: str, spread: Callable[[int, int], float]
) -> None:
    shape = (64, 16, 3, 3)
    weight, bias = initial_weights(init, shape, True, seed=11)
    assert weight.dtype == np.float32 and weight.shape == shape
    assert weight.std() == pytest.approx(spread(16 * 9, 64 * 9), rel=0.05)
    assert abs(weight.mean()) < 0.1 * weight.std()
    assert bias is not None and bias.shape == (64,)
    if init == "pytorch_default":
        assert 0 < np.abs(bias).max() <= 1 / math.sqrt(16 * 9)
    else:
        assert not bias.any()
    again, _ = initial_weights(init, shape, True, seed=11)
    other, _ = initial_weights(init, shape, True, seed=12)
    np.testing.assert_array_equal(weight, again)
    assert not np.array_equal(weight, other)


def test_activations_are_exact_and_quiet_at_the_extremes() -> None:
    x = np.array([-1000, -100, -20, -1, -0.0, 0.5, 20, 100, 1000], dtype=np.float32)
    x64 = x.astype(np.float64)
    cases: dict[ActivationKind, np.ndarray] = {
        "relu": np.maximum(x64, 0),
        "leaky_relu": np.where(x64 >= 0, x64, 0.2 * x64),
        "sigmoid": np.array([1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in x64]),
        "tanh": np.tanh(x64),
        "abs": np.abs(x64),
    }
    for kind, expected in cases.items():
        y = Activation(kind, 0.2).apply(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-30, err_msg=kind)


def _mixed_stack() -> Stack:
    return build(
        (3, 19, 23),
        lambda s: conv2d_layer(s, filters=6, kernel_size=3, padding="same",
                               padding_mode="reflect", activation=Activation("relu")),
        lambda s: pool2d_layer("maxpool2d", s, 2),
        lambda s: conv2d_layer(s, filters=6, kernel_size=(3, 2), groups=3, stride=(2, 1),
                               dilation=(1, 2), padding=(1, 0, 2, 1), padding_mode="circular",
                               init="pytorch_default", seed=5,
                               activation=Activation("leaky_relu", 0.1)),
        lambda s: pool2d_layer("avgpool2d", s, 3, 1, 1, count_include_pad=False),
        lambda s: activation_layer("tanh", s),
        lambda s: conv2d_layer(s, filters=4, kernel_size=1, padding_mode="replicate",
                               padding=1, activation=Activation("sigmoid")),
        lambda s: pool2d_layer("avgpool2d", s, 2, padding=1),
        lambda s: activation_layer("abs", s),
        lambda s: activation_layer("sigmoid", s),
    ).materialized()


def test_numpy_and_onnxruntime_agree_on_every_layer(runner: LayerRunner) -> None:
    stack = _mixed_stack()
    x = np.random.default_rng(0).standard_normal(stack.input_shape).astype(np.float32)
    by_numpy = runner.run(stack, x, "numpy", keep_all=True)
    by_onnx = runner.run(stack, x, "onnxruntime", keep_all=True)
    assert [y.shape for y in by_numpy] == [layer.output_shape for layer in stack.layers]
    for index, (a, b) in enumerate(zip(by_numpy, by_onnx, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"layer {index}")
    (last,) = runner.run(stack, x, "onnxruntime")
    np.testing.assert_array_equal(last, by_onnx[-1])


def test_first_conv_layer_equals_the_reference(runner: LayerRunner) -> None:
    stack = _mixed_stack()
    x = np.random.default_rng(1).standard_normal(stack.input_shape).astype(np.float32)
    layer = stack.layers[0]
    assert isinstance(layer, Conv2dLayer)
    weight, bias = layer.arrays()
    expected = np.maximum(conv2d_reference(x, weight, bias, padding="same",
                                           padding_mode="reflect"), 0)
    first = Stack(stack.input_shape, (layer,))
    for engine in ("numpy", "onnxruntime"):
        (y,) = runner.run(first, x, engine)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_one_session_serves_every_weight_of_an_architecture() -> None:
    runner = LayerRunner(NumpyEngine(threads=1), intra_op_threads=1, cache_size=2)
    x = np.ones((2, 6, 6), np.float32)
    outputs = []
    for seed in (1, 2):
        stack = build((2, 6, 6), functools.partial(
            conv2d_layer, filters=3, kernel_size=3, seed=seed)).materialized()
        outputs.append(runner.run(stack, x, "onnxruntime")[0])
    stats = runner.cache_stats()
    assert (stats.misses, stats.hits, stats.size) == (1, 1, 1)
    assert not np.array_equal(outputs[0], outputs[1])


def test_exported_model_is_valid_and_takes_any_batch(runner: LayerRunner) -> None:
    stack = _mixed_stack()
    model = stack_model(stack, export=True)
    onnx.checker.check_model(model, full_check=True)
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input"
    assert [d.dim_param or d.dim_value for d in dims] == ["N", *stack.input_shape]
    assert [o.name for o in model.graph.output] == ["output"]
    assert len(model.graph.initializer) == 6
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(4)
    batch = rng.standard_normal((2, *stack.input_shape)).astype(np.float32)
    (y,) = session.run(None, {"input": batch})
    for n in range(2):
        (expected,) = runner.run(stack, batch[n], "numpy")
        np.testing.assert_allclose(y[n], expected, rtol=1e-4, atol=1e-5)


def test_numpy_runner_refuses_cuda_even_without_a_convolution(runner: LayerRunner) -> None:
    stack = build((1, 4, 4), lambda s: activation_layer("relu", s))
    with pytest.raises(EngineUnavailableError) as caught:
        runner.run(stack, np.zeros((1, 4, 4), np.float32), "numpy", "cuda")
    assert caught.value.field == "device"
    assert caught.value.detail.startswith("device='cuda': the NumPy engine runs on the CPU only")


def test_layers_must_chain_their_shapes() -> None:
    conv = conv2d_layer((3, 8, 8), filters=4, kernel_size=3)
    with pytest.raises(ShapeError, match=r"layer 1 \(relu\) expects input \(3, 6, 6\)"):
        Stack((3, 8, 8), (conv, activation_layer("relu", (3, 6, 6))))


def test_unknown_activation_and_init_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match="activation='gelu' is not one of relu"):
        activation_layer("gelu", (1, 2, 2))
    with pytest.raises(InvalidArgumentError, match="init='zeros' is not one of he_normal"):
        conv2d_layer((1, 4, 4), filters=1, kernel_size=1, init="zeros")


@pytest.mark.cuda
def test_stack_runs_as_one_graph_on_cuda_and_matches_the_cpu() -> None:
    runner = LayerRunner(NumpyEngine(threads=1), intra_op_threads=1)
    stack = _mixed_stack()
    x = np.random.default_rng(5).standard_normal(stack.input_shape).astype(np.float32)
    on_gpu = runner.run(stack, x, "onnxruntime", "cuda", keep_all=True)
    on_cpu = runner.run(stack, x, "numpy", "cpu", keep_all=True)
    for index, (a, b) in enumerate(zip(on_gpu, on_cpu, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"layer {index}")
