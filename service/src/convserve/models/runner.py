"""Models at run time: upload into the store, then feature maps, kernels and explanations.

:class:`ModelService` owns one process's view of the shared store and an LRU cache of ONNX
Runtime sessions keyed by ``(model id, exposed outputs, device)``: a feature request runs the
stored model with the requested node outputs as its graph outputs (and nothing else, so ONNX
Runtime prunes the nodes after them), on the CPU or on CUDA with the convolve engine's rules
(:func:`convserve.conv.onnx_engine.make_session`: CUDA that is not offered or does not activate
is an error that says so, never a quiet run on the CPU). Sessions of a model are dropped when
this process deletes or evicts it; one evicted by another worker is never used again, because
every request reads the model's description first.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnx import ModelProto, ValueInfoProto

from convserve.admission import resource_exhaustion
from convserve.conv.engine import Device, check_device
from convserve.conv.onnx_engine import make_session, run_options
from convserve.errors import EngineUnavailableError, InvalidArgumentError, NotFoundError
from convserve.limits import Limits
from convserve.models.kernels import ConvKernel, conv_kernel
from convserve.models.preprocess import Preprocess, preprocess
from convserve.models.sample import SAMPLE_FILENAME, sample_bytes
from convserve.models.store import ModelStore
from convserve.models.table import ModelSummary, summarize
from convserve.models.validate import InputInfo, ModelRefusedError, validate_model

__all__ = ["FeatureResult", "ModelService", "Run", "StoredModel", "to_chw"]

_NAMES_SHOWN = 100


@dataclass(frozen=True)
class StoredModel:
    """A model's description as stored (what ``GET /v1/models/{id}`` answers)."""

    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def input(self) -> InputInfo:
        i = self.meta["inputs"][0]
        return InputInfo(i["name"], tuple(i["shape"]), i["layout"])

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.meta["layers"]
        return rows

    def row(self, key: str | int) -> dict[str, Any]:
        """The layer named ``key`` or at index ``key`` (a string of digits is an index when no
        layer has that name); a 422 listing the names otherwise."""
        for r in self.rows:
            if r["name"] == key:
                return r
        index = key if isinstance(key, int) else int(key) if str(key).isdigit() else None
        if index is not None and 0 <= index < len(self.rows):
            return self.rows[index]
        names = [r["name"] for r in self.rows]
        shown = ", ".join(repr(n) for n in names[:_NAMES_SHOWN])
        more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
        raise InvalidArgumentError(
            f"model {self.id} has no layer {key!r}; give a name or an index in "
            f"[0, {len(names)}): {shown}{more} (GET /v1/models/{self.id} lists them)",
            field="layers")


@dataclass
class FeatureResult:
    """Feature maps of some layers for one input."""

    model: StoredModel
    rows: list[dict[str, Any]]
    maps: list[np.ndarray]
    """One float32 (C, H, W) array per row."""
    preprocess: dict[str, Any]
    timing_ms: dict[str, float]
    device: str = "cpu"
    provider: str = "CPUExecutionProvider"
    """The execution provider that ran the model's first nodes (CUDAExecutionProvider on
    CUDA; nodes CUDA lacks run on the CPU provider)."""


@dataclass(frozen=True)
class Run:
    """The values of one run and where it ran."""

    values: dict[str, np.ndarray]
    device: str
    provider: str


def to_chw(value: np.ndarray, layout: str | None) -> np.ndarray:
    """A node output with its batch axis as float32 (C, H, W).

    Rank 4: NCHW as it is, NHWC transposed; rank 3 ``(1, C, L)``: ``(C, 1, L)``; rank 2
    ``(1, F)`` and lower: ``(F, 1, 1)``.
    """
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 4:
        chw = array[0] if layout != "NHWC" else array[0].transpose(2, 0, 1)
    elif array.ndim == 3:
        chw = array[0][:, np.newaxis, :]
    else:
        chw = array.reshape(-1, 1, 1)
    return np.ascontiguousarray(chw)


def model_id(data: bytes, input_size: Sequence[int] | None) -> str:
    """The content hash: the file's SHA-256, with the input size of a dynamic model."""
    digest = hashlib.sha256(data)
    if input_size is not None:
        digest.update(f"\0input_size={input_size[0]}x{input_size[1]}".encode())
    return digest.hexdigest()[:32]


class ModelService:
    """Upload, describe, run and delete models.

    Parameters
    ----------
    root : Path
        ``CONVSERVE_MODEL_DIR``.
    limits : Limits
        ``max_model_bytes``, ``model_store_bytes``, ``max_macs`` (one run of a model) and
        ``max_output_bytes`` (any one tensor, and the feature maps of one request).
    sessions : int
        ONNX Runtime sessions kept in this process (``CONVSERVE_MODEL_SESSIONS``).
    intra_op_threads : int
        Threads one node may use.
    sample_file : Path, optional
        The prebuilt sample network (``CONVSERVE_SAMPLE_MODEL_FILE``); built here when None.
    """

    def __init__(self, root: Path, limits: Limits, *, sessions: int,
                 intra_op_threads: int, sample_file: Path | None = None) -> None:
        self.store = ModelStore(root, limits.model_store_bytes, on_remove=self._drop_sessions)
        self.limits = limits
        self.capacity = sessions
        self.intra_op_threads = intra_op_threads
        self.sample_file = sample_file
        self._sample_id: str | None = None
        self._sessions: OrderedDict[tuple[str, tuple[str, ...], str], Any] = OrderedDict()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------
    # Store

    def upload(self, data: bytes, input_size: Sequence[int] | None = None,
               filename: str | None = None) -> tuple[dict[str, Any], bool]:
        """Validate and store a model; returns its description and whether it is new."""
        self.limits.check_model_bytes(len(data))
        # The same file again (with the same input_size): same id, 200, without validating.
        for candidate in {model_id(data, None), model_id(data, input_size)}:
            try:
                meta = self.store.meta(candidate)
            except NotFoundError:
                continue
            if input_size is None or meta["inputs"][0]["size"] == list(input_size):
                return meta, False
        validated = validate_model(data, max_bytes=self.limits.max_model_bytes,
                                   input_size=input_size)
        size = list(validated.input.size) if validated.input_size_given else None
        ident = model_id(data, size)
        with contextlib.suppress(NotFoundError):  # already stored: the same bytes, the same id
            return self.store.meta(ident), False
        summary = summarize(validated, max_macs=self.limits.max_macs,
                            max_tensor_bytes=self.limits.max_output_bytes)
        meta = self._describe(ident, data, validated.model, validated.input, validated.opset,
                              summary, filename, size)
        created = self.store.put(ident, validated.model.SerializeToString(), meta)
        return meta, created

    @staticmethod
    def _describe(ident: str, data: bytes, model: ModelProto, info: InputInfo, opset: int,
                  summary: ModelSummary, filename: str | None,
                  input_size: list[int] | None) -> dict[str, Any]:
        return {
            "id": ident,
            "filename": filename,
            "bytes": len(data),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "producer": " ".join(p for p in (model.producer_name, model.producer_version) if p),
            "opset": opset,
            "input_size": input_size,
            "inputs": [{**info.to_dict(), "channels": info.channels,
                        "size": list(info.size)}],
            "total_params": summary.total_params,
            "total_macs": summary.total_macs,
            "layers": [row.to_dict() for row in summary.layers],
        }

    def store_sample(self) -> tuple[dict[str, Any], bool]:
        """Store the sample network unless it is stored; its description and whether it is new.

        One process at a time validates and writes it (the store's ``sample`` lock), so
        workers and replicas starting together build it once and the others find it stored.
        Once this process knows the sample's id, a stored sample is answered without reading
        or building its bytes.
        """
        known = self._sample_id
        if known is not None:
            with contextlib.suppress(NotFoundError):  # evicted or deleted: store it again
                return self.store.meta(known), False
        with self.store.exclusive("sample"):
            data = sample_bytes(self.sample_file)
            self._sample_id = model_id(data, None)
            return self.upload(data, None, SAMPLE_FILENAME)

    def sample_id(self) -> str:
        """The sample network's id, stored or not (its bytes are read or built once)."""
        if self._sample_id is None:
            self._sample_id = model_id(sample_bytes(self.sample_file), None)
        return self._sample_id

    def get(self, ident: str) -> StoredModel:
        return StoredModel(self.store.meta(ident))

    def delete(self, ident: str) -> None:
        self.store.delete(ident)

    # ----------------------------------------------------------------------------------------
    # Sessions

    def _drop_sessions(self, ident: str) -> None:
        with self._lock:
            for key in [k for k in self._sessions if k[0] == ident]:
                del self._sessions[key]

    def _session(self, model: StoredModel, outputs: tuple[str, ...], device: Device) -> Any:
        key = (model.id, outputs, device)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                self._sessions.move_to_end(key)
                return session
        proto = ModelProto()
        proto.ParseFromString(self.store.model_bytes(model.id))
        values: dict[str, ValueInfoProto] = {
            v.name: v for v in (*proto.graph.value_info, *proto.graph.output)}
        exposed = [values[name] for name in outputs]
        del proto.graph.output[:]
        proto.graph.output.extend(exposed)
        try:
            session = make_session(proto, device, intra_op_threads=self.intra_op_threads)
        except EngineUnavailableError:  # CUDA not offered or not active: convolve's problem
            raise
        except (RuntimeError, ValueError) as exc:  # ORT's own Fail / InvalidGraph
            raise ModelRefusedError(
                f"ONNX Runtime could not load model {model.id} with outputs {list(outputs)}: "
                f"{str(exc).splitlines()[0][:400]}", field="model") from None
        with self._lock:
            self._sessions[key] = session
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
        return session

    def run(self, model: StoredModel, tensor: np.ndarray, outputs: Sequence[str],
            device: str = "cpu") -> Run:
        """Run ``model`` on ``tensor`` (its input layout, batch 1) with ``outputs`` exposed, on
        ``device`` ("cpu" or "cuda")."""
        wanted = tuple(dict.fromkeys(outputs))
        session = self._session(model, wanted, check_device(device))
        try:
            values = session.run(list(wanted), {model.input.name: tensor}, run_options())
        except (RuntimeError, ValueError) as exc:
            if resource_exhaustion(exc) is not None:  # out of (GPU) memory: the pool's 503
                raise
            raise ModelRefusedError(
                f"ONNX Runtime failed to run model {model.id}: "
                f"{str(exc).splitlines()[0][:400]}", field="model") from None
        return Run({name: np.asarray(v) for name, v in zip(wanted, values, strict=True)},
                   device, session.get_providers()[0])

    # ----------------------------------------------------------------------------------------
    # Requests

    def features(self, ident: str, x: np.ndarray, layers: Sequence[str | int],
                 steps: Preprocess, device: str = "cpu") -> FeatureResult:
        """Feature maps of ``layers`` for the input ``x``, float32 (C, H, W), computed on
        ``device``."""
        model = self.get(ident)
        if not layers:
            raise InvalidArgumentError("layers must name at least one layer", field="layers")
        rows = [model.row(key) for key in layers]
        self.limits.check_output_bytes(
            f"the {len(rows)} layer(s) asked for", sum(math.prod(r["output_shape"]) for r in rows),
            field="layers")
        started = time.perf_counter()
        tensor, report = preprocess(x, steps, model.input)
        prepared = time.perf_counter()
        ran = self.run(model, tensor, [r["name"] for r in rows], device)
        maps = [to_chw(ran.values[r["name"]], r["layout"]) for r in rows]
        timing = {"preprocess": round(1000 * (prepared - started), 3),
                  "run": round(1000 * (time.perf_counter() - prepared), 3)}
        return FeatureResult(model, rows, maps, report, timing, ran.device, ran.provider)

    def kernel(self, ident: str, key: str | int) -> tuple[dict[str, Any], ConvKernel]:
        """The Conv layer ``key`` of a model, with its input's size resolved."""
        model = self.get(ident)
        row = model.row(key)
        if row["op"] != "Conv":
            raise InvalidArgumentError(
                f"layer {row['name']!r} (index {row['index']}) is a {row['op']}, not a Conv; "
                "kernels exist for Conv layers", field="name")
        proto = ModelProto()
        proto.ParseFromString(self.store.model_bytes(model.id))
        source = next(n.input[0] for n in proto.graph.node if row["name"] in n.output)
        shape = self._input_shape(proto, model, source)
        return row, conv_kernel(proto, row["name"], (shape[2], shape[3]))

    @staticmethod
    def _input_shape(proto: ModelProto, model: StoredModel, name: str) -> tuple[int, ...]:
        if name == model.input.name:
            return model.input.shape
        for v in (*proto.graph.value_info, *proto.graph.output):
            if v.name == name:
                return tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
        raise ModelRefusedError(f"the shape of {name!r} is unknown", field="model")

    def conv_io(self, ident: str, key: str | int, x: np.ndarray, steps: Preprocess,
                device: str = "cpu") -> tuple[dict[str, Any], ConvKernel, np.ndarray,
                                              np.ndarray, dict[str, Any], Run]:
        """For explaining a Conv layer: its row, kernel, input (1, C, H, W) and output (C, H, W)
        as ONNX Runtime computes them for ``x`` on ``device``, the preprocessing report and the
        run (where it ran)."""
        row, kernel = self.kernel(ident, key)
        model = self.get(ident)
        tensor, report = preprocess(x, steps, model.input)
        if kernel.input == model.input.name:
            ran = self.run(model, tensor, [row["name"]], device)
            conv_input = tensor
        else:
            ran = self.run(model, tensor, [kernel.input, row["name"]], device)
            conv_input = ran.values[kernel.input]
        output = to_chw(ran.values[row["name"]], "NCHW")
        return (row, kernel, np.ascontiguousarray(conv_input, dtype=np.float32), output, report,
                ran)
