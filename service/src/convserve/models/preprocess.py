"""From a decoded input (C, H, W) to the tensor a model takes, with every step reported.

The steps, in order: ``resize`` to the model's input size (``none`` needs the sizes equal;
``stretch`` resizes each axis; ``fit`` keeps the aspect ratio, scales to fit inside and centres
the result on zeros), ``channel_order`` (``BGR`` reverses the channels), then per channel
``(x * scale - mean) / std``, and last the layout (a batch axis, and channels last for NHWC).
Resizing is bilinear on the float32 values (Pillow's mode ``F``), so no 8-bit rounding occurs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from convserve.errors import InvalidArgumentError, ShapeError
from convserve.models.validate import InputInfo

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "preprocess"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Resize = Literal["none", "fit", "stretch"]


@dataclass(frozen=True)
class Preprocess:
    """Resolved preprocessing (``preprocess="none"`` is the default instance)."""

    name: str = "none"
    """``none``, ``imagenet`` or ``custom``."""
    resize: Resize = "none"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: Literal["RGB", "BGR"] = "RGB"

    @classmethod
    def from_request(cls, value: str | dict[str, Any] | None) -> Preprocess:
        """``None``/``"none"``, ``"imagenet"``, or a dict of the fields."""
        if value is None or value == "none":
            return cls()
        if value == "imagenet":
            return cls("imagenet", mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if isinstance(value, dict):
            return cls("custom", resize=value.get("resize", "none"),
                       scale=float(value.get("scale", 1.0)),
                       mean=tuple(value.get("mean", (0.0,))),
                       std=tuple(value.get("std", (1.0,))),
                       channel_order=value.get("channel_order", "RGB"))
        raise InvalidArgumentError(
            f"preprocess={value!r}: use 'none', 'imagenet' or an object with resize, scale, "
            "mean, std and channel_order", field="preprocess")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "resize": self.resize, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order}


def _per_channel(name: str, values: tuple[float, ...], channels: int) -> np.ndarray:
    if len(values) not in (1, channels):
        raise InvalidArgumentError(
            f"preprocess.{name} has {len(values)} values; give 1 or one per input channel "
            f"({channels})", field=f"preprocess.{name}")
    array = np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)
    if name == "std" and np.any(array == 0):
        raise InvalidArgumentError("preprocess.std must not hold 0", field="preprocess.std")
    return array


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize(
        (w, h), Image.Resampling.BILINEAR), dtype=np.float32) for plane in x]
    return np.stack(planes)


def preprocess(x: np.ndarray, steps: Preprocess, target: InputInfo) -> tuple[np.ndarray,
                                                                            dict[str, Any]]:
    """Prepare ``x`` for the model.

    Parameters
    ----------
    x : ndarray of float32, shape (C, H, W)
    steps : Preprocess
    target : InputInfo
        The model's input (channels, size and layout).

    Returns
    -------
    tensor : ndarray of float32, shape (1, C, H', W') or (1, H', W', C)
    report : dict
        ``steps.to_dict()`` plus ``input_shape`` (C, H, W as sent) and ``model_input_shape``.

    Raises
    ------
    ShapeError
        Channels differ from the model's, or the size differs with ``resize="none"``.
    """
    c, h, w = x.shape
    want_h, want_w = target.size
    if c != target.channels:
        raise ShapeError(
            f"the input has {c} channel(s) and the model takes {target.channels}; send an "
            f"image with color_mode {'rgb' if target.channels == 3 else 'gray'} or an array "
            f"with {target.channels} channels", field="image")
    if (h, w) != (want_h, want_w):
        if steps.resize == "none":
            raise ShapeError(
                f"the input is {h}x{w} and the model takes {want_h}x{want_w}; resize it or send "
                'preprocess {"resize": "stretch"} or {"resize": "fit"}', field="preprocess")
        if steps.resize == "stretch":
            x = _resize(x, (want_h, want_w))
        else:
            ratio = min(want_h / h, want_w / w)
            inner = (max(1, round(h * ratio)), max(1, round(w * ratio)))
            canvas = np.zeros((c, want_h, want_w), dtype=np.float32)
            top, left = (want_h - inner[0]) // 2, (want_w - inner[1]) // 2
            canvas[:, top:top + inner[0], left:left + inner[1]] = _resize(x, inner)
            x = canvas
    if steps.channel_order == "BGR":
        x = x[::-1]
    mean = _per_channel("mean", steps.mean, c)
    std = _per_channel("std", steps.std, c)
    y = ((x * np.float32(steps.scale) - mean) / std).astype(np.float32, copy=False)
    tensor = y[np.newaxis] if target.layout == "NCHW" else y.transpose(1, 2, 0)[np.newaxis]
    report = {**steps.to_dict(), "input_shape": [c, h, w],
              "model_input_shape": list(target.shape), "layout": target.layout}
    return np.ascontiguousarray(tensor), report
