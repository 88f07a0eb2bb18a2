"""Faster exact decoders for the two commonest uploads: libspng for PNG, libjpeg-turbo for JPEG.

Pillow stays the decoder of record: it parses every header (format, mode, size, EXIF, the pixel
limit and its bomb guard) and decodes every file this module declines. This module only decodes
the pixels of files whose result is known to equal Pillow's, bit for bit:

- PNG through ``pyspng`` (libspng): 8-bit RGB and RGBA, 1/2/4/8/16-bit grey and palettes
  without transparency, interlaced or not. Declined: grey+alpha (pyspng cannot return it as
  stored), a ``tRNS`` chunk (Pillow's colour keys and palette alpha), 16-bit colour (Pillow
  keeps the high byte), animations (APNG), and files that may carry an orientation
  (``eXIf``, XMP or ImageMagick's raw EXIF text), because Pillow finds those only after
  decoding the whole file.
- JPEG through ``simplejpeg`` (libjpeg-turbo, accurate DCT and fancy upsampling, as Pillow
  decodes): grey and YCbCr/RGB files. Declined: CMYK/YCCK, MPO (multi-picture) files.

Any failure of a fast decoder (truncated or corrupt data, a warning libjpeg could recover from)
returns ``None``, so Pillow decodes the same bytes and decides the answer, including its 4xx.
``tests/unit/test_fastpath.py`` proves the pixels equal Pillow's for every kind above.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = ["FastPixels", "decode_pixels"]



def _optional(name: str) -> ModuleType | None:
    """The module, or None where it is not installed (Pillow then decodes everything)."""
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - wheels exist for every platform we deploy on
        return None


# Imported by name: neither package ships type information.
_pyspng = _optional("pyspng")
_simplejpeg = _optional("simplejpeg")

# Chunks after which libspng's answer may not be Pillow's: where a PNG may hold an
# orientation that Pillow reads (its getexif decodes the whole file to look for them), and
# APNG's animation control (Pillow's first frame need not be the IDAT image libspng reads).
# A chance match inside compressed data only costs the fast path.
_PNG_DECLINED_MARKERS = (b"eXIf", b"XML:com.adobe.xmp", b"Raw profile type", b"acTL")
_PNG_GREY_MODES = {"1": "L", "L": "L", "I;16": "I;16", "I;16B": "I;16", "I": "I;16"}
_PNG_8BIT_MODES = {"RGB": "RGB", "RGBA": "RGBA", "P": "RGB"}


class FastPixels(NamedTuple):
    """Pixels decoded by a fast decoder, in the layout Pillow's ``np.asarray`` would give."""

    pixels: np.ndarray
    """uint8 (H, W) for L, (H, W, 3) RGB, (H, W, 4) RGBA; uint16 (H, W) for I;16."""
    mode: str
    """``"L"``, ``"RGB"``, ``"RGBA"`` or ``"I;16"``: what the pixels are."""
    decoder: str
    """``"libspng"`` or ``"libjpeg-turbo"``."""


def decode_pixels(data: bytes, im: Image.Image) -> FastPixels | None:
    """Decode ``data`` with a fast decoder when the result is known to equal Pillow's.

    Parameters
    ----------
    data : bytes
        The whole file.
    im : PIL.Image.Image
        ``Image.open(data)``, not loaded: its format, mode and info decide eligibility.

    Returns
    -------
    FastPixels or None
        None when only Pillow can decode this file exactly, or when the fast decoder failed.
    """
    if im.format == "PNG" and _pyspng is not None:
        return _png(data, im, _pyspng)
    if im.format == "JPEG" and _simplejpeg is not None:
        return _jpeg(data, im, _simplejpeg)
    return None


def _png(data: bytes, im: Image.Image, pyspng: ModuleType) -> FastPixels | None:
    mode = im.mode
    if "transparency" in im.info:
        return None
    if any(marker in data for marker in _PNG_DECLINED_MARKERS):
        return None
    grey = _PNG_GREY_MODES.get(mode)
    colour = _PNG_8BIT_MODES.get(mode)
    bit_depth, colour_type = data[24], data[25]  # IHDR, right after the signature
    if colour is not None and colour_type != 3 and bit_depth != 8:
        return None  # 16-bit LA/RGB/RGBA: Pillow keeps only the high byte
    if grey is None and colour is None:
        return None
    try:
        pixels: np.ndarray = pyspng.load(data)
    except Exception:  # corrupt or truncated: Pillow decodes it and reports the 4xx
        return None
    if grey == "I;16":
        # libspng gives 16-bit grey as grey+alpha; the grey plane is the stored samples.
        if pixels.dtype != np.uint16 or pixels.shape != (im.size[1], im.size[0], 2):
            return None
        return FastPixels(pixels[:, :, 0], "I;16", "libspng")
    target = str(grey or colour)
    shape = (im.size[1], im.size[0], *{"L": (), "RGB": (3,), "RGBA": (4,)}[target])
    if pixels.dtype != np.uint8 or pixels.shape != shape:
        return None
    return FastPixels(pixels, target, "libspng")


def _jpeg(data: bytes, im: Image.Image, simplejpeg: ModuleType) -> FastPixels | None:
    colorspace = {"RGB": "RGB", "L": "GRAY"}.get(im.mode)
    if colorspace is None:
        return None
    try:
        pixels: np.ndarray = simplejpeg.decode_jpeg(
            data, colorspace=colorspace, fastdct=False, fastupsample=False, strict=True
        )
    except Exception:  # corrupt, truncated or recoverable-with-loss: Pillow decides
        return None
    if colorspace == "GRAY":
        pixels = pixels[:, :, 0]
    if pixels.shape[:2] != (im.size[1], im.size[0]):
        return None
    return FastPixels(pixels, im.mode, "libjpeg-turbo")
