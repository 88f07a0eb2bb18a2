"""``GET /healthz`` and ``GET /readyz``: :class:`Health`, :class:`Readiness`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Health", "Readiness"]

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


