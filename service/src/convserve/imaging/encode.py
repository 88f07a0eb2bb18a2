"""8-bit pixels to response bodies: PNG (one, per channel, composed, grid), ZIP and ``.npy``.

Encoding: ``maps_pngs`` and ``maps_png`` write float feature maps as PNGs directly, each
band of rows quantised (:class:`~convserve.imaging.tone.ChannelTone`, the arithmetic of
``to_pixels``), filtered and deflated where it is needed, so no full-size pixel array is made;
``encode_png``, ``encode_pngs``, ``compose_png`` and ``grid_png`` write 8-bit pixels;
``zip_pngs`` (``zip_files``) and ``encode_npy`` make the other response bodies. PNGs are
written by :mod:`convserve.png` (a row filter chosen per segment, ISA-L deflate), several times
faster than Pillow's writer at its fastest level; ``bench/bench_encode.py`` measures both. The
deflate and NumPy release the GIL, so the segments of every PNG of one response are deflated in
parallel threads (a process-wide pool of one thread per core, or the executor given).
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convserve import jsonbody, png
from convserve.cores import available_cores
from convserve.errors import InvalidArgumentError
from convserve.imaging.tone import ChannelTone, NormalizeMode, float_maps, resolved_normalize

__all__ = [
    "channel_png_name",
    "compose_png",
    "default_pool",
    "encode_npy",
    "encode_png",
    "encode_pngs",
    "grid_png",
    "maps_png",
    "maps_pngs",
    "zip_files",
    "zip_pngs",
]


def encode_png(
    pixels: np.ndarray, *, level: int = 1, executor: concurrent.futures.Executor | None = None
) -> bytes:
    """Encode 8-bit pixels as one PNG.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (H, W), (H, W, 3) or (H, W, 4)
        Grey (L), RGB or RGBA.
    level : int, 0-9
        0 stores the pixels uncompressed; 1-3 compress them fast, 4-9 smaller and slower
        (see :mod:`convserve.png`).
    executor : concurrent.futures.Executor, optional
        Where the segments of a large image are deflated besides the calling thread (see
        :func:`encode_pngs`); the process-wide pool without one.

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
    return png.encode(pixels, level, executor=_pool(executor))


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
def default_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process-wide pool for PNG encoding, one thread per available core: where the PNG
    functions here run their jobs when given no executor."""
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=available_cores(), thread_name_prefix="convserve-png"
    )


def _pool(executor: concurrent.futures.Executor | None) -> concurrent.futures.Executor:
    return default_pool() if executor is None else executor


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
        Where the PNGs' segments are deflated besides the calling thread; a process-wide pool
        of one thread per core without one. The calling thread takes back the jobs the pool
        has not started (:func:`convserve.png.run_jobs`), so any executor is safe, even one
        whose threads call this function.

    Returns
    -------
    list of bytes, length C
        PNG files in channel order.
    """
    _check_planes(planes, "encode_pngs")
    _check_level(level)
    writers = [png.Writer(png.PixelRows(plane), level) for plane in planes]
    return png.write(writers, _pool(executor))


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
    _check_composable(channels)
    return png.encode(pixels[0] if channels == 1 else np.moveaxis(pixels, 0, -1), level,
                      executor=default_pool())


def _check_composable(channels: int) -> None:
    if channels not in (1, 3, 4):
        raise InvalidArgumentError(
            f"format=image composes 1, 3 or 4 channels into one PNG (L, RGB or RGBA), but this "
            f"output has {channels} channels; use format=grid for one montage of all channels, "
            "format=zip for one PNG per channel, or format=png with channel=k for one.",
            field="format",
        )


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
    return png.encode(canvas, level, executor=default_pool())


def maps_pngs(
    maps: np.ndarray,
    mode: NormalizeMode,
    *,
    range_preserving: bool,
    level: int = 1,
    executor: concurrent.futures.Executor | None = None,
    ranges: Sequence[tuple[float, float]] | None = None,
) -> list[bytes]:
    """One grey PNG per channel of float maps, quantised as :func:`~convserve.imaging.to_pixels`
    does, band by band inside the PNG writer (no pixel array is made).

    Parameters
    ----------
    maps : ndarray of float32, shape (C, H, W)
        Read only; any strides.
    mode : {"auto", "clip", "minmax", "abs", "symmetric"}
    range_preserving : bool
        What ``auto`` resolves by (see ``to_pixels``).
    level : int, 0-9
    executor : concurrent.futures.Executor, optional
        As for :func:`encode_pngs`.
    ranges : sequence of (float, float), optional
        ``(min, max)`` of each channel when the caller has computed them (NaN when a channel
        holds one), so that they are not computed again.

    Returns
    -------
    list of bytes, length C
        The PNG files, in channel order; each decodes to ``to_pixels(maps, mode)[c]``.
    """
    values = float_maps(maps, "maps_pngs")
    _check_level(level)
    resolved = resolved_normalize(mode, range_preserving)
    tones = _tones(values, resolved, ranges)
    writers = [png.Writer(_ToneRows((tone,)), level) for tone in tones]
    return png.write(writers, _pool(executor))


def maps_png(
    maps: np.ndarray,
    mode: NormalizeMode,
    *,
    range_preserving: bool,
    level: int = 1,
    executor: concurrent.futures.Executor | None = None,
) -> bytes:
    """Float maps (C, H, W) with C in (1, 3, 4) as one L, RGB or RGBA PNG (``format=image``):
    :func:`compose_png` of ``to_pixels(maps, mode)``, without the pixel array.

    Parameters and errors as for :func:`maps_pngs` and :func:`compose_png`.
    """
    values = float_maps(maps, "maps_png")
    _check_level(level)
    _check_composable(values.shape[0])
    tones = _tones(values, resolved_normalize(mode, range_preserving), None)
    return png.write([png.Writer(_ToneRows(tuple(tones)), level)], _pool(executor))[0]




def _tones(
    values: np.ndarray, mode: str, ranges: Sequence[tuple[float, float]] | None
) -> list[ChannelTone]:
    if ranges is not None and len(ranges) != values.shape[0]:
        raise InvalidArgumentError(
            f"ranges has {len(ranges)} entries for {values.shape[0]} channel(s)")
    return [ChannelTone.of(values[c], mode, None if ranges is None else ranges[c])
            for c in range(values.shape[0])]


@dataclass(frozen=True)
class _ToneRows:
    """Rows of pixels made from float maps by their channels' tones (a ``png.RowSource``)."""

    tones: tuple[ChannelTone, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        height, width = self.tones[0].values.shape
        return int(height), int(width), len(self.tones)

    def reader(self) -> png.Fill:
        width = self.shape[1]
        scratch = [np.empty(0, np.float32)]  # one job's working memory, grown as needed

        def fill(top: int, stop: int, out: np.ndarray) -> None:
            if scratch[0].size < (stop - top) * width:
                scratch[0] = np.empty((stop - top) * width, np.float32)
            for sample, tone in enumerate(self.tones):
                tone.rows(top, stop, out[:, :, sample], scratch[0])

        return fill


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
