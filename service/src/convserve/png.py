"""A PNG writer for 8-bit feature maps: one vectorised filter pass and a fast deflate.

Encoding the PNGs of a response costs more than the convolution behind it (a 1024x1024 map
took about 45 ms in Pillow at zlib level 1, against a few ms of convolution), and Pillow spends
half of that choosing each row's filter. This writer does what a fast encoder for smooth images
does instead:

- every row gets PNG filter 2 (*Up*: the difference to the row above), computed by one NumPy
  subtraction per band of rows, read in place from the caller's array (any strides, such as
  the (C, H, W) planes of a response seen as (H, W, C)); feature maps are smooth, so the
  differences are small and repeat; the deflate runs band by band too, so the working memory
  is one band (2 MiB) besides the compressed output;
- levels 1-3 deflate with Intel's ISA-L (the ``isal`` package), which is several times faster
  than zlib at level 1 and releases the GIL, so the channels of one response still encode in
  parallel threads; without ``isal`` (a platform with no wheel) zlib's run-length strategy
  (``Z_RLE``) at the same level stands in, slower but smaller than Pillow's default;
- level 0 stores the data (no compression); levels 4-9 use zlib at that level with its default
  strategy, for callers who want fewer bytes and will pay for them.

``bench/bench_encode.py`` measures these choices against Pillow on real feature maps. The files
are standard PNGs (8-bit grey, RGB or RGBA, no interlacing) that every decoder reads.
"""

from __future__ import annotations

import struct
import zlib
from types import ModuleType
from typing import Literal, Protocol

import numpy as np

__all__ = ["DEFLATE_LIBRARY", "encode"]

_isal_zlib: ModuleType | None
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal ships wheels for every platform we deploy on
    _isal_zlib = None

Deflate = Literal["isal", "zlib"]
DEFLATE_LIBRARY: Deflate = "isal" if _isal_zlib is not None else "zlib"
"""What compresses levels 1-3 by default: ``"isal"`` (ISA-L) or ``"zlib"`` (``Z_RLE``)."""

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # samples per pixel -> PNG colour type (grey, RGB, RGBA)
_FILTER_UP = 2
_MAX_CHUNK = 1 << 30  # PNG allows 2**31 - 1 bytes per chunk; IDAT may be split anywhere
# Filtered bytes compressed at a time: the encoder's working memory besides its output.
_BAND_BYTES = 1 << 21


def encode(pixels: np.ndarray, level: int = 1, *, deflate: Deflate | None = None) -> bytes:
    """Encode 8-bit pixels as a PNG file.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (H, W), (H, W, 3) or (H, W, 4)
        Grey, RGB or RGBA; any strides.
    level : int, 0-9
        0 stores the pixels; 1-3 are fast (ISA-L); 4-9 trade time for size (zlib).
    deflate : "isal" or "zlib", optional
        What compresses levels 1-3; :data:`DEFLATE_LIBRARY` by default. The benchmark and the
        tests name it to measure and check both.

    Returns
    -------
    bytes
        The PNG file.

    Raises
    ------
    ValueError
        ``pixels`` or ``level`` outside what is listed above (callers check first and raise
        their own errors; this is the last guard).
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or min(pixels.shape) < 1:
        raise ValueError(f"PNG pixels must be non-empty uint8 (H, W) or (H, W, C), got "
                         f"{pixels.shape} of {pixels.dtype}")
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    if samples not in _COLOR_TYPES:
        raise ValueError(f"PNG pixels need 1, 3 or 4 samples per pixel, got {samples}")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"PNG level={level!r} must be an int in 0..9")
    library = DEFLATE_LIBRARY if deflate is None else deflate
    if library not in ("isal", "zlib") or (library == "isal" and _isal_zlib is None):
        raise ValueError(f"deflate={deflate!r} is not available; use 'zlib'")
    height, width = pixels.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[samples], 0, 0, 0)
    pieces = _compressed_rows(pixels.reshape(height, width, samples),
                              _compressor(level, library))
    parts = [_SIGNATURE, *_chunk(b"IHDR", [header])]
    # IDAT chunks of at most _MAX_CHUNK bytes, made of the compressor's pieces (no copy yet).
    chunk: list[bytes] = []
    size = 0
    for piece in pieces:
        while piece:
            take = piece[: _MAX_CHUNK - size] if size + len(piece) > _MAX_CHUNK else piece
            chunk.append(take)
            size += len(take)
            piece = piece[len(take):]
            if size == _MAX_CHUNK:
                parts += _chunk(b"IDAT", chunk)
                chunk, size = [], 0
    if chunk:
        parts += _chunk(b"IDAT", chunk)
    parts += _chunk(b"IEND", [])
    return b"".join(parts)  # the one copy of the compressed data


class _Compressor(Protocol):
    def compress(self, data: memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _compressed_rows(pixels: np.ndarray, compressor: _Compressor) -> list[bytes]:
    """The scanlines with filter *Up*, compressed band by band.

    Each row is a filter-type byte, then each byte minus the one above (row 0 has zeros above
    it, so it is stored as it is); the subtraction wraps modulo 256 as the PNG specification
    defines. ``pixels`` (H, W, K) may have any strides (a view of (C, H, W) planes included):
    rows are read where they are, and only one band of filtered rows (about
    :data:`_BAND_BYTES`) exists at a time.
    """
    height, width, samples = pixels.shape
    rows_per_band = max(1, _BAND_BYTES // (width * samples + 1))
    band = np.empty((min(rows_per_band, height), width * samples + 1), np.uint8)
    band[:, 0] = _FILTER_UP
    # Subtracting strided rows (such as planes seen as (H, W, C)) is several times slower
    # than copying each sample plane into interleaved rows and subtracting those.
    staging = None
    if not pixels.flags.c_contiguous:
        staging = np.empty((band.shape[0], width, samples), np.uint8)
    above: np.ndarray | None = None
    pieces = []
    for top in range(0, height, rows_per_band):
        count = min(rows_per_band, height - top)
        filtered = band[:count, 1:].reshape(count, width, samples)
        rows = pixels[top : top + count]
        if staging is not None:
            for sample in range(samples):
                staging[:count, :, sample] = rows[:, :, sample]
            rows = staging[:count]
        np.subtract(rows[1:], rows[:-1], out=filtered[1:])
        if above is None:
            filtered[0] = rows[0]
        else:
            np.subtract(rows[0], above, out=filtered[0])
        above = rows[-1].copy()
        pieces.append(compressor.compress(band[:count].reshape(-1).data))
    pieces.append(compressor.flush())
    return [piece for piece in pieces if piece]


def _compressor(level: int, library: Deflate) -> _Compressor:
    """A zlib-stream compressor for ``level`` (see the module docstring)."""
    if 1 <= level <= 3:
        if library == "isal" and _isal_zlib is not None:
            compressor: _Compressor = _isal_zlib.compressobj(level)
            return compressor
        return zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    return zlib.compressobj(level)


def _chunk(kind: bytes, data: list[bytes]) -> list[bytes]:
    """A chunk as pieces: length, type, the data's pieces as they are, CRC."""
    crc = zlib.crc32(kind)
    for piece in data:
        crc = zlib.crc32(piece, crc)
    return [struct.pack(">I", sum(len(piece) for piece in data)) + kind, *data,
            struct.pack(">I", crc)]
