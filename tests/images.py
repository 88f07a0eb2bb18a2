"""Odd image and array files, made with Pillow and NumPy, for decoding tests (unit and HTTP).

``odd_files()`` gives ``{filename: bytes}``; ``ODD_FILE_EXPECTATIONS[filename]`` says what
``convserve.imaging.decode_input`` does with it under the default limits (50 MP) and the default
``color_mode="rgb"``: ``status`` 200 with ``shape`` (C, H, W) and ``mode`` (Pillow's mode of the
file, or ``"array"``), 422 (``InvalidInputError``) or 413 (``PayloadTooLargeError``). The unit
tests check every entry, so API tests can upload them all and trust the table::

    from tests.images import ODD_FILE_EXPECTATIONS, odd_files

    for name, data in odd_files().items():
        expected = ODD_FILE_EXPECTATIONS[name]
        ...  # POST data as the "image" file; expect expected.status (and expected.shape)

Every image is small (at most 64x48 stored pixels, 60 kB in all), made with fixed seeds, so the
bytes are the same on every run with the same Pillow. The helpers that make one kind of file
(``png_with_header_size``, ``png_with_exif_orientation``, ...) are public for variants.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "DATA",
    "ODD_FILE_EXPECTATIONS",
    "PALETTE",
    "PALETTE_ALPHA",
    "QUADRANT_COLORS",
    "Expected",
    "PickleTripwire",
    "encode",
    "odd_files",
    "pickle_tripwire_count",
    "png_with_exif_orientation",
    "png_with_header_size",
    "quadrants",
    "rgb_pixels",
]

DATA = Path(__file__).parent / "data"
HEIGHT, WIDTH = 24, 32

# The 4 colours of palette.png / palette_trns.png (indices 0-3 in turn), and their tRNS alphas.
PALETTE = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0]
PALETTE_ALPHA = bytes([0, 128, 255, 255])

# Top-left, top-right, bottom-left, bottom-right: far apart, so JPEG cannot blur one into another.
QUADRANT_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))


@dataclass(frozen=True)
class Expected:
    """What ``decode_input(data, max_pixels=50_000_000)`` gives for one odd file."""

    status: int
    shape: tuple[int, int, int] | None = None
    mode: str | None = None


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """``image`` saved as ``fmt`` with Pillow's ``params``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def rgb_pixels(height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """Random uint8 RGB pixels of shape (height, width, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def quadrants(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """uint8 RGB (height, width, 3): four flat blocks in ``QUADRANT_COLORS`` order."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    for (rows, cols), color in zip(
        ((slice(0, h), slice(0, w)), (slice(0, h), slice(w, None)),
         (slice(h, None), slice(0, w)), (slice(h, None), slice(w, None))),
        QUADRANT_COLORS,
        strict=True,
    ):
        pixels[rows, cols] = color
    return pixels


def png_with_header_size(width: int, height: int) -> bytes:
    """A 1x1 grey PNG whose IHDR claims ``width`` x ``height``: a decompression bomb's header.

    Decoding it for real would need ``width * height`` bytes and then fail as truncated, so
    a 413 (rather than a 422) shows that the size was refused from the header alone.
    """
    png = encode(Image.new("L", (1, 1), 0), "PNG")
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


def png_with_exif_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    """A lossless PNG of uint8 (H, W, 3) ``pixels`` with EXIF orientation 1-8 (eXIf chunk)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(pixels), "PNG", exif=exif)


class PickleTripwire:
    """Unpickling this calls ``_fire``: proof that a ``.npy`` with objects was loaded."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_fire, ())


_FIRED: list[bool] = []


def _fire() -> None:
    _FIRED.append(True)


def pickle_tripwire_count() -> int:
    """How many ``PickleTripwire`` objects were unpickled in this process so far."""
    return len(_FIRED)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _images() -> dict[str, bytes]:
    rgb = rgb_pixels()
    rgb_image = Image.fromarray(rgb)
    gray = Image.fromarray(rgb[:, :, 1])
    files: dict[str, bytes] = {}

    files["rgb.png"] = encode(rgb_image, "PNG")
    files["gray.png"] = encode(gray, "PNG")
    files["rgba.png"] = encode(Image.fromarray(np.dstack([rgb, rgb[:, :, 0]])), "PNG")
    files["la.png"] = encode(Image.fromarray(np.dstack([rgb[:, :, 1], rgb[:, :, 2]])), "PNG")
    # tRNS colour keys: the colour of the top-left pixel is transparent.
    files["gray_trns.png"] = encode(gray, "PNG", transparency=int(rgb[0, 0, 1]))
    files["rgb_trns.png"] = encode(rgb_image, "PNG", transparency=tuple(int(v) for v in rgb[0, 0]))
    files["bilevel.png"] = encode(Image.fromarray(rgb[:, :, 0] > 127), "PNG")
    # 16-bit grey: values 0..65535 whose low bytes all differ, so 8 bits could not hold them.
    ramp = (np.arange(HEIGHT * WIDTH, dtype=np.uint32).reshape(HEIGHT, WIDTH) * 85 + 7) % 65536
    files["gray16.png"] = encode(Image.fromarray(ramp.astype(np.uint16)), "PNG")

    indices = (np.arange(HEIGHT * WIDTH, dtype=np.uint8) % 4).reshape(HEIGHT, WIDTH)
    palette = Image.frombytes("P", (WIDTH, HEIGHT), indices.tobytes())
    palette.putpalette(PALETTE)
    files["palette.png"] = encode(palette, "PNG")
    files["palette_trns.png"] = encode(palette, "PNG", transparency=PALETTE_ALPHA)

    files["cmyk.jpg"] = encode(Image.fromarray(quadrants()).convert("CMYK"), "JPEG", quality=95)
    files["progressive.jpg"] = encode(rgb_image, "JPEG", quality=90, progressive=True)
    files["baseline.jpg"] = encode(rgb_image, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6
    files["exif_rotated.jpg"] = encode(Image.fromarray(quadrants()), "JPEG", quality=95, exif=exif)
    files["exif_rotated.png"] = png_with_exif_orientation(rgb, 6)

    frames = [Image.new("RGB", (WIDTH, HEIGHT), color) for color in QUADRANT_COLORS[:3]]
    files["animated.gif"] = encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0
    )
    files["animated.png"] = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    files["animated.webp"] = encode(
        frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True
    )
    files["lossless.webp"] = encode(rgb_image, "WEBP", lossless=True)
    files["image.bmp"] = encode(rgb_image, "BMP")
    files["image.tiff"] = encode(rgb_image, "TIFF")
    files["exif_rotated.tiff"] = encode(rgb_image, "TIFF", tiffinfo={0x0112: 6})
    floats = (np.arange(HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH) - 100) / 50
    files["float.tiff"] = encode(Image.fromarray(floats), "TIFF")
    nan_floats = floats.copy()
    nan_floats[3, 4] = np.nan
    files["float_nan.tiff"] = encode(Image.fromarray(nan_floats), "TIFF")
    files["int32.tiff"] = encode(Image.fromarray(ramp.astype(np.int32)), "TIFF")
    files["int32_wide.tiff"] = encode(Image.fromarray(ramp.astype(np.int32) * 4 - 5), "TIFF")

    big = encode(Image.fromarray(rgb_pixels(48, 64, seed=1)), "PNG")
    files["truncated.png"] = big[: len(big) // 2]
    jpeg = encode(Image.fromarray(rgb_pixels(48, 64, seed=1)), "JPEG", quality=90)
    files["truncated.jpg"] = jpeg[: len(jpeg) // 2]
    files["header_only.png"] = big[:40]
    files["bomb.png"] = png_with_header_size(30_000, 30_000)
    files["bomb_warning_range.png"] = png_with_header_size(10_000, 10_000)
    files["icon.ico"] = encode(rgb_image, "ICO")
    files["image.pcx"] = encode(rgb_image, "PCX")

    files["text.txt"] = b"This is a text file, not an image.\n"
    files["empty.bin"] = b""
    files["data.json"] = b'{"array": [[[0, 1], [2, 3]]]}'
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("image.png", files["rgb.png"])
    files["archive.zip"] = archive.getvalue()
    return files


def _arrays() -> dict[str, bytes]:
    chw = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6) / 7 - 3
    files = {
        "chw_float32.npy": _npy(chw),
        "hw_float64.npy": _npy(np.linspace(-1, 1, 30).reshape(5, 6)),
        "int16.npy": _npy(np.arange(-15, 15, dtype=np.int16).reshape(5, 6)),
        "uint16.npy": _npy(np.arange(65505, 65535, dtype=np.uint16).reshape(1, 5, 6)),
        "bool.npy": _npy(np.eye(5, 6, dtype=bool)),
        "fortran.npy": _npy(np.asfortranarray(chw)),
        "big_endian.npy": _npy(chw.astype(">f4")),
        "object.npy": _npy(np.array([[PickleTripwire(), 1]], dtype=object)),
        "complex.npy": _npy(np.ones((2, 3), dtype=np.complex64)),
        "structured.npy": _npy(np.zeros((2, 3), dtype=[("x", "<f4"), ("y", "<i4")])),
        "strings.npy": _npy(np.array([["a", "b"], ["c", "d"]])),
        "4d.npy": _npy(np.zeros((1, 2, 3, 4), dtype=np.float32)),
        "1d.npy": _npy(np.zeros(6, dtype=np.float32)),
        "nan.npy": _npy(np.array([[0.0, np.nan], [1.0, 2.0]], dtype=np.float32)),
        "inf.npy": _npy(np.array([[0.0, 1e39], [1.0, 2.0]], dtype=np.float64)),
    }
    files["truncated.npy"] = files["chw_float32.npy"][:-8]
    return files


@functools.cache
def _odd_files() -> dict[str, bytes]:
    return {**_images(), **_arrays()}


def odd_files() -> dict[str, bytes]:
    """Every odd file, ``{filename: bytes}`` (a fresh dict; see ``ODD_FILE_EXPECTATIONS``)."""
    return dict(_odd_files())


_RGB = (3, HEIGHT, WIDTH)
ODD_FILE_EXPECTATIONS: dict[str, Expected] = {
    "rgb.png": Expected(200, _RGB, "RGB"),
    "gray.png": Expected(200, _RGB, "L"),
    "rgba.png": Expected(200, _RGB, "RGBA"),
    "la.png": Expected(200, _RGB, "LA"),
    "gray_trns.png": Expected(200, _RGB, "L"),
    "rgb_trns.png": Expected(200, _RGB, "RGB"),
    "bilevel.png": Expected(200, _RGB, "1"),
    "gray16.png": Expected(200, _RGB, "I;16"),
    "palette.png": Expected(200, _RGB, "P"),
    "palette_trns.png": Expected(200, _RGB, "P"),
    "cmyk.jpg": Expected(200, _RGB, "CMYK"),
    "progressive.jpg": Expected(200, _RGB, "RGB"),
    "baseline.jpg": Expected(200, _RGB, "RGB"),
    "exif_rotated.jpg": Expected(200, (3, WIDTH, HEIGHT), "RGB"),
    "exif_rotated.png": Expected(200, (3, WIDTH, HEIGHT), "RGB"),
    "animated.gif": Expected(200, _RGB, "P"),
    "animated.png": Expected(200, _RGB, "RGB"),
    "animated.webp": Expected(200, _RGB, "RGB"),
    "lossless.webp": Expected(200, _RGB, "RGB"),
    "image.bmp": Expected(200, _RGB, "RGB"),
    "image.tiff": Expected(200, _RGB, "RGB"),
    "exif_rotated.tiff": Expected(200, (3, WIDTH, HEIGHT), "RGB"),
    "float.tiff": Expected(200, _RGB, "F"),
    "float_nan.tiff": Expected(422),
    "int32.tiff": Expected(200, _RGB, "I"),
    "int32_wide.tiff": Expected(422),
    "truncated.png": Expected(422),
    "truncated.jpg": Expected(422),
    "header_only.png": Expected(422),
    "bomb.png": Expected(413),
    "bomb_warning_range.png": Expected(413),
    "icon.ico": Expected(422),
    "image.pcx": Expected(422),
    "text.txt": Expected(422),
    "empty.bin": Expected(422),
    "data.json": Expected(422),
    "archive.zip": Expected(422),
    "chw_float32.npy": Expected(200, (2, 5, 6), "array"),
    "hw_float64.npy": Expected(200, (1, 5, 6), "array"),
    "int16.npy": Expected(200, (1, 5, 6), "array"),
    "uint16.npy": Expected(200, (1, 5, 6), "array"),
    "bool.npy": Expected(200, (1, 5, 6), "array"),
    "fortran.npy": Expected(200, (2, 5, 6), "array"),
    "big_endian.npy": Expected(200, (2, 5, 6), "array"),
    "object.npy": Expected(422),
    "complex.npy": Expected(422),
    "structured.npy": Expected(422),
    "strings.npy": Expected(422),
    "4d.npy": Expected(422),
    "1d.npy": Expected(422),
    "nan.npy": Expected(422),
    "inf.npy": Expected(422),
    "truncated.npy": Expected(422),
}
