"""Faster exact decoders for the two commonest uploads: libspng for PNG, libjpeg-turbo for JPEG.

Pillow stays the decoder of record: it parses every header (format, mode, size, EXIF, the pixel
limit and its bomb guard) and decodes every file this module declines. This module only decodes
the pixels of files whose result is known to equal Pillow's, bit for bit:

- PNG through ``pyspng`` (libspng): 8-bit RGB and RGBA, 1/2/4/8/16-bit grey and palettes
  without transparency, interlaced or not. Declined: grey+alpha (pyspng cannot return it as
  stored), a ``tRNS`` chunk (Pillow's colour keys and palette alpha), 16-bit colour (Pillow
  keeps the high byte), animations (APNG), and files that may carry an orientation
  (``eXIf``, XMP or ImageMagick's raw EXIF text), because Pillow finds those only after
  decoding the whole file. Those are found by walking the file's chunks (their types and
  every chunk's data but the image data's).
- Most of libspng's time is zlib's inflate. For a non-interlaced PNG of up to
  :data:`_REWRAP_MAX_BYTES` of filtered rows, ISA-L (``isal``, already the PNG writer's
  deflate) inflates the image data about twice as fast; the rows, still filtered, go back to
  libspng as *stored* deflate blocks (a copy at memory speed), which unfilters them. The file
  libspng reads is the upload with its ``IDAT`` chunks replaced, so the pixels are the ones
  libspng gives for the upload itself. A wrong ``IDAT`` CRC hands the original bytes to
  libspng (which refuses them, and Pillow, which ignores it, decodes them); image data that
  does not inflate to exactly the image's rows (a wrong Adler-32, which libspng does not
  check, a stream cut short or followed by more data) goes to Pillow, which decides.
- JPEG through ``simplejpeg`` (libjpeg-turbo, accurate DCT and fancy upsampling, as Pillow
  decodes): grey and YCbCr/RGB files. Declined: CMYK/YCCK, MPO (multi-picture) files.

Any failure of a fast decoder (truncated or corrupt data, a warning libjpeg could recover from)
returns ``None``, so Pillow decodes the same bytes and decides the answer, including its 4xx.
``tests/unit/test_fastpath.py`` proves the pixels equal Pillow's for every kind above.
"""

from __future__ import annotations

import importlib
import struct
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
_isal_zlib = _optional("isal.isal_zlib")

# Chunks after which libspng's answer may not be Pillow's: where a PNG may hold an
# orientation that Pillow reads (its getexif decodes the whole file to look for them), and
# APNG's animation control (Pillow's first frame need not be the IDAT image libspng reads).
# A chance match inside compressed data only costs the fast path.
_PNG_DECLINED_MARKERS = (b"eXIf", b"XML:com.adobe.xmp", b"Raw profile type", b"acTL")
# Filtered rows up to which ISA-L inflates for libspng: the rows and their stored copy exist
# beside libspng's output, so larger images (about 10 MP of RGB) go to libspng directly.
_REWRAP_MAX_BYTES = 32 << 20
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_STORED_BLOCK = 0xFFFF  # bytes per stored deflate block, at most
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
    chunks = _png_chunks(data)
    if chunks is None:
        return None
    grey = _PNG_GREY_MODES.get(mode)
    colour = _PNG_8BIT_MODES.get(mode)
    bit_depth, colour_type = data[24], data[25]  # IHDR, right after the signature
    if colour is not None and colour_type != 3 and bit_depth != 8:
        return None  # 16-bit LA/RGB/RGBA: Pillow keeps only the high byte
    if grey is None and colour is None:
        return None
    try:
        pixels: np.ndarray = pyspng.load(_rewrapped(data, chunks) or data)
    except Exception:  # corrupt or truncated (_BrokenStream too): Pillow reports the 4xx
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


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]] | None:
    """(type, offset of the data, length) of each chunk up to ``IEND``; None when the file
    may carry what Pillow decodes differently (see ``_PNG_DECLINED_MARKERS``) or its chunks
    do not parse (then Pillow reads it and reports what is wrong)."""
    chunks = []
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        start = offset + 8
        if start + length + 4 > len(data):
            return None
        if kind in (b"eXIf", b"acTL") or (kind != b"IDAT" and any(
                marker in data[start:start + length] for marker in _PNG_DECLINED_MARKERS)):
            return None
        chunks.append((kind, start, length))
        if kind == b"IEND":
            return chunks
        offset = start + length + 4
    return None


class _BrokenStream(Exception):
    """The image data is not one zlib stream of the image's rows: Pillow decides (libspng
    does not check the stream's Adler-32, Pillow does)."""


def _rewrapped(data: bytes, chunks: list[tuple[bytes, int, int]]) -> bytes | None:
    """The PNG with its image data inflated by ISA-L and stored again, or None where this
    does not apply (see the module docstring).

    Raises
    ------
    _BrokenStream
        The image data does not inflate to exactly the image's rows.
    """
    if _isal_zlib is None or data[28] != 0:  # interlaced: libspng reads it as it is
        return None
    width, height = struct.unpack_from(">II", data, 16)
    samples = _PNG_SAMPLES.get(data[25])
    if samples is None:
        return None
    expected = height * (1 + (width * samples * data[24] + 7) // 8)
    if expected > _REWRAP_MAX_BYTES:
        return None
    indices = [index for index, (kind, _, _) in enumerate(chunks) if kind == b"IDAT"]
    if not indices or indices != list(range(indices[0], indices[-1] + 1)):
        return None  # no image data, or not in one run: libspng and Pillow say what is wrong
    view = memoryview(data)
    parts = []
    for index in indices:
        _, start, length = chunks[index]
        part = view[start:start + length]
        (crc,) = struct.unpack_from(">I", data, start + length)
        if _isal_zlib.crc32(part, _isal_zlib.crc32(b"IDAT")) != crc:
            return None  # libspng reports it (and hands the file to Pillow)
        parts.append(part)
    try:
        inflater = _isal_zlib.decompressobj()
        rows = inflater.decompress(b"".join(parts), expected + 1)
    except Exception as exc:  # not a valid stream, or a wrong checksum
        raise _BrokenStream(str(exc)) from None
    if len(rows) != expected or not inflater.eof or inflater.unused_data:
        raise _BrokenStream(f"{len(rows)} bytes of rows for {expected}")
    # Stored blocks: a 5-byte header (final flag, length, its complement) before each piece.
    rows_view = memoryview(rows)
    stored: list[bytes | memoryview] = [b"\x78\x01"]
    for offset in range(0, expected, _STORED_BLOCK):
        piece = rows_view[offset:offset + _STORED_BLOCK]
        final = offset + _STORED_BLOCK >= expected
        stored += [struct.pack("<BHH", final, len(piece), 0xFFFF ^ len(piece)), piece]
    stored.append(struct.pack(">I", _isal_zlib.adler32(rows)))
    crc = _isal_zlib.crc32(b"IDAT")
    for block in stored:
        crc = _isal_zlib.crc32(block, crc)
    first, last = chunks[indices[0]], chunks[indices[-1]]
    return b"".join([view[:first[1] - 8], struct.pack(">I", sum(map(len, stored))), b"IDAT",
                     *stored, struct.pack(">I", crc), view[last[1] + last[2] + 4:]])


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
