"""The fast decoders (libspng, libjpeg-turbo) give Pillow's pixels exactly, or step aside.

Every PNG and JPEG of ``tests/images.py``, plus kinds Pillow cannot write (interlaced PNGs,
16-bit colour, 2- and 4-bit grey, grey+alpha at 16 bits), is decoded twice in every colour
mode: with the fast decoders and with Pillow alone. The answers must be identical: the same
float32 array bit for bit and the same metadata, or the same error with the same message.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pyspng  # type: ignore[import-untyped]
import pytest
from PIL import Image

from convserve import imaging
from convserve.errors import ConvServeError
from convserve.imaging import fastpath
from tests.images import encode, odd_files, rgb_pixels

LIMIT = 50_000_000

# Adam7: (first row, first column, row step, column step) of each pass.
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
          (1, 0, 2, 1))


def raw_png(samples: np.ndarray, color_type: int, bit_depth: int, *, interlace: bool) -> bytes:
    """A PNG written by hand: filter 0 rows, optionally Adam7-interlaced.

    ``samples`` is (H, W) or (H, W, K) of integers below ``2 ** bit_depth``.
    """
    height, width = samples.shape[:2]
    grid = samples.reshape(height, width, -1)

    def scanlines(image: np.ndarray) -> bytes:
        rows = []
        for row in image:
            flat = row.reshape(-1).astype(np.uint32)
            if bit_depth == 16:
                data = flat.astype(">u2").tobytes()
            elif bit_depth == 8:
                data = flat.astype(np.uint8).tobytes()
            else:
                per_byte = 8 // bit_depth
                padded = np.zeros(-(-flat.size // per_byte) * per_byte, np.uint32)
                padded[: flat.size] = flat
                groups = padded.reshape(-1, per_byte)
                shifts = bit_depth * np.arange(per_byte - 1, -1, -1, dtype=np.uint32)
                data = (groups << shifts).sum(axis=1).astype(np.uint8).tobytes()
            rows.append(b"\x00" + data)
        return b"".join(rows)

    if interlace:
        raw = b"".join(
            scanlines(grid[top::dy, left::dx])
            for top, left, dy, dx in _ADAM7
            if grid[top::dy, left::dx].size
        )
    else:
        raw = scanlines(grid)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind))
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _extra_files() -> dict[str, bytes]:
    rgb = rgb_pixels(37, 29, seed=3)  # odd sizes: partial Adam7 blocks
    gray = rgb[:, :, 1]
    ramp16 = ((np.arange(37 * 29, dtype=np.uint32).reshape(37, 29) * 2311 + 5) % 65536)
    files = {
        "interlaced_rgb.png": raw_png(rgb, 2, 8, interlace=True),
        "interlaced_rgba.png": raw_png(np.dstack([rgb, gray]), 6, 8, interlace=True),
        "interlaced_gray.png": raw_png(gray, 0, 8, interlace=True),
        "interlaced_la.png": raw_png(np.dstack([gray, rgb[:, :, 0]]), 4, 8, interlace=True),
        "interlaced_gray16.png": raw_png(ramp16, 0, 16, interlace=True),
        "gray16_raw.png": raw_png(ramp16, 0, 16, interlace=False),
        "gray4.png": raw_png(gray >> 4, 0, 4, interlace=False),
        "gray2_interlaced.png": raw_png(gray >> 6, 0, 2, interlace=True),
        "gray1_interlaced.png": raw_png(gray >> 7, 0, 1, interlace=True),
        "rgb16.png": raw_png(np.dstack([ramp16] * 3), 2, 16, interlace=False),
        "la16.png": raw_png(np.dstack([ramp16, ramp16[::-1]]), 4, 16, interlace=True),
        "rgba16.png": raw_png(np.dstack([ramp16] * 4), 6, 16, interlace=False),
        "gray.jpg": encode(Image.fromarray(gray), "JPEG", quality=90),
        "gray_progressive.jpg": encode(Image.fromarray(gray), "JPEG", progressive=True),
        "subsampled_444.jpg": encode(Image.fromarray(rgb), "JPEG", quality=95, subsampling=0),
        "subsampled_422.jpg": encode(Image.fromarray(rgb), "JPEG", quality=75, subsampling=1),
        "photo_restart.jpg": encode(Image.fromarray(rgb), "JPEG", quality=85, optimize=True),
    }
    first, second = Image.fromarray(rgb), Image.fromarray(rgb[::-1].copy())
    files["apng_default_image.png"] = encode(first, "PNG", save_all=True,
                                             append_images=[second], default_image=True)
    files["truncated_interlaced.png"] = files["interlaced_rgb.png"][:-300]
    files["truncated_progressive.jpg"] = files["gray_progressive.jpg"][:-200]
    return files


FILES = {
    name: data
    for name, data in {**odd_files(), **_extra_files()}.items()
    if name.endswith((".png", ".jpg"))
}

# The files the fast path must take (the others go to Pillow: tRNS, animation, orientation,
# 16-bit colour, CMYK, corrupt data).
FAST = {
    "rgb.png": "libspng",
    "gray.png": "libspng",
    "rgba.png": "libspng",
    "bilevel.png": "libspng",
    "gray16.png": "libspng",
    "palette.png": "libspng",
    "interlaced_rgb.png": "libspng",
    "interlaced_rgba.png": "libspng",
    "interlaced_gray.png": "libspng",
    "interlaced_gray16.png": "libspng",
    "gray16_raw.png": "libspng",
    "gray4.png": "libspng",
    "gray2_interlaced.png": "libspng",
    "gray1_interlaced.png": "libspng",
    "baseline.jpg": "libjpeg-turbo",
    "progressive.jpg": "libjpeg-turbo",
    "exif_rotated.jpg": "libjpeg-turbo",
    "gray.jpg": "libjpeg-turbo",
    "gray_progressive.jpg": "libjpeg-turbo",
    "subsampled_444.jpg": "libjpeg-turbo",
    "subsampled_422.jpg": "libjpeg-turbo",
    "photo_restart.jpg": "libjpeg-turbo",
}


def _outcome(data: bytes, color_mode: imaging.ColorMode, fast: bool) -> object:
    try:
        decoded = imaging.decode_image(
            data, color_mode=color_mode, max_pixels=LIMIT, fast_decoders=fast
        )
    except ConvServeError as exc:
        return (type(exc).__name__, exc.status, str(exc))
    return decoded


@pytest.mark.parametrize("color_mode", imaging.COLOR_MODES)
@pytest.mark.parametrize("name", sorted(FILES))
def test_fast_decoders_give_pillows_answer(name: str, color_mode: imaging.ColorMode) -> None:
    fast = _outcome(FILES[name], color_mode, True)
    pillow = _outcome(FILES[name], color_mode, False)
    if not isinstance(pillow, imaging.DecodedInput):
        assert fast == pillow  # the same 4xx, word for word
        return
    assert isinstance(fast, imaging.DecodedInput)
    assert fast.array.dtype == pillow.array.dtype == np.float32
    assert fast.array.shape == pillow.array.shape
    assert fast.array.flags.c_contiguous
    assert np.array_equal(fast.array, pillow.array)
    assert fast.to_dict() == pillow.to_dict()
    assert pillow.decoder == "pillow"
    assert fast.decoder == FAST.get(name, "pillow")


def test_every_fast_kind_is_a_test_file() -> None:
    assert set(FAST) <= set(FILES)


@pytest.mark.parametrize(
    "name",
    ["truncated.png", "truncated.jpg", "truncated_interlaced.png", "truncated_progressive.jpg"],
)
def test_truncated_files_are_a_422_from_either_path(name: str) -> None:
    outcome = _outcome(FILES[name], "rgb", True)
    assert isinstance(outcome, tuple)
    kind, status, message = outcome
    assert (kind, status) == ("InvalidInputError", 422)
    assert "truncated or corrupt" in str(message)


def test_fast_path_declines_what_only_pillow_decodes_exactly() -> None:
    declined = ["la.png", "interlaced_la.png", "gray_trns.png", "rgb_trns.png",
                "palette_trns.png", "animated.png", "apng_default_image.png",
                "exif_rotated.png", "rgb16.png", "la16.png", "rgba16.png", "cmyk.jpg"]
    for name in declined:
        with Image.open(io.BytesIO(FILES[name])) as im:
            assert fastpath.decode_pixels(FILES[name], im) is None, name


def _with_idat(data: bytes, change: Callable[[bytes], bytes], *, fix_crc: bool) -> bytes:
    """``data`` with its (single) IDAT chunk's data changed; its CRC recomputed or kept."""
    chunks = fastpath._png_chunks(data)
    assert chunks is not None
    kind, start, length = next(chunk for chunk in chunks if chunk[0] == b"IDAT")
    body = change(data[start:start + length])
    crc = zlib.crc32(body, zlib.crc32(kind)) if fix_crc else struct.unpack_from(
        ">I", data, start + length)[0]
    return (data[:start - 8] + struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", crc) + data[start + length + 4:])


REWRAPPED = sorted(name for name in FAST if name.endswith(".png") and "interlaced" not in name)


@pytest.mark.parametrize("name", REWRAPPED)
def test_isal_inflates_for_libspng_which_gives_the_same_pixels(name: str) -> None:
    data = FILES[name]
    chunks = fastpath._png_chunks(data)
    assert chunks is not None
    rewrapped = fastpath._rewrapped(data, chunks)
    assert rewrapped is not None
    assert [kind for kind, _, _ in fastpath._png_chunks(rewrapped) or []] == [
        kind for i, (kind, _, _) in enumerate(chunks)
        if kind != b"IDAT" or chunks[i - 1][0] != b"IDAT"]
    np.testing.assert_array_equal(pyspng.load(rewrapped), pyspng.load(data))


def test_an_image_in_many_idat_chunks_is_one_stored_stream() -> None:
    data = encode(Image.fromarray(rgb_pixels(300, 280, seed=9)), "PNG", compress_level=1)
    chunks = fastpath._png_chunks(data)
    assert chunks is not None and [kind for kind, _, _ in chunks].count(b"IDAT") > 2
    rewrapped = fastpath._rewrapped(data, chunks)
    assert rewrapped is not None
    np.testing.assert_array_equal(pyspng.load(rewrapped), pyspng.load(data))
    fast, pillow = _outcome(data, "rgb", True), _outcome(data, "rgb", False)
    assert isinstance(fast, imaging.DecodedInput) and fast.decoder == "libspng"
    assert isinstance(pillow, imaging.DecodedInput)
    assert np.array_equal(fast.array, pillow.array)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # rgb.png ends with its IDAT chunk's CRC, then IEND (12 bytes).
        ("wrong IDAT CRC", FILES["rgb.png"][:-16] + bytes([FILES["rgb.png"][-16] ^ 1])
         + FILES["rgb.png"][-15:]),
        ("wrong Adler-32", _with_idat(FILES["rgb.png"], lambda b: b[:-1] + bytes([b[-1] ^ 1]),
                                      fix_crc=True)),
        ("data after the stream", _with_idat(FILES["rgb.png"], lambda b: b + b"\x00\x01",
                                             fix_crc=True)),
        ("stream cut short", _with_idat(FILES["rgb.png"], lambda b: b[: len(b) // 2],
                                        fix_crc=True)),
        ("interlaced", FILES["interlaced_rgb.png"]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_anything_unexpected_goes_to_libspng_as_uploaded(name: str, data: bytes) -> None:
    chunks = fastpath._png_chunks(data)
    assert chunks is not None
    if name in ("wrong IDAT CRC", "interlaced"):
        assert fastpath._rewrapped(data, chunks) is None  # libspng reads the upload
    else:
        with pytest.raises(fastpath._BrokenStream):  # Pillow decides
            fastpath._rewrapped(data, chunks)
    for color_mode in ("rgb", "keep"):
        fast, pillow = _outcome(data, color_mode, True), _outcome(data, color_mode, False)
        if isinstance(pillow, imaging.DecodedInput):
            assert isinstance(fast, imaging.DecodedInput)
            assert np.array_equal(fast.array, pillow.array)
        else:
            assert fast == pillow


def test_images_over_the_rewrap_bound_go_to_libspng_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = FILES["rgb.png"]
    chunks = fastpath._png_chunks(data)
    assert chunks is not None
    monkeypatch.setattr(fastpath, "_REWRAP_MAX_BYTES", 100)
    assert fastpath._rewrapped(data, chunks) is None
    fast, pillow = _outcome(data, "rgb", True), _outcome(data, "rgb", False)
    assert isinstance(fast, imaging.DecodedInput) and fast.decoder == "libspng"
    assert isinstance(pillow, imaging.DecodedInput)
    assert np.array_equal(fast.array, pillow.array)
