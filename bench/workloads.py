"""What the core benchmarks share: the workloads, the peers and the paired timing.

Workloads ``W1``-``W8`` are the layers ``bench_core`` reports; ``PROBES`` adds smaller and
other-shaped layers that ``bench_auto`` measures too, so that ``engine="auto"``'s table covers
more than the reported layers.

Peers (bench-only dependencies, the ``bench`` extra of ``service/pyproject.toml``):

- ``raw``: an ``onnxruntime.InferenceSession`` of the very graph the engine builds, default
  options but the thread count, fed with ``session.run``;
- ``torch``: ``torch.nn.functional.conv2d`` on CPU tensors sharing the arrays' memory
  (channels first), under ``torch.no_grad()``, ``torch.set_num_threads(threads)``;
- ``torch-cl``: the same with input and weight in ``torch.channels_last`` (converted once,
  before timing: a caller whose data is already channels-last);
- ``opencv``: ``cv2.filter2D`` once per output channel (with ``delta`` = the bias), where it
  computes the same layer: one input channel per group, stride 1, dilation 1, pads that keep
  the size (``cv2.setNumThreads(threads)``).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve import allocator
from convserve.conv.graphs import conv_model
from convserve.conv.spec import ConvSpec, conv_spec

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
        rng = np.random.default_rng(sum(map(ord, self.id)))
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
PROBES = (
    Workload("P1", "96x96 RGB, 3->8 3x3, pad 1", (1, 3, 96, 96), (8, 3, 3, 3), 1),
    Workload("P2", "512x512 RGB, 3x3 depthwise, pad 1", (1, 3, 512, 512), (3, 1, 3, 3), 1,
             groups=3),
    Workload("P3", "512x512 RGB, 3x3 Gaussian depthwise, pad 1", (1, 3, 512, 512),
             (3, 1, 3, 3), 1, groups=3, gaussian=True),
    Workload("P4", "128x128, 32 channels 3x3 depthwise, pad 1", (1, 32, 128, 128),
             (32, 1, 3, 3), 1, groups=32),
    Workload("P5", "512x512 RGB, 3->8 5x5, pad 2", (1, 3, 512, 512), (8, 3, 5, 5), 2),
    Workload("P6", "256x256 RGB, 3->1 1x1", (1, 3, 256, 256), (1, 3, 1, 1), 0),
    Workload("P7", "512x512 RGB, 3->8 3x3, s2 d2, pad 1", (1, 3, 512, 512), (8, 3, 3, 3), 1,
             stride=2, dilation=2),
    Workload("P8", "1024x1024 RGB, 3->16 3x3, s2, pad 1", (1, 3, 1024, 1024), (16, 3, 3, 3),
             1, stride=2),
)
BY_ID = {w.id: w for w in (*WORKLOADS, *PROBES)}


def optional_module(name: str, extra: str = "bench") -> Any:
    """``name`` imported, or None with a note naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        print(f"note: {name} unavailable ({exc}); pip install -e 'service[{extra}]' adds it",
              file=sys.stderr)
        return None


def raw_session(spec: ConvSpec, threads: int) -> Any:
    """Plain ONNX Runtime: the engine's graph, default options except the thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        conv_model(spec).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def peers(w: Workload, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
          threads: int) -> dict[str, Callable[[], np.ndarray]]:
    """The peers that compute workload ``w`` here, by name (see the module docstring)."""
    spec = w.spec()
    session = raw_session(spec, threads)
    feeds = {"X": x, "W": weight} | ({"B": bias} if bias is not None else {})

    def run_raw() -> np.ndarray:
        y: np.ndarray = session.run(None, feeds)[0]
        return y

    runners: dict[str, Callable[[], np.ndarray]] = {"raw": run_raw}
    torch = optional_module("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        conv = torch.nn.functional.conv2d
        xt, wt = torch.from_numpy(x), torch.from_numpy(weight)
        bt = None if bias is None else torch.from_numpy(bias)
        last = torch.channels_last
        xl, wl = xt.contiguous(memory_format=last), wt.contiguous(memory_format=last)
        args = (w.stride, w.padding, w.dilation, w.groups)

        def torch_runner(xa: Any, wa: Any) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                with torch.no_grad():
                    y: np.ndarray = conv(xa, wa, bt, *args).numpy()
                return y
            return run

        runners["torch"] = torch_runner(xt, wt)
        runners["torch-cl"] = torch_runner(xl, wl)
    cv2 = optional_module("cv2") if opencv_applies(spec) else None
    if cv2 is not None:
        cv2.setNumThreads(threads)
        top, _, left, _ = spec.pads
        kernels = [np.ascontiguousarray(weight[o, 0]) for o in range(spec.out_channels)]
        deltas = [0.0 if bias is None else float(bias[o]) for o in range(spec.out_channels)]

        def run_opencv() -> np.ndarray:
            y = np.empty(spec.output_shape, dtype=np.float32)
            for n in range(spec.batch):
                for o in range(spec.out_channels):
                    cv2.filter2D(x[n, o // spec.out_per_group], -1, kernels[o], dst=y[n, o],
                                 anchor=(left, top), delta=deltas[o],
                                 borderType=cv2.BORDER_CONSTANT)
            return y

        runners["opencv"] = run_opencv
    return runners


def opencv_applies(spec: ConvSpec) -> bool:
    """Whether ``cv2.filter2D`` per output channel computes ``spec`` (zero padding)."""
    top, bottom, left, right = spec.pads
    return (spec.in_per_group == 1 and spec.stride == (1, 1) and spec.dilation == (1, 1)
            and top + bottom == spec.kernel_h - 1 and left + right == spec.kernel_w - 1
            and spec.padding_mode == "zeros")


def time_blocks(
    runners: dict[str, Callable[[], np.ndarray]], rounds: int
) -> dict[str, list[list[float]]]:
    """Seconds per call of each runner, per round: warm-up, then ``rounds`` rounds of one block
    per runner.

    A block repeats one runner for about :data:`SECONDS_PER_BLOCK` (at least once) after a
    pause of :data:`SETTLE_SECONDS`: thread pools left spinning by the previous runner (ONNX
    Runtime's default session options, OpenBLAS, PyTorch's OpenMP) would otherwise slow this
    one. Alternating the runners round by round, in a new (seeded) order each round, spreads
    background load and any effect of the runner before over all of them.
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


def paired_ratio(times: dict[str, list[list[float]]], name: str, bases: list[str]) -> float:
    """Median over rounds of ``median(name's block) / min over bases of median(base's block)``.

    The blocks of one round run seconds apart, so a change in background load between rounds
    (other tenants of a shared machine) cancels out of each round's ratio.
    """
    return statistics.median(
        statistics.median(times[name][i]) / min(statistics.median(times[b][i]) for b in bases)
        for i in range(len(times[name]))
    )


def max_rel_diff(y: np.ndarray, reference: np.ndarray) -> float:
    """``max |y - reference| / max |reference|``."""
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(y - reference).max()) / scale


KEPT_TRIM_THRESHOLD = 2**31 - 1  # the largest ``int`` mallopt takes: 2 GiB


def keep_heap_warm() -> str:
    """Have glibc keep every block in its heap and never give freed memory back; a description.

    By default glibc maps each allocation of 128 KiB or more afresh (raised up to 32 MiB after
    a free, never beyond) and unmaps it on ``free``, so a runner whose output or scratch
    buffers are that large faults in fresh pages on every call, 4 KiB at a time. PyTorch's
    CPU tensors are plain ``malloc``; convserve's NumPy and OpenCV engines reuse large outputs
    from their own pool (``conv/buffers.py``). Measured here in paired runs, PyTorch
    channels-last took 14.4 ms cold and 2.75 ms warm on W6 (a 32 MiB output), channels-first
    128 against 36 ms on W3; the raw ONNX Runtime session 67 against 61 ms on W8. So that
    every runner is timed on memory it has used before, as in a long-running process whose
    allocator keeps it (jemalloc, tcmalloc, or glibc tuned so), the benchmark process sets
    ``M_MMAP_MAX`` to 0 (no block is mapped on its own) and ``M_TRIM_THRESHOLD`` to 2 GiB
    (freed memory stays). The setting is this process's only: child processes (the RSS
    measurement) start with glibc's defaults.
    """
    if allocator.set_options(((allocator.M_MMAP_MAX, 0),
                              (allocator.M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD))):
        return "allocator: glibc, every block kept in the heap (warm memory for every runner)"
    return "allocator: the C library's own (the warm-heap setting was not applied)"


def blas_description() -> str:
    """NumPy's OpenBLAS and the kernels it chose (``"OpenBLAS Haswell, OPENBLAS_CORETYPE=Haswell
    from the environment"``), as the library reports them; benchmarks print it, since the NumPy
    engine's matrix products run on those kernels and an environment variable can choose them.
    """
    core = "unknown"
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split(maxsplit=5)[-1].strip() for line in maps
                            if "openblas" in line.lower()})
    except OSError:
        paths = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        names = [f"{prefix}_get_corename{suffix}" for prefix in ("scipy_openblas", "openblas")
                 for suffix in ("64_", "")]
        function = next((getattr(library, n) for n in names if hasattr(library, n)), None)
        if function is not None:
            function.restype = ctypes.c_char_p
            core = (function() or b"unknown").decode(errors="replace")
            break
    chosen = {name: os.environ[name] for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
              if os.environ.get(name)}
    told = ", ".join(f"{k}={v}" for k, v in chosen.items())
    return f"OpenBLAS {core}" + (f" ({told} from the environment)" if told else "")
