"""Trained networks: untrusted ONNX models validated, described, stored and run.

    validate    bytes -> ValidatedModel (every refusal before anything runs)
    table       ValidatedModel -> layer table (shapes, params, MACs) and the MACs limit
    store       the bounded on-disk store shared by workers
    preprocess  decoded input -> the model's input tensor
    kernels     a Conv node -> convserve's weight, bias, stride, padding, dilation, groups
    runner      ModelService: upload, features, kernels, explain inputs, session cache
"""

from convserve.models.kernels import ConvKernel, conv_kernel
from convserve.models.preprocess import Preprocess, preprocess
from convserve.models.runner import FeatureResult, ModelService, StoredModel, to_chw
from convserve.models.store import MODEL_ID, ModelStore
from convserve.models.table import LayerRow, ModelSummary, summarize
from convserve.models.validate import (
    ALLOWED_OPS,
    InputInfo,
    ModelRefusedError,
    ValidatedModel,
    max_supported_opset,
    validate_model,
)

__all__ = [
    "ALLOWED_OPS",
    "MODEL_ID",
    "ConvKernel",
    "FeatureResult",
    "InputInfo",
    "LayerRow",
    "ModelRefusedError",
    "ModelService",
    "ModelStore",
    "ModelSummary",
    "Preprocess",
    "StoredModel",
    "ValidatedModel",
    "conv_kernel",
    "max_supported_opset",
    "preprocess",
    "summarize",
    "to_chw",
    "validate_model",
]
