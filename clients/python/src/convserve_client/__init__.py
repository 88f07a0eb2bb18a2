"""Python client for the convserve API: typed, sync and async, with clear errors and safe retries.

>>> from convserve_client import Client
>>> with Client("http://localhost:8000") as cs:  # doctest: +SKIP
...     res = cs.convolve("cat.png", preset="sobel")
...     res.shape, res.channels[0].stats, res.images()[0]
"""

from convserve_client._async_client import AsyncClient
from convserve_client._batch import DEFAULT_CONCURRENCY, ItemError
from convserve_client._client import Client
from convserve_client._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
)
from convserve_client._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConvServeError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from convserve_client._model_types import (
    FeatureLayer,
    FeatureMaps,
    ModelInfo,
    ModelInput,
    ModelKernel,
    ModelLayer,
)
from convserve_client._models import (
    Channel,
    ChannelStats,
    ConvolveResult,
    Cost,
    DeviceInfo,
    EngineInfo,
    EnginesInfo,
    ExplainResult,
    ExplainTerm,
    FieldError,
    Health,
    LayerInfo,
    LayersResult,
    PresetInfo,
    PresetParameter,
    Problem,
    Readiness,
    ResolvedPreset,
)
from convserve_client._types import NOT_GIVEN, NotGiven
from convserve_client._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Channel",
    "ChannelStats",
    "Client",
    "ConvServeError",
    "ConvolveResult",
    "Cost",
    "DeviceInfo",
    "EngineInfo",
    "EnginesInfo",
    "ExplainResult",
    "ExplainTerm",
    "FeatureLayer",
    "FeatureMaps",
    "FieldError",
    "GatewayTimeoutError",
    "Health",
    "InternalServerError",
    "ItemError",
    "LayerInfo",
    "LayersResult",
    "ModelInfo",
    "ModelInput",
    "ModelKernel",
    "ModelLayer",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PresetInfo",
    "PresetParameter",
    "Problem",
    "RateLimitError",
    "RequestTimeoutError",
    "Readiness",
    "ResolvedPreset",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "__version__",
]
