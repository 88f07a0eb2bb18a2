"""Image bytes to float32 ``(C, H, W)``: Pillow, header checks, EXIF orientation, colour modes.

``decode_input`` turns an upload into a float32 array of shape ``(C, H, W)``:

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
"""

from __future__ import annotations

import io
import re
import threading
import warnings
import zlib
from collections.abc import Callable

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from convserve.errors import InvalidArgumentError, InvalidInputError, PayloadTooLargeError
from convserve.imaging import fastpath
from convserve.imaging.arrays import _check_finite, decode_npy, read_npy_header
from convserve.imaging.formats import (
    _ACCEPTED,
    _PILLOW_FORMATS,
    _PIXELS_ENV,
    COLOR_MODES,
    NPY_MAGIC,
    ColorMode,
    DecodedInput,
    _format_name,
    _reason,
    _sniff,
    _unidentified,
)

__all__ = ["decode_image", "decode_input", "probe_input"]

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


def decode_image(
    data: bytes,
    *,
    color_mode: ColorMode = "rgb",
    max_pixels: int,
    fast_decoders: bool = True,
) -> DecodedInput:
    """Decode PNG, JPEG, WebP, BMP, TIFF or GIF bytes to float32 ``(C, H, W)``.

    Parameters
    ----------
    data : bytes
    color_mode : {"rgb", "gray", "rgba", "keep"}
    max_pixels : int
        Largest ``W * H`` accepted, checked from the header before decoding.
    fast_decoders : bool
        Let libspng and libjpeg-turbo decode the files whose pixels they give exactly as
        Pillow does (:mod:`convserve.imaging.fastpath`); False decodes with Pillow alone.

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
            fast = fastpath.decode_pixels(data, im) if fast_decoders else None
            if fast is None:
                im.load()
                orientation = _orientation(im)
                hwc, names, bit_depth = _channels(im, color_mode)
                decoder = "pillow"
            else:
                # A PNG with any orientation is never decoded fast; a JPEG's EXIF is in its
                # header, which Image.open has read.
                orientation = 1 if fmt == "PNG" else _orientation(im)
                hwc, names = _fast_layout(fast, color_mode)
                bit_depth = 16 if fast.mode == "I;16" else 1 if mode == "1" else 8
                decoder = fast.decoder
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
    # float32 is made from these samples when asked for (DecodedInput.array or .rows).
    return DecodedInput(hwc, fmt, mode, names, bit_depth, decoder, scale, planar=False)


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
    if color_mode == "gray" and base.mode in ("RGB", "RGBA"):
        return np.asarray(base.convert("L"))[:, :, None], ("L",), bit_depth
    return _layout(np.asarray(base), base.mode, color_mode) + (bit_depth,)


def _fast_layout(
    fast: fastpath.FastPixels, color_mode: ColorMode
) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`_layout` of a fast decoder's pixels; luma is Pillow's own ``"L"`` conversion."""
    if color_mode == "gray" and fast.mode in ("RGB", "RGBA"):
        return np.asarray(Image.fromarray(fast.pixels).convert("L"))[:, :, None], ("L",)
    return _layout(fast.pixels, fast.mode, color_mode)


def _layout(
    pixels: np.ndarray, mode: str, color_mode: ColorMode
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Pixels of ``mode`` L, LA, I;16, RGB or RGBA as (H, W, K) for ``color_mode``.

    ``color_mode="gray"`` is for grey modes only (colour needs Pillow's luma, done by callers).
    """
    if mode in ("L", "LA", "I;16"):
        gray = pixels if pixels.ndim == 2 else pixels[:, :, 0]
        alpha = pixels[:, :, 1] if pixels.ndim == 3 else None
        return _gray_layout(gray, alpha, color_mode)
    if color_mode == "rgb" or (color_mode == "keep" and mode == "RGB"):
        return pixels[:, :, :3], ("R", "G", "B")
    return pixels, ("R", "G", "B", "A")


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


def probe_input(data: bytes) -> tuple[int, int, int] | None:
    """(bands, H, W) of an upload read from its header (image or ``.npy``), without decoding.

    ``bands`` is the file's own channel count. None when the header cannot be read: the decoder
    then refuses the bytes with a 422 of its own.
    """
    if data[:6] == b"\x93NUMPY":
        try:
            dims, _, _ = read_npy_header(io.BytesIO(data))
        except Exception:  # a broken .npy header, or another version: the decoder says why
            return None
        if len(dims) == 2:
            return 1, dims[0], dims[1]
        if len(dims) == 3:
            return dims[0], dims[1], dims[2]
        return None
    png = _png_header(data)
    if png is not None:
        return png
    # Pillow warns about odd metadata and (between its guard and twice it) about bombs: the
    # same filters as the decoder's, under its lock (the filters are process-wide state).
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                bands = len(im.getbands())
        except Exception:  # any header Pillow cannot read: the decoder
            return None  # refuses these bytes and says why
    return bands, height, width


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BANDS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
"""Bands Pillow opens a PNG colour type with: L or I;16, RGB, P, LA, RGBA."""


def _png_header(data: bytes) -> tuple[int, int, int] | None:
    """(bands, H, W) of a PNG from its IHDR chunk, as :func:`probe_input` reads it through
    Pillow, which also decompresses chunks such as an ICC profile before the first IDAT; None
    (Pillow decides) for anything else: not a PNG, an IHDR that is malformed or fails its
    CRC, or a size past Pillow's bomb guard."""
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    bands = _PNG_BANDS.get(data[25])
    guard = Image.MAX_IMAGE_PIXELS
    if bands is None or not width or not height or (guard is not None and width * height > guard):
        return None
    return bands, height, width
