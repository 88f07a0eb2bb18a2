"""What an engine is: one object that runs a validated :class:`ConvSpec` on one device.

Engines never see bytes, HTTP or settings. They receive C-contiguous float32 arrays
``x (N, C_in, H, W)``, ``weight (C_out, C_in // groups, k_h, k_w)``, ``bias (C_out,)`` or None,
and the spec that :func:`convserve.conv.spec.conv_spec` built for exactly those shapes, and
return float32 ``(N, C_out, H_out, W_out)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias

import numpy as np

from convserve.conv.spec import ConvSpec
from convserve.errors import InvalidArgumentError

__all__ = [
    "DEVICES",
    "ENGINES",
    "ENGINE_CHOICES",
    "Device",
    "DeviceStatus",
    "Engine",
    "EngineChoice",
    "EngineName",
    "check_device",
    "check_engine_choice",
    "check_engine_name",
]

EngineName: TypeAlias = Literal["numpy", "onnxruntime"]
Device: TypeAlias = Literal["cpu", "cuda"]
ENGINES: tuple[EngineName, ...] = ("numpy", "onnxruntime")
DEVICES: tuple[Device, ...] = ("cpu", "cuda")
EngineChoice: TypeAlias = Literal["auto", "numpy", "onnxruntime"]
"""What a caller may ask for: an engine, or ``"auto"`` (:mod:`convserve.conv.auto`), which
runs each layer on the engine and strategy measured fastest for its shape."""
ENGINE_CHOICES: tuple[EngineChoice, ...] = ("auto", *ENGINES)


def check_engine_name(name: object) -> EngineName:
    """``name`` if it is an engine's name, else the one error that lists them."""
    if name not in ENGINES:
        raise InvalidArgumentError(f"engine={name!r} is not one of {', '.join(ENGINES)}",
                                   field="engine")
    return name


def check_engine_choice(name: object) -> EngineChoice:
    """``name`` if it is ``"auto"`` or an engine's name, else the one error that lists them."""
    if name not in ENGINE_CHOICES:
        raise InvalidArgumentError(
            f"engine={name!r} is not one of {', '.join(ENGINE_CHOICES)}", field="engine"
        )
    return name


def check_device(device: object) -> Device:
    """``device`` if it is a device's name, else the one error that lists them."""
    if device not in DEVICES:
        raise InvalidArgumentError(f"device={device!r} is not one of {', '.join(DEVICES)}",
                                   field="device")
    return device


@dataclass(frozen=True)
class DeviceStatus:
    """Whether ``device`` can run here, and if not, why."""

    device: Device
    available: bool
    reason: str | None = None
    details: dict[str, object] = field(default_factory=dict)


class Engine(Protocol):
    @property
    def name(self) -> EngineChoice:
        """``"numpy"``, ``"onnxruntime"``, or ``"auto"`` for the engine that picks between
        them (:class:`convserve.conv.auto.AutoEngine`)."""
        ...

    def version(self) -> str:
        """The version of the library doing the arithmetic."""
        ...

    def devices(self) -> list[DeviceStatus]:
        """Every device this engine knows, with availability and the reason when not."""
        ...

    def conv2d(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        spec: ConvSpec,
        device: Device = "cpu",
    ) -> np.ndarray:
        """Run ``spec`` on ``device``; raise EngineUnavailableError if it cannot run there."""
        ...
