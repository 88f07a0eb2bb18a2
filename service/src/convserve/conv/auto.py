"""``engine="auto"``: run each layer on the fastest exact path among the engines' strategies.

A *path* is one engine, with one of its strategies, optionally behind the ``subsample``
transform:

``onnxruntime``
    ONNX Runtime's ``Conv`` (:class:`~convserve.conv.onnx_engine.OnnxRuntimeEngine`), the
    weights fed as graph inputs.
``onnxruntime:packed``
    The same with the weights built into a session of their own, which ONNX Runtime lays out
    for its blocked kernels once; the first call with new weights makes that session. Only
    for weights up to 1 MiB, 8 output channels or more, and inputs and outputs up to 16 MiB
    (:func:`~convserve.conv.packing.packed_applies`).
``numpy:direct``, ``numpy:im2col``, ``numpy:toeplitz``, ``numpy:separable``
    The NumPy engine with that strategy forced (see :mod:`convserve.conv.numpy_engine`).
``opencv:filter2d``, ``opencv:sepfilter2d``
    OpenCV's ``filter2D`` or ``sepFilter2D`` (:mod:`convserve.conv.opencv_engine`), one filter
    per pair of output and input channel of a group, summed: layers of stride 1 and dilation 1
    without zero weights, where ``opencv-python-headless`` is installed; the answer then
    reports engine ``"opencv"``.
``subsample+<path>``
    For a strided layer whose dilation is a multiple of its stride on both axes, with zero
    padding: such a layer reads only every ``s``-th row and column of the padded input, so it
    equals a stride-1 layer with dilation ``d / s`` over those rows and columns
    (:func:`subsample_spec`). The same products are summed; a quarter of the input (stride 2)
    is copied once instead of being gathered by the engine.

Which path is fastest depends on the machine and the shape, so it is measured:
``bench/bench_auto.py`` (run by ``make bench``) times every applicable path on a set of probe
layers and writes ``auto_table.json`` beside this module, which the repository keeps. For a
layer, :class:`AutoTable` takes the probes of the same *family* (pointwise, depthwise or dense;
stride 1, subsampled or strided), the nearest one by the logarithms of output pixels,
channels per group, kernel taps and groups, and that probe's paths from fastest to slowest; the
first path that applies to this layer and its weights runs (``numpy:separable`` needs rank-1
kernels, the OpenCV paths kernels without a zero weight). A family without probes falls back
to ONNX Runtime when it is installed, else to the NumPy engine's own choice
(:func:`~convserve.conv.numpy_engine.choose_strategy`).

On CUDA, ``auto`` is ONNX Runtime on CUDA, with the same error as ``engine="onnxruntime"``
where CUDA is not active (never a CPU fallback).

Every path multiplies every value it reads (no path skips zero weights: OpenCV, which does,
runs only kernels without one), so a non-finite input value inside a receptive field always
reaches the output: ``propagates_non_finite`` is true.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np

from convserve.conv import opencv_engine
from convserve.conv.arrays import all_finite
from convserve.conv.engine import Device, DeviceStatus, Engine, EngineChoice, EngineName
from convserve.conv.opencv_engine import OpenCvEngine
from convserve.conv.packing import packed_applies, packs
from convserve.conv.spec import ConvSpec
from convserve.conv.threads import HelperThreads
from convserve.cores import available_cores

__all__ = [
    "PATHS",
    "TABLE_PATH",
    "AutoEngine",
    "AutoTable",
    "PathEngine",
    "Plan",
    "applicable_paths",
    "family",
    "features",
    "subsample_spec",
]

TABLE_PATH = Path(__file__).with_name("auto_table.json")
"""The table ``make bench`` measures (``bench/bench_auto.py --write``) and the repository keeps."""

_NUMPY_STRATEGIES = ("direct", "im2col", "toeplitz", "separable")
PATHS: tuple[str, ...] = (
    "onnxruntime", "onnxruntime:packed", *(f"numpy:{s}" for s in _NUMPY_STRATEGIES),
    *(f"opencv:{s}" for s in opencv_engine.STRATEGIES),
    *(f"subsample+{p}" for p in ("onnxruntime", "numpy:im2col", "numpy:toeplitz",
                                 *(f"opencv:{s}" for s in opencv_engine.STRATEGIES))),
)
"""Every path ``auto`` knows, in the order of preference used to break ties."""
PathEngine: TypeAlias = Literal["numpy", "onnxruntime", "opencv"]
"""The engine that runs a path (OpenCV is no engine a caller names, but the one that ran)."""


def path_engine(path: str) -> PathEngine:
    """The engine that runs ``path``."""
    inner = path.removeprefix("subsample+")
    if inner.startswith("onnxruntime"):
        return "onnxruntime"
    return "opencv" if inner.startswith("opencv:") else "numpy"


# -- the subsample transform ----------------------------------------------------------------


@dataclass(frozen=True)
class Subsample:
    """How :func:`subsample_spec` reads the input: ``x[:, :, rows, cols]`` with
    ``rows = slice(row0, row0 + height * s_h, s_h)`` (likewise columns), then ``spec``."""

    spec: ConvSpec
    row0: int
    col0: int

    def take(self, x: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
        """The C-contiguous subsampled input, shape ``self.spec.input_shape``.

        A copy bound by memory: where the rows it reads span more than
        :data:`_TAKE_SPLIT_BYTES`, blocks of :data:`_TAKE_ROWS` rows are copied on up to 4
        threads (W7's 12 MiB input, out of cache: 0.67 ms against 0.85 ms on one).
        """
        s_h, s_w = stride
        h, w = self.spec.height, self.spec.width
        view = x[:, :, self.row0 : self.row0 + (h - 1) * s_h + 1 : s_h,
                 self.col0 : self.col0 + (w - 1) * s_w + 1 : s_w]
        if view.shape[0] * view.shape[1] * h * s_h * x.strides[2] <= _TAKE_SPLIT_BYTES:
            return np.ascontiguousarray(view)
        out = np.empty(view.shape, dtype=view.dtype)
        blocks = [(n, c, r) for n in range(view.shape[0]) for c in range(view.shape[1])
                  for r in range(0, h, _TAKE_ROWS)]

        def copier() -> Callable[[tuple[int, int, int]], None]:
            def copy(block: tuple[int, int, int]) -> None:
                n, c, r = block
                out[n, c, r : r + _TAKE_ROWS] = view[n, c, r : r + _TAKE_ROWS]
            return copy

        _TAKE_THREADS.share(blocks, copier)
        return out


_TAKE_SPLIT_BYTES = 4 << 20
"""Bytes of input rows above which :meth:`Subsample.take` copies on several threads."""
_TAKE_ROWS = 64
"""Subsampled rows per block that :meth:`Subsample.take` copies on one thread."""
_TAKE_THREADS = HelperThreads(min(4, available_cores()), "convserve-subsample")


def _subsample_axis(size: int, before: int, kernel: int, stride: int, dilation: int,
                    out: int) -> tuple[int, int, int, int] | None:
    """(first input, inputs kept, pad before, pad after) of one axis, or None if none is kept.

    Output ``r`` reads padded positions ``r*s + u*d``, i.e. input ``s*(r + u*d/s - a) + p`` with
    ``a = ceil(before / s)`` and ``p = a*s - before``: every ``s``-th input from ``p``, padded
    by ``a`` before.
    """
    a = -(-before // stride)
    first = a * stride - before
    available = len(range(first, size, stride))
    needed = out + (dilation // stride) * (kernel - 1)  # subsampled rows the outputs read
    kept = min(available, needed - a)
    if kept < 1:
        return None
    return first, kept, a, needed - a - kept


def subsample_spec(spec: ConvSpec) -> Subsample | None:
    """The stride-1 layer over every ``s``-th input that equals ``spec``, or None.

    Applies when some stride is above 1, each dilation is a multiple of its stride and padding
    is zeros (other padding modes would need the padded input built first).
    """
    (s_h, s_w), (d_h, d_w) = spec.stride, spec.dilation
    if spec.stride == (1, 1) or d_h % s_h or d_w % s_w or spec.padding_mode != "zeros":
        return None
    top, _, left, _ = spec.pads
    rows = _subsample_axis(spec.height, top, spec.kernel_h, s_h, d_h, spec.out_height)
    cols = _subsample_axis(spec.width, left, spec.kernel_w, s_w, d_w, spec.out_width)
    if rows is None or cols is None:
        return None
    sub = replace(
        spec, height=rows[1], width=cols[1], stride=(1, 1), dilation=(d_h // s_h, d_w // s_w),
        pads=(rows[2], rows[3], cols[2], cols[3]),
    )
    if sub.output_shape != spec.output_shape:  # by construction; a guard, not a branch taken
        raise AssertionError(f"subsample of {spec} gives {sub.output_shape}")
    return Subsample(sub, rows[0], cols[0])


# -- families, features and the table ---------------------------------------------------------


def family(spec: ConvSpec) -> str:
    """``{pointwise|depthwise|dense}-{s1|subsample|strided}``: layers whose paths compare alike.

    ``depthwise`` is one input channel per group (a depthwise layer, or one grey channel).
    """
    if (spec.kernel_h, spec.kernel_w) == (1, 1):
        kind = "pointwise"
    elif spec.in_per_group == 1:
        kind = "depthwise"
    else:
        kind = "dense"
    if spec.stride == (1, 1):
        move = "s1"
    elif subsample_spec(spec) is not None:
        move = "subsample"
    else:
        move = "strided"
    return f"{kind}-{move}"


def features(spec: ConvSpec) -> tuple[float, ...]:
    """log2 of (batch * output pixels, C_in/groups, C_out/groups, k_h * k_w, groups)."""
    return tuple(math.log2(max(v, 1)) for v in (
        spec.batch * spec.out_height * spec.out_width, spec.in_per_group, spec.out_per_group,
        spec.kernel_h * spec.kernel_w, spec.groups,
    ))


def _rank1(weight: np.ndarray) -> bool:
    return opencv_engine.rank1(weight) is not None  # memoised (the same SVDs as the engines')


def _static_ok(path: str, spec: ConvSpec) -> bool:
    """Whether ``path`` can run ``spec`` (before looking at the weights)."""
    if path.startswith("subsample+"):
        sub = subsample_spec(spec)
        return sub is not None and _static_ok(path.removeprefix("subsample+"), sub.spec)
    if path == "numpy:direct":
        return ((spec.kernel_h, spec.kernel_w) == (1, 1) and spec.stride == (1, 1)
                and not any(spec.pads))
    if path == "numpy:separable":
        return spec.in_per_group == 1 and spec.kernel_h > 1 and spec.kernel_w > 1
    if path.startswith("opencv:"):
        return opencv_engine.applies(spec)
    if path == "onnxruntime:packed":
        return packed_applies(spec)
    return path in PATHS


def _weights_ok(path: str, weight: np.ndarray, finite_input: bool = False) -> bool:
    """Whether ``path`` computes ``weight`` exactly (after :func:`_static_ok`); OpenCV paths
    take zero weights only for a ``finite_input`` (:func:`opencv_engine.weights_apply`)."""
    if path.endswith("separable"):
        return _rank1(weight)
    if path == "onnxruntime:packed":
        return packs(weight)
    if "opencv:" in path:
        strategy: opencv_engine.OpenCvStrategy = (
            "sepfilter2d" if path.endswith("sepfilter2d") else "filter2d"
        )
        return opencv_engine.installed() and opencv_engine.weights_apply(
            strategy, weight, finite_input=finite_input)
    return True


def applicable_paths(spec: ConvSpec, weight: np.ndarray) -> list[str]:
    """Every path of :data:`PATHS` that can run ``spec`` with ``weight`` exactly here."""
    return [p for p in PATHS if _static_ok(p, spec) and _weights_ok(p, weight)]


@dataclass(frozen=True)
class Plan:
    """The path ``auto`` chose for one layer, and the engine that runs it (for reports)."""

    path: str
    engine: PathEngine
    finite_input: bool = False
    """Planned for an input known to hold only finite values (OpenCV may then skip zeros)."""


class AutoTable:
    """Measured probes: per family, a list of (features, paths fastest first).

    Parameters
    ----------
    entries : list of dict
        Each with ``"family"`` (str), ``"features"`` (list of float) and ``"order"`` (paths,
        fastest first), as ``bench/bench_auto.py`` writes them.
    """

    def __init__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self.entries: dict[str, list[tuple[tuple[float, ...], tuple[str, ...]]]] = {}
        for entry in entries:
            order = tuple(p for p in entry["order"] if p in PATHS)
            self.entries.setdefault(str(entry["family"]), []).append(
                (tuple(float(v) for v in entry["features"]), order)
            )

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> AutoTable:
        """The table in ``path``; an empty table (fallback rule only) when it is absent."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls([])
        return cls(data["entries"])

    def order(self, spec: ConvSpec, rank1: bool = False) -> tuple[str, ...]:
        """Paths for ``spec``, fastest first, from its family's nearest probe (may be empty).

        ``rank1`` (the weights are separable) prefers probes measured with rank-1 kernels,
        whose order includes ``numpy:separable``; otherwise probes without them.
        """
        probes = self.entries.get(family(spec), [])
        alike = [p for p in probes if ("numpy:separable" in p[1]) == rank1]
        if not alike:
            alike = probes
        if not alike:
            return ()
        point = features(spec)
        _, order = min(alike, key=lambda p: sum((a - b) ** 2 for a, b in zip(p[0], point,
                                                                              strict=True)))
        return order


def _fallback(ort_installed: bool) -> tuple[str, ...]:
    first = ["onnxruntime"] if ort_installed else []
    return (*first, "numpy:separable", "numpy:direct", "numpy:toeplitz", "numpy:im2col")


# -- the engine -------------------------------------------------------------------------------


class AutoEngine:
    """Runs each layer on the path its table ranks fastest (see the module docstring).

    Parameters
    ----------
    engines : mapping of "numpy" and "onnxruntime" to engines, optional
        The engines to run on (default: the process-wide ones of
        :func:`convserve.conv.functional.get_engine`, created on first use).
    table : AutoTable, optional
        Default: :meth:`AutoTable.load` of :data:`TABLE_PATH`.
    """

    name: EngineChoice = "auto"
    propagates_non_finite = True

    def __init__(self, engines: Mapping[str, Engine] | None = None,
                 table: AutoTable | None = None) -> None:
        self._engines = dict(engines) if engines is not None else None
        self.table = AutoTable.load() if table is None else table
        self._orders: dict[tuple[ConvSpec, bool], tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._ort_installed = importlib.util.find_spec("onnxruntime") is not None
        self._cv_installed = opencv_engine.installed()
        # OpenCV on as many threads as the NumPy engine given (default: every core).
        threads = None if engines is None else getattr(engines.get("numpy"), "threads", None)
        self._opencv = OpenCvEngine(threads)

    @property
    def ort_installed(self) -> bool:
        """Whether the onnxruntime package can be imported here."""
        return self._ort_installed

    def version(self) -> str:
        """The versions of the engines ``auto`` picks from."""
        return ", ".join(f"{name} {self.engine(name).version()}"
                         for name in ("numpy", "onnxruntime", "opencv"))

    def devices(self) -> list[DeviceStatus]:
        """The CPU (the NumPy engine's, always there) and CUDA (ONNX Runtime's, with its
        reason when it is not active); ``details`` name the paths and the measured probes."""
        details: dict[str, object] = {
            "paths": [p for p in PATHS if self._cv_installed or "opencv:" not in p],
            "probes": sum(len(v) for v in self.table.entries.values()),
        }
        statuses = {s.device: s for s in self.engine("numpy").devices()}
        cuda = {s.device: s for s in self.engine("onnxruntime").devices()}["cuda"]
        return [DeviceStatus("cpu", statuses["cpu"].available, statuses["cpu"].reason, details),
                DeviceStatus("cuda", cuda.available, cuda.reason, {"engine": "onnxruntime"})]

    def engine(self, name: EngineName | Literal["opencv"]) -> Engine | OpenCvEngine:
        """The engine called ``name`` that this one runs on."""
        if name == "opencv":
            return self._opencv
        if self._engines is None:
            from convserve.conv.functional import get_engine

            return get_engine(name)
        return self._engines[name]

    def _order(self, spec: ConvSpec, rank1: bool) -> tuple[str, ...]:
        order = self._orders.get((spec, rank1))
        if order is None:
            measured = self.table.order(spec, rank1)
            ranked = [p for p in (*measured, *_fallback(self._ort_installed))
                      if _static_ok(p, spec) and (rank1 or not p.endswith("separable"))
                      and (self._ort_installed or path_engine(p) != "onnxruntime")
                      and (self._cv_installed or "opencv:" not in p)]
            order = tuple(dict.fromkeys(ranked))
            with self._lock:
                if len(self._orders) >= 512:
                    self._orders.clear()
                self._orders[(spec, rank1)] = order
        return order

    def plan(self, spec: ConvSpec, weight: np.ndarray, device: Device = "cpu", *,
             finite_input: bool = False) -> Plan:
        """The path for ``spec`` with ``weight`` on ``device`` (CUDA: always ONNX Runtime).

        ``finite_input``: the caller knows the input holds no NaN or infinity (the flows do:
        every image and array a request brings is checked), so OpenCV may run kernels with zero
        weights, such as Laplacians and Sobels; :meth:`run` only, never :meth:`conv2d_checked`.
        """
        if device != "cpu":
            return Plan("onnxruntime", "onnxruntime")
        rank1 = _static_ok("numpy:separable", spec) and _rank1(weight)
        # Never empty, and never without a path: numpy:im2col runs every layer.
        path = next(p for p in self._order(spec, rank1)
                    if "opencv:" not in p or _weights_ok(p, weight, finite_input))
        return Plan(path, path_engine(path), finite_input)

    def run(self, plan: Plan, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
            spec: ConvSpec, device: Device = "cpu") -> np.ndarray:
        """Run ``spec`` along ``plan`` (from :meth:`plan`); arrays as for :meth:`conv2d`."""
        return self._run(plan, x, weight, bias, spec, device, check=False)[0]

    def _run(self, plan: Plan, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
             spec: ConvSpec, device: Device, *, check: bool) -> tuple[np.ndarray, bool]:
        """:meth:`run`, and with ``check`` whether the output is all finite (else True)."""
        path = plan.path
        if path.startswith("subsample+"):
            sub = subsample_spec(spec)
            if sub is None:
                raise ValueError(f"path {path!r} does not apply to {spec}")
            x, spec, path = sub.take(x, spec.stride), sub.spec, path.removeprefix("subsample+")
        strategy = path.partition(":")[2]
        if plan.engine == "opencv":  # checks each band while it is in cache
            cv_strategy: opencv_engine.OpenCvStrategy = (
                "sepfilter2d" if strategy == "sepfilter2d" else "filter2d"
            )
            if check:  # a checked run is for inputs not known to be finite
                return self._opencv.conv2d_checked(x, weight, bias, spec, device,
                                                   strategy=cv_strategy)
            return self._opencv.conv2d(x, weight, bias, spec, device, strategy=cv_strategy,
                                       finite_input=plan.finite_input), True
        engine = self.engine(plan.engine)
        if strategy:
            run: Callable[..., np.ndarray] = engine.conv2d
            y = run(x, weight, bias, spec, device, strategy=strategy)
        else:
            y = engine.conv2d(x, weight, bias, spec, device)
        return y, not check or all_finite(spec.sentinel_outputs(y))

    def conv2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
               spec: ConvSpec, device: Device = "cpu") -> np.ndarray:
        """Run ``spec`` on the fastest path for it; arrays and result as for
        :meth:`convserve.conv.engine.Engine.conv2d`."""
        return self.run(self.plan(spec, weight, device), x, weight, bias, spec, device)

    def conv2d_checked(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                       spec: ConvSpec, device: Device = "cpu") -> tuple[np.ndarray, bool]:
        """:meth:`conv2d`, and whether every output value is finite (the OpenCV paths check
        band by band as they go; the others in one pass over the output)."""
        return self._run(self.plan(spec, weight, device), x, weight, bias, spec, device,
                         check=True)
