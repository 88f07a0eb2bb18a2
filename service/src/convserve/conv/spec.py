"""The one definition of a 2-D convolution layer that every engine follows.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

import numpy as np

from convserve.errors import InvalidArgumentError, ShapeError

__all__ = [
    "MAX_INT",
    "int_pair",
    "PADDING_MODES",
    "PADDING_MODE_NAMES",
    "PaddingModeName",
    "padding_source",
    "ConvSpec",
    "IntOrPair",
    "PaddingArg",
    "PaddingMode",
    "conv_spec",
    "hwio_to_oihw",
    "normalize_padding_mode",
    "oihw_to_hwio",
    "output_size",
    "prepare_arrays",
    "resolve_padding",
]

PaddingMode: TypeAlias = Literal["zeros", "reflect", "replicate", "circular"]
PADDING_MODES: tuple[PaddingMode, ...] = ("zeros", "reflect", "replicate", "circular")

PaddingModeName: TypeAlias = Literal[
    "zeros", "reflect", "replicate", "circular",
    "constant", "edge", "wrap",
    "BORDER_CONSTANT", "BORDER_REFLECT_101", "BORDER_REFLECT101", "BORDER_REPLICATE",
    "BORDER_WRAP",
]
"""Every accepted spelling of a padding mode: PyTorch's, NumPy's and OpenCV's (the one list;
the API's enum and the clients' types are this). Matched case-insensitively."""
PADDING_MODE_NAMES: tuple[PaddingModeName, ...] = get_args(PaddingModeName)

_PADDING_MODE_OF: dict[PaddingModeName, PaddingMode] = {
    "zeros": "zeros", "constant": "zeros", "BORDER_CONSTANT": "zeros",
    "reflect": "reflect", "BORDER_REFLECT_101": "reflect", "BORDER_REFLECT101": "reflect",
    "replicate": "replicate", "edge": "replicate", "BORDER_REPLICATE": "replicate",
    "circular": "circular", "wrap": "circular", "BORDER_WRAP": "circular",
}
_PADDING_MODE_ALIASES = {name.lower(): mode for name, mode in _PADDING_MODE_OF.items()}

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


def normalize_padding_mode(mode: str) -> PaddingMode:
    """PyTorch's name for ``mode``, accepting NumPy and OpenCV spellings."""
    if isinstance(mode, str) and mode.lower() in _PADDING_MODE_ALIASES:
        return _PADDING_MODE_ALIASES[mode.lower()]
    raise InvalidArgumentError(
        f"padding_mode={mode!r} is not one of zeros, reflect, replicate, circular "
        "(NumPy's constant, reflect, edge, wrap and OpenCV's BORDER_* names are accepted too)",
        field="padding_mode",
    )


def padding_source(positions: np.ndarray, size: int, mode: PaddingMode) -> np.ndarray:
    """Where each coordinate of an axis of ``size`` samples reads from under ``mode``.

    The one definition of the padding modes, used by the engines and by explain.

    Parameters
    ----------
    positions : ndarray of int, any shape
        Coordinates along the axis, possibly outside ``[0, size)`` (in the padding).
    size : int
        Samples of the axis (>= 1).
    mode : {"zeros", "reflect", "replicate", "circular"}
        ``reflect`` mirrors about the edge sample (PyTorch, NumPy ``reflect``, OpenCV
        ``BORDER_REFLECT_101``), repeating with period ``2 * (size - 1)``.

    Returns
    -------
    ndarray of int64, the shape of ``positions``
        The index of the sample the mode puts there; -1 where ``zeros`` puts a zero.
    """
    i = np.asarray(positions, dtype=np.int64)
    if mode == "zeros":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return i % size
    if size == 1:  # reflecting a single sample gives that sample
        return np.zeros_like(i)
    period = 2 * (size - 1)
    j = np.abs(i) % period
    return np.where(j < size, j, period - j)


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
    """
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


def _all_finite(array: np.ndarray) -> bool:
    """Whether every value of ``array`` is finite.

    Any NaN or infinity makes the sum non-finite, and one summing pass costs about half of
    ``np.isfinite(array).all()`` on large inputs; the exact test runs only when the sum is not
    finite (a NaN, an infinity, or a sum that overflowed). Not ``np.dot(a, a)``: it is no faster
    and leaves BLAS threads spinning, which slows the convolution that follows.
    """
    with np.errstate(all="ignore"):  # an overflowing sum is expected and handled below
        total = np.add.reduce(array, axis=None)
    if np.isfinite(total):
        return True
    return bool(np.isfinite(array).all())


def _float32(name: str, value: object, *, check_finite: bool = True) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{name} must be a numeric array (nested lists of equal length): {exc}", field=name
        ) from None
    if check_finite and not _all_finite(array):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InvalidArgumentError(
            f"{name} holds {bad} NaN or infinite value(s); only finite numbers are allowed",
            field=name,
        )
    return array


def prepare_arrays(
    x: object, weight: object, bias: object | None, *, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Convert to C-contiguous float32 and reject non-finite values.

    Returns ``x`` as given (3-D or 4-D; shapes are checked by :func:`conv_spec`), ``weight`` and
    ``bias`` (or None). ``weight`` and ``bias`` are always checked for NaN and infinity; ``x``
    only when ``check_finite`` is true (one pass over the input, which costs up to a third of a
    cheap convolution: callers that validated the input already may skip it).
    """
    x_arr = np.ascontiguousarray(_float32("input", x, check_finite=check_finite))
    w_arr = np.ascontiguousarray(_float32("weight", weight))
    b_arr = None
    if bias is not None:
        b_arr = np.ascontiguousarray(_float32("bias", bias))
        if b_arr.ndim != 1:
            raise ShapeError(f"bias.shape={b_arr.shape} must be 1-D (C_out,)", field="bias")
    return x_arr, w_arr, b_arr


def hwio_to_oihw(weight: np.ndarray) -> np.ndarray:
    """Keras/TensorFlow ``(k_h, k_w, C_in // groups, C_out)`` to OIHW.

    Returns a C-contiguous ``(C_out, C_in // groups, k_h, k_w)`` array.
    """
    if weight.ndim != 4:
        raise ShapeError(
            f"HWIO weight.shape={weight.shape} must be 4-D (k_h, k_w, C_in // groups, C_out)",
            field="weight",
        )
    return np.ascontiguousarray(weight.transpose(3, 2, 0, 1))


def oihw_to_hwio(weight: np.ndarray) -> np.ndarray:
    """``(C_out, C_in // groups, k_h, k_w)`` to Keras/TensorFlow HWIO.

    Returns a C-contiguous ``(k_h, k_w, C_in // groups, C_out)`` array.
    """
    if weight.ndim != 4:
        raise ShapeError(
            f"OIHW weight.shape={weight.shape} must be 4-D (C_out, C_in // groups, k_h, k_w)",
            field="weight",
        )
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))
