"""Typed results of every endpoint, built from the server's JSON (or files and headers).

Every result keeps the JSON it came from in ``raw``, so a field a newer server adds is
reachable before this client learns its name. Arrays are float32 ``numpy.ndarray``; PNGs are
``bytes``; :meth:`Channel.image` and the ``images()`` helpers turn them into Pillow images
(the optional ``images`` extra).
"""

from __future__ import annotations

import base64
import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Channel",
    "ChannelStats",
    "ConvolveResult",
    "Cost",
    "DeviceInfo",
    "EngineInfo",
    "EnginesInfo",
    "ExplainResult",
    "ExplainTerm",
    "FieldError",
    "Health",
    "LayerInfo",
    "LayersResult",
    "PresetInfo",
    "PresetParameter",
    "Problem",
    "Readiness",
    "ResolvedPreset",
]

FloatArray = npt.NDArray[np.float32]

_IMAGE_FORMATS = ("png", "image", "grid")


def _float32(value: Any) -> FloatArray:
    """Nested JSON numbers as float32; null (NaN or infinity on the server) becomes NaN, and a
    number beyond float32's range (explain's float64 products) infinity, as in the engines."""
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=np.float32)


def _ints(value: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _open_png(data: bytes) -> Image.Image:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "images() needs Pillow: pip install 'convserve-client[images]'"
        ) from None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field problem of a 4xx answer: ``field`` is dotted (``kernel.weight``)."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem, as the server sent it (or as close as a non-problem body allows).

    Attributes
    ----------
    type, title, status, detail
        The standard members; ``detail`` names the numbers and the valid values.
    errors : tuple of FieldError
        Field problems (validation errors), possibly empty.
    raw : Mapping
        The whole body, including any extension members.
    """

    type: str
    title: str
    status: int
    detail: str
    errors: tuple[FieldError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_response_body(cls, status: int, reason: str, body: bytes) -> Problem:
        """Parse a problem body; any other body becomes a problem whose detail is its text."""
        data: Any = None
        try:
            data = json.loads(body)
        except ValueError:
            pass
        if isinstance(data, dict):
            errors = tuple(
                FieldError(str(e.get("field", "")), str(e.get("message", "")))
                for e in data.get("errors") or ()
                if isinstance(e, dict)
            )
            detail = data.get("detail")
            if not isinstance(detail, str):
                detail = json.dumps(detail) if detail is not None else reason
            return cls(
                type=str(data.get("type", "about:blank")),
                title=str(data.get("title", reason)),
                status=int(data.get("status", status)),
                detail=detail,
                errors=errors,
                raw=data,
            )
        text = body.decode("utf-8", "replace").strip()
        return cls(type="about:blank", title=reason, status=status, detail=text[:500] or reason)


def _real(value: Any) -> float:
    """A number from a JSON answer; the server writes NaN and infinity (a float32 overflow)
    as null, which becomes NaN here."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Minimum, maximum and mean of one output channel (before any PNG normalisation); NaN
    where the output overflowed float32 (the server sends null)."""

    min: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True)
class Channel:
    """One output channel: its index, name (e.g. ``"x"``, ``"y"`` for Sobel), stats and PNG.

    ``png`` is the channel rendered to 8 or 16 bits with the response's ``normalize`` mode;
    it is ``None`` where the answer carries statistics only (``dry_run``, ``format="array"``).
    """

    index: int
    name: str
    stats: ChannelStats
    png: bytes | None = field(default=None, repr=False)

    def image(self) -> Image.Image:
        """The channel's PNG as a Pillow image (mode ``L`` or ``I;16``)."""
        if self.png is None:
            raise ValueError(f"channel {self.index} carries no PNG in this answer")
        return _open_png(self.png)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], png: bytes | None = None) -> Channel:
        if png is None and data.get("png_base64"):
            png = base64.b64decode(data["png_base64"])
        index = int(data["index"])
        return cls(
            index=index,
            name=str(data.get("name") or index),
            stats=ChannelStats(_real(data["min"]), _real(data["max"]), _real(data["mean"])),
            png=png,
        )


@dataclass(frozen=True, slots=True)
class Cost:
    """Size and arithmetic of one layer (or a stack).

    ``params`` is ``c_out * c_in/groups * k_h * k_w`` (+ ``c_out`` with a bias), ``macs`` the
    multiply-accumulates, ``flops`` the floating-point operations; the byte counts are float32
    sizes; ``output_size`` is the output-size formula per axis with the numbers filled in
    (one layer); ``feature_map_bytes`` is every layer's output together (a stack).
    """

    params: int
    macs: int
    flops: int
    input_bytes: int
    weight_bytes: int
    output_bytes: int
    output_size: Mapping[str, str] = field(default_factory=dict)
    feature_map_bytes: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        return cls(
            params=int(data["params"]),
            macs=int(data["macs"]),
            flops=int(data["flops"]),
            input_bytes=int(data["input_bytes"]),
            weight_bytes=int(data["weight_bytes"]),
            output_bytes=int(data["output_bytes"]),
            output_size={str(k): str(v) for k, v in (data.get("output_size") or {}).items()},
            feature_map_bytes=None if data.get("feature_map_bytes") is None
            else int(data["feature_map_bytes"]),
        )


def _timing(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (values or {}).items()}


def _parse_server_timing(header: str | None) -> dict[str, float]:
    """``decode;dur=1.2, convolve;dur=3.4`` -> ``{"decode": 1.2, "convolve": 3.4}``."""
    timing: dict[str, float] = {}
    for entry in (header or "").split(","):
        name, _, params = entry.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if name and key == "dur":
                try:
                    timing[name] = float(value)
                except ValueError:
                    continue
    return timing


@dataclass(frozen=True, slots=True, eq=False)
class ConvolveResult:
    """The answer of ``convolve``, whatever its ``format``.

    Every format fills ``shape`` ``(c_out, h_out, w_out)``, ``padding`` ``(top, bottom, left,
    right)``, ``engine`` and ``device``. The JSON formats (``json``, ``array``) and ``zip`` (from
    its manifest) also fill the options used, ``cost`` and per-channel ``channels``; the file
    formats (``npy``, ``png``, ``image``, ``grid``) carry their bytes in ``content`` and leave
    those ``None``.

    Use :attr:`array` for the float32 values (formats ``array`` and ``npy``), :meth:`images`
    for Pillow images (``json``, ``zip``, ``png``, ``image``, ``grid``) and :meth:`save` to
    write the result into a directory.
    """

    format: str
    shape: tuple[int, int, int]
    padding: tuple[int, int, int, int]
    engine: str
    device: str
    timing_ms: Mapping[str, float] = field(default_factory=dict)
    padding_mode: str | None = None
    stride: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int | None = None
    normalize: str | None = None
    input: Mapping[str, Any] | None = None
    kernel: Mapping[str, Any] | None = None
    cost: Cost | None = None
    channels: tuple[Channel, ...] = ()
    dry_run: bool = False
    channel: int | None = None
    """The channel a ``format="png"`` answer holds."""
    content: bytes | None = field(default=None, repr=False)
    data: FloatArray | None = field(default=None, repr=False)
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def array(self) -> FloatArray:
        """The output, float32 of shape ``(c_out, h_out, w_out)``.

        Only ``format="array"`` and ``format="npy"`` carry the values; the image formats carry
        8-bit renderings, from which the floats cannot be recovered.
        """
        if self.data is None:
            raise ValueError(
                f"a format={self.format!r} answer carries no array; ask for format='npy' "
                "(or 'array' for small outputs)"
            )
        return self.data

    def images(self) -> list[Image.Image]:
        """Pillow images: one per channel (``json``, ``zip``) or the one PNG sent (``png``,
        ``image``, ``grid``). Needs the ``images`` extra."""
        return [_open_png(png) for png in self._pngs().values()]

    def save(self, directory: str | Path) -> list[Path]:
        """Write the result into ``directory`` (created if missing); returns the paths.

        One ``channel_000.png``, ``channel_001.png``, ... per channel for ``json`` and
        ``zip``; the single PNG for ``png`` (``channel_<k>.png``), ``image`` (``image.png``)
        and ``grid`` (``grid.png``); ``output.npy`` for ``npy`` and ``array``.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.data is not None:
            path = out / "output.npy"
            np.save(path, self.data)
            return [path]
        written = []
        for name, png in self._pngs().items():
            path = out / name
            path.write_bytes(png)
            written.append(path)
        return written

    def _pngs(self) -> dict[str, bytes]:
        if self.format in _IMAGE_FORMATS and self.content is not None:
            return {self._file_name(): self.content}
        pngs = {f"channel_{c.index:03d}.png": c.png for c in self.channels if c.png is not None}
        if not pngs:
            raise ValueError(
                f"a format={self.format!r} answer{' (dry run)' if self.dry_run else ''} "
                "carries no images; ask for format='json', 'zip', 'png', 'image' or 'grid'"
            )
        return pngs

    def _file_name(self) -> str:
        if self.format == "png":
            return f"channel_{self.channel or 0:03d}.png"
        return f"{self.format}.png"

    @classmethod
    def from_json(
        cls, fmt: str, data: Mapping[str, Any], request_id: str | None = None
    ) -> ConvolveResult:
        """Build from a ``json`` or ``array`` answer (or a dry run of any format)."""
        return cls._from_metadata(fmt, data, {}, request_id=request_id)

    @classmethod
    def _from_metadata(
        cls,
        fmt: str,
        data: Mapping[str, Any],
        pngs: Mapping[str, bytes],
        *,
        timing_ms: Mapping[str, float] | None = None,
        content: bytes | None = None,
        request_id: str | None = None,
    ) -> ConvolveResult:
        shape = _ints(data["shape"])
        channels = tuple(
            Channel.from_dict(c, pngs.get(str(c.get("file", ""))))
            for c in data.get("channels") or ()
        )
        array = None
        if "data" in data:
            array = _float32(data["data"]).reshape(shape)
        return cls(
            format=fmt,
            shape=(shape[0], shape[1], shape[2]),
            padding=_pads(data["padding"]),
            engine=str(data["engine"]),
            device=str(data["device"]),
            timing_ms=_timing(data.get("timing_ms") or timing_ms),
            padding_mode=data.get("padding_mode"),
            stride=_pair(data.get("stride")),
            dilation=_pair(data.get("dilation")),
            groups=None if data.get("groups") is None else int(data["groups"]),
            normalize=data.get("normalize"),
            input=data.get("input"),
            kernel=data.get("kernel"),
            cost=None if data.get("cost") is None else Cost.from_dict(data["cost"]),
            channels=channels,
            dry_run=bool(data.get("dry_run", False)),
            content=content,
            data=array,
            request_id=request_id,
            raw=data,
        )

    @classmethod
    def from_file(
        cls,
        fmt: str,
        content: bytes,
        headers: Mapping[str, str],
        *,
        channel: int | None = None,
        request_id: str | None = None,
    ) -> ConvolveResult:
        """Build from a file answer (``npy``, ``png``, ``image``, ``grid``, ``zip``) and its
        ``X-Convserve-*`` headers."""
        timing = _parse_server_timing(headers.get("server-timing"))
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                pngs = {name: archive.read(name) for name in archive.namelist()
                        if name.endswith(".png")}
            return cls._from_metadata(fmt, manifest, pngs, timing_ms=timing, content=content,
                                      request_id=request_id)
        shape = _ints(headers["x-convserve-shape"].split(","))
        engine, _, device = headers.get("x-convserve-engine", "/").partition("/")
        array = None
        if fmt == "npy":
            array = np.load(io.BytesIO(content), allow_pickle=False).astype(np.float32, copy=False)
        return cls(
            format=fmt,
            shape=(shape[0], shape[1], shape[2]),
            padding=_pads(headers["x-convserve-padding"].split(",")),
            engine=engine,
            device=device,
            timing_ms=timing,
            content=content,
            data=array,
            channel=channel if fmt == "png" else None,
            request_id=request_id,
        )


def _pads(values: Sequence[Any]) -> tuple[int, int, int, int]:
    top, bottom, left, right = _ints(values)
    return (top, bottom, left, right)


def _pair(values: Sequence[Any] | None) -> tuple[int, int] | None:
    if values is None:
        return None
    h, w = _ints(values)
    return (h, w)


@dataclass(frozen=True, slots=True)
class PresetParameter:
    """A parameter of a preset: its type (``int``, ``float``), default and allowed range."""

    name: str
    type: str
    default: Any
    min: float | None = None
    max: float | None = None
    description: str = ""
    choices: tuple[Any, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PresetParameter:
        choices = data.get("choices")
        return cls(
            name=str(data["name"]),
            type=str(data.get("type", "float")),
            default=data.get("default"),
            min=data.get("min"),
            max=data.get("max"),
            description=str(data.get("description") or ""),
            choices=None if choices is None else tuple(choices),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class PresetInfo:
    """One entry of ``GET /v1/presets``: what a named kernel is and which parameters it takes.

    ``rule`` is how it spreads over input channels (``depthwise``, ``luminance``, ``full``);
    ``range_preserving`` says whether outputs stay in the input's ``[0, 1]``;
    ``requires_channels`` is the input channel count a ``full`` preset needs.
    """

    name: str
    description: str
    rule: str
    parameters: tuple[PresetParameter, ...]
    source: str
    range_preserving: bool
    requires_channels: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PresetInfo:
        requires = data.get("requires_channels")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            rule=str(data.get("rule", "")),
            parameters=tuple(PresetParameter.from_dict(p) for p in data.get("parameters") or ()),
            source=str(data.get("source", "")),
            range_preserving=bool(data.get("range_preserving", False)),
            requires_channels=None if requires is None else int(requires),
            raw=data,
        )


@dataclass(frozen=True, slots=True, eq=False)
class ResolvedPreset:
    """A preset resolved for ``C`` input channels: the exact kernel the server would apply.

    Attributes
    ----------
    weight : ndarray of shape (c_out, C // groups, k_h, k_w)
        float32, OIHW.
    bias : ndarray of shape (c_out,) or None
    groups : int
    """

    name: str
    weight: FloatArray
    bias: FloatArray | None
    groups: int
    rule: str
    params: Mapping[str, Any]
    output_names: tuple[str, ...]
    range_preserving: bool = False
    info: PresetInfo | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def kernel(self) -> dict[str, Any]:
        """This preset as an explicit ``kernel`` for ``convolve`` (pass ``groups`` too)."""
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedPreset:
        weight = _float32(data["weight"])
        bias = data.get("bias")
        info = data.get("preset")
        return cls(
            name=str(data["name"]),
            weight=weight,
            bias=None if bias is None else _float32(bias),
            groups=int(data.get("groups", 1)),
            rule=str(data.get("rule", "")),
            params=dict(data.get("params") or {}),
            output_names=tuple(str(n) for n in data.get("output_names")
                               or range(weight.shape[0])),
            range_preserving=bool(data.get("range_preserving", False)),
            info=None if not isinstance(info, Mapping) else PresetInfo.from_dict(info),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One device of an engine; ``reason`` says why it is unavailable."""

    device: str
    available: bool
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    name: str
    version: str
    devices: tuple[DeviceInfo, ...]

    def available_devices(self) -> list[str]:
        return [d.device for d in self.devices if d.available]


@dataclass(frozen=True, slots=True)
class EnginesInfo:
    """``GET /v1/engines``: the defaults and every engine with its devices."""

    default_engine: str
    default_device: str
    engines: tuple[EngineInfo, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> EngineInfo:
        for engine in self.engines:
            if engine.name == name:
                return engine
        raise KeyError(f"no engine {name!r}; the server has {[e.name for e in self.engines]}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnginesInfo:
        return cls(
            default_engine=str(data["default_engine"]),
            default_device=str(data["default_device"]),
            engines=tuple(
                EngineInfo(
                    name=str(e["name"]),
                    version=str(e.get("version", "")),
                    devices=tuple(
                        DeviceInfo(
                            device=str(d["device"]),
                            available=bool(d["available"]),
                            reason=d.get("reason"),
                            details=d.get("details") or {},
                        )
                        for d in e.get("devices") or ()
                    ),
                )
                for e in data["engines"]
            ),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /healthz``: the process answers."""

    status: str


@dataclass(frozen=True, slots=True)
class Readiness:
    """``GET /readyz``: ``ready`` once the engines are warm; otherwise ``detail`` says why."""

    ready: bool
    status: str
    engine: str | None = None
    device: str | None = None
    detail: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ExplainTerm:
    """The contribution of one input channel to the explained output element.

    Attributes
    ----------
    input_channel : int
    window : ndarray of shape (k_h, k_w)
        The input values the kernel multiplies (dilation applied, padding values included).
    kernel : ndarray of shape (k_h, k_w)
    products : ndarray of shape (k_h, k_w)
        ``window * kernel``.
    sum : float
        Sum of ``products``.
    padded : ndarray of bool, shape (k_h, k_w), or None
        True where the window value lies in the padding (when the server marks it).
    """

    input_channel: int
    window: FloatArray
    kernel: FloatArray
    products: FloatArray
    sum: float
    padded: npt.NDArray[np.bool_] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplainTerm:
        padded = data.get("padded", data.get("in_padding"))
        return cls(
            input_channel=int(data["input_channel"]),
            window=_float32(data["window"]),
            kernel=_float32(data["kernel"]),
            products=_float32(data["products"]),
            sum=_real(data["sum"]),
            padded=None if padded is None else np.asarray(padded, dtype=bool),
            raw=data,
        )


def _position(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        keys = ("channel", "y", "x") if "channel" in value else ("y", "x")
        return tuple(int(value[k]) for k in keys)
    return _ints(value)


@dataclass(frozen=True, slots=True, eq=False)
class ExplainResult:
    """``POST /v1/explain``: the arithmetic behind one output element.

    ``value`` equals the convolution's output at ``at`` = ``(channel, y, x)``; it is
    ``bias + sum(t.sum for t in terms)``. ``expression`` is the whole computation as one line,
    e.g. ``(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56``.

    ``window_origin`` ``(y, x)`` is the input coordinate of the window's top-left tap (negative
    inside the padding); ``rows`` and ``cols`` are the input coordinates each kernel row and
    column reads (dilation applied); ``padding`` is ``(top, bottom, left, right)``.
    """

    value: float
    bias: float
    at: tuple[int, int, int]
    output_shape: tuple[int, ...]
    window_origin: tuple[int, ...]
    terms: tuple[ExplainTerm, ...] = field(repr=False)
    expression: str
    padding: tuple[int, int, int, int] | None = None
    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()
    cost: Cost | None = None
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], at: tuple[int, int, int], request_id: str | None = None
    ) -> ExplainResult:
        position = _position(data.get("at"))
        channel, y, x = position if position is not None and len(position) == 3 else at
        return cls(
            value=_real(data["value"]),
            bias=float(data.get("bias") or 0.0),
            at=(channel, y, x),
            output_shape=_ints(data["output_shape"]),
            window_origin=_position(data.get("window_origin")) or (),
            terms=tuple(ExplainTerm.from_dict(t) for t in data["terms"]),
            expression=str(data["expression"]),
            padding=None if data.get("padding") is None else _pads(data["padding"]),
            rows=_ints(data.get("rows") or ()),
            cols=_ints(data.get("cols") or ()),
            cost=None if data.get("cost") is None else Cost.from_dict(data["cost"]),
            request_id=request_id,
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One layer of a ``layers`` answer: its type, input and output shapes ``(c, h, w)``,
    parameters, MACs, resolved ``options``, ``cost`` and (when returned) its feature maps."""

    index: int
    type: str
    output_shape: tuple[int, int, int]
    params: int
    macs: int
    input_shape: tuple[int, int, int] | None = None
    flops: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cost: Cost | None = field(default=None, repr=False)
    channels: tuple[Channel, ...] = field(default=(), repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def images(self) -> list[Image.Image]:
        """This layer's feature maps as Pillow images (when the answer returned them)."""
        return [c.image() for c in self.channels]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], pngs: Mapping[str, bytes]) -> LayerInfo:
        c, h, w = _ints(data["output_shape"])
        input_shape = None
        if data.get("input_shape") is not None:
            ci, hi, wi = _ints(data["input_shape"])
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
            channels=tuple(Channel.from_dict(ch, pngs.get(str(ch.get("file", ""))))
                           for ch in data.get("channels") or ()),
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
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.format == "onnx" and self.content is not None:
            path = out / "model.onnx"
            path.write_bytes(self.content)
            return [path]
        if self.data is not None:
            path = out / "output.npy"
            np.save(path, self.data)
            return [path]
        written = []
        for layer in self.layers:
            for channel in layer.channels:
                if channel.png is None:
                    continue
                folder = out / f"layer_{layer.index:02d}"
                folder.mkdir(exist_ok=True)
                path = folder / f"channel_{channel.index:03d}.png"
                path.write_bytes(channel.png)
                written.append(path)
        if not written:
            raise ValueError("this answer carries no feature maps; ask with returns='all' or "
                             "'last' and format='json' or 'zip'")
        return written

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
            timing_ms=_timing(data.get("timing_ms")),
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
        timing = _parse_server_timing(headers.get("server-timing"))
        shape_header = headers.get("x-convserve-shape")
        shape = None if not shape_header else _ints(shape_header.split(","))
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

