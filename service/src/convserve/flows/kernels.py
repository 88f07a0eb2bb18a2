"""A layer's kernel from a request: a JSON tensor or a preset, and the defaults each implies.

The one place where a kernel sent as JSON becomes an OIHW float32 weight (HWIO converted) and
where a preset's groups rule and the defaults of each source are decided, for ``/v1/convolve``,
``/v1/explain`` and every conv2d entry of ``/v1/layers``:

- with a ``kernel``, ``padding`` defaults to 0, ``padding_mode`` to ``zeros`` and ``groups`` to 1
  (PyTorch and Keras);
- with a ``preset``, to ``"same"`` and ``reflect`` (an image filter keeps the size and has no
  dark border), and ``groups`` is what the preset's channel rule needs; an explicit ``groups``
  that differs is a 422;
- with a tensor of a weight file (:func:`file_kernel`: a ``/v1/layers`` entry's ``kernel_key``
  or ``kernel_file: true``), as with a ``kernel``.

An explicit value always wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve.conv.presets import resolve_preset
from convserve.conv.spec import PaddingArg, hwio_to_oihw, prepare_arrays
from convserve.errors import InvalidArgumentError, ShapeError
from convserve.limits import Limits
from convserve.weightfiles import WeightArchive

__all__ = ["LayerKernel", "file_kernel", "kernel_arrays", "layer_kernel", "uses_weight_file"]

_AXES = {"OIHW": "(c_out, c_in/groups, k_h, k_w)", "HWIO": "(k_h, k_w, c_in/groups, c_out)"}


def kernel_arrays(
    weight: Any, bias: Any, layout: str = "OIHW"
) -> tuple[np.ndarray, np.ndarray | None]:
    """A JSON kernel as float32 arrays: weight (c_out, c_in/groups, k_h, k_w), bias (c_out,).

    ``layout="HWIO"`` (Keras, TensorFlow) is converted to OIHW. Errors name ``kernel`` or
    ``kernel.weight``.
    """
    try:
        w, b = prepare_arrays(np.zeros(1, np.float32), weight, bias)[1:]
    except InvalidArgumentError as exc:
        raise exc.with_field("kernel") from None
    if w.ndim != 4:
        raise ShapeError(
            f"kernel.weight has shape {w.shape}; {layout} needs 4 axes {_AXES[layout]}",
            field="kernel.weight",
        )
    return (hwio_to_oihw(w) if layout == "HWIO" else w), b


@dataclass(frozen=True)
class LayerKernel:
    """A resolved kernel with the padding, mode and groups to run it with."""

    weight: np.ndarray
    """float32 (C_out, C_in/groups, k_h, k_w)."""
    bias: np.ndarray | None
    """float32 (C_out,) or None."""
    groups: int
    padding: PaddingArg
    padding_mode: str
    info: dict[str, Any]
    """What the answer reports about the kernel's source (``kernel.source`` and details)."""
    output_names: tuple[str, ...]
    """One name per output channel (a preset's filter names, else the indices)."""


def layer_kernel(
    options: Mapping[str, Any], c_in: int, channel_names: Sequence[str] | None = None
) -> LayerKernel:
    """Resolve the ``kernel`` or ``preset`` of ``options`` for ``c_in`` input channels.

    Parameters
    ----------
    options : mapping
        The layer's fields as the request schema dumps them: ``kernel`` (``weight``, ``bias``,
        ``layout``) or ``preset`` (+ ``preset_params``), and ``padding``, ``padding_mode`` and
        ``groups`` (None when not sent); optionally ``kernel_source``, what the answer reports
        as the kernel's source when it was read from a weight file.
    c_in : int
        Input channels the layer receives.
    channel_names : sequence of str, optional
        The input's channel names (``R``, ``G``, ``B``, ``A``...), for a luminance preset.
    """
    padding, mode, groups = options["padding"], options["padding_mode"], options["groups"]
    preset = options.get("preset")
    if preset is not None:
        resolved = resolve_preset(preset, c_in, options.get("preset_params") or {},
                                  channel_names)
        if groups is not None and groups != resolved.groups:
            raise InvalidArgumentError(
                f"groups={groups} conflicts with preset {preset!r}, which needs "
                f"groups={resolved.groups} for {c_in} input channels ({resolved.rule} rule); "
                "leave groups out or send an explicit kernel",
                field="groups",
            )
        return LayerKernel(
            weight=resolved.weight, bias=resolved.bias, groups=resolved.groups,
            padding="same" if padding is None else padding,
            padding_mode="reflect" if mode is None else mode,
            info={"source": "preset", "name": resolved.name, "rule": resolved.rule,
                  "params": resolved.params},
            output_names=tuple(resolved.output_names),
        )
    kernel = options.get("kernel")
    if kernel is None:
        raise InvalidArgumentError("send a 'kernel' or a 'preset'", field="kernel")
    layout = str(kernel.get("layout") or "OIHW")
    weight, bias = kernel_arrays(kernel.get("weight"), kernel.get("bias"), layout)
    return LayerKernel(
        weight=weight, bias=bias, groups=1 if groups is None else groups,
        padding=0 if padding is None else padding,
        padding_mode="zeros" if mode is None else mode,
        # A kernel read from a weight file (convolve's kernel_file) says so.
        info={**(options.get("kernel_source") or {"source": "kernel"}), "layout": layout},
        output_names=tuple(str(i) for i in range(weight.shape[0])),
    )


def uses_weight_file(options: Mapping[str, Any]) -> bool:
    """Whether a layer entry takes its weight from the request's weight file."""
    return options.get("kernel_key") is not None or bool(options.get("kernel_file"))


def _file_weight_sides(shape: tuple[int, ...], layout: str, what: str) -> tuple[int, int, int]:
    """(c_out, k_h, k_w) of a file's weight of ``shape`` in ``layout``; 4 axes or a 422."""
    if len(shape) != 4:
        raise ShapeError(
            f"{what} has shape {shape}; a conv2d weight has 4 axes, {layout} "
            f"{_AXES[layout]}" + ("" if layout == "HWIO" else
                                  " (Keras' get_weights() order is HWIO: send layout=HWIO)"),
            field="kernel_key",
        )
    if layout == "HWIO":
        return shape[3], shape[0], shape[1]
    return shape[0], shape[2], shape[3]


def file_kernel(options: Mapping[str, Any], weights: WeightArchive | None,
                limits: Limits) -> LayerKernel:
    """Resolve a layer entry's ``kernel_key`` (or ``kernel_file: true``) from ``weights``.

    The weight's shape is checked from the file's header against the kernel limits before it
    is read; ``bias_key`` or the weight's prefix + ``bias`` gives the bias (not read when the
    entry's ``bias`` is false); ``layout`` HWIO is converted to OIHW.

    Parameters
    ----------
    options : mapping
        The layer's fields: ``kernel_key`` or ``kernel_file``, ``bias_key``, ``layout``,
        ``bias`` (bool), ``padding``, ``padding_mode`` and ``groups`` (None when not sent).
    weights : WeightArchive or None
        The request's weight file (None: none was sent, a 422).
    limits : Limits

    Returns
    -------
    LayerKernel
        Its ``info`` is :meth:`~convserve.weightfiles.WeightFile.describe` plus ``layout``.

    Raises
    ------
    ConvServeError
        Attributed to ``kernel_key``, ``kernel_file`` or ``bias_key``.
    """
    if weights is None:
        raise InvalidArgumentError(
            "kernel_key and kernel_file take the weight from the request's kernel_file part, "
            "and none was sent", field="kernel_key" if options.get("kernel_key") else
            "kernel_file")
    layout = str(options.get("layout") or "OIHW")
    weight_key, bias_key = weights.pick(options.get("kernel_key"), options.get("bias_key"))
    what = ("the kernel_file .npy" if weight_key is None
            else f"kernel_file tensor {weight_key!r}")
    header_shape = weights.shape(weight_key)
    if header_shape is not None:  # before the tensor is read (an .npz member inflated)
        c_out, k_h, k_w = _file_weight_sides(header_shape, layout, what)
        limits.check_kernel_size(k_h, k_w, what=f"{what} ({layout} {header_shape})",
                                 field="kernel_key")
        limits.check_out_channels(c_out, field="kernel_key")
    weight = weights.read(weight_key)
    c_out, _, _ = _file_weight_sides(weight.shape, layout, what)
    if not options.get("bias", True):
        bias_key = None
    bias = None if bias_key is None else weights.read(bias_key).reshape(-1)
    try:
        weight, bias = prepare_arrays(np.zeros(1, np.float32), weight, bias)[1:]
    except InvalidArgumentError as exc:
        named = bias_key if exc.field == "bias" else weight_key
        raise type(exc)(f"kernel_file tensor {named!r}: {exc.detail}",
                        field="bias_key" if exc.field == "bias" else "kernel_key") from None
    if bias is not None and bias.shape != (c_out,):
        raise ShapeError(
            f"kernel_file tensor {bias_key!r} has {bias.size} values; the bias of {what} "
            f"({layout} {tuple(weight.shape)}) needs c_out={c_out}", field="bias_key")
    found = {"source": "kernel_file", "format": weights.format, "weight_key": weight_key,
             "bias_key": bias_key, "layout": layout}
    groups, padding, mode = options["groups"], options["padding"], options["padding_mode"]
    weight = hwio_to_oihw(weight) if layout == "HWIO" else weight
    return LayerKernel(
        weight=weight, bias=bias, groups=1 if groups is None else groups,
        padding=0 if padding is None else padding,
        padding_mode="zeros" if mode is None else mode,
        info=found, output_names=tuple(str(i) for i in range(weight.shape[0])),
    )
