"""Shared pieces of the request schemas: JSON-typed numbers, the strict base, kernels, inputs,
run options and the problem body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from convserve.imaging import ColorMode, NormalizeMode

__all__ = [
    "ColorMode",
    "DeviceName",
    "EngineName",
    "Format",
    "InputSpec",
    "IntPair",
    "JsonBool",
    "JsonFloat",
    "JsonInt",
    "KernelSpec",
    "Normalize",
    "PaddingValue",
    "Problem",
    "RunOptions",
    "Strict",
    "exactly_one",
    "json_typed",
]

# JSON bodies are validated by JSON type, as the OpenAPI document states them: a boolean is
# true or false, a number is a JSON number (JSON Schema counts 8.0 as an integer, so integers
# keep pydantic's lax check, which takes 8.0 and refuses 8.5), and neither is a string.
# Multipart fields are text by nature and keep the lax conversion ("2" -> 2, "true" -> True).
_JSON_TYPE_NAMES = {bool: "boolean", int: "number", float: "number", str: "string",
                    list: "array", dict: "object", type(None): "null"}
_EXPECTED = {bool: "a boolean (true or false)", int: "an integer", float: "a number"}


def json_typed(kind: type) -> BeforeValidator:
    """Refuse, in a JSON body, a string for a number or boolean and a number for a boolean
    (and a boolean for a number)."""

    def check(value: object, info: ValidationInfo) -> object:
        if info.mode == "json" and (isinstance(value, str)
                                    or (kind is bool) != isinstance(value, bool)):
            raise PydanticCustomError(
                f"{kind.__name__}_type", "Input should be {expected}, not a JSON {got}",
                {"expected": _EXPECTED[kind],
                 "got": _JSON_TYPE_NAMES.get(type(value), type(value).__name__)},
            )
        return value

    return BeforeValidator(check)


# Constraints go before the type check (Annotated[int, Field(ge=0), json_typed(int)]): after
# it, pydantic cannot state them in the JSON Schema (it would write "ge", not "minimum").
JsonInt = Annotated[int, json_typed(int)]
JsonFloat = Annotated[float, json_typed(float)]
JsonBool = Annotated[bool, json_typed(bool)]

IntPair = Annotated[
    JsonInt | list[JsonInt],
    Field(examples=[1, [2, 2]], json_schema_extra={"description": "an int or [h, w]"}),
]
PaddingValue = JsonInt | list[JsonInt] | Literal["same", "valid"]
Format = Literal["json", "array", "npy", "png", "image", "grid", "zip"]
Normalize = NormalizeMode
EngineName = Literal["auto", "numpy", "onnxruntime"]
DeviceName = Literal["cpu", "cuda"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class KernelSpec(Strict):
    """An explicit kernel tensor."""

    weight: list[Any] = Field(examples=[[[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]])
    """Nested lists of numbers, shape (c_out, c_in/groups, k_h, k_w) for OIHW or
    (k_h, k_w, c_in/groups, c_out) for HWIO."""
    bias: list[JsonFloat] | None = None
    """One number per output channel, or null for no bias."""
    layout: Literal["OIHW", "HWIO"] = "OIHW"
    """OIHW (PyTorch, ONNX) or HWIO (Keras, TensorFlow); HWIO is converted to OIHW."""


def exactly_one(*branches: dict[str, Any]) -> dict[str, Any]:
    """``oneOf`` branches for "exactly one of these fields": a branch requires its fields with
    the given schemas and the other fields absent or null, as the model validators check."""
    fields = {name for branch in branches for name in branch}
    return {"oneOf": [
        {"required": sorted(branch),
         "properties": {**{name: {"type": "null"} for name in sorted(fields - set(branch))},
                        **branch}}
        for branch in branches
    ]}


class InputSpec(Strict):
    """The input of a JSON request: exactly one of ``array`` and ``image_base64``."""

    model_config = ConfigDict(json_schema_extra=exactly_one(
        {"array": {"type": "array"}}, {"image_base64": {"type": "string"}},
    ))

    array: Annotated[list[Any], Field(min_length=1)] | None = None
    """Nested lists of numbers, (C, H, W) or (H, W); used as sent (no scaling)."""
    image_base64: Annotated[str, Field(min_length=1)] | None = None
    """An encoded image file (PNG, JPEG, WebP, BMP, TIFF, GIF) in base64; a data: URL is
    accepted too."""

    @model_validator(mode="after")
    def exactly_one(self) -> InputSpec:
        if (self.array is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of input.array and input.image_base64")
        return self


class Problem(BaseModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class RunOptions(Strict):
    """Where the computation runs and how an image becomes channels."""

    engine: EngineName | None = None
    """auto (the engine measured fastest for this shape; the answer names the one that ran),
    numpy or onnxruntime; default from CONVSERVE_ENGINE (auto)."""
    device: DeviceName | None = None
    """cpu or cuda; default from CONVSERVE_DEVICE. CUDA where it is not active is a 422."""
    color_mode: ColorMode = "rgb"
    """How an image becomes channels: rgb (C=3), gray (C=1), rgba (C=4), keep (the file's)."""
