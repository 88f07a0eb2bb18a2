"""The one definition of a 2-D convolution layer that every engine follows.

One module, over 500 lines, because the spec is the one place every engine, the flows and
explain read the layer's geometry from: its validation, its padding forms and the values it
reads (which the finiteness check of ``conv2d`` relies on) stay beside each other.

Semantics are PyTorch's ``torch.nn.functional.conv2d``: cross-correlation without kernel flip,

    y[n, o, r, c] = bias[o] + sum_{i in group(o)} sum_{u < k_h} sum_{v < k_w}
                    w[o, i - g*C_in/groups, u, v] * xp[n, i, r*s_h + u*d_h, c*s_w + v*d_w]

where ``xp`` is ``x`` padded by ``(top, bottom, left, right)`` with ``padding_mode`` and
``group(o)`` is the slice of ``C_in/groups`` input channels that output channel ``o`` reads.

Output size per axis: ``H_out = floor((H + top + bottom - d_h*(k_h - 1) - 1) / s_h) + 1``.

``padding="same"`` needs stride 1; the total pad is ``d*(k-1)`` per axis and an odd remainder
goes to the bottom/right (PyTorch, ONNX ``SAME_UPPER``, TensorFlow).

Pads are always reported begins-then-ends per axis as ``(top, bottom, left, right)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from convserve.conv.arrays import (
    all_finite,
    check_finite_array,
    hwio_to_oihw,
    oihw_to_hwio,
    prepare_arrays,
)
from convserve.conv.padding import (
    PADDING_MODE_NAMES,
    PADDING_MODES,
    PaddingMode,
    PaddingModeName,
    normalize_padding_mode,
    padding_source,
)
from convserve.errors import InvalidArgumentError, ShapeError

__all__ = [
    "MAX_INT", "PADDING_MODE_NAMES", "PADDING_MODES", "SPEC_MEMO_SIZE", "all_finite",
    "check_finite_array", "conv_spec", "ConvSpec", "hwio_to_oihw", "int_pair", "IntOrPair",
    "normalize_padding_mode", "oihw_to_hwio", "output_size", "padding_source", "PaddingArg",
    "PaddingMode", "PaddingModeName", "prepare_arrays", "resolve_padding",
]

IntOrPair: TypeAlias = int | Sequence[int]
PaddingArg: TypeAlias = int | Sequence[int] | str


MAX_INT = 2**31 - 1
"""Largest stride, dilation or padding accepted: far beyond any useful value, and small enough
for every engine's index arithmetic (ONNX attributes, NumPy shapes)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def int_pair(name: str, value: IntOrPair, minimum: int) -> tuple[int, int]:
    """``value`` as ``(h, w)``; an int means the same on both axes; each in
    ``[minimum, MAX_INT]``, else an InvalidArgumentError naming ``name``."""
    if _is_int(value):
        pair = (int(value), int(value))  # type: ignore[arg-type]
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(_is_int(v) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise InvalidArgumentError(
            f"{name}={value!r} must be an int or a pair of ints (h, w)", field=name
        )
    if min(pair) < minimum or max(pair) > MAX_INT:
        raise InvalidArgumentError(
            f"{name}={value!r} must be >= {minimum} and <= {MAX_INT} on each axis", field=name
        )
    return pair


def resolve_padding(
    padding: PaddingArg,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    stride: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Resolve any padding form to explicit ``(top, bottom, left, right)``.

    Parameters
    ----------
    padding : int, (p_h, p_w), (top, bottom, left, right), "valid" or "same"
    kernel, dilation, stride : (h, w)
    """
    if isinstance(padding, str):
        word = padding.strip().lower()
        if word == "valid":
            return (0, 0, 0, 0)
        if word == "same":
            if stride != (1, 1):
                raise InvalidArgumentError(
                    f"padding='same' needs stride 1, got stride={stride}; "
                    "use an explicit padding with a larger stride",
                    field="padding",
                )
            total_h = dilation[0] * (kernel[0] - 1)
            total_w = dilation[1] * (kernel[1] - 1)
            return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        raise InvalidArgumentError(
            f"padding={padding!r} must be an int, (p_h, p_w), (top, bottom, left, right), "
            "'valid' or 'same'",
            field="padding",
        )
    if _is_int(padding):
        p = int(padding)  # type: ignore[arg-type]
        pads = (p, p, p, p)
    elif isinstance(padding, Sequence) and all(_is_int(v) for v in padding):
        values = [int(v) for v in padding]
        if len(values) == 2:
            pads = (values[0], values[0], values[1], values[1])
        elif len(values) == 4:
            pads = (values[0], values[1], values[2], values[3])
        else:
            raise InvalidArgumentError(
                f"padding={list(padding)!r} has {len(values)} numbers; give an int, 2 numbers "
                "(p_h, p_w) or 4 (top, bottom, left, right)",
                field="padding",
            )
    else:
        raise InvalidArgumentError(
            f"padding={padding!r} must be an int, (p_h, p_w), (top, bottom, left, right), "
            "'valid' or 'same'",
            field="padding",
        )
    if min(pads) < 0 or max(pads) > MAX_INT:
        raise InvalidArgumentError(
            f"padding={padding!r} must be >= 0 and <= {MAX_INT} on every side", field="padding"
        )
    return pads


def output_size(size: int, pad_begin: int, pad_end: int, kernel: int, stride: int,
                dilation: int) -> int:
    """``floor((size + pads - dilation*(kernel - 1) - 1) / stride) + 1`` (may be < 1)."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


AxisRead: TypeAlias = slice | np.ndarray
"""The samples of one input axis that a convolution reads: a slice, or read-only indices."""


@functools.lru_cache(maxsize=512)
def _axis_read(size: int, before: int, kernel: int, stride: int, dilation: int, out: int,
               mode: PaddingMode) -> AxisRead:
    """The samples of an axis of ``size`` that outputs ``0 .. out - 1`` read, directly or, for
    ``mode`` other than zeros, through the padding: ``slice(None)`` for all of them, a slice
    where they are evenly spaced, else their indices."""
    if stride == 1 and dilation == 1:
        # The windows overlap and reach from the first pad to the last one (the output size
        # is size + before + after - kernel + 1): every sample is read.
        return slice(None)
    read_mask = np.zeros(size, dtype=bool)
    outputs = np.arange(out, dtype=np.int64) * stride - before
    for u in range(kernel):
        sources = padding_source(outputs + u * dilation, size, mode)
        read_mask[sources[sources >= 0]] = True
    read = np.flatnonzero(read_mask)
    if read.size == size:
        return slice(None)
    if read.size <= 1:
        return slice(int(read[0]), int(read[0]) + 1) if read.size else slice(0, 0)
    steps = np.diff(read)
    if (steps == steps[0]).all():
        return slice(int(read[0]), int(read[-1]) + 1, int(steps[0]))
    read.setflags(write=False)
    return read


def _reads_all(read: AxisRead) -> bool:
    return isinstance(read, slice) and read == slice(None)


def _axis_count(read: AxisRead, size: int) -> int:
    return len(range(size)[read]) if isinstance(read, slice) else int(read.size)


@dataclass(frozen=True)
class ConvSpec:
    """A validated convolution: every size and option resolved to plain ints.

    Attributes
    ----------
    batch, in_channels, height, width : int
        The input ``x`` of shape ``(batch, in_channels, height, width)``.
    out_channels, kernel_h, kernel_w : int
        The weight of shape ``(out_channels, in_channels // groups, kernel_h, kernel_w)``.
    stride, dilation : (h, w)
    pads : (top, bottom, left, right)
    groups : int
    padding_mode : "zeros" | "reflect" | "replicate" | "circular"
    bias : bool
        Whether a bias of shape ``(out_channels,)`` is added.
    """

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    groups: int
    padding_mode: PaddingMode
    bias: bool

    @property
    def out_height(self) -> int:
        top, bottom, _, _ = self.pads
        return output_size(self.height, top, bottom, self.kernel_h, self.stride[0],
                           self.dilation[0])

    @property
    def out_width(self) -> int:
        _, _, left, right = self.pads
        return output_size(self.width, left, right, self.kernel_w, self.stride[1],
                           self.dilation[1])

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_h, self.kernel_w)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def padded_height(self) -> int:
        return self.height + self.pads[0] + self.pads[1]

    @property
    def padded_width(self) -> int:
        return self.width + self.pads[2] + self.pads[3]

    @functools.cached_property
    def read_rows(self) -> AxisRead:
        """The input rows some output reads (see :meth:`read_input`)."""
        return _axis_read(self.height, self.pads[0], self.kernel_h, self.stride[0],
                          self.dilation[0], self.out_height, self.padding_mode)

    @functools.cached_property
    def read_cols(self) -> AxisRead:
        """The input columns some output reads (see :meth:`read_input`)."""
        return _axis_read(self.width, self.pads[2], self.kernel_w, self.stride[1],
                          self.dilation[1], self.out_width, self.padding_mode)

    @functools.cached_property
    def read_size(self) -> int:
        """The number of input values the convolution reads (:meth:`read_input`'s size)."""
        return (self.batch * self.in_channels * _axis_count(self.read_rows, self.height)
                * _axis_count(self.read_cols, self.width))

    @property
    def reads_every_input(self) -> bool:
        """Whether every input value lies in the receptive field of some output (directly or,
        for padding modes other than zeros, through the padding).

        Not so when a stride skips rows or columns the kernel does not reach, or when the last
        rows or columns do not make up a whole window.
        """
        return self.read_size == math.prod(self.input_shape)

    def read_input(self, x: np.ndarray) -> np.ndarray:
        """The values of ``x`` (``input_shape``) that the convolution reads: the samples in
        some output's receptive field, directly or through the padding. ``x`` itself where it
        reads them all, a view where the rows and columns read are evenly spaced (a stride
        that skips some), else a copy. A value outside it cannot change the output. Where the
        engine multiplies every value it reads, a non-finite one among these reaches every
        output channel of its group (IEEE: ``nan * 0`` and ``inf * 0`` are NaN)."""
        rows, cols = self.read_rows, self.read_cols
        if _reads_all(rows) and _reads_all(cols):
            return x
        part = x[:, :, rows] if isinstance(rows, slice) else x.take(rows, axis=2)
        return part[:, :, :, cols] if isinstance(cols, slice) else part.take(cols, axis=3)

    def sentinel_outputs(self, y: np.ndarray) -> np.ndarray:
        """The first output channel of each group of ``y`` (``output_shape``), a view: each
        reads every input channel of its group over the same windows, so (where the engine
        multiplies every value it reads) a non-finite value of :meth:`read_input` reaches it;
        it stands in for the input in the finiteness check."""
        step = self.out_per_group
        return y if step == 1 else y[:, ::step]

    @property
    def sentinel_size(self) -> int:
        """The number of values :meth:`sentinel_outputs` holds."""
        return self.batch * self.groups * self.out_height * self.out_width

    @property
    def params(self) -> int:
        """Learnable parameters: ``c_out * c_in/groups * k_h * k_w (+ c_out with bias)``."""
        return math.prod(self.weight_shape) + (self.out_channels if self.bias else 0)

    @property
    def macs(self) -> int:
        """Multiply-accumulates for the whole batch."""
        return (
            self.batch * self.out_channels * self.in_per_group * self.kernel_h * self.kernel_w
            * self.out_height * self.out_width
        )

    @property
    def flops(self) -> int:
        """Floating-point operations: two per MAC, plus one per output element for the bias."""
        bias_adds = self.batch * self.out_channels * self.out_height * self.out_width
        return 2 * self.macs + (bias_adds if self.bias else 0)

    def check_arrays(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> None:
        """Check that the arrays an engine got have exactly the shapes this spec describes.

        Parameters
        ----------
        x : ndarray, shape ``input_shape``
        weight : ndarray, shape ``weight_shape``
        bias : ndarray of shape (out_channels,), or None; given exactly when ``bias`` is true

        Raises
        ------
        ShapeError
            Any shape differs, or a bias is given (or missing) against ``bias``.
        """
        if (
            x.shape != self.input_shape
            or weight.shape != self.weight_shape
            or (bias is not None) != self.bias
            or (bias is not None and bias.shape != (self.out_channels,))
        ):
            raise ShapeError(
                f"arrays x.shape={x.shape}, weight.shape={weight.shape}, bias.shape="
                f"{None if bias is None else bias.shape} do not match the spec's "
                f"{self.input_shape}, {self.weight_shape}, "
                f"{(self.out_channels,) if self.bias else None}"
            )

    def output_size_formula(self) -> dict[str, str]:
        """The output-size formula per axis with this layer's numbers filled in."""
        top, bottom, left, right = self.pads
        (s_h, s_w), (d_h, d_w) = self.stride, self.dilation
        return {
            "h_out": (
                f"floor(({self.height} + {top} + {bottom} - {d_h}*({self.kernel_h}-1) - 1) / "
                f"{s_h}) + 1 = {self.out_height}"
            ),
            "w_out": (
                f"floor(({self.width} + {left} + {right} - {d_w}*({self.kernel_w}-1) - 1) / "
                f"{s_w}) + 1 = {self.out_width}"
            ),
        }


def conv_spec(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None = None,
    stride: IntOrPair = 1,
    padding: PaddingArg = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> ConvSpec:
    """Validate a convolution's shapes and options and resolve them to a :class:`ConvSpec`.

    Parameters
    ----------
    x_shape : (N, C_in, H, W) or (C_in, H, W)
    weight_shape : (C_out, C_in // groups, k_h, k_w)
    bias_shape : (C_out,) or None

    Raises
    ------
    ShapeError, InvalidArgumentError
        With the shapes and numbers involved and what would be valid.

    Notes
    -----
    Specs of arguments made of ints, strings and sequences of them are memoised (the last
    :data:`SPEC_MEMO_SIZE` of them), keyed by value *and* type, so that ``groups=True`` is
    still refused after ``groups=1`` was accepted. Invalid arguments are never memoised.
    """
    key = _memo_keys((x_shape, weight_shape, bias_shape, stride, padding, dilation, groups,
                      padding_mode))
    if key is not None:
        spec = _SPEC_MEMO.get(key)
        if spec is None:
            spec = _conv_spec(x_shape, weight_shape, bias_shape, stride, padding, dilation,
                              groups, padding_mode)
            if len(_SPEC_MEMO) >= SPEC_MEMO_SIZE:
                _SPEC_MEMO.clear()  # rare; a plain dict keeps hits cheap and thread-safe
            _SPEC_MEMO[key] = spec
        return spec
    return _conv_spec(x_shape, weight_shape, bias_shape, stride, padding, dilation, groups,
                      padding_mode)


SPEC_MEMO_SIZE = 512
"""Specs kept by :func:`conv_spec`'s memo."""
_SPEC_MEMO: dict[Hashable, ConvSpec] = {}
_MEMO_ATOMS = (int, bool, str, type(None), np.integer)


def _memo_keys(values: tuple[object, ...]) -> Hashable | None:
    """:func:`_memo_key` of each of ``values`` (None if any is None), with a fast path for the
    usual ints, strings, None and tuples of ints (a key per call is paid on every hit)."""
    keys: list[Hashable] = []
    for value in values:
        kind = type(value)
        if kind is int or kind is str or value is None:
            keys.append((kind, value))
        elif kind is tuple and all(type(v) is int for v in value):  # type: ignore[attr-defined]
            keys.append((kind, value))
        else:
            key = _memo_key(value)
            if key is None:
                return None
            keys.append(key)
    return tuple(keys)


def _memo_key(value: object) -> Hashable | None:
    """A hashable key that tells apart values of different types (``True`` from ``1``,
    ``np.int64(2)`` from ``2``, ``[1, 2]`` from ``(1, 2)``), or None when a value is of any
    other kind (floats, arrays, objects), which are then validated afresh on every call."""
    kind = type(value)
    if isinstance(value, tuple | list):
        if all(type(v) is int for v in value):  # shapes and pairs: the common case, fast
            return (kind, tuple(value))
        keys = tuple(_memo_key(v) for v in value)
        return None if any(k is None for k in keys) else (kind, keys)
    if isinstance(value, _MEMO_ATOMS):
        return (kind, value)
    return None


def _conv_spec(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    stride: IntOrPair,
    padding: PaddingArg,
    dilation: IntOrPair,
    groups: int,
    padding_mode: str,
) -> ConvSpec:
    x_shape = tuple(int(s) for s in x_shape)
    weight_shape = tuple(int(s) for s in weight_shape)
    if len(x_shape) == 3:
        x_shape = (1, *x_shape)
    if len(x_shape) != 4:
        raise ShapeError(
            f"x.shape={x_shape} must be (N, C_in, H, W) or (C_in, H, W)", field="input"
        )
    if min(x_shape[1:]) < 1 or x_shape[0] < 0:
        # An empty batch (N = 0) is valid, as in PyTorch: its output is empty too.
        raise ShapeError(f"x.shape={x_shape} has an empty axis; C_in, H and W must be >= 1",
                         field="input")
    if len(weight_shape) != 4:
        raise ShapeError(
            f"weight.shape={weight_shape} must be 4-D (C_out, C_in // groups, k_h, k_w)",
            field="weight",
        )
    if min(weight_shape) < 1:
        raise ShapeError(
            f"weight.shape={weight_shape} has an empty axis; every size must be >= 1",
            field="weight",
        )
    n, c_in, h, w = x_shape
    c_out, c_in_g, k_h, k_w = weight_shape

    if not _is_int(groups) or groups < 1:
        raise InvalidArgumentError(f"groups={groups!r} must be an int >= 1", field="groups")
    groups = int(groups)
    if c_in % groups or c_out % groups:
        raise ShapeError(
            f"groups={groups} must divide both C_in={c_in} and C_out={c_out}", field="groups"
        )
    if c_in_g != c_in // groups:
        raise ShapeError(
            f"weight.shape={weight_shape} needs C_in//groups={c_in // groups} for "
            f"x.shape={x_shape}, groups={groups}",
            field="weight",
        )
    if bias_shape is not None and tuple(int(s) for s in bias_shape) != (c_out,):
        raise ShapeError(
            f"bias.shape={tuple(bias_shape)} must be (C_out,)=({c_out},) for "
            f"weight.shape={weight_shape}",
            field="bias",
        )

    stride_hw = int_pair("stride", stride, 1)
    dilation_hw = int_pair("dilation", dilation, 1)
    mode = normalize_padding_mode(padding_mode)
    pads = resolve_padding(padding, (k_h, k_w), dilation_hw, stride_hw)

    top, bottom, left, right = pads
    if mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
        raise InvalidArgumentError(
            f"padding_mode='reflect' needs each pad < the size of its axis; got pads "
            f"(top, bottom, left, right)={pads} for H={h}, W={w}",
            field="padding",
        )
    if mode == "circular" and (max(top, bottom) > h or max(left, right) > w):
        raise InvalidArgumentError(
            f"padding_mode='circular' needs each pad <= the size of its axis; got pads "
            f"(top, bottom, left, right)={pads} for H={h}, W={w}",
            field="padding",
        )

    spec = ConvSpec(
        batch=n, in_channels=c_in, height=h, width=w, out_channels=c_out,
        kernel_h=k_h, kernel_w=k_w, stride=stride_hw, dilation=dilation_hw, pads=pads,
        groups=groups, padding_mode=mode, bias=bias_shape is not None,
    )
    if spec.out_height < 1 or spec.out_width < 1:
        raise ShapeError(
            f"output would be {max(0, spec.out_height)}x{max(0, spec.out_width)}: input {h}x{w} "
            f"padded by (top, bottom, left, right)={pads} is "
            f"{spec.padded_height}x{spec.padded_width}, "
            f"smaller than the dilated kernel "
            f"{dilation_hw[0] * (k_h - 1) + 1}x{dilation_hw[1] * (k_w - 1) + 1} "
            f"(kernel {k_h}x{k_w}, dilation {dilation_hw}); pad more or use a smaller kernel",
            field="weight",
        )
    return spec
