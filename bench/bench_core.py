"""Core benchmark: raw ONNX Runtime vs convserve's onnxruntime engine vs the NumPy engine.

For each workload below, float32, batch 1, on ``--threads`` threads (default 2):

- ``raw``: an ``onnxruntime.InferenceSession`` of the very graph the engine builds
  (``conv_model(spec)``), created once with default options but the thread count, fed the
  prepared arrays with ``session.run``: the floor the engine is measured against;
- ``ort``: ``convserve.conv2d(x, weight, bias, ..., engine=OnnxRuntimeEngine(threads),
  check_finite=False)`` with a warm session cache, so argument conversion, the weight checks,
  spec building, cache lookup and dispatch are all included; the service calls the engine this
  way too, as its decoders have already refused non-finite inputs;
- ``numpy``: the same call with ``engine=NumpyEngine(threads)``;
- ``checked`` (information only): ``ort`` with the default ``check_finite=True``, i.e. plus one
  pass over the input looking for NaN and infinity;
- ``direct`` (information only): ``OnnxRuntimeEngine.conv2d`` on the prepared arrays and spec.

Each runs in short blocks, one after the other, in a few rounds after warm-up, with a pause
before each block; the table shows medians, and each ratio is the median over rounds of the
ratio of that round's block medians (paired, so drifting background load cancels out).
Targets: ``ort <= 1.1 x raw`` and ``numpy <= 3 x raw``; every output must agree with raw to
1e-4 relative to its largest value.
For W8 the NumPy engine's peak RSS is measured in a fresh child process
(``VmHWM`` of ``/proc/self/status``, Linux) against
``2 x (input + output bytes) + 150 MB``.

Usage: ``python bench/bench_core.py [--quick] [--only W1,W2] [--threads N] [--strict]``
(``--strict`` exits 1 when a target fails). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import convserve
from convserve.conv.engine import Engine
from convserve.conv.onnx_engine import OnnxRuntimeEngine, conv_model
from convserve.conv.spec import ConvSpec, conv_spec

ORT_TARGET = 1.1
NUMPY_TARGET = 3.0
AGREE_RTOL = 1e-4
RSS_SLACK_BYTES = 150 * 2**20
RSS_WORKLOAD = "W8"
SECONDS_PER_BLOCK = 0.25
SETTLE_SECONDS = 0.1


@dataclass(frozen=True)
class Workload:
    """One convolution layer: input ``x_shape`` (N, C_in, H, W), weight ``w_shape`` (OIHW)."""

    id: str
    title: str
    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    padding: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    gaussian: bool = False

    def spec(self) -> ConvSpec:
        return conv_spec(
            self.x_shape, self.w_shape, (self.w_shape[0],) if self.bias else None,
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Inputs in [0, 1), weights N(0, 1) (or a normalised Gaussian), bias N(0, 1)."""
        rng = np.random.default_rng(int(self.id[1:]))
        x = rng.random(self.x_shape, dtype=np.float32)
        if self.gaussian:
            k = self.w_shape[-1]
            g = np.exp(-0.5 * ((np.arange(k) - (k - 1) / 2) / 1.0) ** 2)
            w = np.broadcast_to(np.outer(g, g) / np.outer(g, g).sum(), self.w_shape)
            weight = np.ascontiguousarray(w, dtype=np.float32)
        else:
            weight = rng.standard_normal(self.w_shape, dtype=np.float32)
        bias = rng.standard_normal(self.w_shape[0], dtype=np.float32) if self.bias else None
        return x, weight, bias


WORKLOADS = (
    Workload("W1", "512x512 RGB, 3->2 3x3, pad 1", (1, 3, 512, 512), (2, 3, 3, 3), 1),
    Workload("W2", "1024x1024 RGB, 3->16 3x3, pad 1", (1, 3, 1024, 1024), (16, 3, 3, 3), 1),
    Workload("W3", "2048x2048 gray, 5x5 Gaussian, pad 2", (1, 1, 2048, 2048), (1, 1, 5, 5), 2,
             bias=False, gaussian=True),
    Workload("W4", "256x256, 64->64 3x3, pad 1", (1, 64, 256, 256), (64, 64, 3, 3), 1),
    Workload("W5", "1024x1024 RGB, 7x7 depthwise, pad 3", (1, 3, 1024, 1024), (3, 1, 7, 7), 3,
             groups=3),
    Workload("W6", "512x512, 32->32 1x1", (1, 32, 512, 512), (32, 32, 1, 1), 0),
    Workload("W7", "1024x1024 RGB, 3->8 3x3, s2 d2, pad 2", (1, 3, 1024, 1024), (8, 3, 3, 3), 2,
             stride=2, dilation=2),
    Workload("W8", "4096x4096 RGB, 3->4 3x3, pad 1", (1, 3, 4096, 4096), (4, 3, 3, 3), 1),
)
BY_ID = {w.id: w for w in WORKLOADS}


def load_numpy_engine(threads: int) -> Engine | None:
    """The NumPy engine, or None (with a note) while it is not part of this checkout."""
    try:
        from convserve.conv.numpy_engine import NumpyEngine
    except ImportError as exc:
        print(f"note: NumPy engine unavailable ({exc}); its columns are empty", file=sys.stderr)
        return None
    return NumpyEngine(threads=threads)


def raw_session(spec: ConvSpec, threads: int) -> Any:
    """Plain ONNX Runtime: the engine's graph, default options except the thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        conv_model(spec).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def time_blocks(
    runners: dict[str, Callable[[], np.ndarray]], rounds: int
) -> dict[str, list[list[float]]]:
    """Seconds per call of each runner, per round: warm-up, then ``rounds`` rounds of one block
    per runner.

    A block repeats one runner for about :data:`SECONDS_PER_BLOCK` (at least once) after a
    pause of :data:`SETTLE_SECONDS`: thread pools left spinning by the previous runner (ONNX
    Runtime's default session options, OpenBLAS) would otherwise slow this one. Alternating the
    runners round by round, in a new (seeded) order each round, spreads background load and
    any effect of the runner before over all of them.
    """
    per_block: dict[str, int] = {}
    for name, run in runners.items():
        run()  # first call: session creation, thread pools, page faults
        start = time.perf_counter()
        run()
        per_block[name] = max(1, int(SECONDS_PER_BLOCK / (time.perf_counter() - start)))
    times: dict[str, list[list[float]]] = {name: [] for name in runners}
    order = list(runners)
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)  # no runner always follows the same one
        for name in order:
            run = runners[name]
            time.sleep(SETTLE_SECONDS)
            block = []
            for _ in range(per_block[name]):
                start = time.perf_counter()
                run()
                block.append(time.perf_counter() - start)
            times[name].append(block)
    return times


def paired_ratio(times: dict[str, list[list[float]]], name: str, base: str) -> float:
    """Median over rounds of ``median(name's block) / median(base's block)``.

    The blocks of one round run seconds apart, so a change in background load between rounds
    (other tenants of a shared machine) cancels out of each round's ratio.
    """
    return statistics.median(
        statistics.median(a) / statistics.median(b)
        for a, b in zip(times[name], times[base], strict=True)
    )


def max_rel_diff(y: np.ndarray, reference: np.ndarray) -> float:
    """``max |y - reference| / max |reference|``."""
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(y - reference).max()) / scale


def bench_workload(
    w: Workload, threads: int, numpy_engine: Engine | None, rounds: int
) -> dict[str, Any]:
    spec = w.spec()
    x, weight, bias = w.arrays()
    session = raw_session(spec, threads)
    feeds = {"X": x, "W": weight} | ({"B": bias} if bias is not None else {})
    ort_engine = OnnxRuntimeEngine(intra_op_threads=threads)

    def run_raw() -> np.ndarray:
        y: np.ndarray = session.run(None, feeds)[0]
        return y

    def run_with(engine: Engine) -> Callable[[], np.ndarray]:
        return lambda: convserve.conv2d(x, weight, bias, stride=w.stride, padding=w.padding,
                                        dilation=w.dilation, groups=w.groups, engine=engine,
                                        check_finite=False)

    def run_checked() -> np.ndarray:
        return convserve.conv2d(x, weight, bias, stride=w.stride, padding=w.padding,
                                dilation=w.dilation, groups=w.groups, engine=ort_engine)

    def run_direct() -> np.ndarray:
        return ort_engine.conv2d(x, weight, bias, spec)

    runners = {"raw": run_raw, "ort": run_with(ort_engine), "checked": run_checked,
               "direct": run_direct}
    if numpy_engine is not None:
        runners["numpy"] = run_with(numpy_engine)
    reference = run_raw()
    error = max(max_rel_diff(run(), reference) for run in runners.values())
    times = time_blocks(runners, rounds)
    return {
        "workload": w, "spec": spec, "error": error,
        "ms": {name: statistics.median(v for block in t for v in block) * 1e3
               for name, t in times.items()},
        "ratio": {name: paired_ratio(times, name, "raw") for name in times},
    }


def rss_child(workload_id: str, threads: int) -> None:
    """In a fresh process: one NumPy-engine convolution, then print ``peak_rss in out``."""
    w = BY_ID[workload_id]
    engine = load_numpy_engine(threads)
    if engine is None:
        raise SystemExit(2)
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
        [sys.executable, __file__, "--rss-child", workload_id, "--threads", str(threads)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        print(f"note: RSS child failed: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    peak, in_bytes, out_bytes = (int(v) for v in done.stdout.split())
    return peak, in_bytes, out_bytes


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: list[dict[str, Any]], rss: tuple[int, int, int] | None, threads: int) -> bool:
    """Print the markdown table and the RSS line; True when every target holds."""
    import onnxruntime

    print(f"\nconvserve core benchmark: float32, batch 1, {threads} threads, medians; "
          f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}\n")
    print("| id | workload | GFLOP | raw ms | ort ms | numpy ms | raw GFLOP/s | ort GFLOP/s "
          "| numpy GFLOP/s | ort/raw | checked/raw | direct/raw | numpy/raw | max rel diff "
          "| result |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    all_ok = True
    for r in results:
        ms, gflop = r["ms"], r["spec"].flops / 1e9
        ort_ratio = r["ratio"]["ort"]
        np_ms = ms.get("numpy")
        np_ratio = None if np_ms is None else r["ratio"]["numpy"]
        checks = [ort_ratio <= ORT_TARGET, r["error"] <= AGREE_RTOL]
        if np_ratio is not None:
            checks.append(np_ratio <= NUMPY_TARGET)
        all_ok &= all(checks)

        def cell(v: float | None, fmt: str) -> str:
            return "n/a" if v is None else format(v, fmt)

        print(
            f"| {r['workload'].id} | {r['workload'].title} | {gflop:.2f} "
            f"| {ms['raw']:.2f} | {ms['ort']:.2f} | {cell(np_ms, '.2f')} "
            f"| {gflop / ms['raw'] * 1e3:.1f} | {gflop / ms['ort'] * 1e3:.1f} "
            f"| {cell(None if np_ms is None else gflop / np_ms * 1e3, '.1f')} "
            f"| {ort_ratio:.2f} | {r['ratio']['checked']:.2f} "
            f"| {r['ratio']['direct']:.2f} | {cell(np_ratio, '.2f')} "
            f"| {r['error']:.1e} "
            f"| {verdict(all(checks))} |"
        )
    print(f"\ntargets: ort/raw <= {ORT_TARGET}, numpy/raw <= {NUMPY_TARGET}, "
          f"outputs agree with raw to {AGREE_RTOL:g} (relative to the largest value); checked = "
          f"ort plus conv2d's default NaN/infinity scan of the input, direct = the engine on "
          f"prepared arrays (both information only)")
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
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.threads)
        return 0

    ids = [s.strip().upper() for s in args.only.split(",")] if args.only else list(BY_ID)
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(BY_ID)}")
    rounds = 3 if args.quick else 12
    numpy_engine = load_numpy_engine(args.threads)

    results = []
    for wid in ids:
        print(f"{wid} ...", file=sys.stderr, flush=True)
        results.append(bench_workload(BY_ID[wid], args.threads, numpy_engine, rounds))
    rss = None
    if RSS_WORKLOAD in ids and numpy_engine is not None:
        rss = measure_rss(RSS_WORKLOAD, args.threads)
    ok = report(results, rss, args.threads)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
