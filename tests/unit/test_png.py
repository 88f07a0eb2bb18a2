"""``convserve.png``: standard PNGs that Pillow and libspng read back exactly, at every level,
with both deflate libraries, for every shape and stride a response can have; the row filters it
chooses, the segments it deflates in parallel, and the jobs' runner."""

from __future__ import annotations

import concurrent.futures
import functools
import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pyspng  # type: ignore[import-untyped]
import pytest
from PIL import Image

from convserve import png

RNG = np.random.default_rng(7)
LIBRARIES: list[png.Deflate] = ["isal", "zlib"] if png.DEFLATE_LIBRARY == "isal" else ["zlib"]


def read(data: bytes) -> tuple[str, np.ndarray]:
    """Pillow's mode and pixels, after checking that libspng reads the same pixels."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # Pillow checks every chunk's CRC and the zlib stream's checksum
        pixels = np.asarray(image)
        mode = image.mode
    np.testing.assert_array_equal(pyspng.load(data), pixels)  # libspng checks them too
    return mode, pixels


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, each CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        found.append((kind, body))
        offset += 12 + length
    return found


def scanlines(data: bytes) -> bytes:
    """The filtered rows: the IDAT chunks' data inflated (zlib checks the Adler-32)."""
    return zlib.decompress(b"".join(body for kind, body in chunks(data) if kind == b"IDAT"))


def filters(data: bytes, height: int, row_bytes: int) -> list[int]:
    rows = scanlines(data)
    return [rows[row * (row_bytes + 1)] for row in range(height)]


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
    pixels = np.array([[10, 200, 37], [10, 200, 37], [11, 200, 37]], np.uint8)
    data = png.encode(pixels, 1)
    found = chunks(data)
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    assert found[0][1] == struct.pack(">IIBBBBB", 3, 3, 8, 0, 0, 0, 0)
    # Repeated rows: filter 2 (Up); row 0 is unchanged, the others are the differences.
    assert scanlines(data) == bytes([2, 10, 200, 37, 2, 0, 0, 0, 2, 1, 0, 0])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sparse", 0), ("horizontal ramp", 1), ("repeated rows", 2)],
)
def test_the_filter_is_the_one_that_leaves_the_least_entropy(name: str, expected: int) -> None:
    rng = np.random.default_rng(3)
    if name == "sparse":  # a clipped edge map: zeros and a few edges, best left unfiltered
        pixels = np.where(rng.random((64, 96)) < 0.05, rng.integers(1, 256, (64, 96)), 0)
    elif name == "horizontal ramp":  # equal steps along each row, rows of random offsets
        pixels = rng.integers(0, 256, (64, 1)) + 3 * np.arange(96)[None, :]
    else:  # every row the same random row
        pixels = np.broadcast_to(rng.integers(0, 256, (1, 96)), (64, 96))
    pixels = pixels.astype(np.uint8)
    data = png.encode(pixels, 1)
    assert set(filters(data, 64, 96)) == {expected}
    np.testing.assert_array_equal(read(data)[1], pixels)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("level", [0, 1, 6])
def test_large_images_are_segments_of_one_stream(library: png.Deflate, level: int) -> None:
    pixels = smooth((700, 1100, 3))  # 2.3 MB of rows: several segments
    data = png.encode(pixels, level, deflate=library)
    idat = [body for kind, body in chunks(data) if kind == b"IDAT"]
    writer = png.Writer(png.PixelRows(pixels), level, deflate=library)
    assert len(idat) == len(writer.segments) > 2
    assert idat[0][:2] == bytes([0x78, 0x01 if level <= 1 else 0x9C])  # a zlib header
    assert len(scanlines(data)) == 700 * (1 + 1100 * 3)  # one stream; its Adler-32 holds
    np.testing.assert_array_equal(read(data)[1], pixels)


def test_the_bytes_do_not_depend_on_the_executor() -> None:
    pixels = smooth((900, 700))
    alone = png.encode(pixels, 1)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert png.encode(pixels, 1, executor=pool) == alone
    np.testing.assert_array_equal(read(alone)[1], pixels)


@pytest.mark.parametrize(("height", "width"), [(1, 70_000), (100_000, 1), (3, 200_001)])
def test_wide_and_tall_images(height: int, width: int) -> None:
    pixels = RNG.integers(0, 256, (height, width), dtype=np.uint8)
    np.testing.assert_array_equal(read(png.encode(pixels, 1))[1], pixels)


def test_a_segment_longer_than_a_chunk_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png, "_MAX_CHUNK", 1000)
    pixels = RNG.integers(0, 256, (300, 200, 3), dtype=np.uint8)  # incompressible
    data = png.encode(pixels, 1)
    assert all(len(body) <= 1000 for _, body in chunks(data))
    np.testing.assert_array_equal(read(data)[1], pixels)


def test_adler32_combine_is_the_checksum_of_the_concatenation() -> None:
    for size in (0, 1, 5, 65521, 100_000):
        data = RNG.integers(0, 256, size + 300, dtype=np.uint8).tobytes()
        first, second = data[:size], data[size:]
        assert png._adler32_combine(zlib.adler32(first), zlib.adler32(second),
                                    len(second)) == zlib.adler32(data)


def test_run_jobs_returns_results_in_order_and_raises_a_jobs_error() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        squares = [functools.partial(pow, i, 2) for i in range(9)]
        assert png.run_jobs(squares, pool) == [i * i for i in range(9)]
        assert png.run_jobs([], pool) == []

        def fails() -> int:
            raise ZeroDivisionError("job 3")

        jobs: list[Callable[[], int]] = [*squares[:2], fails, *squares[2:]]
        with pytest.raises(ZeroDivisionError, match="job 3"):
            png.run_jobs(jobs, pool)


def test_jobs_that_run_jobs_on_their_own_pool_finish() -> None:
    # One thread, busy with a job that waits on jobs it queued on that same thread: the
    # caller takes its queued jobs back and runs them itself.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        def outer(i: int) -> list[int]:
            return png.run_jobs([functools.partial(int, i + j) for j in range(4)], pool)

        outers = [functools.partial(outer, i) for i in range(3)]
        assert png.run_jobs(outers, pool) == [[i, i + 1, i + 2, i + 3] for i in range(3)]


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
