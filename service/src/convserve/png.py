"""A PNG writer for 8-bit feature maps: vectorised row filters and a parallel, fast deflate.

Encoding the PNGs of a response costs more than the convolution behind it (a 1024x1024 map
took about 45 ms in Pillow at zlib level 1, against a few ms of convolution), and Pillow spends
half of that choosing each row's filter. This writer does what a fast encoder for smooth images
does instead:

- rows are filtered a band at a time (about :data:`_BAND_BYTES`, which stays in the cache)
  with one NumPy operation; each segment (below) takes the one of filters *None*, *Sub* and
  *Up* that leaves the fewest bits of order-0 entropy on a sample of its first band's rows: a
  clipped edge map is mostly zeros and compresses best unfiltered (Up would double its edges),
  a min-max map sits around mid-grey and compresses best as differences. (The specification's
  heuristic, the smallest sum of signed bytes, picks Up for the edge map: 20 % more bytes.)
- the rows come from a :class:`RowSource`, read a band at a time where they are: the caller's
  array (any strides, such as the (C, H, W) planes of a response seen as (H, W, C)), or float
  maps turned into pixels band by band (``convserve.imaging``), so no full-size pixel array
  is ever made;
- the image is cut into segments of about :data:`_SEGMENT_BYTES` of filtered rows, each
  deflated on its own (the way pigz does: a raw deflate stream ended by a sync flush, so the
  segments concatenate into one stream; their Adler-32 checksums combine arithmetically) and
  written as its own ``IDAT`` chunk with its CRC; the segments of one or several PNGs run as
  jobs of a thread pool (:func:`run_jobs`), since the deflate and NumPy release the GIL;
- levels 1-3 deflate with Intel's ISA-L (the ``isal`` package), several times faster than
  zlib at level 1 (and faster than zlib-ng's level 1, which libvips uses) and smaller than
  either on feature maps; without ``isal`` (a platform with no wheel) zlib's run-length
  strategy (``Z_RLE``) at the same level stands in; level 0 stores the data; levels 4-9 use
  zlib at that level with its default strategy, for callers who want fewer bytes.

How the image is cut depends on its size only, so equal pixels give equal bytes
whatever the pool. ``bench/bench_encode.py`` measures these choices against Pillow on real
feature maps. The files are standard PNGs (8-bit grey, RGB or RGBA, no interlacing) that every
decoder reads.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, Protocol, TypeVar

import numpy as np

__all__ = [
    "DEFLATE_LIBRARY", "Fill", "PixelRows", "RowSource", "Writer", "encode", "run_jobs", "write",
]

_isal_zlib: ModuleType | None
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal ships wheels for every platform we deploy on
    _isal_zlib = None

Deflate = Literal["isal", "zlib"]
DEFLATE_LIBRARY: Deflate = "isal" if _isal_zlib is not None else "zlib"
"""What compresses levels 1-3 by default: ``"isal"`` (ISA-L) or ``"zlib"`` (``Z_RLE``)."""
# The same checksums as zlib's, several times faster (SIMD) where ISA-L is installed.
_adler32: Callable[[bytes | memoryview, int], int] = (
    zlib.adler32 if _isal_zlib is None else _isal_zlib.adler32)
_crc32: Callable[[bytes | memoryview, int], int] = (
    zlib.crc32 if _isal_zlib is None else _isal_zlib.crc32)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # samples per pixel -> PNG colour type (grey, RGB, RGBA)
_NONE, _SUB, _UP = 0, 1, 2  # PNG filter types
_MAX_CHUNK = (1 << 31) - 1  # PNG's limit on a chunk's length; IDAT may be split anywhere
# Raw bytes of rows filtered and deflated at a time: a band (and the float32 rows it is made
# from, 4x as many bytes) stays in a core's L2 cache while it is made, filtered and
# compressed; bands much smaller cost more in NumPy's per-call overhead than they save. With
# its scratch, this is the working memory of a job besides its output.
_BAND_BYTES = 1 << 18
# Filtered bytes per independently deflated segment. Each segment restarts the compressor's
# history, which costs well under 1 % of the size at this length.
_SEGMENT_BYTES = 3 << 17
_SAMPLED_ROWS = 8  # rows of a segment's first band that choose its filter
_ADLER_BASE = 65521

T = TypeVar("T")
Fill = Callable[[int, int, np.ndarray], None]
"""``fill(top, stop, out)`` writes rows ``[top, stop)`` as uint8 into ``out`` (stop - top, W, K)."""


class RowSource(Protocol):
    """Where a :class:`Writer` reads its pixel rows from."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, K): rows, pixels per row and samples per pixel (1, 3 or 4)."""
        ...

    def reader(self) -> Fill:
        """A fill function for one job (it may keep scratch buffers between its calls)."""
        ...


@dataclass(frozen=True)
class PixelRows:
    """The rows of a uint8 array (H, W) or (H, W, K), any strides."""

    pixels: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        height, width = self.pixels.shape[:2]
        return height, width, 1 if self.pixels.ndim == 2 else self.pixels.shape[2]

    def reader(self) -> Fill:
        rows = self.pixels.reshape(self.shape)

        def fill(top: int, stop: int, out: np.ndarray) -> None:
            np.copyto(out, rows[top:stop])

        return fill


@dataclass(frozen=True)
class _Segment:
    """One job's output: IDAT chunk data (zlib header included in the first segment)."""

    pieces: list[bytes]
    size: int
    crc: int
    """CRC-32 of ``b"IDAT"`` and the pieces."""
    adler: int
    """Adler-32 of this segment's filtered bytes."""
    length: int
    """Filtered bytes compressed."""


class Writer:
    """One PNG: its header and the jobs that deflate its segments.

    Parameters
    ----------
    source : RowSource
        Rows of shape (H, W, K), K in (1, 3, 4), H and W >= 1.
    level : int, 0-9
    deflate : "isal" or "zlib", optional
        What compresses levels 1-3; :data:`DEFLATE_LIBRARY` by default.
    """

    def __init__(self, source: RowSource, level: int = 1, *, deflate: Deflate | None = None):
        height, width, samples = source.shape
        if samples not in _COLOR_TYPES:
            raise ValueError(f"PNG pixels need 1, 3 or 4 samples per pixel, got {samples}")
        if min(height, width) < 1:
            raise ValueError(f"PNG pixels must be non-empty, got {height}x{width}")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
            raise ValueError(f"PNG level={level!r} must be an int in 0..9")
        library = DEFLATE_LIBRARY if deflate is None else deflate
        if library not in ("isal", "zlib") or (library == "isal" and _isal_zlib is None):
            raise ValueError(f"deflate={deflate!r} is not available; use 'zlib'")
        self.source, self.level, self.library = source, level, library
        self.height, self.width, self.samples = height, width, samples
        row_bytes = width * samples + 1
        count = max(1, min(height, height * row_bytes // _SEGMENT_BYTES))
        step = math.ceil(height / count)
        self.segments = [(top, min(top + step, height)) for top in range(0, height, step)]

    def jobs(self) -> list[Callable[[], _Segment]]:
        """One job per segment, in order; each is independent of the others."""
        last = len(self.segments) - 1
        return [functools.partial(self._segment, top, stop, index, last)
                for index, (top, stop) in enumerate(self.segments)]

    def assemble(self, segments: Sequence[_Segment]) -> bytes:
        """The PNG file from its jobs' outputs (in order): the one copy of the data."""
        header = struct.pack(">IIBBBBB", self.width, self.height, 8,
                             _COLOR_TYPES[self.samples], 0, 0, 0)
        parts = [_SIGNATURE, *_chunk(b"IHDR", [header])]
        adler = 1
        for segment in segments:
            adler = _adler32_combine(adler, segment.adler, segment.length)
        trailer = struct.pack(">I", adler)
        for index, segment in enumerate(segments):
            pieces, size, crc = segment.pieces, segment.size, segment.crc
            if index == len(segments) - 1:
                pieces, size, crc = [*pieces, trailer], size + 4, zlib.crc32(trailer, crc)
            if size <= _MAX_CHUNK:
                parts += [struct.pack(">I", size) + b"IDAT", *pieces, struct.pack(">I", crc)]
            else:  # a segment of rows wider than PNG's chunk limit: split it
                data = b"".join(pieces)
                for start in range(0, len(data), _MAX_CHUNK):
                    parts += _chunk(b"IDAT", [data[start:start + _MAX_CHUNK]])
        parts += _chunk(b"IEND", [])
        return b"".join(parts)

    def _segment(self, top: int, stop: int, index: int, last: int) -> _Segment:
        """Rows ``[top, stop)`` filtered and deflated as a raw stream that ends on a byte
        boundary (sync flush), or with the final block when it is the last segment."""
        fill = self.source.reader()
        width, samples = self.width, self.samples
        row = width * samples
        band_rows = max(1, min(stop - top, _BAND_BYTES // row))
        # raw[0] is the row above the band (zeros above row 0, as PNG defines); raw[1:] the band.
        raw = np.zeros((band_rows + 1, row), np.uint8)
        filtered = np.empty((band_rows, row + 1), np.uint8)
        if top > 0:
            fill(top - 1, top, raw[:1].reshape(1, width, samples))
        compressor = _compressor(self.level, self.library)
        crc = zlib.crc32(b"IDAT")
        adler, length = 1, 0
        kind: int | None = None
        pieces: list[bytes] = []
        if index == 0:
            pieces.append(_zlib_header(self.level))
        for start in range(top, stop, band_rows):
            count = min(band_rows, stop - start)
            fill(start, start + count, raw[1:count + 1].reshape(count, width, samples))
            out = filtered[:count]
            if kind is None:  # the segment's first band chooses for all of it
                kind = _choose_filter(raw[:count + 1], samples)
            _filter(kind, raw[:count + 1], out, samples)
            view = out.reshape(-1).data
            adler = _adler32(view, adler)
            length += out.size
            pieces.append(compressor.compress(view))
            raw[0] = raw[count]
        pieces.append(compressor.flush(zlib.Z_FINISH if index == last else zlib.Z_SYNC_FLUSH))
        pieces = [piece for piece in pieces if piece]
        for piece in pieces:
            crc = _crc32(piece, crc)
        return _Segment(pieces, sum(len(piece) for piece in pieces), crc, adler, length)


def _choose_filter(raw: np.ndarray, samples: int) -> int:
    """The filter for rows like ``raw[1:]`` (``raw[0]`` is the row above): *None*, *Sub* or
    *Up*, whichever leaves the fewest bits of order-0 entropy on up to :data:`_SAMPLED_ROWS`
    rows spread over them (ties to the lower type)."""
    step = max(1, (raw.shape[0] - 1) // _SAMPLED_ROWS)
    rows, above = raw[1::step][:_SAMPLED_ROWS], raw[:-1:step][:_SAMPLED_ROWS]
    sub = rows.copy()
    np.subtract(rows[:, samples:], rows[:, :-samples], out=sub[:, samples:])
    bits = [_entropy_bits(rows), _entropy_bits(sub), _entropy_bits(rows - above)]
    return bits.index(min(bits))  # the index is the filter type: None 0, Sub 1, Up 2


def _entropy_bits(values: np.ndarray) -> float:
    """Bits an order-0 entropy coder needs for ``values`` (uint8): ``-sum(c * log2(c / n))``."""
    counts = np.bincount(values.reshape(-1), minlength=256)
    counts = counts[counts > 0].astype(np.float64)
    total = float(values.size)
    return total * math.log2(total) - float(np.dot(counts, np.log2(counts)))


def _filter(kind: int, raw: np.ndarray, out: np.ndarray, samples: int) -> None:
    """Rows ``raw[1:]`` (``raw[0]`` is the row above) into ``out`` (rows, 1 + row) with
    filter ``kind``; differences wrap modulo 256 as the PNG specification defines."""
    out[:, 0] = kind
    body, current = out[:, 1:], raw[1:]
    if kind == _NONE:
        np.copyto(body, current)
    elif kind == _UP:
        np.subtract(current, raw[:-1], out=body)
    else:
        body[:, :samples] = current[:, :samples]
        np.subtract(current[:, samples:], current[:, :-samples], out=body[:, samples:])


def _zlib_header(level: int) -> bytes:
    """The zlib stream header: deflate with a 32 KiB window, and the level class (FLEVEL)."""
    cmf = 0x78
    flg = (0 if level <= 1 else 1 if level <= 5 else 2 if level == 6 else 3) << 6
    flg += 31 - (cmf * 256 + flg) % 31
    return bytes([cmf, flg])


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of A followed by B from ``adler32(A)``, ``adler32(B)`` and ``len(B)``."""
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % _ADLER_BASE
    high = ((first >> 16) + (second >> 16) + second_length * ((first & 0xFFFF) - 1)) \
        % _ADLER_BASE
    return (high << 16) | low


class _Compressor(Protocol):
    def compress(self, data: memoryview, /) -> bytes: ...

    def flush(self, mode: int, /) -> bytes: ...


def _compressor(level: int, library: Deflate) -> _Compressor:
    """A raw-deflate compressor for ``level`` (see the module docstring)."""
    if 1 <= level <= 3:
        if library == "isal" and _isal_zlib is not None:
            compressor: _Compressor = _isal_zlib.compressobj(level, zlib.DEFLATED, -15)
            return compressor
        return zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return zlib.compressobj(level, zlib.DEFLATED, -15)


def _chunk(kind: bytes, data: list[bytes]) -> list[bytes]:
    """A chunk as pieces: length, type, the data's pieces as they are, CRC."""
    crc = zlib.crc32(kind)
    for piece in data:
        crc = zlib.crc32(piece, crc)
    return [struct.pack(">I", sum(len(piece) for piece in data)) + kind, *data,
            struct.pack(">I", crc)]


def run_jobs(
    jobs: Sequence[Callable[[], T]], executor: concurrent.futures.Executor | None
) -> list[T]:
    """Run ``jobs`` on ``executor`` and in the calling thread; their results in order.

    The calling thread runs the first job, then takes back (cancels and runs itself) every
    job the pool has not started, last first, so a busy pool never leaves it waiting on
    queued work; it waits only for jobs already running. So a job may itself call
    ``run_jobs`` on the same executor without any risk of deadlock.
    """
    if executor is None or len(jobs) < 2:
        return [job() for job in jobs]
    futures = [executor.submit(job) for job in jobs[1:]]
    try:
        first = jobs[0]()
        taken: dict[int, T] = {}
        for index in reversed(range(len(futures))):
            if futures[index].cancel():
                taken[index] = jobs[index + 1]()
        rest = [taken[index] if index in taken else future.result()
                for index, future in enumerate(futures)]
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return [first, *rest]


def write(
    writers: Sequence[Writer], executor: concurrent.futures.Executor | None = None
) -> list[bytes]:
    """The PNG files of ``writers``, their segments run together by :func:`run_jobs`."""
    jobs = [job for writer in writers for job in writer.jobs()]
    segments = run_jobs(jobs, executor)
    files = []
    start = 0
    for writer in writers:
        count = len(writer.segments)
        files.append(writer.assemble(segments[start:start + count]))
        start += count
    return files


def encode(
    pixels: np.ndarray,
    level: int = 1,
    *,
    deflate: Deflate | None = None,
    executor: concurrent.futures.Executor | None = None,
) -> bytes:
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
    executor : concurrent.futures.Executor, optional
        Where the segments of a large image are deflated besides the calling thread; in the
        calling thread alone without one.

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
    return write([Writer(PixelRows(pixels), level, deflate=deflate)], executor)[0]
