"""Batch throughput of the command line (``make bench``; not a test).

200 different 512x512 photos (crops of the test images) go through

    convserve convolve PHOTOS --jobs 4 --preset sobel -o OUT

against a local server of 2 uvicorn workers (``python -m convserve.launcher``), and the same
200 requests through a minimal HTTP/1.1 load generator (``bench_http.exchange``: request bytes
built beforehand, responses read and dropped) at the same concurrency against the same server.
"The same requests": the batch asks for ``format=zip`` where its output is a folder of channel
PNGs (``--format json``), so the load generator sends ``preset=sobel, format=zip`` too.

Target: the batch's images/s (its summary line: requests, answers decoded, files written) is
at least 0.9 x the load generator's requests/s, i.e. the client adds no bottleneck; the verdict
takes the median over rounds of the two run back to back. Client and server share this
machine's cores, so the client's own CPU time counts against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

if __package__ is None or __package__ == "":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_http import exchange, multipart_request, wait_ready  # noqa: E402
from bench.wire import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "tests" / "data" / name for name in ("chelsea.png", "camera.png",
                                                        "rocket.jpg")]
SIDE = 512
TARGET = 0.9


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` different RGB PNGs of SIDE x SIDE: shifted crops (and mirror images) of the
    test photos, scaled so that a crop fits."""
    bases = []
    for source in SOURCES:
        with Image.open(source) as image:
            rgb = image.convert("RGB")
        scale = (SIDE + 64) / min(rgb.size)
        bases.append(rgb.resize((round(rgb.width * scale), round(rgb.height * scale)),
                                Image.Resampling.BICUBIC))
    paths = []
    for i in range(count):
        base = bases[i % len(bases)]
        step = i // len(bases)
        x = (step * 7) % (base.width - SIDE)
        y = (step * 3) % (base.height - SIDE)
        crop = base.crop((x, y, x + SIDE, y + SIDE))
        if step % 2:
            crop = ImageOps.mirror(crop)
        path = folder / f"photo_{i:03d}.png"
        crop.save(path, format="PNG")
        paths.append(path)
    return paths


def start_server(port: int) -> subprocess.Popen[bytes]:
    # No sample network stored at start-up: its second of CPU would overlap the first batch.
    env = {**os.environ, "WEB_CONCURRENCY": "2", "HOST": "127.0.0.1", "PORT": str(port),
           "CONVSERVE_LOG_LEVEL": "warning", "CONVSERVE_SAMPLE_MODEL": "0"}
    process = subprocess.Popen([sys.executable, "-m", "convserve.launcher"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_ready(process, port, 120)


async def load_rate(port: int, requests: list[bytes], connections: int) -> float:
    """Requests/s of sending every request once over ``connections`` keep-alive connections."""
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    queue = list(reversed(requests))

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            await exchange(reader, writer, queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in streams))
    elapsed = time.perf_counter() - started
    for _, writer in streams:
        writer.close()
    return len(requests) / elapsed


def cli_rate(url: str, photos: Path, out: Path, jobs: int) -> tuple[float, float]:
    """(images/s of the batch's summary line, images/s over the whole process)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "convserve_client.cli", "--url", url, "convolve",
               str(photos), "--jobs", str(jobs), "--preset", "sobel", "-o", str(out), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the batch failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    match = re.search(r"done (\d+), failed 0, skipped 0 in [\d.]+ s \(([\d.]+) images/s\)",
                      done.stdout)
    if match is None:
        raise SystemExit(f"no summary line in {done.stdout!r}")
    return float(match.group(2)), int(match.group(1)) / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of load generator then batch; the verdict is the median "
                             "of their ratios")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="convserve-bench-batch-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.photos)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        requests = [multipart_request(port, path.read_bytes(), "zip") for path in paths]
        server = start_server(port)
        try:
            asyncio.run(load_rate(port, requests[:16], args.jobs))  # warm both workers
            load_rates, batch_rates, process_rates = [], [], []
            for _ in range(args.rounds):
                load_rates.append(asyncio.run(load_rate(port, requests, args.jobs)))
                batch, process = cli_rate(url, folder, Path(tmp) / "out", args.jobs)
                batch_rates.append(batch)
                process_rates.append(process)
        finally:
            server.terminate()
            server.wait(10)

    size = len(requests[0])
    print(f"cores available: {len(os.sched_getaffinity(0))}; server: 2 uvicorn workers "
          f"(launcher); {args.photos} photos {SIDE}x{SIDE} (request ~{size // 1024} KiB), "
          f"preset sobel, format zip, concurrency {args.jobs}\n")
    print("| round | load generator req/s | batch images/s | batch incl. start-up | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for i, (load, batch, process) in enumerate(zip(load_rates, batch_rates, process_rates,
                                                   strict=True)):
        print(f"| {i + 1} | {load:.1f} | {batch:.1f} | {process:.1f} | {batch / load:.2f} |")
    ratios = sorted(b / lo for b, lo in zip(batch_rates, load_rates, strict=True))
    ratio = ratios[len(ratios) // 2]
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"\nbest of {args.rounds}: batch {max(batch_rates):.1f} images/s, load generator "
          f"{max(load_rates):.1f} req/s")
    print(f"Target batch images/s >= {TARGET} x load generator req/s (median of the rounds' "
          f"ratios; each round runs the two back to back, so a machine busy with other work "
          f"slows both alike): {ratio:.2f} {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
