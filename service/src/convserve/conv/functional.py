"""``conv2d`` with PyTorch's functional signature, dispatching to an engine."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from convserve.conv.engine import (
    Device,
    Engine,
    EngineChoice,
    EngineName,
    check_device,
    check_engine_choice,
    check_engine_name,
)
from convserve.conv.spec import (
    ConvSpec,
    IntOrPair,
    PaddingArg,
    all_finite,
    check_finite_array,
    conv_spec,
    prepare_arrays,
)

if TYPE_CHECKING:
    from convserve.conv.auto import AutoEngine

__all__ = ["conv2d", "get_auto", "get_engine"]


@functools.cache
def get_engine(name: str) -> Engine:
    """The process-wide default instance of engine ``name`` (created on first use)."""
    if name == "numpy":
        from convserve.conv.numpy_engine import NumpyEngine

        return NumpyEngine()
    if name == "onnxruntime":
        from convserve.conv.onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine()
    check_engine_name(name)
    raise AssertionError(f"no engine class for {name!r}")  # pragma: no cover


@functools.cache
def get_auto() -> AutoEngine:
    """The process-wide ``engine="auto"``, on the default engines and the kept table."""
    from convserve.conv.auto import AutoEngine

    return AutoEngine()


def conv2d(
    x: object,
    weight: object,
    bias: object | None = None,
    stride: IntOrPair = 1,
    padding: PaddingArg = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    engine: EngineChoice | EngineName | Engine | AutoEngine = "auto",
    device: Device = "cpu",
    *,
    check_finite: bool = True,
) -> np.ndarray:
    """Apply a 2-D convolution exactly as ``torch.nn.functional.conv2d`` does.

    Parameters
    ----------
    x : array_like of shape (N, C_in, H, W) or (C_in, H, W)
    weight : array_like of shape (C_out, C_in // groups, k_h, k_w)
    bias : array_like of shape (C_out,), optional
    stride, dilation : int or (h, w), each >= 1
    padding : int, (p_h, p_w), (top, bottom, left, right), "valid" or "same"
    groups : int, dividing C_in and C_out
    padding_mode : "zeros", "reflect", "replicate" or "circular"
    engine : "auto" (default), "numpy", "onnxruntime" or an engine instance
        ``"auto"`` runs the fastest exact path measured for this shape
        (:mod:`convserve.conv.auto`: ONNX Runtime, a NumPy strategy or OpenCV's filters);
        on CUDA it is ONNX Runtime.
    device : "cpu" or "cuda"; CUDA where it is not active is an error, never a CPU fallback
    check_finite : bool, keyword only
        Refuse an ``x`` holding NaN or infinity where the convolution reads it: in the
        receptive field of some output, directly or through the padding
        (``ConvSpec.read_input``). A value no output reads, such as one in a row that a stride
        of 2 skips, cannot change the result and is not refused. One pass goes over the
        smaller of those values and one output channel per group: every output channel of a
        group reads all the group's input channels over the same windows, so a non-finite
        value it reads reaches that channel (``auto``'s OpenCV paths check their whole output
        band by band as they write it); the input is scanned only when that channel is not
        finite, and the error names the input and the count of values.
        Pass False when the input is known to be finite, e.g. decoded from an image.
        ``weight`` and ``bias`` are always checked. With an unchecked non-finite input the
        non-finite values spread to at least the outputs whose window covers them, and, as in
        PyTorch, to others where an engine's algorithm multiplies them by zero.

    Returns
    -------
    ndarray of float32, shape (N, C_out, H_out, W_out), or (C_out, H_out, W_out) for 3-D ``x``

    Raises
    ------
    convserve.ConvServeError
        ShapeError, InvalidArgumentError or EngineUnavailableError naming the numbers involved.
    """
    x_arr, w_arr, b_arr = prepare_arrays(x, weight, bias, check_finite=False)
    spec = conv_spec(
        x_arr.shape, w_arr.shape, None if b_arr is None else b_arr.shape,
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode,
    )
    dev = check_device(device)
    if not isinstance(engine, str):
        impl = engine
    elif check_engine_choice(engine) == "auto":
        impl = get_auto()
    else:
        impl = get_engine(engine)
    if spec.batch == 0:  # PyTorch's empty batch: an empty output of the right shape
        return np.zeros(spec.output_shape, dtype=np.float32)
    # One output channel per group stands in for the input values the convolution reads, where
    # it is no larger (ConvSpec.sentinel_outputs, ConvSpec.read_input).
    via_output = check_finite and (
        getattr(impl, "propagates_non_finite", False) and spec.sentinel_size <= spec.read_size
    )
    x4 = x_arr.reshape(spec.input_shape)
    if check_finite and not via_output:
        _check_read_input(x4, spec)
    checked = getattr(impl, "conv2d_checked", None) if via_output else None
    y: np.ndarray
    if checked is not None:  # auto checks the output as it goes where a path can
        y, finite = checked(x4, w_arr, b_arr, spec, dev)
    else:
        y = impl.conv2d(x4, w_arr, b_arr, spec, dev)
        finite = not via_output or all_finite(spec.sentinel_outputs(y))
    if not finite:
        _check_read_input(x4, spec)
    return y[0] if x_arr.ndim == 3 else y


def _check_read_input(x: np.ndarray, spec: ConvSpec) -> None:
    """Refuse ``x`` if a value the convolution reads is NaN or infinite, naming the input."""
    read = spec.read_input(x)
    check_finite_array("input", read, where="" if read is x else "where the convolution reads it")
