"""Bytes to float32 arrays and back: every pixel conversion the service does lives here.

Decoding (``decode_input``) turns an upload into a float32 array of shape ``(C, H, W)``:

- Formats: PNG (and APNG), JPEG (baseline, progressive, CMYK, MPO), WebP, BMP, TIFF, GIF,
  and NumPy ``.npy``, recognised by their content, never by a file name. Animated files give
  their first frame. Other formats Pillow could read (EPS, PSD, ICO, AVIF, ...) are refused, so
  hostile uploads only ever reach these decoders.
- Scaling: 8-bit samples become ``k / 255`` and 16-bit samples ``k / 65535``, read straight
  from the 16-bit data (never through 8 bits). Bilevel (1-bit) pixels become 0.0 and 1.0.
  32-bit float TIFFs (Pillow mode ``"F"``) are used as stored, like ``.npy`` arrays, and must
  be finite. 32-bit integer images (mode ``"I"``) are read as 16-bit samples and must hold
  values in ``[0, 65535]``. Pillow reads 16-bit-per-channel RGB(A) files as 8-bit, so only
  grey images keep 16 bits. ICC profiles are not applied: values are used as stored.
- Orientation: the EXIF orientation (1-8) is applied, as ``ImageOps.exif_transpose`` does;
  unreadable EXIF data counts as no orientation, as in web browsers.
- ``color_mode``:

  ====================  ===============  ===============  =============  =================
  file's mode           ``rgb`` (C=3)    ``gray`` (C=1)   ``rgba`` (C=4) ``keep``
  ====================  ===============  ===============  =============  =================
  L, 1, I;16, I, F      L, L, L          L                L, L, L, 1     L
  LA                    L, L, L          L                L, L, L, A     L, A
  RGB, CMYK, YCbCr      R, G, B          luma             R, G, B, 1     R, G, B
  RGBA                  R, G, B          luma             R, G, B, A     R, G, B, A
  P (palette)           R, G, B          luma             R, G, B, A     R, G, B (A if tRNS)
  ====================  ===============  ===============  =============  =================

  ``rgb`` and ``gray`` drop alpha without compositing (the stored colours stay as they are;
  a transparent palette entry shows its palette colour). Luma is ITU-R 601-2 as Pillow's
  ``"L"`` conversion computes it (``L = R*299/1000 + G*587/1000 + B*114/1000``, rounded to
  8 bits). CMYK is converted by Pillow (inverted Adobe CMYK JPEGs included). An L or RGB
  image with a tRNS colour key gets that alpha under ``rgba`` and ``keep``.
- Limits: the pixel count is read from the header (Pillow opens files lazily) and checked
  against ``max_pixels`` before any pixel is decoded.

Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays on as a second line
of defence. It warns above ``MAX_IMAGE_PIXELS`` and raises above twice that, inside
``Image.open``, before this module sees the size; so both become ``PayloadTooLargeError``, the
warning is turned into an error for the duration of ``Image.open`` only (under a lock, because
``warnings.catch_warnings`` changes process-wide state) and never reaches the log. For the guard
never to refuse an image the configured limit allows, ``MAX_IMAGE_PIXELS`` is raised to
``max_pixels`` when it is lower (it is never lowered and never disabled); with the default
limit of 50 MP (below Pillow's 89.5 MP) it is left alone. After ``Image.open`` the guard can
only fire again for a size with the same pixel count (TIFF tiles), which the header check has
already passed. Pillow's other warnings while reading a header or EXIF (odd metadata) are
ignored, as browsers ignore such metadata. ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set: a
truncated file is an error.

Encoding: ``to_pixels`` maps float maps to 8-bit pixels; ``encode_png``, ``encode_pngs``,
``compose_png``, ``grid_png``, ``zip_pngs`` (``zip_files``) and ``encode_npy`` make the
response bodies. PNGs are written by :mod:`convserve.png` (filter *Up* in one NumPy pass, ISA-L
deflate), several times faster than Pillow's writer at its fastest level for a few % more
bytes; ``bench/bench_encode.py`` measures both. The deflate releases the GIL, so the channels
of one response are encoded in parallel threads.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import math
import re
import threading
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageDraw, ImageFont, UnidentifiedImageError

from convserve import jsonbody, png
from convserve.cores import available_cores
from convserve.errors import InvalidArgumentError, InvalidInputError, PayloadTooLargeError

__all__ = [
    "ACCEPTED_FORMATS",
    "COLOR_MODES",
    "NORMALIZE_MODES",
    "ColorMode",
    "DecodedInput",
    "NormalizeMode",
    "array_input",
    "channel_png_name",
    "compose_png",
    "decode_image",
    "decode_input",
    "decode_npy",
    "encode_npy",
    "encode_png",
    "encode_pngs",
    "grid_png",
    "to_pixels",
    "zip_files",
    "zip_pngs",
]

ColorMode: TypeAlias = Literal["rgb", "gray", "rgba", "keep"]
NormalizeMode: TypeAlias = Literal["auto", "clip", "minmax", "abs", "symmetric"]
COLOR_MODES: tuple[ColorMode, ...] = ("rgb", "gray", "rgba", "keep")
NORMALIZE_MODES: tuple[NormalizeMode, ...] = ("auto", "clip", "minmax", "abs", "symmetric")

# Pillow format ids that Image.open may try; JPEG's opener also yields MPO (camera JPEGs).
_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
ACCEPTED_FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF (first frame) or a NumPy .npy array"
_ACCEPTED = f"Accepted formats: {ACCEPTED_FORMATS}."

NPY_MAGIC = b"\x93NUMPY"
_PIXELS_ENV = "CONVSERVE_MAX_PIXELS"
_VALUES_ENV = "CONVSERVE_MAX_ARRAY_VALUES"

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

# EXIF orientation -> the same transposition as ImageOps.exif_transpose, on (H, W, ...) arrays.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.swapaxes(0, 1),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270 (90 degrees clockwise)
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90 (90 degrees counter-clockwise)
}

# Image.open and getexif run with warnings filtered, which is process-wide state.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodedInput:
    """An input ready for convolution, with where it came from.

    Attributes
    ----------
    array : ndarray of float32, shape (C, H, W)
        8- and 16-bit pixels scaled to ``[0, 1]``; arrays as sent, cast to float32.
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
    """

    array: np.ndarray
    source_format: str
    source_mode: str
    channel_names: tuple[str, ...]
    bit_depth: int

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-ready summary: shape, format, mode, bit depth and channel names."""
        return {
            "shape": [int(n) for n in self.array.shape],
            "format": self.source_format,
            "mode": self.source_mode,
            "bit_depth": self.bit_depth,
            "channels": list(self.channel_names),
        }


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode_input(
    data: bytes,
    *,
    color_mode: ColorMode = "rgb",
    max_pixels: int,
    max_values: int | None = None,
) -> DecodedInput:
    """Decode an upload: a ``.npy`` array (by its magic bytes) or an image.

    Parameters
    ----------
    data : bytes
        The uploaded file.
    color_mode : {"rgb", "gray", "rgba", "keep"}
        Channels wanted from an image (see the module docstring); arrays are used as sent.
    max_pixels : int
        Largest ``H * W`` accepted, for images and arrays (``CONVSERVE_MAX_PIXELS``).
    max_values : int, optional
        Largest ``C * H * W`` of a ``.npy`` array (``CONVSERVE_MAX_ARRAY_VALUES``); no such
        limit when omitted.

    Returns
    -------
    DecodedInput
        With ``array`` of float32, shape (C, H, W).

    Raises
    ------
    InvalidInputError
        The bytes are not a usable image or array (422).
    PayloadTooLargeError
        Over ``max_pixels`` or ``max_values`` (413).
    """
    if data[: len(NPY_MAGIC)] == NPY_MAGIC:
        return decode_npy(data, max_values=max_values, max_pixels=max_pixels)
    return decode_image(data, color_mode=color_mode, max_pixels=max_pixels)


def decode_image(data: bytes, *, color_mode: ColorMode = "rgb", max_pixels: int) -> DecodedInput:
    """Decode PNG, JPEG, WebP, BMP, TIFF or GIF bytes to float32 ``(C, H, W)``.

    Parameters
    ----------
    data : bytes
    color_mode : {"rgb", "gray", "rgba", "keep"}
    max_pixels : int
        Largest ``W * H`` accepted, checked from the header before decoding.

    Returns
    -------
    DecodedInput
        ``array`` of float32, shape (C, H, W): C is 3, 1, 4 for ``rgb``, ``gray``, ``rgba``
        and the file's own channel count for ``keep``.
    """
    if color_mode not in COLOR_MODES:
        raise InvalidArgumentError(
            f"color_mode={color_mode!r} is not one of {', '.join(COLOR_MODES)}",
            field="color_mode",
        )
    if max_pixels < 1:
        raise InvalidArgumentError(f"max_pixels={max_pixels} must be >= 1")
    im = _open_image(data, max_pixels)
    try:
        fmt = im.format or "unknown"
        mode = im.mode
        width, height = im.size
        if width * height > max_pixels:
            raise PayloadTooLargeError(
                f"The image is {width}x{height} = {width * height:,} pixels; the limit is "
                f"{max_pixels:,} pixels. Send a smaller image or raise {_PIXELS_ENV}."
            )
        try:
            im.load()
            orientation = _orientation(im)
            hwc, names, bit_depth = _channels(im, color_mode)
        except (InvalidInputError, InvalidArgumentError, MemoryError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(exc, max_pixels) from None
        except Exception as exc:  # any failure of a decoder on these bytes is a bad upload
            raise InvalidInputError(
                f"The {_format_name(fmt)} file could not be decoded ({_reason(exc)}); it is "
                f"truncated or corrupt. {_ACCEPTED}"
            ) from None
    finally:
        im.close()
    transpose = _ORIENT.get(orientation)
    if transpose is not None:
        hwc = transpose(hwc)
    scale = {8: 255.0, 16: 65535.0, 1: 255.0}.get(bit_depth)
    array = _to_chw_float32(hwc, scale, alpha_last=len(names) > hwc.shape[2])
    return DecodedInput(array, fmt, mode, names, bit_depth)


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    """``Image.open`` (header only) with Pillow's bomb guard and warnings handled."""
    if not data:
        raise InvalidInputError(f"The upload is empty (0 bytes). {_ACCEPTED}")
    with _WARNINGS_LOCK, warnings.catch_warnings():
        guard = Image.MAX_IMAGE_PIXELS
        if guard is not None and guard < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels  # never fight the configured limit
        # Header parsing warns about odd metadata; browsers ignore it, and so do we. Only
        # the bomb warning matters, and it becomes an error here rather than a log line.
        warnings.filterwarnings("ignore", module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(exc, max_pixels) from None
        except MemoryError:
            raise
        except UnidentifiedImageError:
            raise InvalidInputError(_unidentified(data)) from None
        except Exception as exc:  # a decoder choking on a header is a bad upload too
            fmt = _sniff(data)
            raise InvalidInputError(
                f"The {_format_name(fmt) if fmt else 'image'} header could not be read "
                f"({_reason(exc)}); the file is truncated or corrupt. {_ACCEPTED}"
            ) from None


def _bomb_error(exc: BaseException, max_pixels: int) -> PayloadTooLargeError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "more pixels than allowed"
    return PayloadTooLargeError(
        f"The image header claims {size}, over Pillow's decompression-bomb guard; the limit "
        f"is {max_pixels:,} pixels. Send a smaller image or raise {_PIXELS_ENV} "
        f"(the guard follows it)."
    )


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation 1-8 of a loaded image (1 when absent or unreadable)."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        try:
            value = im.getexif().get(ExifTags.Base.Orientation, 1)
        except Exception:  # corrupt EXIF: ignore it, as browsers do
            return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _channels(im: Image.Image, color_mode: ColorMode) -> tuple[np.ndarray, tuple[str, ...], int]:
    """Pixels as (H, W, K) with the names of the C channels wanted, and the bit depth.

    K is C, or C - 1 when the wanted alpha channel is missing from the file (``alpha_last``:
    the caller fills it with 1.0).
    """
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(im)
        if mode == "I":
            low, high = int(gray.min()), int(gray.max())
            if low < 0 or high > 65535:
                raise InvalidInputError(
                    f"The 32-bit integer image holds values in [{low}, {high}]; only values "
                    "in [0, 65535] (16-bit) are accepted. Send such data as a .npy array."
                )
        return _gray_layout(gray.astype(np.uint16, copy=False), None, color_mode) + (16,)
    if mode == "F":
        floats = np.asarray(im, dtype=np.float32)
        _check_finite(floats[None], f"The float {im.format} image")
        return _gray_layout(floats, None, color_mode) + (32,)

    base = _base_image(im, color_mode)
    bit_depth = 1 if mode == "1" else 8
    if base.mode in ("L", "LA"):
        arr = np.asarray(base)
        gray = arr if arr.ndim == 2 else arr[:, :, 0]
        alpha = arr[:, :, 1] if arr.ndim == 3 else None
        return _gray_layout(gray, alpha, color_mode) + (bit_depth,)
    if color_mode == "gray":
        return np.asarray(base.convert("L"))[:, :, None], ("L",), bit_depth
    rgb = np.asarray(base)
    if color_mode == "rgb" or (color_mode == "keep" and base.mode == "RGB"):
        return rgb[:, :, :3], ("R", "G", "B"), bit_depth
    return rgb, ("R", "G", "B", "A"), bit_depth


def _base_image(im: Image.Image, color_mode: ColorMode) -> Image.Image:
    """``im`` as L, LA, RGB or RGBA (8 bits), keeping alpha where the file has it."""
    mode = im.mode
    wants_alpha = color_mode in ("rgba", "keep")
    if mode in ("P", "PA"):
        # Converting a palette with tRNS straight to RGB/L warns in Pillow; go through RGBA.
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if mode in ("L", "RGB"):
        if wants_alpha and "transparency" in im.info:
            return im.convert(mode + "A")
        return im
    if mode in ("LA", "RGBA"):
        return im
    if mode == "La":
        return im.convert("LA")
    if mode == "RGBa":
        return im.convert("RGBA")
    if mode == "1":
        return im.convert("L")
    try:
        return im.convert("RGB")  # CMYK, YCbCr, RGBX, HSV, ...
    except ValueError:
        raise InvalidInputError(
            f"Images in Pillow mode {mode!r} cannot be converted to RGB here; send it as "
            f"8-bit RGB, RGBA, L or LA. {_ACCEPTED}"
        ) from None


def _gray_layout(
    gray: np.ndarray, alpha: np.ndarray | None, color_mode: ColorMode
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Arrange a grey plane (H, W) and optional alpha (H, W) as (H, W, K) for ``color_mode``."""
    g = gray[:, :, None]
    if color_mode == "gray":
        return g, ("L",)
    if color_mode == "rgb":
        return np.broadcast_to(g, (*gray.shape, 3)), ("R", "G", "B")
    if color_mode == "rgba":
        rgb = np.broadcast_to(g, (*gray.shape, 3))
        if alpha is None:
            return rgb, ("R", "G", "B", "A")
        return np.concatenate([rgb, alpha[:, :, None]], axis=2), ("R", "G", "B", "A")
    if alpha is None:
        return g, ("L",)
    return np.stack([gray, alpha], axis=2), ("L", "A")


def _to_chw_float32(hwc: np.ndarray, scale: float | None, *, alpha_last: bool) -> np.ndarray:
    """(H, W, K) samples to C-contiguous float32 (C, H, W), divided by ``scale``.

    With ``alpha_last`` an opaque alpha plane (1.0) is appended, so C = K + 1.
    """
    height, width, k = hwc.shape
    out = np.empty((k + int(alpha_last), height, width), dtype=np.float32)
    for c in range(k):
        if scale is None:
            out[c] = hwc[:, :, c]
        else:
            np.divide(hwc[:, :, c], np.float32(scale), out=out[c], dtype=np.float32)
    if alpha_last:
        out[k] = 1.0
    return out


def decode_npy(
    data: bytes, *, max_values: int | None, max_pixels: int | None = None
) -> DecodedInput:
    """Decode a NumPy ``.npy`` file of shape (C, H, W) or (H, W), never unpickling anything.

    The header is parsed and checked (dtype, shape, limits) before the data is read.

    Parameters
    ----------
    data : bytes
        A ``.npy`` file, format version 1.0 or 2.0.
    max_values : int or None
        Largest ``C * H * W`` (``CONVSERVE_MAX_ARRAY_VALUES``); None for no such limit.
    max_pixels : int, optional
        Largest ``H * W`` (``CONVSERVE_MAX_PIXELS``).

    Returns
    -------
    DecodedInput
        ``array`` of float32, shape (C, H, W) ((H, W) becomes (1, H, W)), values as sent.
        dtype may be bool, int, uint or float; int64 values beyond 2**24 lose precision in
        float32.
    """
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise InvalidInputError(
                f"The .npy file has format version {version[0]}.{version[1]}; versions 1.0 "
                "and 2.0 (what numpy.save writes for numeric arrays) are accepted."
            )
    except InvalidInputError:
        raise
    except Exception as exc:  # a malformed header, whatever numpy says about it
        raise InvalidInputError(
            f"The .npy header could not be read ({_reason(exc)}); send the output of "
            "numpy.save of a numeric array of shape (C, H, W) or (H, W)."
        ) from None
    _check_dtype(dtype, "The .npy array")
    shape = tuple(int(n) for n in shape)
    chw = _check_shape(shape, "The .npy array")
    _check_limits(chw, max_values=max_values, max_pixels=max_pixels, what="The .npy array")
    offset = stream.tell()
    count = math.prod(shape)
    needed = count * dtype.itemsize
    if len(data) - offset < needed:
        raise InvalidInputError(
            f"The .npy file is truncated: shape {shape} of {dtype} needs {needed:,} bytes of "
            f"data after the header, and {len(data) - offset:,} came."
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape, order="F" if fortran else "C").reshape(chw)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        out = np.ascontiguousarray(array, dtype=np.float32)
    _check_finite(out, "The .npy array")
    return DecodedInput(out, "NPY", "array", _index_names(chw[0]), 0)


def array_input(
    array: npt.ArrayLike, *, max_values: int | None = None, max_pixels: int | None = None
) -> DecodedInput:
    """Wrap an array sent in JSON (nested lists or an ndarray) as a ``DecodedInput``.

    Parameters
    ----------
    array : array_like of shape (C, H, W) or (H, W)
        Numbers (bool, int or float), all finite.
    max_values, max_pixels : int, optional
        Largest ``C * H * W`` and ``H * W``.

    Returns
    -------
    DecodedInput
        ``array`` of float32, shape (C, H, W), ``source_format="ARRAY"``.
    """
    try:
        raw = np.asarray(array)
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise InvalidInputError(
            f"The input array is not a regular (C, H, W) or (H, W) grid of numbers "
            f"({_reason(exc)})."
        ) from None
    _check_dtype(raw.dtype, "The input array")
    chw = _check_shape(raw.shape, "The input array")
    _check_limits(chw, max_values=max_values, max_pixels=max_pixels, what="The input array")
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        out = np.ascontiguousarray(raw.reshape(chw), dtype=np.float32)
    _check_finite(out, "The input array")
    return DecodedInput(out, "ARRAY", "array", _index_names(chw[0]), 0)


def _check_dtype(dtype: np.dtype[Any], what: str) -> None:
    if dtype.kind not in "biuf" or dtype.names is not None or dtype.subdtype is not None:
        kinds = {
            "O": "Python objects",
            "c": "complex numbers",
            "V": "structured records",
            "U": "strings",
            "S": "bytes",
            "M": "datetimes",
            "m": "timedeltas",
        }
        described = kinds.get(dtype.kind, "non-numeric values")
        raise InvalidInputError(
            f"{what} has dtype {dtype} ({described}); only bool, integer and real float "
            "dtypes are accepted."
        )


def _check_shape(shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(shape) not in (2, 3):
        raise InvalidInputError(
            f"{what} has shape {tuple(shape)} ({len(shape)}-D); it must be (C, H, W) or (H, W)."
        )
    chw = (1, *shape) if len(shape) == 2 else shape
    if min(chw) < 1:
        raise InvalidInputError(f"{what} has shape {tuple(shape)}; every size must be >= 1.")
    return (int(chw[0]), int(chw[1]), int(chw[2]))


def _check_limits(
    chw: tuple[int, int, int], *, max_values: int | None, max_pixels: int | None, what: str
) -> None:
    values = chw[0] * chw[1] * chw[2]
    if max_values is not None and values > max_values:
        raise PayloadTooLargeError(
            f"{what} of shape {chw} holds {values:,} values; the limit is {max_values:,}. "
            f"Send a smaller array or raise {_VALUES_ENV}."
        )
    pixels = chw[1] * chw[2]
    if max_pixels is not None and pixels > max_pixels:
        raise PayloadTooLargeError(
            f"{what} of shape {chw} is {chw[1]}x{chw[2]} = {pixels:,} pixels; the limit is "
            f"{max_pixels:,} pixels. Send a smaller array or raise {_PIXELS_ENV}."
        )


def _check_finite(array: np.ndarray, what: str) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    nan = int(np.isnan(array).sum())
    inf = int(array.size - finite.sum()) - nan
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise InvalidInputError(
        f"{what} holds {nan} NaN and {inf} infinite values in float32 (the first at index "
        f"{first}); every value must be a finite number within float32's range."
    )


def _index_names(channels: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(channels))


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


# --------------------------------------------------------------------------------------------
# Floats to pixels
# --------------------------------------------------------------------------------------------


def to_pixels(maps: np.ndarray, mode: NormalizeMode, *, range_preserving: bool) -> np.ndarray:
    """Map float feature maps to 8-bit pixels, channel by channel.

    Parameters
    ----------
    maps : ndarray of shape (C, H, W)
        Real values (float32 from the engines).
    mode : {"auto", "clip", "minmax", "abs", "symmetric"}
        - ``clip``: ``round(255 * clip(v, 0, 1))``; a pixel ``k / 255`` maps back to ``k``.
        - ``minmax``: ``[min, max]`` of each channel to ``[0, 255]``; a constant channel is 0.
        - ``abs``: ``|v| / max|v|`` of each channel to ``[0, 255]``; an all-zero channel is 0.
        - ``symmetric``: ``127.5 + 127.5 * v / max|v|``: 0 is mid-grey 128, ``+max|v|`` is
          255 and ``-max|v|`` is 0; an all-zero channel is 128.
        - ``auto``: ``clip`` when ``range_preserving`` else ``minmax``.
        Rounding is to nearest, halves to even. Non-finite values: NaN is 0, +inf is 255 and
        -inf is 0; the ranges of ``minmax``, ``abs`` and ``symmetric`` use finite values only.
    range_preserving : bool
        Whether the layer maps ``[0, 1]`` inputs into ``[0, 1]`` (non-negative weights summing
        to 1 per output channel).

    Returns
    -------
    ndarray of uint8, shape (C, H, W)
    """
    if mode not in NORMALIZE_MODES:
        raise InvalidArgumentError(
            f"normalize={mode!r} is not one of {', '.join(NORMALIZE_MODES)}", field="normalize"
        )
    values = np.asarray(maps)
    if values.ndim != 3 or values.dtype.kind not in "biuf":
        raise InvalidArgumentError(
            f"to_pixels needs real maps of shape (C, H, W), got shape {values.shape} of "
            f"{values.dtype}"
        )
    if values.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, mapped like inf
            values = values.astype(np.float32)
    if mode == "auto":
        mode = "clip" if range_preserving else "minmax"
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    where = None if all_finite else finite
    out = np.empty(values.shape, dtype=np.uint8)
    for c in range(values.shape[0]):
        out[c] = _channel_pixels(values[c], mode, None if where is None else where[c])
    if not all_finite:
        out[np.isposinf(values)] = 255
        out[np.isneginf(values) | np.isnan(values)] = 0
    return out


def _channel_pixels(v: np.ndarray, mode: str, finite: np.ndarray | None) -> np.ndarray:
    """One channel (H, W) of float32 to rounded pixel values in [0, 255] (float32)."""
    scaled: np.ndarray
    if finite is not None:
        v = np.where(finite, v, np.float32(0))
    if mode == "clip":
        scaled = np.clip(v, 0, 1) * np.float32(255)
    elif finite is not None and not finite.any():
        return np.zeros(v.shape, np.float32)
    elif mode == "minmax":
        lo = float(np.min(v, where=finite, initial=np.inf) if finite is not None else v.min())
        hi = float(np.max(v, where=finite, initial=-np.inf) if finite is not None else v.max())
        if not hi > lo:
            return np.zeros(v.shape, np.float32)
        scaled = _affine(v, -lo, 255.0 / (hi - lo), 0.0, bound=hi - lo)
    else:
        peak = float(np.max(np.abs(v)))  # non-finite values were zeroed above
        if peak == 0.0:
            return np.full(v.shape, 128 if mode == "symmetric" else 0, np.float32)
        if mode == "abs":
            scaled = _affine(np.abs(v), 0.0, 255.0 / peak, 0.0, bound=peak)
        else:
            scaled = _affine(v, 0.0, 127.5 / peak, 127.5, bound=peak)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled


def _affine(
    v: np.ndarray, shift: float, scale: float, offset: float, *, bound: float
) -> np.ndarray:
    """``(v + shift) * scale + offset`` as float32; ``bound`` >= ``max|v + shift|``.

    Shifting first keeps a narrow range far from zero precise; float64 is used only where
    float32 would overflow.
    """
    work: type[np.floating[Any]] = np.float32 if bound < 1e38 else np.float64
    result: np.ndarray = np.add(v, work(shift), dtype=work)
    result *= work(scale)
    if offset:
        result += work(offset)
    return result.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_png(pixels: np.ndarray, *, level: int = 1) -> bytes:
    """Encode 8-bit pixels as one PNG.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (H, W), (H, W, 3) or (H, W, 4)
        Grey (L), RGB or RGBA.
    level : int, 0-9
        0 stores the pixels uncompressed; 1-3 compress them fast, 4-9 smaller and slower
        (see :mod:`convserve.png`).

    Returns
    -------
    bytes
        The PNG file.
    """
    _check_level(level)
    if pixels.dtype != np.uint8 or not (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))
    ):
        raise InvalidArgumentError(
            f"encode_png needs uint8 pixels of shape (H, W), (H, W, 3) or (H, W, 4), got "
            f"shape {pixels.shape} of {pixels.dtype}"
        )
    return png.encode(pixels, level)


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise InvalidArgumentError(f"PNG level={level!r} must be an int in 0..9")


def _check_planes(pixels: np.ndarray, what: str) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or min(pixels.shape) < 1:
        raise InvalidArgumentError(
            f"{what} needs uint8 pixels of shape (C, H, W), got shape {pixels.shape} of "
            f"{pixels.dtype}"
        )


@functools.cache
def _default_pool() -> concurrent.futures.ThreadPoolExecutor:
    """A process-wide pool for PNG encoding, one thread per available core."""
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=available_cores(), thread_name_prefix="convserve-png"
    )


def encode_pngs(
    planes: np.ndarray,
    *,
    level: int = 1,
    executor: concurrent.futures.Executor | None = None,
) -> list[bytes]:
    """Encode each channel as its own grey PNG, in parallel threads.

    Parameters
    ----------
    planes : ndarray of uint8, shape (C, H, W)
    level : int, 0-9
    executor : concurrent.futures.Executor, optional
        Where to encode (Pillow releases the GIL while compressing). Without one, a
        process-wide pool of one thread per core is used when C > 1. Never pass an executor
        whose threads may be waiting on this call (a worker encoding into its own pool can
        deadlock when every worker does so).

    Returns
    -------
    list of bytes, length C
        PNG files in channel order.
    """
    _check_planes(planes, "encode_pngs")
    _check_level(level)
    encode = functools.partial(encode_png, level=level)
    if executor is None:
        if planes.shape[0] == 1:
            return [encode(planes[0])]
        executor = _default_pool()
    return list(executor.map(encode, planes))


def compose_png(pixels: np.ndarray, *, level: int = 1) -> bytes:
    """Compose 1, 3 or 4 channels into one L, RGB or RGBA PNG.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (C, H, W) with C in (1, 3, 4)
    level : int, 0-9

    Returns
    -------
    bytes
        The PNG file, of size W x H.
    """
    _check_planes(pixels, "compose_png")
    _check_level(level)
    channels = pixels.shape[0]
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise InvalidArgumentError(
            f"format=image composes 1, 3 or 4 channels into one PNG (L, RGB or RGBA), but this "
            f"output has {channels} channels; use format=grid for one montage of all channels, "
            "format=zip for one PNG per channel, or format=png with channel=k for one.",
            field="format",
        )
    return png.encode(pixels[0] if channels == 1 else np.moveaxis(pixels, 0, -1), level)


def grid_png(
    pixels: np.ndarray,
    *,
    level: int = 1,
    columns: int | None = None,
    gap: int = 2,
    background: int = 255,
    labels: bool = False,
) -> bytes:
    """A montage of every channel as grey tiles, in row-major channel order.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (C, H, W)
    level : int, 0-9
    columns : int, optional
        Tiles per row; ``ceil(sqrt(C))`` by default, at most C.
    gap : int
        Pixels between tiles (none around the edge).
    background : int, 0-255
        Grey value of the gaps and of the empty cells of the last row.
    labels : bool
        Write each channel's index in the top-left corner of its tile.

    Returns
    -------
    bytes
        An L-mode PNG of width ``cols * W + (cols - 1) * gap`` and height
        ``rows * H + (rows - 1) * gap`` where ``rows = ceil(C / cols)``.
    """
    _check_planes(pixels, "grid_png")
    _check_level(level)
    channels, height, width = pixels.shape
    if columns is None:
        columns = math.ceil(math.sqrt(channels))
    if columns < 1 or gap < 0 or not 0 <= background <= 255:
        raise InvalidArgumentError(
            f"grid_png needs columns >= 1, gap >= 0 and background in 0..255, got "
            f"columns={columns}, gap={gap}, background={background}"
        )
    columns = min(columns, channels)
    rows = math.ceil(channels / columns)
    canvas = np.full(
        (rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap),
        background,
        dtype=np.uint8,
    )
    for index in range(channels):
        top = (index // columns) * (height + gap)
        left = (index % columns) * (width + gap)
        tile = pixels[index]
        if labels:
            tile = _label(tile, str(index))
        canvas[top : top + height, left : left + width] = tile
    return png.encode(canvas, level)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` (H, W) with ``text`` in white on black in its top-left corner."""
    image = Image.fromarray(np.ascontiguousarray(tile))
    draw = ImageDraw.Draw(image)
    font = _label_font()
    left, top, right, bottom = draw.textbbox((2, 1), text, font=font)
    draw.rectangle((0, 0, right + 2, bottom + 1), fill=0)
    draw.text((2, 1), text, fill=255, font=font)
    return np.asarray(image)


@functools.cache
def _label_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default()


def channel_png_name(index: int) -> str:
    """``channel_007.png``: the ZIP entry of channel ``index`` (``zip_pngs``)."""
    return f"channel_{index:03d}.png"


def zip_pngs(pngs: Sequence[bytes], manifest: dict[str, Any]) -> bytes:
    """A ZIP of ``channel_000.png``, ``channel_001.png``, ... and ``manifest.json``.

    Parameters
    ----------
    pngs : sequence of bytes
        One PNG per channel, in channel order.
    manifest : dict
        JSON-ready description of the output, written as given (``channel_png_name(i)`` is
        the name of channel ``i``'s file, for the manifest to refer to).

    Returns
    -------
    bytes
        The ZIP file. PNGs are stored (they are compressed already), the manifest deflated;
        timestamps are fixed, so equal inputs give equal bytes.
    """
    return zip_files([(channel_png_name(i), png) for i, png in enumerate(pngs)], manifest)


def zip_files(files: Sequence[tuple[str, bytes]], manifest: dict[str, Any]) -> bytes:
    """A ZIP of ``files`` (stored, in order) and ``manifest.json`` (deflated).

    Parameters
    ----------
    files : sequence of (str, bytes)
        Entry names (``/`` separates folders) and contents, already compressed (PNGs).
    manifest : dict
        JSON-ready description of the files, written as given.

    Returns
    -------
    bytes
        The ZIP file; timestamps are fixed, so equal inputs give equal bytes.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            archive.writestr(_zip_entry(name, zipfile.ZIP_STORED), data)
        text = jsonbody.dumps(manifest, indent=2).decode() + "\n"
        archive.writestr(_zip_entry("manifest.json", zipfile.ZIP_DEFLATED), text)
    return buffer.getvalue()


def _zip_entry(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def encode_npy(array: np.ndarray) -> bytes:
    """A ``.npy`` file of ``array`` as float32 (written without pickle).

    Parameters
    ----------
    array : ndarray of real numbers, any shape (the API sends (C, H, W))

    Returns
    -------
    bytes
    """
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"encode_npy needs real numbers, got dtype {values.dtype}")
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, as in a cast
        single = np.ascontiguousarray(values, dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, single, allow_pickle=False)
    return buffer.getvalue()
