"""convserve: convolution layers over images, exactly as PyTorch's ``conv2d``.

>>> from convserve import conv2d
>>> conv2d([[[0, 1], [2, 3]]], [[[[1.0]]]]).tolist()
[[[0.0, 1.0], [2.0, 3.0]]]
"""

from convserve.conv import ConvSpec, conv2d, conv_spec, hwio_to_oihw, oihw_to_hwio
from convserve.errors import (
    AuthenticationError,
    ComputeTimeoutError,
    ConvServeError,
    EngineUnavailableError,
    InvalidArgumentError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    ShapeError,
    UnsupportedMediaTypeError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ComputeTimeoutError",
    "ConvServeError",
    "ConvSpec",
    "EngineUnavailableError",
    "InvalidArgumentError",
    "InvalidInputError",
    "LimitExceededError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "ShapeError",
    "UnsupportedMediaTypeError",
    "__version__",
    "conv2d",
    "conv_spec",
    "hwio_to_oihw",
    "oihw_to_hwio",
]
