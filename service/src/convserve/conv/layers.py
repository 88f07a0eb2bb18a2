"""Stacks of layers over one image, as a small CNN runs them: conv2d, activations, pooling.

Every layer takes a feature map ``(C, H, W)`` and gives one; a :class:`Stack` is the input
shape plus its layers in order, each validated for the shape the previous one produces.

Layers (PyTorch semantics and defaults):

``conv2d``
    One convolution layer (:class:`~convserve.conv.spec.ConvSpec`) with an optional
    activation applied to its output in the same layer (Keras' ``activation=``). Weights are
    explicit or drawn from a seeded initialiser
    (:func:`~convserve.conv.initializers.initial_weights`).
``relu``, ``leaky_relu`` (``slope``, default 0.01), ``sigmoid``, ``tanh``, ``abs``
    Element-wise; the shape is unchanged.
``maxpool2d``, ``avgpool2d``
    ``kernel_size``; ``stride`` defaults to ``kernel_size`` (PyTorch and Keras); ``padding`` is
    symmetric, an int or ``(p_h, p_w)``, at most half the kernel (PyTorch's rule). The output
    size is ``floor((H + 2*p_h - k_h) / s_h) + 1`` (``ceil_mode=False``). Max pooling pads with
    ``-inf`` (a padded position never wins); average pooling counts padded zeros in the divisor
    (``count_include_pad=True``, PyTorch's default; Keras' ``padding="same"`` excludes them,
    which ``count_include_pad=False`` gives).

Cost: ``params`` and ``macs`` as usual (pooling and activations have none); ``flops`` counts
2 per MAC plus 1 per bias addition for a convolution, 1 per element for an activation and
``k_h * k_w`` per output element for pooling (comparisons or additions).

Engines (:class:`~convserve.conv.runner.LayerRunner`):

- ``numpy`` runs layer by layer: convolutions on a conv engine (the NumPy one), activations and
  pooling in NumPy.
- ``onnxruntime`` runs the whole stack as one ONNX graph (``Pad``/``Conv`` from
  :func:`~convserve.conv.graphs.conv_nodes`, ``Relu``, ``LeakyRelu``, ``Sigmoid``,
  ``Tanh``, ``Abs``, ``MaxPool``, ``AveragePool``) in one session. Weights are graph inputs, not
  initializers, so one cached session serves every set of weights of the same architecture
  (a user editing a kernel or changing a seed reuses it); sessions are kept LRU by architecture,
  device and whether every layer's output is fetched.

:func:`~convserve.conv.graphs.stack_model` with ``export=True`` is the standalone model:
weights as initializers, one input ``input`` of shape ``(N, C, H, W)`` with a free batch axis,
one output ``output``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convserve.conv.initializers import INITS, WeightInit, initial_weights
from convserve.conv.spec import (
    ConvSpec,
    IntOrPair,
    PaddingArg,
    conv_spec,
    int_pair,
    output_size,
)
from convserve.errors import InvalidArgumentError, ShapeError

__all__ = [
    "ACTIVATIONS",
    "POOLS",
    "Activation",
    "ActivationKind",
    "ActivationLayer",
    "Conv2dLayer",
    "Layer",
    "Pool2dLayer",
    "PoolKind",
    "Stack",
    "activation_layer",
    "conv2d_layer",
    "pool2d_layer",
]

Shape3: TypeAlias = tuple[int, int, int]
ActivationKind: TypeAlias = Literal["relu", "leaky_relu", "sigmoid", "tanh", "abs"]
ACTIVATIONS: tuple[ActivationKind, ...] = ("relu", "leaky_relu", "sigmoid", "tanh", "abs")
PoolKind: TypeAlias = Literal["maxpool2d", "avgpool2d"]
POOLS: tuple[PoolKind, ...] = ("maxpool2d", "avgpool2d")

def _values(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


# -- activations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """An element-wise function; ``slope`` is leaky_relu's negative slope."""

    kind: ActivationKind
    slope: float = 0.01

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The activation of float32 ``x`` (any shape), as a new float32 array."""
        y: np.ndarray
        if self.kind == "relu":
            y = np.maximum(x, np.float32(0))
        elif self.kind == "leaky_relu":
            y = np.where(x >= 0, x, x * np.float32(self.slope))
        elif self.kind == "sigmoid":
            # exp(-log(1 + exp(-x))): neither overflows nor loses the tiny values of x << 0
            y = np.exp(-np.logaddexp(np.float32(0), -x))
        elif self.kind == "tanh":
            y = np.tanh(x)
        else:
            y = np.abs(x)
        return y.astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "leaky_relu":
            return {"type": self.kind, "slope": self.slope}
        return {"type": self.kind}


def _activation(kind: str, slope: float) -> Activation:
    if kind not in ACTIVATIONS:
        raise InvalidArgumentError(
            f"activation={kind!r} is not one of {', '.join(ACTIVATIONS)}", field="activation"
        )
    if not math.isfinite(slope):
        raise InvalidArgumentError(f"slope={slope!r} must be a finite number", field="slope")
    return Activation(kind, float(slope))


@dataclass(frozen=True)
class ActivationLayer:
    """A standalone activation layer over a ``(C, H, W)`` map."""

    activation: Activation
    input_shape: Shape3

    @property
    def type(self) -> str:
        return self.activation.kind

    @property
    def output_shape(self) -> Shape3:
        return self.input_shape

    params = 0
    macs = 0

    @property
    def flops(self) -> int:
        return _values(self.input_shape)


    @property
    def key(self) -> object:
        return self

    def output_size_formula(self) -> dict[str, str]:
        _, h, w = self.input_shape
        return {"h_out": f"h_in = {h}", "w_out": f"w_in = {w}"}

    def options(self) -> dict[str, Any]:
        return {"slope": self.activation.slope} if self.activation.kind == "leaky_relu" else {}


def activation_layer(kind: str, input_shape: Shape3, slope: float = 0.01) -> ActivationLayer:
    """A validated activation layer for a ``(C, H, W)`` input."""
    return ActivationLayer(_activation(kind, slope), input_shape)


# -- pooling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool2dLayer:
    """Max or average pooling over a ``(C, H, W)`` map (see the module docstring)."""

    kind: PoolKind
    input_shape: Shape3
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    count_include_pad: bool = True

    @property
    def type(self) -> str:
        return self.kind

    @property
    def output_shape(self) -> Shape3:
        c, h, w = self.input_shape
        (k_h, k_w), (s_h, s_w), (p_h, p_w) = self.kernel, self.stride, self.padding
        return (c, output_size(h, p_h, p_h, k_h, s_h, 1), output_size(w, p_w, p_w, k_w, s_w, 1))

    params = 0
    macs = 0

    @property
    def flops(self) -> int:
        return _values(self.output_shape) * self.kernel[0] * self.kernel[1]


    @property
    def key(self) -> object:
        return self

    def output_size_formula(self) -> dict[str, str]:
        _, h, w = self.input_shape
        _, h_out, w_out = self.output_shape
        (k_h, k_w), (s_h, s_w), (p_h, p_w) = self.kernel, self.stride, self.padding
        return {
            "h_out": f"floor(({h} + 2*{p_h} - {k_h}) / {s_h}) + 1 = {h_out}",
            "w_out": f"floor(({w} + 2*{p_w} - {k_w}) / {s_w}) + 1 = {w_out}",
        }

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "kernel_size": list(self.kernel), "stride": list(self.stride),
            "padding": list(self.padding),
        }
        if self.kind == "avgpool2d":
            opts["count_include_pad"] = self.count_include_pad
        return opts

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Pool float32 ``x`` of shape ``(N, C, H, W)``; returns ``(N, C, H_out, W_out)``."""
        (k_h, k_w), (s_h, s_w), (p_h, p_w) = self.kernel, self.stride, self.padding
        _, h_out, w_out = self.output_shape
        fill = -np.inf if self.kind == "maxpool2d" else 0.0
        pads = ((0, 0), (0, 0), (p_h, p_h), (p_w, p_w))
        padded = np.pad(x, pads, constant_values=fill) if p_h or p_w else x
        windows = sliding_window_view(padded, (k_h, k_w), axis=(2, 3))
        windows = windows[:, :, : (h_out - 1) * s_h + 1 : s_h, : (w_out - 1) * s_w + 1 : s_w]
        if self.kind == "maxpool2d":
            return np.ascontiguousarray(windows.max(axis=(-2, -1)), dtype=np.float32)
        sums = windows.sum(axis=(-2, -1), dtype=np.float32)
        if self.count_include_pad or not (p_h or p_w):
            return np.ascontiguousarray(sums / np.float32(k_h * k_w), dtype=np.float32)
        ones = np.pad(np.ones(x.shape[2:], np.float32), pads[2:])
        counts = sliding_window_view(ones, (k_h, k_w))[::s_h, ::s_w][:h_out, :w_out]
        return np.ascontiguousarray(sums / counts.sum(axis=(-2, -1)), dtype=np.float32)


def pool2d_layer(
    kind: str,
    input_shape: Shape3,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> Pool2dLayer:
    """A validated pooling layer; ``stride`` None means ``kernel_size``.

    Raises
    ------
    InvalidArgumentError
        A size below 1, a pad above half the kernel (PyTorch's rule), or ``count_include_pad``
        given to max pooling.
    ShapeError
        The output would be empty; the message names the sizes.
    """
    if kind not in POOLS:
        raise InvalidArgumentError(f"type={kind!r} is not one of {', '.join(POOLS)}",
                                   field="type")
    kernel = int_pair("kernel_size", kernel_size, 1)
    strides = kernel if stride is None else int_pair("stride", stride, 1)
    pads = int_pair("padding", padding, 0)
    if 2 * pads[0] > kernel[0] or 2 * pads[1] > kernel[1]:
        raise InvalidArgumentError(
            f"padding={list(pads)} must be at most half of kernel_size={list(kernel)} on each "
            "axis (PyTorch's rule: a window must hold at least one input value)",
            field="padding",
        )
    if kind == "maxpool2d" and not count_include_pad:
        raise InvalidArgumentError(
            "count_include_pad applies to avgpool2d only", field="count_include_pad"
        )
    layer = Pool2dLayer(kind, input_shape, kernel, strides, pads, bool(count_include_pad))
    _, h_out, w_out = layer.output_shape
    if h_out < 1 or w_out < 1:
        _, h, w = input_shape
        raise ShapeError(
            f"output would be {h_out}x{w_out}: input {h}x{w} padded by {list(pads)} on each "
            f"side is smaller than the pooling window {kernel[0]}x{kernel[1]}",
            field="kernel_size",
        )
    return layer


# -- convolution ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Conv2dLayer:
    """A convolution layer with an optional activation on its output.

    Attributes
    ----------
    spec : ConvSpec
        For batch 1.
    weight : ndarray of float32, shape (C_out, C_in // groups, k_h, k_w), or None
        None until :meth:`materialized` draws it from ``init``.
    bias : ndarray of float32, shape (C_out,), or None
    init : WeightInit or None
        The initialiser of seeded weights.
    activation : Activation or None
    """

    spec: ConvSpec
    weight: np.ndarray | None
    bias: np.ndarray | None
    init: WeightInit | None = None
    activation: Activation | None = None

    type = "conv2d"

    @property
    def input_shape(self) -> Shape3:
        return (self.spec.in_channels, self.spec.height, self.spec.width)

    @property
    def output_shape(self) -> Shape3:
        return (self.spec.out_channels, self.spec.out_height, self.spec.out_width)

    @property
    def params(self) -> int:
        return self.spec.params

    @property
    def macs(self) -> int:
        return self.spec.macs

    @property
    def flops(self) -> int:
        return self.spec.flops + (_values(self.output_shape) if self.activation else 0)


    @property
    def key(self) -> object:
        return ("conv2d", self.spec, self.activation)

    def output_size_formula(self) -> dict[str, str]:
        return self.spec.output_size_formula()

    def options(self) -> dict[str, Any]:
        spec = self.spec
        opts: dict[str, Any] = {
            "weight_shape": list(spec.weight_shape), "bias": spec.bias,
            "stride": list(spec.stride), "padding": list(spec.pads),
            "dilation": list(spec.dilation), "groups": spec.groups,
            "padding_mode": spec.padding_mode,
            "activation": None if self.activation is None else self.activation.to_dict(),
        }
        if self.init is not None:
            opts["init"] = {"name": self.init.name, "seed": self.init.seed}
        return opts

    def materialized(self) -> Conv2dLayer:
        """This layer with its weights drawn (itself when they are explicit)."""
        if self.weight is not None or self.init is None:
            return self
        weight, bias = initial_weights(self.init.name, self.spec.weight_shape, self.spec.bias,
                                       self.init.seed)
        return replace(self, weight=weight, bias=bias)

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight, bias)``; raises if the weights are not drawn yet."""
        if self.weight is None:
            raise ValueError("the weights of this layer are not drawn yet: call materialized()")
        return self.weight, self.bias


def conv2d_layer(
    input_shape: Shape3,
    *,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    filters: int | None = None,
    kernel_size: IntOrPair | None = None,
    init: str = "he_normal",
    seed: int = 0,
    use_bias: bool = True,
    stride: IntOrPair = 1,
    padding: PaddingArg = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    activation: Activation | None = None,
) -> Conv2dLayer:
    """A validated convolution layer for a ``(C, H, W)`` input.

    Give either ``weight`` (float32 ``(C_out, C_in // groups, k_h, k_w)``) with an optional
    ``bias`` (``(C_out,)``), or ``filters`` and ``kernel_size`` with ``init`` and ``seed`` for
    seeded weights (drawn later, by :meth:`Conv2dLayer.materialized`); ``use_bias`` False drops
    any bias.

    Raises
    ------
    InvalidArgumentError, ShapeError
        From :func:`~convserve.conv.spec.conv_spec`, or a bad ``filters``/``init``.
    """
    c_in = input_shape[0]
    if (weight is None) == (filters is None):
        raise InvalidArgumentError("give exactly one of weight and filters", field="filters")
    layer_init = None
    if weight is None:
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise InvalidArgumentError(f"filters={filters!r} must be an int >= 1",
                                       field="filters")
        if kernel_size is None:
            raise InvalidArgumentError("filters needs kernel_size", field="kernel_size")
        k_h, k_w = int_pair("kernel_size", kernel_size, 1)
        if init not in INITS:
            raise InvalidArgumentError(f"init={init!r} is not one of {', '.join(INITS)}",
                                       field="init")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise InvalidArgumentError(f"groups={groups!r} must be an int >= 1", field="groups")
        weight_shape: tuple[int, ...] = (filters, max(1, c_in // groups), k_h, k_w)
        has_bias = use_bias
        layer_init = WeightInit(init, int(seed))
    else:
        weight_shape = weight.shape
        has_bias = bias is not None and use_bias
        if not use_bias:
            bias = None
    # The bias's own shape, so that one of the wrong length is a 422 here, not an engine error.
    bias_shape = (bias.shape if bias is not None else (weight_shape[0],)) if has_bias else None
    spec = conv_spec(
        (1, *input_shape), weight_shape, bias_shape,
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode,
    )
    return Conv2dLayer(spec, weight, bias, layer_init, activation)


Layer: TypeAlias = Conv2dLayer | ActivationLayer | Pool2dLayer


@dataclass(frozen=True, eq=False)
class Stack:
    """Layers applied in order to a ``(C, H, W)`` input; each validated for its input's shape."""

    input_shape: Shape3
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        shape = self.input_shape
        for index, layer in enumerate(self.layers):
            if layer.input_shape != shape:
                raise ShapeError(
                    f"layer {index} ({layer.type}) expects input {layer.input_shape} but the "
                    f"previous layer gives {shape}"
                )
            shape = layer.output_shape

    @property
    def output_shape(self) -> Shape3:
        return self.layers[-1].output_shape if self.layers else self.input_shape

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def key(self) -> tuple[object, ...]:
        """Hashable architecture: shapes and options, never weights."""
        return (self.input_shape, *(layer.key for layer in self.layers))

    def materialized(self) -> Stack:
        """This stack with every seeded weight drawn."""
        return Stack(self.input_shape, tuple(
            layer.materialized() if isinstance(layer, Conv2dLayer) else layer
            for layer in self.layers
        ))
