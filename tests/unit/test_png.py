"""``convserve.png``: standard PNGs that Pillow reads back exactly, at every level, with both
deflate libraries, for every shape and stride a response can have."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from convserve import png

RNG = np.random.default_rng(7)
LIBRARIES: list[png.Deflate] = ["isal", "zlib"] if png.DEFLATE_LIBRARY == "isal" else ["zlib"]


def read(data: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # Pillow checks every chunk's CRC and the zlib stream's checksum
        return image.mode, np.asarray(image)


def smooth(shape: tuple[int, ...]) -> np.ndarray:
    """A feature-map-like image: a random walk along the rows (values wrap around 255)."""
    steps = RNG.integers(-3, 4, shape)
    return np.cumsum(steps, axis=1).astype(np.uint8)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize(
    ("shape", "mode"),
    [((1, 1), "L"), ((1, 7), "L"), ((9, 1), "L"), ((33, 65), "L"), ((20, 30, 3), "RGB"),
     ((20, 30, 4), "RGBA")],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v,
)
def test_round_trip(shape: tuple[int, ...], mode: str, level: int, library: png.Deflate) -> None:
    for pixels in (smooth(shape), RNG.integers(0, 256, shape, dtype=np.uint8)):
        got_mode, got = read(png.encode(pixels, level, deflate=library))
        assert got_mode == mode
        np.testing.assert_array_equal(got, pixels)


def test_strided_views_are_encoded_as_their_values() -> None:
    planes = smooth((3, 40, 50))
    view = np.moveaxis(planes, 0, -1)[::2, ::-3]  # channel-last, every other row, reversed
    np.testing.assert_array_equal(read(png.encode(view))[1], view)


@pytest.mark.parametrize("library", LIBRARIES)
def test_images_of_several_bands_are_one_stream_of_their_rows(library: png.Deflate) -> None:
    planes = smooth((3, 2500, 700))  # 2.1 MB of RGB rows: three bands of filtered rows
    view = np.moveaxis(planes, 0, -1)  # the (C, H, W) planes read in place, as compose_png does
    assert 3 * 2500 * 700 > 2 * png._BAND_BYTES
    for level in (0, 1, 6):
        got_mode, got = read(png.encode(view, level, deflate=library))
        assert got_mode == "RGB"
        np.testing.assert_array_equal(got, view)


def test_the_file_is_one_header_filtered_rows_and_an_end() -> None:
    pixels = np.array([[10, 20, 30], [11, 25, 30]], np.uint8)
    data = png.encode(pixels, 1)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        offset += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert chunks[0][1] == struct.pack(">IIBBBBB", 3, 2, 8, 0, 0, 0, 0)
    # filter 2 (Up) on both rows; row 0 is unchanged, row 1 is the difference to row 0
    assert zlib.decompress(chunks[1][1]) == bytes([2, 10, 20, 30, 2, 1, 5, 0])


def test_level_0_stores_and_higher_levels_compress() -> None:
    flat = np.full((256, 256), 128, np.uint8)
    assert len(png.encode(flat, 0)) > 256 * 256
    assert all(len(png.encode(flat, level)) < 2000 for level in range(1, 10))


@pytest.mark.parametrize(
    ("pixels", "level", "message"),
    [
        (np.zeros((4, 4), np.float32), 1, "uint8"),
        (np.zeros((4, 4, 2), np.uint8), 1, "1, 3 or 4 samples"),
        (np.zeros((0, 4), np.uint8), 1, "non-empty"),
        (np.zeros((4,), np.uint8), 1, "(H, W)"),
        (np.zeros((4, 4), np.uint8), 10, "0..9"),
        (np.zeros((4, 4), np.uint8), True, "0..9"),
    ],
)
def test_bad_arguments_raise_value_error(pixels: np.ndarray, level: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        png.encode(pixels, level)


def test_unknown_library_is_refused() -> None:
    with pytest.raises(ValueError, match="deflate='brotli' is not available"):
        png.encode(np.zeros((2, 2), np.uint8), 1, deflate="brotli")  # type: ignore[arg-type]
