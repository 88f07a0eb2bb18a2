"""``GET /v1/presets`` and ``GET /v1/presets/{name}``: named kernels and their weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convserve_client._models._shared import FloatArray, float32

__all__ = ["PresetInfo", "PresetParameter", "ResolvedPreset"]

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
        weight = float32(data["weight"])
        bias = data.get("bias")
        info = data.get("preset")
        return cls(
            name=str(data["name"]),
            weight=weight,
            bias=None if bias is None else float32(bias),
            groups=int(data.get("groups", 1)),
            rule=str(data.get("rule", "")),
            params=dict(data.get("params") or {}),
            output_names=tuple(str(n) for n in data.get("output_names")
                               or range(weight.shape[0])),
            range_preserving=bool(data.get("range_preserving", False)),
            info=None if not isinstance(info, Mapping) else PresetInfo.from_dict(info),
            raw=data,
        )


