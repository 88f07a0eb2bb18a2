"""Convolution on ONNX Runtime: one ``Pad`` + ``Conv`` graph per shape, sessions cached LRU.

One module, over 500 lines, because the session plumbing here (providers, options, the cache)
and the engine that is its main user change together; the rules of the ``packed`` strategy,
which the admission estimate reads too, are in :mod:`convserve.conv.packing`.

Two strategies. ``inputs`` (the default): the graph takes the weight ``W`` and bias ``B`` as
graph inputs (not initializers), so one session serves every kernel of the same shape; sessions
are kept in a bounded LRU keyed by the :class:`~convserve.conv.spec.ConvSpec` (shapes, stride,
dilation, pads, groups, padding mode, bias) and the device. ``packed``: the weights are
initializers of the graph, so ONNX Runtime lays them out for its kernels once, when the session
is made (on CPU its blocked ``NCHWc`` convolutions, which it uses only for constant weights):
a session per set of weights, in a second, smaller LRU keyed by the spec, the device and the
weights' bytes, made on first use (1-4 ms). Measured on 2 cores (``bench/bench_auto.py``), it
is faster on many-channel and depthwise layers (a 32-channel 3x3 depthwise layer, 128x128:
0.17-0.22 against 0.41-0.51 ms; 64 to 64 channels 3x3, 256x256: 15.2 against 18.0 ms) and
slower on the 3-channel ones, so ``engine="auto"`` picks it per shape from its table. Weights over
:data:`~convserve.conv.packing.PACKED_MAX_WEIGHT_BYTES` always run as inputs; the rules of
when it runs are in :mod:`convserve.conv.packing`.

Padding: ``zeros`` pads go on the ``Conv`` itself; ``reflect``, ``replicate`` and ``circular``
become a ``Pad`` node (``reflect``, ``edge``, ``wrap``; ``wrap`` needs opset 19) in front of a
``Conv`` with zero pads. ONNX lays pads out begins-then-ends: ``Conv`` ``pads`` is
``[top, left, bottom, right]`` and ``Pad`` ``pads`` is ``[0, 0, top, left, 0, 0, bottom, right]``.

Device rules: ``device="cuda"`` asks for ``CUDAExecutionProvider`` and then checks that the
session really runs on it; anything else is an :class:`EngineUnavailableError` that says which
providers exist and what to install. ONNX Runtime's own CPU fallback is switched off.

Memory: every session created here draws CPU buffers from one arena shared by the process
(``session.use_env_allocators``), so the memory ONNX Runtime keeps is bounded by the largest
single run rather than growing with each cached shape. A run asks the arena to shrink when it
returns (:func:`~convserve.conv.arena.run_options`) once the runs since the last shrink have
drawn more than :data:`~convserve.conv.arena.SHRINK_AFTER_BYTES` from it (outputs and padded
copies, :class:`~convserve.conv.arena.ArenaBudget`, all in :mod:`convserve.conv.arena`): without
shrinking, one 7000x7000 RGB request with reflect padding left the process 600 MB larger for
good (the padded copy); with it, the process returns to its size before the run. Shrinking
after *every* run, as this engine first did, unmapped and faulted in again the working memory
of each small layer: 1.4x a raw session's time on a 512x512 3->2 layer. So the arena keeps at
most about that many bytes beyond what callers still hold.

``onnx`` and ``onnxruntime`` are imported on first use, so this module imports without them.
The helpers :data:`OPSET`, :data:`IR_VERSION`, :func:`conv_nodes`, :func:`make_session` are
meant for any module that builds ONNX graphs (multi-layer models, exports).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from convserve.conv.arena import (
    SHARED_BUDGET,
    SHRINK_AFTER_BYTES,
    ArenaBudget,
    arena_bytes,
    register_shared_arena,
    run_options,
)
from convserve.conv.engine import DEVICES, Device, DeviceStatus, EngineName, check_device
from convserve.conv.graphs import OPSET, conv_model, import_onnx
from convserve.conv.packing import (
    ORT_STRATEGIES,
    OrtStrategy,
    packed_applies,
    packs,
)
from convserve.conv.spec import ConvSpec
from convserve.conv.tiling import DEFAULT_BAND_BYTES, BandPlan, plan_bands, run_in_bands
from convserve.cores import available_cores
from convserve.errors import EngineUnavailableError, InvalidArgumentError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "SHRINK_AFTER_BYTES",
    "ArenaBudget",
    "arena_bytes",
    "run_options",
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "CUDA_PROVIDER_OPTIONS",
    "CacheStats",
    "OnnxRuntimeEngine",
    "SessionCache",
    "check_active",
    "make_session",
    "select_providers",
    "session_options",
]

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
CUDA_PROVIDER_OPTIONS: dict[str, str] = {
    "device_id": "0",
    # A cuDNN heuristic instead of timing every algorithm keeps a new shape's first run short.
    "cudnn_conv_algo_search": "HEURISTIC",
    "arena_extend_strategy": "kSameAsRequested",
    # Full float32 arithmetic: on Ampere and newer GPUs the CUDA provider may otherwise run
    # convolutions and GEMMs in TF32 (10-bit mantissa products), which drifts past the 1e-4
    # parity with the CPU engines and PyTorch's float32 conv2d that convserve promises.
    "use_tf32": "0",
}

Provider: TypeAlias = str | tuple[str, dict[str, str]]

_INSTALL_CPU = "pip install 'convserve[cpu]'"
_INSTALL_CUDA = (
    "pip install 'convserve[cuda]' (onnxruntime-gpu in place of onnxruntime, "
    "with CUDA 12 and cuDNN 9 libraries and an NVIDIA driver)"
)


def _import_ort() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(
            f"engine 'onnxruntime' needs the onnxruntime package, which is not installed "
            f"({exc}); {_INSTALL_CPU} for CPU or {_INSTALL_CUDA} for NVIDIA GPUs",
            field="engine",
        ) from None
    if hasattr(onnxruntime, "disable_telemetry_events"):
        onnxruntime.disable_telemetry_events()  # only Windows builds send any; never wanted here
    module: ModuleType = onnxruntime
    return module


def select_providers(device: str, available: Sequence[str]) -> list[Provider]:
    """The execution providers to ask for on ``device``, given those this build offers.

    Parameters
    ----------
    device : "cpu" or "cuda"
    available : list of str
        ``onnxruntime.get_available_providers()``.

    Returns
    -------
    list of str or (str, dict)
        For ``"cpu"``, ``["CPUExecutionProvider"]``; for ``"cuda"``, the CUDA provider with
        :data:`CUDA_PROVIDER_OPTIONS` followed by the CPU provider (for nodes CUDA lacks).

    Raises
    ------
    EngineUnavailableError
        ``"cuda"`` when this onnxruntime has no CUDA provider, naming those it has.
    InvalidArgumentError
        An unknown device.
    """
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "cuda":
        if CUDA_PROVIDER not in available:
            raise EngineUnavailableError(
                f"device='cuda' needs ONNX Runtime's {CUDA_PROVIDER}, but this onnxruntime "
                f"offers only {', '.join(available) or 'no providers'}; "
                f"{_INSTALL_CUDA}, or use device='cpu'",
                field="device",
            )
        return [(CUDA_PROVIDER, dict(CUDA_PROVIDER_OPTIONS)), CPU_PROVIDER]
    check_device(device)
    raise AssertionError(f"no providers for device {device!r}")  # pragma: no cover


def check_active(device: str, active: Sequence[str], available: Sequence[str]) -> None:
    """Raise unless a session whose providers are ``active`` really runs on ``device``.

    Parameters
    ----------
    device : "cpu" or "cuda"
    active : list of str
        ``session.get_providers()``, highest priority first.
    available : list of str
        ``onnxruntime.get_available_providers()``, named in the message.

    Raises
    ------
    EngineUnavailableError
        ``"cuda"`` when the CUDA provider did not become the session's first provider
        (typically its CUDA or cuDNN libraries could not be loaded, or no GPU is visible).
    """
    if device == "cuda" and (not active or active[0] != CUDA_PROVIDER):
        raise EngineUnavailableError(
            f"device='cuda' was asked for, but the ONNX Runtime session runs on "
            f"{', '.join(active) or 'no provider'}, not {CUDA_PROVIDER} (available providers: "
            f"{', '.join(available)}); its CUDA 12 / cuDNN 9 libraries could not be loaded or "
            f"no GPU is visible. {_INSTALL_CUDA}, or use device='cpu'",
            field="device",
        )


def session_options(intra_op_threads: int) -> Any:
    """``onnxruntime.SessionOptions`` for one small, latency-bound graph.

    ``intra_op_threads`` threads for a node, one inter-op thread, sequential execution, every
    graph optimisation and the process's shared CPU arena. Pool threads spin between parallel
    sections within a run but stop when it returns (``session.force_spinning_stop``): left
    spinning, an idle session's pool slowed the next run of another session (another shape) by
    up to 1.9x on 2 cores, while never spinning made small convolutions slower.
    """
    ort = _import_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; a failed CUDA load is reported by check_active
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def make_session(
    model: onnx.ModelProto | bytes,
    device: Device = "cpu",
    *,
    intra_op_threads: int | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` that is sure to run on ``device``.

    Parameters
    ----------
    model : onnx.ModelProto or bytes
        The model, or its serialized bytes.
    device : "cpu" or "cuda"
    intra_op_threads : int, optional
        Threads one node may use on CPU; default: the cores this process may run on.

    Raises
    ------
    EngineUnavailableError
        onnxruntime is missing, or CUDA was asked for and is not offered or did not activate.
    """
    ort = _import_ort()
    available = list(ort.get_available_providers())
    providers = select_providers(device, available)  # fails fast, before any session exists
    register_shared_arena(ort)
    options = session_options(intra_op_threads or available_cores())
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        # enable_fallback=0: ONNX Runtime must not quietly retry a failing CUDA run on CPU.
        session = ort.InferenceSession(data, options, providers=providers, enable_fallback=0)
    except (RuntimeError, ValueError) as exc:
        if device != "cuda":
            raise
        raise EngineUnavailableError(
            f"device='cuda': ONNX Runtime could not create a {CUDA_PROVIDER} session ({exc}); "
            f"{_INSTALL_CUDA}, or use device='cpu'",
            field="device",
        ) from None
    check_active(device, session.get_providers(), available)
    return session


@dataclass(frozen=True)
class CacheStats:
    """Counters of an engine's session cache (for ``/metrics``)."""

    hits: int
    misses: int
    evictions: int
    size: int
    capacity: int


class SessionCache:
    """A bounded LRU of ONNX Runtime sessions, with hit, miss and eviction counters.

    Parameters
    ----------
    capacity : int
        Sessions kept (least recently used evicted first).

    Notes
    -----
    Thread-safe. Sessions are built outside the lock, so a slow build never blocks hits on
    other keys; two threads missing the same key at once build it twice but keep one.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise InvalidArgumentError(f"cache_size={capacity} must be >= 1")
        self.capacity = capacity
        self._sessions: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The session cached under ``key``, or ``build()``'s, cached (evicting the oldest)."""
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                self._sessions.move_to_end(key)
                self._hits += 1
                return session
            self._misses += 1
        session = build()
        with self._lock:
            existing = self._sessions.get(key)
            if existing is not None:
                self._sessions.move_to_end(key)
                return existing
            self._sessions[key] = session
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
                self._evictions += 1
        return session

    def stats(self) -> CacheStats:
        """Hits, misses, evictions and the current and maximum number of cached sessions."""
        with self._lock:
            return CacheStats(self._hits, self._misses, self._evictions, len(self._sessions),
                              self.capacity)


class OnnxRuntimeEngine:
    """Runs a :class:`ConvSpec` as an ONNX Runtime session, on CPU or CUDA.

    Parameters
    ----------
    intra_op_threads : int, optional
        Threads one convolution may use on CPU; None means the cores this process may use.
    cache_size : int
        Sessions kept (least recently used evicted first).
    packed_cache_size : int
        Sessions of the ``packed`` strategy kept, one per set of weights.
    band_bytes : int or None
        Working bytes above which a layer runs in horizontal bands of that size
        (:mod:`convserve.conv.tiling`), so ONNX Runtime never pads or unfolds the whole image;
        None or 0: always whole.

    Notes
    -----
    Thread-safe: sessions may run concurrently, and two threads missing the same key at once
    build it twice but keep one.
    """

    name: EngineName = "onnxruntime"
    propagates_non_finite = True
    """ONNX Runtime's Conv multiplies every value it reads (im2col and GEMM skip no zero weight),
    so a non-finite input inside a receptive field reaches the output (see ``conv2d``)."""

    def __init__(self, intra_op_threads: int | None = None, cache_size: int = 64,
                 band_bytes: int | None = DEFAULT_BAND_BYTES,
                 packed_cache_size: int = 16) -> None:
        if intra_op_threads is not None and intra_op_threads < 1:
            raise InvalidArgumentError(
                f"intra_op_threads={intra_op_threads} must be >= 1 (or None for all cores)"
            )
        self.intra_op_threads = intra_op_threads or available_cores()
        self._cache = SessionCache(cache_size)
        self._packed = SessionCache(packed_cache_size)
        self.band_bytes = band_bytes

    def version(self) -> str:
        """onnxruntime's version, or ``"not installed"``."""
        try:
            return str(_import_ort().__version__)
        except EngineUnavailableError:
            return "not installed"

    def devices(self) -> list[DeviceStatus]:
        """CPU (when onnxruntime imports) and CUDA (when it offers the CUDA provider)."""
        try:
            ort = _import_ort()
            onnx_module = import_onnx()
        except EngineUnavailableError as exc:
            return [DeviceStatus(device, False, exc.detail) for device in DEVICES]
        available = list(ort.get_available_providers())
        details: dict[str, object] = {
            "onnxruntime": ort.__version__,
            "onnx": onnx_module.__version__,
            "opset": OPSET,
            "available_providers": available,
        }
        cuda_reason = None
        try:
            cuda_providers = select_providers("cuda", available)
        except EngineUnavailableError as exc:
            cuda_reason, cuda_providers = exc.detail, []
        return [
            DeviceStatus("cpu", True, None, {
                **details, "providers": [CPU_PROVIDER],
                "intra_op_threads": self.intra_op_threads,
            }),
            DeviceStatus("cuda", cuda_reason is None, cuda_reason, {
                **details, "providers": [p if isinstance(p, str) else p[0] for p in cuda_providers],
            }),
        ]

    def cache_stats(self) -> CacheStats:
        """Hits, misses, evictions and the current and maximum number of cached sessions."""
        return self._cache.stats()

    def packed_cache_stats(self) -> CacheStats:
        """:meth:`cache_stats` of the ``packed`` strategy's sessions."""
        return self._packed.stats()

    def packed_session(self, spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                       device: Device = "cpu") -> Any:
        """The cached session of ``spec`` with these very weights built in (``packed``).

        Keyed by the weights' bytes themselves, so two sets of weights share a session only
        when they are equal bit for bit.
        """
        w = np.ascontiguousarray(weight, dtype=np.float32)
        b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        key = (spec, device, w.tobytes(), None if b is None else b.tobytes())
        return self._packed.get(
            key,
            lambda: make_session(conv_model(spec, w, b), device,
                                 intra_op_threads=self.intra_op_threads),
        )

    def session(self, spec: ConvSpec, device: Device = "cpu") -> Any:
        """The cached ``onnxruntime.InferenceSession`` for ``spec`` on ``device`` (built on a miss).

        Raises
        ------
        EngineUnavailableError
            onnxruntime is missing, or ``device`` cannot be used here.
        """
        return self._cache.get(
            (spec, device),
            lambda: make_session(conv_model(spec), device,
                                 intra_op_threads=self.intra_op_threads),
        )

    def conv2d(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        spec: ConvSpec,
        device: Device = "cpu",
        *,
        strategy: OrtStrategy | None = None,
    ) -> np.ndarray:
        """Run ``spec`` on ``device``.

        Parameters
        ----------
        x : ndarray of float32, shape (N, C_in, H, W)
        weight : ndarray of float32, shape (C_out, C_in // groups, k_h, k_w)
        bias : ndarray of float32, shape (C_out,), or None
        spec : ConvSpec
            Built by :func:`~convserve.conv.spec.conv_spec` for exactly these shapes.
        device : "cpu" or "cuda"
        strategy : "inputs" (default) or "packed", keyword only
            ``packed`` builds the weights into the session (see the module docstring); it runs
            as ``inputs`` when they take more than
            :data:`~convserve.conv.packing.PACKED_MAX_WEIGHT_BYTES`, where
            :func:`~convserve.conv.packing.packed_applies` does not hold, or when the layer
            runs in bands.

        Returns
        -------
        ndarray of float32, shape (N, C_out, H_out, W_out)

        Raises
        ------
        ShapeError
            The arrays do not have the shapes ``spec`` describes.
        EngineUnavailableError
            onnxruntime is missing, or ``device`` cannot be used here.
        """
        if strategy is not None and strategy not in ORT_STRATEGIES:
            raise InvalidArgumentError(
                f"strategy={strategy!r} is not one of {', '.join(ORT_STRATEGIES)}",
                field="strategy",
            )
        spec.check_arrays(x, weight, bias)
        plan = self.band_plan(spec)
        if plan is not None:
            # The bands reuse one band's working memory; the arena shrinks after the last.
            last = plan.bands[-1].spec
            return run_in_bands(x, plan, lambda xb, sb: self._run(xb, weight, bias, sb, device,
                                                                  last_band=sb is last))
        packed = strategy == "packed" and packs(weight) and packed_applies(spec)
        return self._run(x, weight, bias, spec, device, packed=packed)

    def band_plan(self, spec: ConvSpec) -> BandPlan | None:
        """The bands :meth:`conv2d` cuts ``spec`` into, or None when it runs whole.

        ONNX Runtime's own working memory for a whole image is the ``Pad`` node's padded copy
        of the input (reflect, replicate, circular); its Conv works in small per-thread tiles,
        never a whole im2col. So only a padded copy over ``band_bytes`` is worth bands, which
        cost speed (a 1024x1024 3->16 layer ran 3.3x slower in 64 MiB bands).
        """
        padded = 0
        if spec.padding_mode != "zeros" and any(spec.pads):
            padded = 4 * spec.batch * spec.in_channels * spec.padded_height * spec.padded_width
        return plan_bands(spec, self.band_bytes, whole_bytes=padded)

    def _run(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, spec: ConvSpec,
             device: Device, *, last_band: bool = False, packed: bool = False) -> np.ndarray:
        """One session run; the arena shrinks after it when :class:`ArenaBudget` says so, and
        always after the last band of a layer."""
        shrink = SHARED_BUDGET.shrink_after(arena_bytes(spec), force=last_band)
        feeds = {"X": np.ascontiguousarray(x, dtype=np.float32)}
        if packed:
            session = self.packed_session(spec, weight, bias, device)
        else:
            session = self.session(spec, device)
            feeds["W"] = np.ascontiguousarray(weight, dtype=np.float32)
            if bias is not None:
                feeds["B"] = np.ascontiguousarray(bias, dtype=np.float32)
        y: np.ndarray = session.run(None, feeds, run_options(shrink))[0]
        return y

