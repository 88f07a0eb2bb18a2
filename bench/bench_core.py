"""Core benchmark: convserve's engines against ONNX Runtime, PyTorch and OpenCV (issue 12).

For each workload of ``bench/workloads.py`` (float32, batch 1, ``--threads`` threads, default
2) the peers there (raw ONNX Runtime, PyTorch channels-first and channels-last, OpenCV
``filter2D`` where it applies) and three calls of ``convserve.conv2d(x, weight, bias, stride,
padding, dilation, groups, engine=...)`` with ``check_finite`` at its default, warm caches:

- ``ort``: ``engine`` = an ``OnnxRuntimeEngine(threads)``;
- ``auto``: ``engine`` = an ``AutoEngine`` on engines of ``threads`` threads (what
  ``engine="auto"``, the default, runs), with the path it took;
- ``numpy``: ``engine`` = a ``NumpyEngine(threads)``.

Each runs in short blocks, alternating, in a few rounds after warm-up, with a pause before each
block; the table shows medians, and each ratio is the median over rounds of the ratio of that
round's block medians (paired, so drifting background load cancels out); "best peer" is the
fastest peer of each round. Targets (issue 12):

- 3: ``ort / raw <= 1.1``;
- 4: ``auto / best peer <= 1.0`` and ``numpy / best peer <= 2.0``;

and every output agrees with raw to 1e-4 relative to its largest value. For W8 the NumPy
engine's peak RSS is measured in a fresh child process (``VmHWM``, Linux) against
``2 x (input + output bytes) + 150 MB``.

Every runner is timed on warm memory: the process has glibc keep every block in its heap
(``workloads.keep_heap_warm``), since PyTorch's tensors are plain ``malloc`` and would
otherwise fault in fresh pages on every call while convserve's engines reuse their outputs
(``--allocator default`` measures glibc as it starts, which made PyTorch up to 6x slower here).

Usage: ``python -m bench.bench_core [--quick] [--only W1,W2] [--threads N]
[--allocator warm|default] [--strict]`` (``--strict`` exits 1 when a target fails). Not a
test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import convserve
from bench.workloads import (
    BY_ID,
    WORKLOADS,
    Workload,
    blas_description,
    keep_heap_warm,
    max_rel_diff,
    paired_ratio,
    peers,
    time_blocks,
)
from convserve.conv.auto import AutoEngine
from convserve.conv.numpy_engine import NumpyEngine
from convserve.conv.onnx_engine import OnnxRuntimeEngine

ORT_TARGET = 1.1
AUTO_TARGET = 1.0
NUMPY_TARGET = 2.0
AGREE_RTOL = 1e-4
RSS_SLACK_BYTES = 150 * 2**20
RSS_WORKLOAD = "W8"
PEERS = ("raw", "torch", "torch-cl", "opencv")


def bench_workload(w: Workload, threads: int, rounds: int) -> dict[str, Any]:
    spec = w.spec()
    x, weight, bias = w.arrays()
    numpy_engine = NumpyEngine(threads)
    ort_engine = OnnxRuntimeEngine(intra_op_threads=threads)
    auto = AutoEngine({"numpy": numpy_engine, "onnxruntime": ort_engine})

    def call(engine: Any) -> Callable[[], np.ndarray]:
        return lambda: convserve.conv2d(x, weight, bias, stride=w.stride, padding=w.padding,
                                        dilation=w.dilation, groups=w.groups, engine=engine)

    runners = peers(w, x, weight, bias, threads)
    runners |= {"ort": call(ort_engine), "auto": call(auto), "numpy": call(numpy_engine)}
    reference = runners["raw"]()
    error = max(max_rel_diff(run(), reference) for run in runners.values())
    times = time_blocks(runners, rounds)
    ms = {name: statistics.median(v for block in t for v in block) * 1e3
          for name, t in times.items()}
    present = [p for p in PEERS if p in times]
    return {
        "workload": w, "spec": spec, "error": error, "ms": ms,
        "path": auto.plan(spec, weight).path,
        "best": min(present, key=ms.__getitem__),
        "ratio": {"ort": paired_ratio(times, "ort", ["raw"]),
                  "auto": paired_ratio(times, "auto", present),
                  "numpy": paired_ratio(times, "numpy", present)},
    }


def rss_child(workload_id: str, threads: int) -> None:
    """In a fresh process: one NumPy-engine convolution, then print ``peak_rss in out``."""
    w = BY_ID[workload_id]
    engine = NumpyEngine(threads)
    x, weight, bias = w.arrays()
    y = convserve.conv2d(x, weight, bias, engine=engine, stride=w.stride, padding=w.padding,
                         dilation=w.dilation, groups=w.groups)
    print(peak_rss(), x.nbytes, y.nbytes)


def peak_rss() -> int:
    """This process's peak resident set size in bytes.

    ``VmHWM`` from ``/proc/self/status``: it belongs to the address space made by ``exec``, while
    ``getrusage``'s ``ru_maxrss`` survives ``fork`` + ``exec`` and would report the benchmark
    parent's peak when that is larger.
    """
    with open("/proc/self/status", encoding="ascii") as status:  # Linux, as the bench is
        return next(int(line.split()[1]) * 1024 for line in status  # kB
                    if line.startswith("VmHWM:"))


def measure_rss(workload_id: str, threads: int) -> tuple[int, int, int] | None:
    """(peak RSS, input bytes, output bytes) of the NumPy engine in a child, or None."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_core", "--rss-child", workload_id,
         "--threads", str(threads)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        print(f"note: RSS child failed: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    peak, in_bytes, out_bytes = (int(v) for v in done.stdout.split())
    return peak, in_bytes, out_bytes


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: list[dict[str, Any]], rss: tuple[int, int, int] | None, threads: int,
           allocator: str) -> bool:
    """Print the markdown table, the targets and the RSS line; True when every target holds."""
    import onnxruntime

    print(f"\nconvserve core benchmark: float32, batch 1, {threads} threads, medians in ms; "
          f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}, {blas_description()}; "
          f"{allocator}\n")
    print("| id | workload | raw | torch | torch-cl | opencv | ort | auto | numpy | auto path "
          "| best peer | T3 ort/raw | T4 auto/best | T4 numpy/best | max rel diff |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|")
    targets = (("ort", ORT_TARGET), ("auto", AUTO_TARGET), ("numpy", NUMPY_TARGET))
    all_ok = True
    for r in results:
        ms, ratio = r["ms"], r["ratio"]
        cells = [f"{ms[n]:.2f}" if n in ms else "n/a" for n in (*PEERS, "ort", "auto", "numpy")]

        verdicts = []
        for name, bound in targets:
            ok = ratio[name] <= bound
            all_ok &= ok
            verdicts.append(f"{ratio[name]:.2f} {verdict(ok)}")
        agree = r["error"] <= AGREE_RTOL
        all_ok &= agree
        print(f"| {r['workload'].id} | {r['workload'].title} | "
              + " | ".join(cells)
              + f" | {r['path']} | {r['best']} | " + " | ".join(verdicts)
              + f" | {r['error']:.1e} {verdict(agree)} |")
    print(f"\ntargets: 3. ort/raw <= {ORT_TARGET}; 4. auto/best peer <= {AUTO_TARGET} and "
          f"numpy/best peer <= {NUMPY_TARGET}; outputs agree with raw to {AGREE_RTOL:g} "
          f"(relative to the largest value). ort, auto and numpy are conv2d calls with "
          f"check_finite at its default.")
    if rss is not None:
        peak, in_bytes, out_bytes = rss
        bound = 2 * (in_bytes + out_bytes) + RSS_SLACK_BYTES
        ok = peak <= bound
        all_ok &= ok
        mb = 2**20
        print(f"{RSS_WORKLOAD} NumPy engine peak RSS (fresh process): {peak / mb:.0f} MB; bound "
              f"2 x (input {in_bytes / mb:.0f} MB + output {out_bytes / mb:.0f} MB) + 150 MB = "
              f"{bound / mb:.0f} MB: {verdict(ok)}")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 12")
    parser.add_argument("--only", help="comma-separated workload ids, e.g. W1,W2")
    parser.add_argument("--threads", type=int, default=2, help="threads per convolution")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--allocator", choices=("warm", "default"), default="warm",
                        help="warm (default): glibc keeps every block in its heap, so no runner "
                             "faults in fresh pages per call; default: glibc as it starts")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.threads)
        return 0

    known = [w.id for w in WORKLOADS]
    ids = [s.strip().upper() for s in args.only.split(",")] if args.only else known
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(BY_ID)}")
    rounds = 3 if args.quick else 12
    allocator = keep_heap_warm() if args.allocator == "warm" else "allocator: glibc's defaults"

    results = []
    for wid in ids:
        print(f"{wid} ...", file=sys.stderr, flush=True)
        results.append(bench_workload(BY_ID[wid], args.threads, rounds))
    rss = None
    if RSS_WORKLOAD in ids:
        rss = measure_rss(RSS_WORKLOAD, args.threads)
    ok = report(results, rss, args.threads, allocator)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
