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
single-threaded here, and each call costs a set-up (bands of 256 KiB ran 1.5x slower than whole
planes), so on one thread each plane is filtered whole and on ``T`` threads the planes are cut
into about ``2 T`` bands of output rows (:meth:`OpenCvEngine._bands`) that the threads take in
turn. A band is filtered from a view of its input rows plus the ``k_h - 1`` rows around it that
its windows read; at the image's own edges OpenCV makes the border rows, exactly as for the
whole plane, and at a cut it makes them too, wrongly, for the rows within ``k_h - 1`` of the
cut. With one input per group and an output of the input's size, OpenCV writes the band and
those halo rows straight into the output, and once every band is done the rows around each
cut are computed again (a copy of the whole output through a buffer cost 15-20 %). Otherwise
(several inputs per group, or a cropped output) each band goes into a buffer whose rows that
belong to the band are copied (first input of the group) or added (the others) into the
output. Each band of the output is checked for finiteness just after it is written
(:meth:`OpenCvEngine.conv2d_checked`).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, TypeAlias

import numpy as np

from convserve.conv.buffers import OUTPUTS
from convserve.conv.engine import Device, DeviceStatus
from convserve.conv.spec import ConvSpec
from convserve.conv.threads import HelperThreads
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
    "rank1",
    "weights_apply",
]

OpenCvStrategy: TypeAlias = Literal["filter2d", "sepfilter2d"]
STRATEGIES: tuple[OpenCvStrategy, ...] = ("filter2d", "sepfilter2d")
MAX_TAPS = 49
"""Most kernel taps a path takes: from 50 (130 with SSE3) ``filter2D`` filters through a DFT,
whose rounding and NaN spread differ."""
BAND_BYTES = 2 * 2**20
"""Most bytes of output in one band (the buffer of a band that does not write straight into
the output has its size): small enough that a band is still in cache (L2, or the L3 slice
beside it) when it is checked for NaN and infinity, large enough that OpenCV's per-call work
is spread over many rows. On a 2048x2048 5x5 Gaussian (2 threads) 2 MiB bands took 3.1 ms
checked against 4.6 ms with 16 MiB bands (and OpenCV's own filter2D 3.0 ms). On a machine
with a 1 MiB L2, ``conv2d`` through ``auto`` in paired rounds: W3 2.71 ms with 2 MiB bands,
2.87 with 1 MiB and 3.80 with 512 KiB; W5 4.19, 4.44 and 4.91 ms."""
_INSTALL = "pip install opencv-python-headless"


@functools.cache
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


def weights_apply(strategy: OpenCvStrategy, weight: np.ndarray, *,
                  finite_input: bool = False) -> bool:
    """Whether ``strategy`` computes ``weight`` (C_out, C_in // groups, k_h, k_w) exactly: for
    ``sepfilter2d`` rank-1 kernels, and unless ``finite_input``, no zero weight (nor factor).

    OpenCV skips zero taps. For finite inputs that changes nothing (each skipped product is a
    zero), but a NaN or an infinity under a zero tap would never reach the output, where
    PyTorch's ``0 * nan`` is NaN; so zeros are allowed only when the caller knows the input
    holds no such value (``finite_input``: every image and array a request brings is checked).
    """
    if not finite_input and not np.all(weight):
        return False
    if strategy == "sepfilter2d":
        factors = rank1(weight)
        if factors is None:
            return False
        return finite_input or bool(np.all(factors[0]) and np.all(factors[1]))
    return True


_Factors: TypeAlias = tuple[np.ndarray, np.ndarray] | None
_FACTORS: dict[tuple[object, ...], _Factors] = {}
_FACTORS_KEPT = 64
_FACTORS_MAX_BYTES = 2**16


def rank1(weight: np.ndarray) -> _Factors:
    """(col, row) of shapes (C_out * C_in // groups, k_h) and (..., k_w), kernel by kernel, if
    every kernel has rank 1 (:func:`convserve.conv.numpy_engine.rank1_factors`), else None.

    Memoised by the weight's bytes (the last 64 weights of up to 64 KiB): the SVDs cost a
    tenth of a 2048x2048 Gaussian blur, and ``auto`` asks for them when it plans and when it
    runs. The arrays returned are shared: read them, never write them.
    """
    if weight.nbytes > _FACTORS_MAX_BYTES:
        return _factors(weight)
    key = (weight.shape, weight.dtype.str, weight.tobytes())
    if key in _FACTORS:
        return _FACTORS[key]
    factors = _factors(weight)
    if len(_FACTORS) >= _FACTORS_KEPT:
        _FACTORS.clear()  # rare; a plain dict keeps hits cheap and thread-safe
    _FACTORS[key] = factors
    return factors


def _factors(weight: np.ndarray) -> _Factors:
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
        Most bytes of output in one band (at least 4 kernel heights of rows).
    """

    name = "opencv"
    propagates_non_finite = True
    """No zero weight is ever run (:func:`weights_apply`), so every value read is multiplied."""

    def __init__(self, threads: int | None = None, band_bytes: int = BAND_BYTES) -> None:
        self.threads = max(1, available_cores() if threads is None else int(threads))
        self.band_bytes = band_bytes
        self._helpers = HelperThreads(self.threads, "convserve-opencv")

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
               strategy: OpenCvStrategy = "filter2d", finite_input: bool = False) -> np.ndarray:
        """Run ``spec`` with ``strategy``; arrays and result as for
        :meth:`convserve.conv.engine.Engine.conv2d`; ``finite_input`` as for
        :func:`weights_apply`.

        Raises
        ------
        ValueError
            ``spec`` or ``weight`` is one that ``strategy`` does not compute exactly
            (:func:`applies`, :func:`weights_apply`), or ``device`` is not ``"cpu"``.
        """
        return self._conv2d(x, weight, bias, spec, device, strategy, check=False,
                            finite_input=finite_input)[0]

    def conv2d_checked(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                       spec: ConvSpec, device: Device = "cpu", *,
                       strategy: OpenCvStrategy = "filter2d") -> tuple[np.ndarray, bool]:
        """:meth:`conv2d`, and whether every output value is finite (checked band by band
        while each is in cache, instead of in a pass over the whole output afterwards)."""
        return self._conv2d(x, weight, bias, spec, device, strategy, check=True)

    def _conv2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                spec: ConvSpec, device: Device, strategy: OpenCvStrategy,
                check: bool, finite_input: bool = False) -> tuple[np.ndarray, bool]:
        if (device != "cpu" or not applies(spec)
                or not weights_apply(strategy, weight, finite_input=finite_input)):
            raise ValueError(f"path 'opencv:{strategy}' does not compute {spec} with these "
                             f"weights on {device!r}")
        spec.check_arrays(x, weight, bias)
        cv2 = _import_cv2()
        x = np.ascontiguousarray(x, dtype=np.float32)
        filters = self._filters(cv2, strategy, spec, weight, bias)
        y = OUTPUTS.empty(spec.output_shape)
        bands = self._bands(spec)
        finite = [True]
        top = spec.pads[0]
        reach = spec.kernel_h - 1 - top  # input rows below an output row that its window reads
        per_group = spec.in_per_group
        # Same size in and out with one input per group: OpenCV writes each band straight into
        # the output, halo rows included (see the module docstring).
        direct = per_group == 1 and (spec.out_height, spec.out_width) == (spec.height,
                                                                           spec.width)

        def compute(band: _Band, straight: bool) -> None:
            first = max(0, band.row0 - top)
            last = min(spec.height, band.row0 + band.rows + reach)
            out = y[band.n, band.o, band.row0 : band.row0 + band.rows]
            c0 = band.o // spec.out_per_group * per_group
            if straight:
                filters[band.o](x[band.n, c0, first:last], y[band.n, band.o, first:last])
            else:
                dst = np.empty((last - first, spec.width), dtype=np.float32)
                for i in range(per_group):
                    filters[band.o * per_group + i](x[band.n, c0 + i, first:last], dst)
                    # dst row r is output row first + r (see the module docstring).
                    kept = dst[band.row0 - first : band.row0 - first + band.rows,
                               : spec.out_width]
                    if i == 0:
                        out[...] = kept
                    else:
                        out += kept
            # min and max propagate NaN, and an infinity is one of them: two passes over the
            # band just written, without the boolean temporary of np.isfinite.
            if check and finite[0] and not (np.isfinite(out.min()) and np.isfinite(out.max())):
                finite[0] = False

        self._in_threads([functools.partial(compute, band, direct) for band in bands])
        if direct:
            # A band written straight into the output also wrote the rows its halo reaches in
            # its neighbours, from the border OpenCV made at the cut: the k_h - 1 rows around
            # each cut (top above, reach below) are computed again through a buffer, once
            # every band is done.
            for band in bands:
                start = max(0, band.row0 - top)
                stop = min(spec.out_height, band.row0 + reach)
                if band.row0 > 0 and stop > start:
                    compute(_Band(band.n, band.o, start, stop - start), False)
        return y, finite[0]

    def _bands(self, spec: ConvSpec) -> list[_Band]:
        """Bands of output rows: whole planes on one thread (each OpenCV call costs a set-up),
        else each plane cut so that every thread gets about two bands, of at most
        ``band_bytes`` (about) and at least four kernel heights."""
        planes = spec.batch * spec.out_channels
        cuts = 1 if self.threads == 1 else -(-2 * self.threads // planes)
        rows = -(-spec.out_height // cuts)
        rows = max(4 * spec.kernel_h, min(rows, self.band_bytes // (4 * spec.width)))
        starts = list(range(0, spec.out_height, rows))
        if len(starts) > 1 and spec.out_height - starts[-1] < 4 * spec.kernel_h:
            # A short last band joins the one before: the rows OpenCV mirrors at the bottom
            # edge must lie in the band's view of the input, as they lie in the image.
            starts.pop()
        ends = [*starts[1:], spec.out_height]
        return [_Band(n, o, row0, end - row0)
                for n in range(spec.batch) for o in range(spec.out_channels)
                for row0, end in zip(starts, ends, strict=True)]

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
            factors = rank1(weight)
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

    def _in_threads(self, jobs: Sequence[Callable[[], None]]) -> None:
        """Run ``jobs`` on up to ``threads`` threads (this one included), each taking the next
        job when it finishes one; the first error stops the others and is raised."""
        self._helpers.share(jobs, lambda: _call)


def _call(job: Callable[[], None]) -> None:
    job()
