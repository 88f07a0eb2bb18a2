"""Measure ``engine="auto"``'s table: every path of every engine on each probe layer.

For each layer of ``WORKLOADS`` and ``PROBES`` (``bench/workloads.py``) every path that
applies (:func:`convserve.conv.auto.applicable_paths`) runs on prepared arrays with the
paired, alternating blocks of :func:`bench.workloads.time_blocks`, on ``--threads`` threads; its
output must agree with ONNX Runtime's to 1e-4 relative to the largest value. The paths of
each layer, fastest first (by the median over rounds of each block's median), make one entry
of the table; ``--write`` stores the table in ``convserve/conv/auto_table.json``, which the
repository keeps and :class:`convserve.conv.auto.AutoTable` reads.

The layers run as in a service process, where ``auto`` serves every request: glibc's
allocator set as the service sets it (:func:`convserve.allocator.tune`) and the engines' output
pool off (``create_app`` turns it off). With the pool on, as in a library process, the NumPy
engine's ``direct`` product on W6's 32 MiB output measured 5.8 ms and came first, while a
service would run it on fresh pages each time (about 7 ms, against ONNX Runtime's 5.3-6.1).

Usage: ``python -m bench.bench_auto [--quick] [--only W1,P2] [--threads N] [--write]``.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.workloads import BY_ID, blas_description, max_rel_diff, time_blocks
from convserve import allocator
from convserve.conv import buffers
from convserve.conv.auto import (
    TABLE_PATH,
    AutoEngine,
    Plan,
    applicable_paths,
    family,
    features,
    path_engine,
)
from convserve.conv.numpy_engine import NumpyEngine
from convserve.conv.onnx_engine import OnnxRuntimeEngine

AGREE_RTOL = 1e-4


def measure(wid: str, auto: AutoEngine, rounds: int) -> dict[str, Any]:
    """The table entry of layer ``wid``: its family, features, milliseconds per path and order."""
    w = BY_ID[wid]
    spec = w.spec()
    x, weight, bias = w.arrays()
    runners: dict[str, Callable[[], np.ndarray]] = {}
    for path in applicable_paths(spec, weight):
        plan = Plan(path, path_engine(path))
        runners[path] = (lambda p: lambda: auto.run(p, x, weight, bias, spec))(plan)
    reference = runners["onnxruntime"]()
    for path, run in runners.items():
        error = max_rel_diff(run(), reference)
        if error > AGREE_RTOL:
            raise SystemExit(f"{wid} {path}: differs from onnxruntime by {error:.1e}")
    times = time_blocks(runners, rounds)
    ms = {p: statistics.median(statistics.median(b) for b in t) * 1e3 for p, t in times.items()}
    order = sorted(ms, key=ms.__getitem__)
    return {"id": wid, "title": w.title, "family": family(spec),
            "features": [round(v, 3) for v in features(spec)],
            "ms": {p: round(ms[p], 3) for p in order}, "order": order}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--only", help="comma-separated layer ids, e.g. W1,P2")
    parser.add_argument("--threads", type=int, default=2, help="threads per convolution")
    parser.add_argument("--write", action="store_true", help=f"write {TABLE_PATH.name}")
    args = parser.parse_args(argv)
    ids = [s.strip().upper() for s in args.only.split(",")] if args.only else list(BY_ID)
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        parser.error(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(BY_ID)}")
    allocator.tune()  # as a service process (see the module docstring)
    buffers.OUTPUTS.capacity = 0
    auto = AutoEngine({"numpy": NumpyEngine(args.threads),
                       "onnxruntime": OnnxRuntimeEngine(args.threads)})
    entries = []
    print("| id | layer | family | paths, fastest first (ms) |\n|---|---|---|---|")
    for wid in ids:
        print(f"{wid} ...", file=sys.stderr, flush=True)
        entry = measure(wid, auto, 3 if args.quick else 7)
        entries.append(entry)
        paths = ", ".join(f"{p} {v:.2f}" for p, v in entry["ms"].items())
        print(f"| {wid} | {entry['title']} | {entry['family']} | {paths} |", flush=True)
    if args.write:
        import onnxruntime

        table = {
            "about": "engine='auto' paths per probe layer, fastest first; written by "
                     "python -m bench.bench_auto --write (make bench)",
            "measured_with": {"threads": args.threads, "machine": platform.machine(),
                              "process": "as a service process: allocator tuned, no pool",
                              "python": platform.python_version(), "numpy": np.__version__,
                              "onnxruntime": onnxruntime.__version__,
                              "blas": blas_description()},
            "entries": entries,
        }
        TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {TABLE_PATH.name} ({len(entries)} layers)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
