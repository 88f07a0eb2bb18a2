"""Convolution on OpenCV's ``filter2D`` and ``sepFilter2D``, paths of ``engine="auto"``.

OpenCV (the ``opencv-python-headless`` wheel) filters one float32 plane with one small kernel
in SIMD code that does exactly ``k_h * k_w`` multiply-adds per pixel (``sepFilter2D``: a row
pass and a column pass), two to three times faster than ONNX Runtime's ``Conv`` or NumPy on a
depthwise or single-channel layer. A layer with several input channels per group is the sum
over them of one filter per (output, input) pair, which pays where those pairs are few (an RGB
image to a few maps). It is not an engine a caller names: ``engine="auto"``
(:mod:`convserve.conv.auto`) runs its paths ``opencv:filter2d`` and ``opencv:sepfilter2d``
where they apply and were measured fastest, and the answer reports ``"opencv"`` as the engine.

Where it applies (:func:`applies`): stride 1, dilation 1 (``auto``'s ``subsample`` transform
turns a layer whose dilation is a multiple of its stride into one), ``zeros``, ``reflect`` or
``replicate`` padding (OpenCV's ``BORDER_CONSTANT``, ``BORDER_REFLECT_101``,
``BORDER_REPLICATE``; ``filter2D`` has no wrap border, so ``circular`` does not apply), pads no
wider than the kernel (``top + bottom <= k_h - 1``, likewise columns: OpenCV's output has the
input's size, of which the layer's output is the top-left part), kernels of fewer than 50 taps
(from about 11x11, ``filter2D`` switches to a DFT), and **no zero weight** (``sepFilter2D``: no
zero in either factor of any kernel). OpenCV skips the zero taps of a kernel, so with a zero
weight a NaN or infinity under that tap would not reach the output; without one, every value
read is multiplied, as in every other path, and ``conv2d``'s check of the output stands in for
the input's.

``filter2D`` with ``anchor = (left, top)`` computes
``dst[r, c] = sum_{u, v} k[u, v] * src[r + u - top, c + v - left]``, the layer's
cross-correlation, with the border mode filling rows and columns outside the plane. OpenCV is
single-threaded here, so each plane is cut into bands of output rows (about 1 MiB, so that the
band OpenCV writes stays in cache) that ``threads`` threads take in turn: a band is filtered
from a view of its input rows plus the ``k_h - 1`` rows around it that its windows read (at
the image's own edges OpenCV makes the border rows, exactly as for the whole plane), into a
per-thread buffer whose rows that belong to the band are copied (first input channel of the
group) or added (the others) into the output, which is checked for finiteness while in cache
(:meth:`OpenCvEngine.conv2d_checked`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, TypeAlias

import numpy as np

from convserve.conv.engine import Device, DeviceStatus
from convserve.conv.spec import ConvSpec
from convserve.cores import available_cores
from convserve.errors import EngineUnavailableError

__all__ = [
    "BAND_BYTES",
    "MAX_TAPS",
    "STRATEGIES",
    "OpenCvEngine",
    "OpenCvStrategy",
    "applies",
    "installed",
]

OpenCvStrategy: TypeAlias = Literal["filter2d", "sepfilter2d"]
STRATEGIES: tuple[OpenCvStrategy, ...] = ("filter2d", "sepfilter2d")
MAX_TAPS = 49
"""Most kernel taps a path takes: from 50 (130 with SSE3) ``filter2D`` filters through a DFT,
whose rounding and NaN spread differ."""
BAND_BYTES = 2**20
"""Bytes of output one band aims at (a core's L2 cache)."""
_INSTALL = "pip install opencv-python-headless"


def installed() -> bool:
    """Whether OpenCV's ``cv2`` module can be imported here (without importing it)."""
    return importlib.util.find_spec("cv2") is not None


def _import_cv2() -> ModuleType:
    try:
        import cv2
    except ImportError as exc:
        raise EngineUnavailableError(
            f"OpenCV paths need the opencv-python-headless package ({exc}); {_INSTALL}",
            field="engine",
        ) from None
    module: ModuleType = cv2
    return module


def _border(cv2: ModuleType, mode: str) -> int:
    border: int = {"zeros": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101,
                   "replicate": cv2.BORDER_REPLICATE}[mode]
    return border


def applies(spec: ConvSpec) -> bool:
    """Whether the shapes and options of ``spec`` suit OpenCV (the weights are checked apart:
    :func:`weights_apply`)."""
    top, bottom, left, right = spec.pads
    return (spec.stride == (1, 1) and spec.dilation == (1, 1)
            and spec.padding_mode in ("zeros", "reflect", "replicate")
            and top + bottom <= spec.kernel_h - 1 and left + right <= spec.kernel_w - 1
            and spec.kernel_h * spec.kernel_w <= MAX_TAPS)


def weights_apply(strategy: OpenCvStrategy, weight: np.ndarray) -> bool:
    """Whether ``strategy`` computes ``weight`` (C_out, C_in // groups, k_h, k_w) exactly: no
    zero weight, and for ``sepfilter2d`` rank-1 kernels whose factors hold no zero."""
    if not np.all(weight):
        return False
    if strategy == "sepfilter2d":
        factors = _rank1(weight)
        return factors is not None and bool(np.all(factors[0]) and np.all(factors[1]))
    return True


def _rank1(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(col, row) of shapes (C_out * C_in // groups, k_h) and (..., k_w), kernel by kernel."""
    from convserve.conv.numpy_engine import rank1_factors

    return rank1_factors(weight.reshape(-1, 1, *weight.shape[2:]))


@dataclass(frozen=True)
class _Band:
    """Output rows ``row0 .. row0 + rows - 1`` of plane ``(n, o)``."""

    n: int
    o: int
    row0: int
    rows: int


class OpenCvEngine:
    """Runs a depthwise :class:`ConvSpec` on OpenCV, in bands on ``threads`` threads.

    Parameters
    ----------
    threads : int, optional
        Threads one convolution may use (the calling thread included); None means the cores
        this process may run on.
    band_bytes : int
        Bytes of output a band aims at (at least 4 kernel heights of rows).
    """

    name = "opencv"
    propagates_non_finite = True
    """No zero weight is ever run (:func:`weights_apply`), so every value read is multiplied."""

    def __init__(self, threads: int | None = None, band_bytes: int = BAND_BYTES) -> None:
        self.threads = max(1, available_cores() if threads is None else int(threads))
        self.band_bytes = band_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def version(self) -> str:
        """OpenCV's version, or ``"not installed"``."""
        try:
            return str(_import_cv2().__version__)
        except EngineUnavailableError:
            return "not installed"

    def devices(self) -> list[DeviceStatus]:
        """The CPU when OpenCV imports (never CUDA)."""
        try:
            _import_cv2()
        except EngineUnavailableError as exc:
            return [DeviceStatus("cpu", False, exc.detail)]
        return [DeviceStatus("cpu", True, details={"threads": self.threads})]

    def conv2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
               spec: ConvSpec, device: Device = "cpu", *,
               strategy: OpenCvStrategy = "filter2d") -> np.ndarray:
        """Run ``spec`` with ``strategy``; arrays and result as for
        :meth:`convserve.conv.engine.Engine.conv2d`.

        Raises
        ------
        ValueError
            ``spec`` or ``weight`` is one that ``strategy`` does not compute exactly
            (:func:`applies`, :func:`weights_apply`), or ``device`` is not ``"cpu"``.
        """
        return self._conv2d(x, weight, bias, spec, device, strategy, check=False)[0]

    def conv2d_checked(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                       spec: ConvSpec, device: Device = "cpu", *,
                       strategy: OpenCvStrategy = "filter2d") -> tuple[np.ndarray, bool]:
        """:meth:`conv2d`, and whether every output value is finite (checked band by band
        while each is in cache, instead of in a pass over the whole output afterwards)."""
        return self._conv2d(x, weight, bias, spec, device, strategy, check=True)

    def _conv2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                spec: ConvSpec, device: Device, strategy: OpenCvStrategy,
                check: bool) -> tuple[np.ndarray, bool]:
        if device != "cpu" or not applies(spec) or not weights_apply(strategy, weight):
            raise ValueError(f"path 'opencv:{strategy}' does not compute {spec} with these "
                             f"weights on {device!r}")
        spec.check_arrays(x, weight, bias)
        cv2 = _import_cv2()
        x = np.ascontiguousarray(x, dtype=np.float32)
        filters = self._filters(cv2, strategy, spec, weight, bias)
        y = np.empty(spec.output_shape, dtype=np.float32)
        rows = max(4 * spec.kernel_h, self.band_bytes // (4 * spec.width))
        bands = [_Band(n, o, row0, min(rows, spec.out_height - row0))
                 for n in range(spec.batch) for o in range(spec.out_channels)
                 for row0 in range(0, spec.out_height, rows)]
        finite = [True]
        top = spec.pads[0]
        reach = spec.kernel_h - 1 - top  # input rows below an output row that its window reads
        per_group = spec.in_per_group

        def run(band: _Band, buffer: np.ndarray, flags: np.ndarray) -> None:
            first = max(0, band.row0 - top)
            last = min(spec.height, band.row0 + band.rows + reach)
            dst = buffer[: last - first]
            out = y[band.n, band.o, band.row0 : band.row0 + band.rows]
            c0 = band.o // spec.out_per_group * per_group
            for i in range(per_group):
                filters[band.o * per_group + i](x[band.n, c0 + i, first:last], dst)
                # dst row r is output row first + r (see the module docstring).
                kept = dst[band.row0 - first : band.row0 - first + band.rows, : spec.out_width]
                if i == 0:
                    out[...] = kept
                else:
                    out += kept
            # Into a buffer of the thread's own: a new boolean array per band cost more than
            # the filter (each one mapped and faulted in afresh).
            if check and finite[0] and not np.isfinite(out, out=flags[: band.rows,
                                                                      : spec.out_width]).all():
                finite[0] = False

        self._in_threads(bands, run, (rows + spec.kernel_h - 1, spec.width))
        return y, finite[0]

    @staticmethod
    def _filters(cv2: ModuleType, strategy: OpenCvStrategy, spec: ConvSpec, weight: np.ndarray,
                 bias: np.ndarray | None) -> list[Callable[[np.ndarray, np.ndarray], None]]:
        """One ``(src, dst) -> None`` per (output, input of its group) pair, output-major; the
        first input's adds the bias."""
        top, _, left, _ = spec.pads
        border = _border(cv2, spec.padding_mode)
        per_group = spec.in_per_group
        deltas = [0.0 if bias is None or k % per_group else float(bias[k // per_group])
                  for k in range(spec.out_channels * per_group)]
        kernels = weight.reshape(-1, spec.kernel_h, spec.kernel_w)
        if strategy == "sepfilter2d":
            factors = _rank1(weight)
            if factors is None:  # weights_apply checked it; a guard, not a branch taken
                raise AssertionError("sepfilter2d needs rank-1 kernels")
            col, row = factors
            return [
                (lambda c, r, d: lambda src, dst: cv2.sepFilter2D(
                    src, -1, r, c, dst=dst, anchor=(left, top), delta=d, borderType=border
                ))(np.ascontiguousarray(col[k]), np.ascontiguousarray(row[k]), deltas[k])
                for k in range(len(kernels))
            ]
        return [
            (lambda kernel, d: lambda src, dst: cv2.filter2D(
                src, -1, kernel, dst=dst, anchor=(left, top), delta=d, borderType=border
            ))(np.ascontiguousarray(kernels[k]), deltas[k])
            for k in range(len(kernels))
        ]

    def _in_threads(self, bands: Sequence[_Band],
                    run: Callable[[_Band, np.ndarray, np.ndarray], None],
                    buffer_shape: tuple[int, int]) -> None:
        """Run every band on up to ``threads`` threads (this one included), each taking the
        next band when it finishes one, with one float32 and one boolean buffer of
        ``buffer_shape`` per thread."""
        queue = iter(bands)
        lock = threading.Lock()
        failed = threading.Event()

        def take() -> _Band | None:
            with lock:
                return None if failed.is_set() else next(queue, None)

        def job() -> None:
            buffer = np.empty(buffer_shape, dtype=np.float32)
            flags = np.empty(buffer_shape, dtype=bool)
            try:
                while (band := take()) is not None:
                    run(band, buffer, flags)
            except BaseException:
                failed.set()  # the other threads stop at their next band
                raise

        helpers = min(self.threads, len(bands)) - 1
        futures: list[Future[None]] = [self._executor().submit(job) for _ in range(helpers)]
        try:
            job()
        finally:
            wait(futures)
        for future in futures:
            future.result()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            # A forked child inherits the pool object but not its threads: start a new one.
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, self.threads - 1), thread_name_prefix="convserve-opencv"
                )
                self._pool_pid = os.getpid()
            return self._pool
