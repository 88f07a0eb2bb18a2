"""Schemas of ``GET /v1/engines`` and ``GET /v1/limits``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["DeviceInfo", "EngineInfo", "EnginesResponse", "LimitsResponse"]


class DeviceInfo(BaseModel):
    device: str
    available: bool
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class EngineInfo(BaseModel):
    name: str
    version: str
    devices: list[DeviceInfo]


class EnginesResponse(BaseModel):
    default_engine: str
    default_device: str
    engines: list[EngineInfo]



class LimitsResponse(BaseModel):
    """The effective limits of this server (GET /v1/limits); each request is checked against
    exactly these numbers."""

    max_upload_bytes: int
    """Largest request body in bytes (413 above)."""
    max_pixels: int
    """Largest image or array, H x W, checked from the header before decoding (413 above)."""
    max_kernel_size: int
    """Largest kernel or pooling window side."""
    max_out_channels: int
    """Largest c_out of one layer."""
    max_macs: int
    """Multiply-accumulates (and pooling-window reads) of one request, all layers together."""
    max_layers: int
    """Layers in one /v1/layers request."""
    max_array_values: int
    """Numbers in a JSON input array or a format=array answer."""
    max_output_bytes: int
    """float32 bytes of one output, feature map or weight tensor."""
    max_model_bytes: int
    """Largest ONNX model upload (POST /v1/models) in bytes (413 above)."""
    model_store_bytes: int
    """Bytes the model store may hold; least recently used models are evicted past it."""
    memory_budget_bytes: int
    """Bytes of requests in flight one server process admits (bodies before they are read,
    then their working memory); more wait, then get 503 with Retry-After. The effective value
    (fitted to the memory limit when the setting is 0)."""
    body_timeout_s: float
    """Seconds a request body may take to arrive in full (408 after)."""
    max_preset_channels: int
    """Input channels a preset can be spread over (a bound of the core, no setting)."""
    max_explain_products: int
    """Products one explained output element may read (a bound of the core, no setting)."""
    env: dict[str, str]
    """For each limit that is a setting, the environment variable that changes it."""
