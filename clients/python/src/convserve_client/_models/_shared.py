"""What several endpoints' results share: channels, costs, and the readers of JSON numbers,
shapes and ``Server-Timing`` headers."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Channel",
    "ChannelStats",
    "Cost",
    "FloatArray",
    "float32",
    "float_map",
    "ints",
    "npy_bytes",
    "open_png",
    "pads",
    "pair",
    "parse_server_timing",
    "real",
    "write_files",
]

FloatArray = npt.NDArray[np.float32]


def float32(value: Any) -> FloatArray:
    """Nested JSON numbers as float32; null (NaN or infinity on the server) becomes NaN, and a
    number beyond float32's range (explain's float64 products) infinity, as in the engines."""
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=np.float32)


def ints(value: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def npy_bytes(array: FloatArray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_files(directory: str | Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` (relative name -> content) under ``directory``, creating folders."""
    out = Path(directory)
    written = []
    for name, content in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written


def open_png(data: bytes) -> Image.Image:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "images() needs Pillow: pip install 'convserve-client[images]'"
        ) from None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def real(value: Any) -> float:
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
        return open_png(self.png)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], png: bytes | None = None) -> Channel:
        if png is None and data.get("png_base64"):
            png = base64.b64decode(data["png_base64"])
        index = int(data["index"])
        return cls(
            index=index,
            name=str(data.get("name") or index),
            stats=ChannelStats(real(data["min"]), real(data["max"]), real(data["mean"])),
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


def float_map(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (values or {}).items()}


def parse_server_timing(header: str | None) -> dict[str, float]:
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


def pads(values: Sequence[Any]) -> tuple[int, int, int, int]:
    top, bottom, left, right = ints(values)
    return (top, bottom, left, right)


def pair(values: Sequence[Any] | None) -> tuple[int, int] | None:
    if values is None:
        return None
    h, w = ints(values)
    return (h, w)


