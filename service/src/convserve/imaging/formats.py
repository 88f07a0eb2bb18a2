"""What uploads are accepted, what a decoded input carries, and how to describe a bad upload.

The accepted formats are named once here (``ACCEPTED_FORMATS``); every message that lists them
(decoding errors, the request path's "no input" error) uses this sentence.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

import numpy as np

from convserve.limits import env_name

__all__ = [
    "ACCEPTED_FORMATS",
    "COLOR_MODES",
    "NPY_MAGIC",
    "ColorMode",
    "DecodedInput",
]

ColorMode: TypeAlias = Literal["rgb", "gray", "rgba", "keep"]
COLOR_MODES: tuple[ColorMode, ...] = get_args(ColorMode)

# Pillow format ids that Image.open may try; JPEG's opener also yields MPO (camera JPEGs).
_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
ACCEPTED_FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF (first frame) or a NumPy .npy array"
_ACCEPTED = f"Accepted formats: {ACCEPTED_FORMATS}."

NPY_MAGIC = b"\x93NUMPY"
_PIXELS_ENV = env_name("max_pixels")
_VALUES_ENV = env_name("max_array_values")

# Magic numbers, only to say what an unusable upload is (Pillow still decides what decodes).
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"II+\x00", 0, "TIFF"),
    (b"MM\x00+", 0, "TIFF"),
    (b"WEBP", 8, "WEBP"),
)
_FOREIGN: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"PK\x05\x06", 0, "an empty ZIP archive"),
    (b"%PDF", 0, "a PDF document"),
    (b"\x1f\x8b", 0, "gzip-compressed data"),
    (b"ftypavif", 4, "an AVIF image (not accepted)"),
    (b"ftypheic", 4, "a HEIC image (not accepted)"),
    (b"ftypmif1", 4, "a HEIF image (not accepted)"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000 image (not accepted)"),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream (not accepted)"),
    (b"8BPS", 0, "a Photoshop document (not accepted)"),
    (b"\x00\x00\x01\x00", 0, "an ICO icon (not accepted)"),
    (b"%!PS", 0, "a PostScript file (not accepted)"),
    (b"<svg", 0, "an SVG drawing (not accepted; rasterise it first)"),
)


@dataclass(frozen=True)
class DecodedInput:
    """An input ready for convolution, with where it came from.

    An image keeps the samples it was decoded to (8 or 16 bits, 3 bytes per RGB pixel) and
    makes float32 from them on demand: all of it (``array``, made once) or a band of rows
    (``rows``), so a large image can be convolved band by band without ever holding the whole
    float32 copy (12 bytes per RGB pixel).

    Attributes
    ----------
    samples : ndarray
        float32 of shape (C, H, W), used as it is (arrays, float TIFFs), when ``scale`` is
        None and ``planar``; else samples of shape (H, W, K), any strides, that become
        ``sample / scale`` (or are copied when ``scale`` is None), with an opaque alpha plane
        (1.0) appended when C = K + 1.
    source_format : str
        ``"PNG"``, ``"JPEG"``, ``"MPO"``, ``"WEBP"``, ``"BMP"``, ``"TIFF"``, ``"GIF"``,
        ``"NPY"`` (an uploaded ``.npy``) or ``"ARRAY"`` (an array sent in JSON).
    source_mode : str
        Pillow's mode of the file (``"RGB"``, ``"CMYK"``, ``"P"``, ``"I;16"``, ``"LA"``, ...)
        or ``"array"``.
    channel_names : tuple of str, length C
        ``("R", "G", "B")``, ``("L",)``, ``("R", "G", "B", "A")``, ``("L", "A")``, or
        ``("0", "1", ...)`` for arrays.
    bit_depth : int
        Bits per stored sample: 8 or 16; 1 for bilevel images, 32 for float TIFFs (used as
        stored) and 0 for arrays.
    decoder : str
        What decoded the pixels: ``"pillow"``, ``"libspng"``, ``"libjpeg-turbo"``, or
        ``"numpy"`` for arrays. Not part of :meth:`to_dict` (the pixels are the same).
    scale : float or None
        255 or 65535 for 8- and 16-bit samples.
    planar : bool
        ``samples`` is already the float32 (C, H, W) array.
    """

    samples: np.ndarray
    source_format: str
    source_mode: str
    channel_names: tuple[str, ...]
    bit_depth: int
    decoder: str = "numpy"
    scale: float | None = None
    planar: bool = True

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the float32 input."""
        if self.planar:
            c, h, w = self.samples.shape
            return int(c), int(h), int(w)
        h, w = self.samples.shape[:2]
        return len(self.channel_names), int(h), int(w)

    @functools.cached_property
    def array(self) -> np.ndarray:
        """The whole input, float32 of shape (C, H, W), C-contiguous (made once)."""
        if self.planar:
            return self.samples
        return self.rows(0, self.shape[1])

    def rows(self, top: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[top, stop)`` of :attr:`array`, made from the samples without making it.

        Parameters
        ----------
        top, stop : int
            0 <= top <= stop <= H.
        out : ndarray of float32, shape (C, stop - top, W), optional
            Where to write them.

        Returns
        -------
        ndarray of float32, shape (C, stop - top, W)
        """
        channels, _, width = self.shape
        if out is None:
            out = np.empty((channels, stop - top, width), dtype=np.float32)
        if self.planar:
            np.copyto(out, self.samples[:, top:stop])
            return out
        band = self.samples[top:stop]
        stored = band.shape[2]
        for c in range(stored):
            if self.scale is None:
                out[c] = band[:, :, c]
            else:
                np.divide(band[:, :, c], np.float32(self.scale), out=out[c], dtype=np.float32)
        if channels > stored:
            out[stored:] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-ready summary: shape, format, mode, bit depth and channel names."""
        return {
            "shape": list(self.shape),
            "format": self.source_format,
            "mode": self.source_mode,
            "bit_depth": self.bit_depth,
            "channels": list(self.channel_names),
        }


def _sniff(data: bytes) -> str | None:
    for magic, offset, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _format_name(fmt: str) -> str:
    return {"WEBP": "WebP", "MPO": "JPEG (MPO)"}.get(fmt, fmt)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    # Pillow's messages name our in-memory buffer ("<_io.BytesIO object at 0x...>"): noise.
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unidentified(data: bytes) -> str:
    """Say what the bytes that Pillow did not recognise look like."""
    fmt = _sniff(data)
    if fmt is not None:
        return (
            f"The upload starts like a {_format_name(fmt)} file but its header is truncated "
            f"or corrupt ({len(data):,} bytes). {_ACCEPTED}"
        )
    for magic, offset, name in _FOREIGN:
        if data[offset : offset + len(magic)] == magic:
            return f"The upload is {name}, not an image. {_ACCEPTED}"
    head = data[:64].lstrip()
    if head[:1] in (b"{", b"[") and _is_text(data):
        return (
            "The upload is JSON text, not an image; send JSON with Content-Type "
            f"application/json and the input as input.array or input.image_base64. {_ACCEPTED}"
        )
    if _is_text(data):
        return f"The upload is text ({len(data):,} bytes), not an image. {_ACCEPTED}"
    return (
        f"The upload ({len(data):,} bytes, starting with {data[:8].hex(' ')}) is not an "
        f"image in an accepted format. {_ACCEPTED}"
    )


def _is_text(data: bytes) -> bool:
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
