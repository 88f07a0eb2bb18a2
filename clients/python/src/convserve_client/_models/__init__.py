"""Typed results of every endpoint, built from the server's JSON (or files and headers).

Every result keeps the JSON it came from in ``raw``, so a field a newer server adds is
reachable before this client learns its name. Arrays are float32 ``numpy.ndarray``; PNGs are
``bytes``; :meth:`Channel.image` and the ``images()`` helpers turn them into Pillow images
(the optional ``images`` extra).
"""

from convserve_client._models._shared import Channel, ChannelStats, Cost
from convserve_client._models.convolve import ConvolveResult
from convserve_client._models.engines import DeviceInfo, EngineInfo, EnginesInfo
from convserve_client._models.explain import ExplainResult, ExplainTerm
from convserve_client._models.health import Health, Readiness
from convserve_client._models.layers import LayerInfo, LayersResult
from convserve_client._models.presets import PresetInfo, PresetParameter, ResolvedPreset
from convserve_client._models.problem import FieldError, Problem

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
