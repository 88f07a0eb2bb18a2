"""``conv2d`` with PyTorch's functional signature, dispatching to an engine."""

from __future__ import annotations

import functools

import numpy as np

from convserve.conv.engine import Device, Engine, EngineName, check_device, check_engine_name
from convserve.conv.spec import IntOrPair, PaddingArg, conv_spec, prepare_arrays

__all__ = ["conv2d", "get_engine"]


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


def conv2d(
    x: object,
    weight: object,
    bias: object | None = None,
    stride: IntOrPair = 1,
    padding: PaddingArg = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    engine: EngineName | Engine = "numpy",
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
    engine : "numpy", "onnxruntime" or an Engine instance
    device : "cpu" or "cuda"; CUDA where it is not active is an error, never a CPU fallback
    check_finite : bool, keyword only
        Refuse an ``x`` holding NaN or infinity (as ``scipy.linalg`` does). The check is one
        pass over ``x``; pass False when the input is known to be finite, e.g. decoded from an
        image. ``weight`` and ``bias`` are always checked. With an unchecked non-finite input the
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
    x_arr, w_arr, b_arr = prepare_arrays(x, weight, bias, check_finite=check_finite)
    squeeze = x_arr.ndim == 3
    spec = conv_spec(
        x_arr.shape, w_arr.shape, None if b_arr is None else b_arr.shape,
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode,
    )
    impl = get_engine(engine) if isinstance(engine, str) else engine
    dev = check_device(device)
    if spec.batch == 0:  # PyTorch's empty batch: an empty output of the right shape
        return np.zeros(spec.output_shape, dtype=np.float32)
    x4 = x_arr.reshape(spec.input_shape)
    y = impl.conv2d(x4, w_arr, b_arr, spec, dev)
    return y[0] if squeeze else y

