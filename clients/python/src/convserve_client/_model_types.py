"""Typed results of the model endpoints (``/v1/models``).

Kept apart from :mod:`convserve_client._models` (the one-layer results); every result keeps the
JSON it came from in ``raw``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convserve_client._models import Channel
from convserve_client._models._shared import npy_bytes, write_files

__all__ = ["FeatureLayer", "FeatureMaps", "ModelInfo", "ModelInput", "ModelKernel",
           "ModelLayer"]

FloatArray = npt.NDArray[np.float32]


def _npy(data: bytes) -> FloatArray:
    array: FloatArray = np.load(io.BytesIO(data), allow_pickle=False)
    return array


def _float32(value: Any) -> FloatArray:
    """Nested JSON numbers as float32; null (a float32 overflow on the server) becomes NaN."""
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=np.float32)


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _open_png(data: bytes) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("images need Pillow: pip install 'convserve-client[images]'") from None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@dataclass(frozen=True, slots=True)
class ModelInput:
    """The model's image input: ``shape`` with batch 1, ``layout`` NCHW or NHWC."""

    name: str
    shape: tuple[int, ...]
    layout: str
    channels: int
    size: tuple[int, int]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInput:
        h, w = _ints(data["size"])
        return cls(str(data["name"]), _ints(data["shape"]), str(data["layout"]),
                   int(data["channels"]), (h, w))


@dataclass(frozen=True, slots=True)
class ModelLayer:
    """One row of the layer table (one node output, in graph order)."""

    index: int
    name: str
    op: str
    node: str
    output_shape: tuple[int, ...]
    """Without the batch axis, in the model's own layout."""
    layout: str | None
    params: int
    macs: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelLayer:
        return cls(int(data["index"]), str(data["name"]), str(data["op"]),
                   str(data.get("node") or ""), _ints(data["output_shape"]),
                   data.get("layout"), int(data["params"]), int(data["macs"]))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A stored model. ``layers`` is empty in :meth:`Client.models` (the list leaves the
    tables out); :meth:`Client.model` has them."""

    id: str
    filename: str | None
    bytes: int
    created: str
    opset: int
    input_size: tuple[int, int] | None
    inputs: tuple[ModelInput, ...]
    total_params: int
    total_macs: int
    layers: tuple[ModelLayer, ...] = ()
    created_now: bool = False
    """True when this upload stored the model (201); False when it was there already (200)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input(self) -> ModelInput:
        return self.inputs[0]

    def layer(self, key: str | int) -> ModelLayer:
        """The row named ``key`` or at index ``key``."""
        for row in self.layers:
            if row.name == key or row.index == key:
                return row
        raise KeyError(f"model {self.id} has no layer {key!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], created_now: bool = False) -> ModelInfo:
        size = data.get("input_size")
        return cls(
            id=str(data["id"]), filename=data.get("filename"), bytes=int(data["bytes"]),
            created=str(data["created"]), opset=int(data["opset"]),
            input_size=None if size is None else (int(size[0]), int(size[1])),
            inputs=tuple(ModelInput.from_dict(i) for i in data["inputs"]),
            total_params=int(data["total_params"]), total_macs=int(data["total_macs"]),
            layers=tuple(ModelLayer.from_dict(r) for r in data.get("layers", ())),
            created_now=created_now, raw=dict(data),
        )


@dataclass(frozen=True, slots=True)
class FeatureLayer:
    """One layer's feature maps: ``array`` float32 (C, H, W) for npy and zip answers,
    ``channels`` (statistics and PNGs) for json and zip answers."""

    index: int
    name: str
    op: str
    shape: tuple[int, ...]
    layout: str | None
    channels: tuple[Channel, ...] = ()
    array: FloatArray | None = field(default=None, repr=False)

    def images(self) -> list[Any]:
        """Each channel's PNG as a Pillow image."""
        return [channel.image() for channel in self.channels]


@dataclass(frozen=True, slots=True)
class FeatureMaps:
    """The answer of :meth:`Client.features`. ``grid`` holds the PNG of ``format="grid"``."""

    model: str
    format: str
    layers: tuple[FeatureLayer, ...]
    preprocess: dict[str, Any] = field(default_factory=dict)
    grid: bytes | None = field(default=None, repr=False)
    content: bytes | None = field(default=None, repr=False)
    """The file as the server sent it (npy, zip and grid answers)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    device: str | None = None
    """Where the model ran: ``"cpu"`` or ``"cuda"``."""
    provider: str | None = None
    """ONNX Runtime's execution provider that ran it (json and zip answers)."""

    def __getitem__(self, key: str | int) -> FeatureLayer:
        for layer in self.layers:
            if layer.name == key or layer.index == key:
                return layer
        raise KeyError(f"no layer {key!r} in this answer")

    def grid_image(self) -> Any:
        if self.grid is None:
            raise ValueError("only format='grid' answers hold a grid")
        return _open_png(self.grid)

    def save(self, directory: str | Path) -> list[Path]:
        """Write the answer into ``directory`` (created if missing); returns the paths.

        ``<index>/channel_<k>.png`` per layer (its row index, three digits) and channel for
        ``json``; the same plus ``<index>/features.npy`` for ``zip``; ``features.npy`` for
        ``npy`` and ``grid.png`` for ``grid``.
        """
        return write_files(directory, self.files())

    def files(self) -> dict[str, bytes]:
        """What :meth:`save` writes: file name (``/`` between folders) -> content."""
        if self.format == "grid" and self.grid is not None:
            return {"grid.png": self.grid}
        if self.format == "npy" and self.content is not None:
            return {"features.npy": self.content}
        files: dict[str, bytes] = {}
        for layer in self.layers:
            folder = f"{layer.index:03d}"
            files.update((f"{folder}/channel_{c.index:03d}.png", c.png)
                         for c in layer.channels if c.png is not None)
            if layer.array is not None:
                files[f"{folder}/features.npy"] = npy_bytes(layer.array)
        if not files:
            raise ValueError(f"this format={self.format!r} answer carries no feature maps")
        return files

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureMaps:
        layers = tuple(
            FeatureLayer(int(layer["index"]), str(layer["name"]), str(layer["op"]),
                         _ints(layer["shape"]), layer.get("layout"),
                         tuple(Channel.from_dict(c) for c in layer["channels"]))
            for layer in data["layers"])
        return cls(str(data["model"]), "json", layers, dict(data.get("preprocess", {})),
                   raw=dict(data), device=data.get("device"), provider=data.get("provider"))

    @classmethod
    def from_file(cls, fmt: str, content: bytes, model: str, layer: str | int) -> FeatureMaps:
        if fmt == "npy":
            array = _npy(content)
            one = FeatureLayer(-1 if isinstance(layer, str) else layer,
                               str(layer), "", tuple(array.shape), None, array=array)
            return cls(model, fmt, (one,), content=content)
        if fmt == "grid":
            return cls(model, fmt, (), grid=content, content=content)
        archive = zipfile.ZipFile(io.BytesIO(content))
        manifest = json.loads(archive.read("manifest.json"))
        layers = []
        for entry in manifest["layers"]:
            channels = tuple(Channel.from_dict(c, archive.read(c["file"]))
                             for c in entry["channels"])
            array = _npy(archive.read(f"{entry['folder']}/features.npy"))
            layers.append(FeatureLayer(int(entry["index"]), str(entry["name"]),
                                       str(entry["op"]), _ints(entry["shape"]),
                                       entry.get("layout"), channels, array))
        return cls(str(manifest["model"]), fmt, tuple(layers),
                   dict(manifest.get("preprocess", {})), content=content, raw=manifest,
                   device=manifest.get("device"), provider=manifest.get("provider"))


@dataclass(frozen=True, slots=True)
class ModelKernel:
    """A Conv layer's kernel: :meth:`convolve_options` passed to :meth:`Client.convolve` on the
    layer's input reproduces the layer's output."""

    layer: ModelLayer
    input: str
    """The name of the tensor the layer reads."""
    weight: FloatArray
    """OIHW (c_out, c_in/groups, k_h, k_w)."""
    bias: FloatArray | None
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    """(top, bottom, left, right)."""
    dilation: tuple[int, int]
    groups: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def convolve_options(self) -> dict[str, Any]:
        """``kernel``, ``bias``, ``stride``, ``padding``, ``dilation``, ``groups`` for
        :meth:`Client.convolve`."""
        return {"kernel": self.weight, "bias": self.bias, "stride": self.stride,
                "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelKernel:
        s_h, s_w = _ints(data["stride"])
        top, bottom, left, right = _ints(data["padding"])
        d_h, d_w = _ints(data["dilation"])
        bias = data.get("bias")
        return cls(ModelLayer.from_dict(data["layer"]), str(data["input"]),
                   _float32(data["weight"]), None if bias is None else _float32(bias),
                   (s_h, s_w), (top, bottom, left, right), (d_h, d_w), int(data["groups"]),
                   raw=dict(data))
