"""Encoding benchmark: what one response's PNGs cost, and what makes them cheaper.

The maps: every photo in ``tests/data`` turned grey and resized to 1024x1024, then five maps
of each as the service would return them: ``id`` (clip), ``blur`` (5x5 box, clip), ``sobel``
(minmax), ``sobel_abs`` (abs) and ``laplacian`` (symmetric); and one ``noise`` map (uniform
random bytes), the worst case.

Tables (medians of several runs after a warm-up; milliseconds of CPU time of the calling
thread, which other processes on a busy machine do not inflate; table 3 is wall time):

1. One 1024x1024 map written by Pillow at zlib levels 0, 1, 3, 6 (its default) and 9 with
   its own strategy (``Z_FILTERED``, adaptive row filters), and with zlib's ``Z_RLE`` at
   level 1: ms and KiB per map, averaged over the photo maps, and for noise.
2. The same maps written by ``convserve.png`` (what ``encode_png`` calls): filter *Up*, ISA-L
   at levels 1-3, zlib beyond; and at level 1 with zlib ``Z_RLE`` instead of ISA-L (what runs
   where the ``isal`` package is missing).
3. ``encode_pngs`` of 8 channels of 1024x1024 on 1, 2 and ``cores`` threads: wall time, and the
   process's CPU time / wall time. A ratio near the thread count shows that the encoder
   releases the GIL; it stays meaningful where other processes slow the wall clock down.
4. ``to_pixels`` of (8, 1024, 1024) float32 per normalize mode, and ``decode_input`` of a
   1024x1024 RGB photo as PNG and JPEG, for scale.

Usage: ``python bench/bench_encode.py [--quick]``. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import io
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from convserve import imaging, png
from convserve.settings import Settings

SIZE = 1024
CHANNELS = 8
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PILLOW_DEFAULT = -1  # Pillow then uses Z_FILTERED for PNG
Z_RLE = 3  # zlib.h; Pillow takes it as compress_type
SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
BOX = np.full((5, 5), 1 / 25, np.float32)


def median_ms(func: Callable[[], object], repeat: int) -> float:
    """Median CPU time of this thread running ``func()``, in ms, after one warm-up run."""
    func()
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        func()
        times.append(time.thread_time() - started)
    return 1000 * statistics.median(times)


def median_wall_ms(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time of ``func()`` in ms, and the median process CPU time / wall time."""
    func()
    walls, ratios = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        func()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        walls.append(wall)
        ratios.append(cpu / wall)
    return 1000 * statistics.median(walls), statistics.median(ratios)


def filtered(gray: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Cross-correlation of (H, W) with a small odd kernel, reflect-padded to (H, W)."""
    pad = kernel.shape[0] // 2
    windows = sliding_window_view(np.pad(gray, pad, mode="reflect"), kernel.shape)
    result: np.ndarray = np.einsum("ijkl,kl->ij", windows, kernel)
    return result


def photo_maps() -> dict[str, np.ndarray]:
    """Five uint8 1024x1024 maps of every photo in tests/data."""
    maps = {}
    for path in sorted(DATA.glob("*.png")) + sorted(DATA.glob("*.jpg")):
        image = Image.open(path).convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        gray = np.asarray(image, dtype=np.float32) / 255
        sobel = filtered(gray, SOBEL_X)
        variants: tuple[tuple[str, np.ndarray, imaging.NormalizeMode], ...] = (
            ("id", gray, "clip"),
            ("blur", filtered(gray, BOX), "clip"),
            ("sobel", sobel, "minmax"),
            ("sobel_abs", sobel, "abs"),
            ("laplacian", filtered(gray, LAPLACIAN), "symmetric"),
        )
        for name, values, mode in variants:
            pixels = imaging.to_pixels(values[None], mode, range_preserving=True)
            maps[f"{path.stem}:{name}"] = pixels[0]
    return maps


def png_with(pixels: np.ndarray, level: int, strategy: int) -> bytes:
    """A PNG at zlib ``level`` with zlib ``strategy`` (Pillow's ``compress_type``)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(
        buffer, format="PNG", compress_level=level, compress_type=strategy, optimize=False
    )
    return buffer.getvalue()


def cost(maps: list[np.ndarray], encode: Callable[[np.ndarray], bytes], repeat: int) -> str:
    """Mean CPU ms and KiB per map of ``encode`` over ``maps``."""
    ms = statistics.mean(median_ms(functools.partial(encode, m), repeat) for m in maps)
    kib = statistics.mean(len(encode(m)) for m in maps) / 1024
    return f"{ms:6.1f} ms {kib:6.0f} KiB"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    cores = len(os.sched_getaffinity(0))
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, Pillow "
          f"{PIL.__version__}, {cores} cores, {platform.machine()}")
    maps = photo_maps()
    photos = list(maps.values())
    noise = [np.random.default_rng(0).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)]
    groups = {f"{len(photos)} photo maps, per map": photos, "noise": noise}

    rows = []
    for level in (0, 1, 3, 6, 9):
        encode = lambda m, lv=level: png_with(m, lv, PILLOW_DEFAULT)  # noqa: E731
        times = repeat if level < 6 else 1  # levels 6 and 9 take 0.1 to 1 s a map
        rows.append([f"level {level}", *(cost(g, encode, times) for g in groups.values())])
    rle = functools.partial(png_with, level=1, strategy=Z_RLE)
    rows.append(["level 1, Z_RLE", *(cost(g, rle, repeat) for g in groups.values())])
    table(f"1. one {SIZE}x{SIZE} grey map written by Pillow, by zlib level",
          ["Pillow", *groups], rows)

    rows = []
    for level in (0, 1, 2, 3, 6, 9):
        library = png.DEFLATE_LIBRARY if 1 <= level <= 3 else "zlib"
        encode = functools.partial(png.encode, level=level)
        times = repeat if level < 6 else 1
        rows.append([f"level {level} ({library})",
                     *(cost(g, encode, times) for g in groups.values())])
    fallback = functools.partial(png.encode, level=1, deflate="zlib")
    rows.append(["level 1, zlib Z_RLE (no isal)",
                 *(cost(g, fallback, repeat) for g in groups.values())])
    table(f"2. the same maps written by convserve.png (encode_png: level "
          f"{Settings().png_compress_level} by default)", ["convserve.png", *groups], rows)

    rows = []
    thread_counts = sorted({1, 2, cores})
    for name, pixels in (("photo", maps[next(iter(maps))]), ("noise", noise[0])):
        planes = np.stack([np.roll(pixels, 37 * i, axis=1) for i in range(CHANNELS)])
        row = [name]
        serial = 0.0
        for threads in thread_counts:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                ms, ratio = median_wall_ms(
                    functools.partial(imaging.encode_pngs, planes, executor=pool), repeat
                )
            serial = serial or ms
            row.append(f"{ms:6.1f} ms (x{serial / ms:.2f}, cpu/wall {ratio:.2f})")
        rows.append(row)
    table(f"3. encode_pngs of {CHANNELS} channels of {SIZE}x{SIZE}: wall time (speed-up, "
          "CPU/wall)", ["map", *(f"{t} thread(s)" for t in thread_counts)], rows)

    floats = np.random.default_rng(1).standard_normal((CHANNELS, SIZE, SIZE), dtype=np.float32)
    rows = []
    run: Callable[[], object]
    for mode in ("clip", "minmax", "abs", "symmetric"):
        run = functools.partial(imaging.to_pixels, floats, mode, range_preserving=False)
        rows.append([f"to_pixels {mode}", f"{median_ms(run, repeat):.1f}"])
    photo = Image.open(sorted(DATA.glob("*.png"))[0]).convert("RGB").resize((SIZE, SIZE))
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        photo.save(buffer, format=fmt)
        data = buffer.getvalue()
        run = functools.partial(imaging.decode_input, data, max_pixels=SIZE * SIZE)
        rows.append([f"decode_input {fmt} {SIZE}x{SIZE} RGB", f"{median_ms(run, repeat):.1f}"])
    table(f"4. to_pixels of ({CHANNELS}, {SIZE}, {SIZE}) float32; decoding", ["what", "ms"],
          rows)


if __name__ == "__main__":
    main()
