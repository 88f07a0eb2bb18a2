"""``POST /v1/layers``: :class:`LayersResult` and its :class:`LayerInfo`."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convserve_client._models._shared import (
    Channel,
    Cost,
    FloatArray,
    float_map,
    ints,
    npy_bytes,
    parse_server_timing,
    write_files,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["LayerInfo", "LayersResult"]

@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One layer of a ``layers`` answer: its type, input and output shapes ``(c, h, w)``,
    parameters, MACs, resolved ``options``, ``cost``, a conv2d's ``kernel`` source (``source``
    ``kernel``, ``preset``, ``init`` or ``kernel_file`` with the file's ``format``,
    ``weight_key`` and ``bias_key``) and (when returned) its feature maps."""

    index: int
    type: str
    output_shape: tuple[int, int, int]
    params: int
    macs: int
    input_shape: tuple[int, int, int] | None = None
    flops: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cost: Cost | None = field(default=None, repr=False)
    kernel: Mapping[str, Any] | None = field(default=None, repr=False)
    channels: tuple[Channel, ...] = field(default=(), repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def images(self) -> list[Image.Image]:
        """This layer's feature maps as Pillow images (when the answer returned them)."""
        return [c.image() for c in self.channels]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], pngs: Mapping[str, bytes]) -> LayerInfo:
        c, h, w = ints(data["output_shape"])
        input_shape = None
        if data.get("input_shape") is not None:
            ci, hi, wi = ints(data["input_shape"])
            input_shape = (ci, hi, wi)
        cost = data.get("cost")
        return cls(
            index=int(data["index"]),
            type=str(data["type"]),
            output_shape=(c, h, w),
            params=int(data.get("params", 0)),
            macs=int(data.get("macs", 0)),
            input_shape=input_shape,
            flops=None if data.get("flops") is None else int(data["flops"]),
            options=data.get("options") or {},
            cost=None if cost is None else Cost.from_dict(cost),
            kernel=data.get("kernel"),
            channels=tuple(
                Channel.from_dict(ch, pngs.get(str(ch.get("file"))) if pngs else None)
                for ch in data.get("channels") or ()
            ),
            raw=data,
        )


@dataclass(frozen=True, slots=True, eq=False)
class LayersResult:
    """``POST /v1/layers``: a stack of layers applied in order.

    ``layers`` and the totals come with ``json`` and ``zip``; ``npy`` carries the last layer's
    float32 ``(c, h, w)`` in :attr:`array`; ``onnx`` carries the model bytes in ``content``
    (write it with :meth:`save` and load it with ONNX Runtime).
    """

    format: str
    layers: tuple[LayerInfo, ...] = ()
    total_params: int | None = None
    total_macs: int | None = None
    cost: Cost | None = None
    engine: str | None = None
    device: str | None = None
    timing_ms: Mapping[str, float] = field(default_factory=dict)
    dry_run: bool = False
    content: bytes | None = field(default=None, repr=False)
    data: FloatArray | None = field(default=None, repr=False)
    output_shape: tuple[int, ...] | None = None
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def array(self) -> FloatArray:
        """The last layer's output, float32 ``(c, h, w)`` (``format="npy"`` only)."""
        if self.data is None:
            raise ValueError(f"a format={self.format!r} answer carries no array; ask for "
                             "format='npy'")
        return self.data

    def save(self, directory: str | Path) -> list[Path]:
        """Write the result into ``directory``: ``model.onnx``, ``output.npy``, or
        ``layer_<i>/channel_<k>.png`` for each returned feature map."""
        return write_files(directory, self.files())

    def files(self) -> dict[str, bytes]:
        """What :meth:`save` writes: file name (``/`` between folders) -> content."""
        if self.format == "onnx" and self.content is not None:
            return {"model.onnx": self.content}
        if self.data is not None:
            return {"output.npy": npy_bytes(self.data)}
        files = {f"layer_{layer.index:02d}/channel_{channel.index:03d}.png": channel.png
                 for layer in self.layers for channel in layer.channels
                 if channel.png is not None}
        if not files:
            raise ValueError("this answer carries no feature maps; ask with return_='all' or "
                             "'last' and format='json' or 'zip'")
        return files

    @classmethod
    def from_json(
        cls,
        fmt: str,
        data: Mapping[str, Any],
        pngs: Mapping[str, bytes] | None = None,
        *,
        content: bytes | None = None,
        request_id: str | None = None,
    ) -> LayersResult:
        layers = tuple(LayerInfo.from_dict(layer, pngs or {}) for layer in data["layers"])
        total_params = data.get("total_params")
        total_macs = data.get("total_macs")
        cost = data.get("cost")
        return cls(
            format=fmt,
            layers=layers,
            total_params=None if total_params is None else int(total_params),
            total_macs=None if total_macs is None else int(total_macs),
            cost=None if cost is None else Cost.from_dict(cost),
            engine=data.get("engine"),
            device=data.get("device"),
            timing_ms=float_map(data.get("timing_ms")),
            dry_run=bool(data.get("dry_run", False)),
            content=content,
            output_shape=layers[-1].output_shape if layers else None,
            request_id=request_id,
            raw=data,
        )

    @classmethod
    def from_file(
        cls, fmt: str, content: bytes, headers: Mapping[str, str], request_id: str | None = None
    ) -> LayersResult:
        timing = parse_server_timing(headers.get("server-timing"))
        shape_header = headers.get("x-convserve-shape")
        shape = None if not shape_header else ints(shape_header.split(","))
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                pngs = {name: archive.read(name) for name in archive.namelist()
                        if name.endswith(".png")}
            result = cls.from_json(fmt, manifest, pngs, content=content, request_id=request_id)
            return result if result.timing_ms else replace(result, timing_ms=timing)
        data = None
        if fmt == "npy":
            data = np.load(io.BytesIO(content), allow_pickle=False).astype(np.float32, copy=False)
            shape = data.shape
        engine, _, device = headers.get("x-convserve-engine", "").partition("/")
        return cls(format=fmt, engine=engine or None, device=device or None, timing_ms=timing,
                   content=content, data=data, output_shape=shape, request_id=request_id)

