"""A request's input -> float32 (C, H, W): uploaded bytes, a JSON array or a base64 image."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve import imaging
from convserve.errors import ConvServeError, InvalidInputError
from convserve.limits import Limits

__all__ = ["Source", "decode_source"]


@dataclass(frozen=True)
class Source:
    """What a request sent as its input: an uploaded file's bytes (multipart ``image``), a JSON
    array (``input.array``) or a base64 image (``input.image_base64``), and the colour mode
    wanted from an image."""

    data: bytes | None = None
    array: Sequence[Any] | None = None
    image_base64: str | None = None
    color_mode: imaging.ColorMode = "rgb"

    @property
    def field(self) -> str:
        """The request field the input came in, for error messages."""
        if self.array is not None:
            return "input.array"
        return "image" if self.image_base64 is None else "input.image_base64"


def decode_source(source: Source, limits: Limits) -> imaging.DecodedInput:
    """Decode ``source`` into float32 (C, H, W), checking the pixel and array limits.

    Raises
    ------
    ConvServeError
        Attributed to the field the input came in (``image``, ``input.array`` or
        ``input.image_base64``) unless it concerns an option such as ``color_mode``.
    """
    if source.array is not None:
        return _array(source.array, limits)
    data = source.data
    if source.image_base64 is not None:
        data = _base64(source.image_base64)
    if not data:
        raise InvalidInputError(
            f"no input was sent: upload an image file ({imaging.ACCEPTED_FORMATS})",
            field="image",
        )
    try:
        # A .npy's values are bounded by the upload's bytes; its H x W by max_pixels.
        return imaging.decode_input(data, color_mode=source.color_mode,
                                    max_pixels=limits.max_pixels)
    except ConvServeError as exc:
        if exc.field is not None:  # an option such as color_mode, already named
            raise
        raise exc.with_field(source.field) from None


def _array(array: Sequence[Any], limits: Limits) -> imaging.DecodedInput:
    try:
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
            values = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(
            "input.array must be nested lists of numbers of equal length, shaped (C, H, W) "
            f"or (H, W): {exc}",
            field="input.array",
        ) from None
    limits.check_array_values(values.size, field="input.array")
    try:
        decoded = imaging.array_input(values)
    except ConvServeError as exc:
        raise exc.with_field("input.array") from None
    _, height, width = decoded.array.shape
    limits.check_pixels(height, width, what=f"input.array of shape {decoded.array.shape}",
                        field="input.array")
    return decoded


def _base64(text: str) -> bytes:
    text = text.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            "input.image_base64 is not valid base64 (standard alphabet, with padding)",
            field="input.image_base64",
        ) from None
