"""A layer's kernel from a request: a JSON tensor or a preset, and the defaults each implies.

The one place where a kernel sent as JSON becomes an OIHW float32 weight (HWIO converted) and
where a preset's groups rule and the defaults of each source are decided, for ``/v1/convolve``,
``/v1/explain`` and every conv2d entry of ``/v1/layers``:

- with a ``kernel``, ``padding`` defaults to 0, ``padding_mode`` to ``zeros`` and ``groups`` to 1
  (PyTorch and Keras);
- with a ``preset``, to ``"same"`` and ``reflect`` (an image filter keeps the size and has no
  dark border), and ``groups`` is what the preset's channel rule needs; an explicit ``groups``
  that differs is a 422.

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

__all__ = ["LayerKernel", "kernel_arrays", "layer_kernel"]

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
        ``groups`` (None when not sent).
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
        info={"source": "kernel", "layout": layout},
        output_names=tuple(str(i) for i in range(weight.shape[0])),
    )
