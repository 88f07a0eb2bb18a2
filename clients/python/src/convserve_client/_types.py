"""Type aliases of the public signatures, and the NOT_GIVEN sentinel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeAlias

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence
    from typing import Any

    import httpx
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

__all__ = [
    "NOT_GIVEN",
    "ArrayInput",
    "ConvolveFormat",
    "ImageInput",
    "IntOrPair",
    "KernelInput",
    "LayersFormat",
    "NotGiven",
    "PaddingInput",
    "TimeoutTypes",
]


class NotGiven:
    """Marks an argument left out, where ``None`` means something (``timeout=None``: wait
    forever)."""

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

TimeoutTypes: TypeAlias = "float | httpx.Timeout | None"
"""Seconds for every phase, an ``httpx.Timeout`` per phase, or ``None`` for no limit."""

ArrayInput: TypeAlias = "npt.NDArray[np.generic] | Sequence[Any]"
"""A numpy array (or nested lists, or anything ``numpy.asarray`` takes: a CPU torch tensor)."""

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | ArrayInput"
"""What an endpoint takes as its input.

- a path (``str`` or ``pathlib.Path``) to an image file (PNG, JPEG, WebP, BMP, TIFF, GIF) or
  a ``.npy`` array;
- the ``bytes`` of such a file;
- a Pillow image (sent as a lossless PNG; mode ``F`` is sent as its float32 values);
- an array of shape ``(C, H, W)`` or ``(H, W)``, used as sent (no scaling to [0, 1]); sent
  as a ``.npy`` upload, or as JSON lists with ``transport="json"``.
"""

KernelInput: TypeAlias = "ArrayInput | Mapping[str, Any]"
"""A weight array ``(c_out, c_in/groups, k_h, k_w)`` (OIHW, or HWIO with ``layout="HWIO"``)
or a mapping ``{"weight": ..., "bias": ..., "layout": ...}`` (a ``kernel.json``)."""

IntOrPair: TypeAlias = "int | tuple[int, int] | Sequence[int]"

PaddingInput: TypeAlias = "int | Sequence[int] | Literal['same', 'valid']"
"""``p``, ``(p_h, p_w)``, ``(top, bottom, left, right)``, ``"same"`` or ``"valid"``."""

ConvolveFormat: TypeAlias = Literal["json", "array", "npy", "png", "image", "grid", "zip"]
LayersFormat: TypeAlias = Literal["json", "npy", "zip", "onnx"]
