"""``GET /v1/engines``: :class:`EnginesInfo`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeviceInfo", "EngineInfo", "EnginesInfo"]

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


