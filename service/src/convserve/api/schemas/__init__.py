"""Request and response schemas of HTTP API v1, one module per endpoint family.

Field docstrings become the OpenAPI descriptions. Requests forbid unknown fields, so a typo is
a 422 naming the field instead of a silently ignored option.
"""

from __future__ import annotations

from pydantic import BaseModel

from convserve.api.schemas.common import (
    InputSpec,
    KernelSpec,
    Problem,
    RunOptions,
)
from convserve.api.schemas.convolve import (
    ChannelResult,
    ConvLayerOptions,
    ConvolveOptions,
    ConvolveRequest,
    ConvolveResponse,
    Cost,
)
from convserve.api.schemas.engines import (
    DeviceInfo,
    EngineInfo,
    EnginesResponse,
    LimitsResponse,
)
from convserve.api.schemas.explain import (
    ExplainAt,
    ExplainOptions,
    ExplainRequest,
    ExplainResponse,
    ExplainTerm,
)
from convserve.api.schemas.layers import (
    AbsLayerSpec,
    ActivationSpec,
    AvgPool2dLayerSpec,
    Conv2dLayerSpec,
    LayerResult,
    LayersOptions,
    LayerSpec,
    LayersRequest,
    LayersResponse,
    LeakyReluLayerSpec,
    MaxPool2dLayerSpec,
    ReluLayerSpec,
    SigmoidLayerSpec,
    StackCost,
    TanhLayerSpec,
)

__all__ = [
    "BODY_MODELS",
    "AbsLayerSpec",
    "ActivationSpec",
    "AvgPool2dLayerSpec",
    "ChannelResult",
    "Conv2dLayerSpec",
    "ConvLayerOptions",
    "ConvolveOptions",
    "ConvolveRequest",
    "ConvolveResponse",
    "Cost",
    "DeviceInfo",
    "EngineInfo",
    "EnginesResponse",
    "ExplainAt",
    "ExplainOptions",
    "ExplainRequest",
    "ExplainResponse",
    "ExplainTerm",
    "InputSpec",
    "KernelSpec",
    "LayerResult",
    "LayerSpec",
    "LayersOptions",
    "LayersRequest",
    "LayersResponse",
    "LeakyReluLayerSpec",
    "LimitsResponse",
    "MaxPool2dLayerSpec",
    "Problem",
    "ReluLayerSpec",
    "RunOptions",
    "SigmoidLayerSpec",
    "StackCost",
    "TanhLayerSpec",
]

BODY_MODELS: list[type[BaseModel]] = [ConvolveRequest, ExplainRequest, LayersRequest]
"""JSON request bodies that routes parse themselves (to also take multipart); main.py adds
them to the OpenAPI components so ``$ref``s in ``openapi_extra`` resolve."""
