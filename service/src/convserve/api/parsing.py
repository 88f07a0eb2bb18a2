"""Request bodies -> validated options plus the raw input, for every body-taking route.

Two body types are accepted by ``/v1/convolve``, ``/v1/explain`` and ``/v1/layers``:

- ``multipart/form-data`` (curl-friendly): an ``image`` file part and text fields, where JSON
  fields (``kernel``, ``preset_params``, ``at``, ``layers``) are JSON text and pairs (``stride``,
  ``dilation``, ``padding``) may be ``2``, ``2,3`` or ``[2, 3]``;
- ``application/json``: the same fields as one object, with ``input`` (``array`` or
  ``image_base64``).

A multipart body may carry a ``kernel_file`` part too (see :mod:`convserve.weightfiles`): on
convolve and explain it becomes the ``kernel`` field (:func:`parse_conv_body` says where it came
from); on layers it is kept whole and its tensors are named per conv2d entry
(:func:`parse_layers_body`). A JSON body cannot carry a file.

:func:`multipart_schema` documents the multipart form in the OpenAPI document.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import pydantic_core
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from convserve import imaging
from convserve.api.multipart import FilePart, MultipartError, parse_form
from convserve.api.schemas import (
    Conv2dLayerSpec,
    ConvolveOptions,
    ExplainOptions,
    InputSpec,
    LayersOptions,
    LayersRequest,
)
from convserve.errors import InvalidArgumentError, UnsupportedMediaTypeError
from convserve.flows import Source
from convserve.limits import Limits
from convserve.weightfiles import WeightArchive, load_kernel_file, open_weight_file

__all__ = [
    "layer_options",
    "multipart_schema",
    "parse_body",
    "parse_conv_body",
    "parse_layers_body",
]

OptionsT = TypeVar("OptionsT", bound=BaseModel)
ConvOptionsT = TypeVar("ConvOptionsT", ConvolveOptions, ExplainOptions)
T = TypeVar("T")

_PAIR_FIELDS = frozenset({"stride", "dilation", "padding"})
_NUMBERS = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")
_INTEGER = re.compile(r"^-?[0-9]+$")
_BOOLEANS = {"true": True, "false": False}

# What a pair field's text may be: numbers separated by commas, or a JSON list of numbers
# (padding also 'same' or 'valid'); any other text is refused by validation.
_LIST_TEXT = r"\[\s*-?[0-9]+(\s*,\s*-?[0-9]+)*\s*\]"
_PAIR_PATTERN = rf"^\s*(-?[0-9]+(\s*,\s*-?[0-9]+)*|{_LIST_TEXT})\s*$"
_PADDING_PATTERN = rf"^\s*(-?[0-9]+(\s*,\s*-?[0-9]+)*|{_LIST_TEXT}|same|valid)\s*$"


def _scalar(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """The one type an optional scalar field holds, and its metadata (``int | None`` -> int)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) != 1:
            return None, ()
        annotation = args[0]
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        return base, tuple(metadata)
    return annotation, ()


def _text_schema(field: FieldInfo) -> dict[str, Any] | None:
    """The text a scalar field takes in a form: integers, true/false or one of its words."""
    kind, metadata = _scalar(field.annotation)
    description = field.description or ""
    if kind is bool:
        return {"type": "string", "enum": ["true", "false"], "description": description}
    if kind is int:
        bounds = [*metadata, *field.metadata]
        bounds += [inner for m in bounds if isinstance(m, FieldInfo) for inner in m.metadata]
        lows = [low for m in bounds if isinstance(low := getattr(m, "ge", None), int)]
        positive = any(low >= 0 for low in lows)
        return {"type": "string", "pattern": "^[0-9]+$" if positive else _INTEGER.pattern,
                "description": description}
    if typing.get_origin(kind) is Literal:
        return {"type": "string", "enum": list(typing.get_args(kind)),
                "description": description}
    return None


def multipart_schema(
    model: type[BaseModel] = ConvolveOptions, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The multipart/form-data schema: the ``image`` file part plus ``model``'s fields as text;
    ``fields`` gives the schema of fields that need more than their description."""
    special: dict[str, Any] = {
        "kernel": {"type": "string",
                   "description": 'JSON: {"weight": [...], "bias": [...], "layout": "OIHW"}'},
        "preset_params": {"type": "string", "description": "JSON object of preset parameters"},
        "stride": {"type": "string", "pattern": _PAIR_PATTERN,
                   "description": "2, 2,3 or [2, 3]"},
        "dilation": {"type": "string", "pattern": _PAIR_PATTERN,
                     "description": "2, 2,3 or [2, 3]"},
        "padding": {"type": "string", "pattern": _PADDING_PATTERN,
                    "description": "1, 1,2, 0,1,0,1 (top,bottom,left,right), same or valid"},
        **(fields or {}),
    }
    props: dict[str, Any] = {
        "image": {"type": "string", "format": "binary",
                  "description": imaging.ACCEPTED_FORMATS},
    }
    required = ["image"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        props[key] = special.get(key) or _text_schema(field) or {
            "type": "string", "description": field.description or ""}
        if field.is_required():
            required.append(key)
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": props,
                              "additionalProperties": False}
    # The JSON model's "exactly one of" rules (kernel or preset): a form has no null, so one
    # branch per field, and oneOf refuses both.
    branches = model.model_json_schema().get("oneOf", [])
    if branches:
        schema["oneOf"] = [{"required": branch["required"]} for branch in branches]
    if "kernel" in model.model_fields:
        props.update(KERNEL_FILE_FIELDS)
        if "oneOf" in schema:  # a weight file is the third way to give the kernel
            schema["oneOf"].append({"required": ["kernel_file"]})
    return schema


KERNEL_FILE_FIELDS: dict[str, Any] = {
    "kernel_file": {"type": "string", "format": "binary",
                    "description": "Instead of kernel: a .npy, .npz or .safetensors weight file "
                                   "(pickles such as .pt, .pth, .pkl are refused with 415)"},
    "kernel_key": {"type": "string", "description": "The weight's name in an .npz or "
                   ".safetensors file, e.g. features.0.weight (its bias: features.0.bias)"},
    "bias_key": {"type": "string", "description": "The bias's name, when not the weight's "
                 "prefix + bias"},
    "layout": {"type": "string", "enum": ["OIHW", "HWIO"],
               "description": "Of kernel_file's weight: OIHW (PyTorch, ONNX) or HWIO (Keras' "
                              "get_weights())"},
}
"""The multipart fields of a kernel read from a weight file (see :mod:`convserve.weightfiles`)."""

_KERNEL_FILE_TEXT = ("kernel_key", "bias_key", "layout")


def _kernel_from_file(data: bytes, filename: str | None, fields: dict[str, Any],
                      limits: Limits) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``kernel`` field built from a ``kernel_file`` part and its text fields, and where
    it came from (:meth:`~convserve.weightfiles.WeightFile.describe`)."""
    if "kernel" in fields:
        raise InvalidArgumentError("give kernel (JSON) or kernel_file (a weight file), not both",
                                   field="kernel_file")
    options = {name: fields.pop(name) for name in _KERNEL_FILE_TEXT if name in fields}
    loaded = load_kernel_file(data, filename, kernel_key=options.get("kernel_key"),
                              bias_key=options.get("bias_key"), max_bytes=limits.max_output_bytes)
    return ({"weight": loaded.weight.tolist(),
             "bias": None if loaded.bias is None else loaded.bias.reshape(-1).tolist(),
             "layout": options.get("layout", "OIHW")}, loaded.describe())


def _form_value(name: str, text: str, json_fields: Collection[str],
                model: type[BaseModel]) -> Any:
    """Turn a multipart text field into the JSON value the schema expects: JSON fields parsed,
    pairs as numbers, an integer field's digits as an int, ``true``/``false`` as booleans. Any
    other text stays text, which validation then refuses where the schema wants a number."""
    field = model.model_fields.get(name)
    kind = None if field is None else _scalar(field.annotation)[0]
    if kind is int and _INTEGER.match(text):
        return int(text)
    if kind is bool and text in _BOOLEANS:
        return _BOOLEANS[text]
    if name in json_fields:
        try:
            return pydantic_core.from_json(text)
        except ValueError as exc:
            raise InvalidArgumentError(f"{name} is not valid JSON: {exc}", field=name) from None
    if name in _PAIR_FIELDS:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return pydantic_core.from_json(stripped)
            except ValueError as exc:
                raise InvalidArgumentError(
                    f"{name}={text!r} is not valid JSON: {exc}", field=name
                ) from None
        if _NUMBERS.match(stripped):
            numbers = [int(part) for part in stripped.split(",")]
            return numbers[0] if len(numbers) == 1 else numbers
        return stripped
    return text


_INLINE_BYTES = 1 << 20
"""Bodies up to this size are joined and parsed on the event loop; larger ones on a worker
thread (:func:`_off_loop`)."""


def take_body(request: Request) -> list[bytes] | None:
    """The body's chunks as the request middleware read them, taken from it (it holds them
    no longer), or None without that middleware."""
    chunks = request.scope.get("state", {}).pop("body", None)
    return chunks if isinstance(chunks, list) else None


async def _off_loop(request: Request, parse: Callable[[bytes], T]) -> T:
    """``parse(body)``: on the event loop for a body of up to 1 MiB, where a worker thread
    costs more than the parsing; on a worker thread for a larger one, so that it never holds
    up the other requests (a 19 MB multipart upload took 13 ms to join and parse, a JSON
    array of a few million numbers far longer)."""
    chunks = take_body(request)
    if chunks is None:
        chunks = [await request.body()]
    if sum(len(chunk) for chunk in chunks) <= _INLINE_BYTES:
        return parse(b"".join(chunks))

    def join_and_parse() -> T:
        body = b"".join(chunks)
        chunks.clear()  # one copy of the body at a time
        return parse(body)

    return await run_in_threadpool(join_and_parse)


def _validation_error(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(exc.errors(include_url=False))


@dataclass(frozen=True)
class _KernelFilePart:
    """The request's ``kernel_file`` part: kept whole for ``/v1/layers`` (whose layers read its
    tensors), or read into the ``kernel`` field (convolve, explain) and described."""

    data: bytes
    filename: str | None
    described: dict[str, Any] | None = None
    """Where the ``kernel`` field came from, once it is read into it."""


async def _parse_multipart(
    request: Request, limits: Limits, model: type[OptionsT], json_fields: Collection[str],
    *, keep_weight_file: bool = False,
) -> tuple[OptionsT, bytes, _KernelFilePart | None]:
    content_type = request.headers.get("content-type", "")
    try:
        form = await _off_loop(request, lambda body: parse_form(
            body, content_type, max_files=2, max_fields=64, max_part_size=limits.max_upload_bytes))
    except MultipartError as exc:
        raise StarletteHTTPException(
            400,
            f"the multipart/form-data body could not be parsed ({exc}); send an 'image' "
            "file part and text fields, separated by the boundary the Content-Type names",
        ) from None
    takes_file = keep_weight_file or "kernel" in model.model_fields
    files = ("image", "kernel_file") if takes_file else ("image",)
    upload = None
    image = form.get("image")
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name in files:
            continue
        if not isinstance(value, str):
            raise InvalidArgumentError(
                f"form field {name!r} must be text; only {' and '.join(files)} are files",
                field=name,
            )
        fields[name] = _form_value(name, value, json_fields, model)
    kernel_file = form.get("kernel_file") if "kernel_file" in files else None
    if isinstance(kernel_file, str):
        raise InvalidArgumentError(
            "kernel_file must be a file part (curl -F kernel_file=@net.safetensors), not "
            "text", field="kernel_file")
    if keep_weight_file:
        _refuse_form_file_keys(fields)
        if isinstance(kernel_file, FilePart):
            upload = _KernelFilePart(kernel_file.data, kernel_file.filename)
    elif isinstance(kernel_file, FilePart):
        fields["kernel"], described = _kernel_from_file(
            kernel_file.data, kernel_file.filename, fields, limits)
        upload = _KernelFilePart(b"", kernel_file.filename, described)
    else:
        stray = [name for name in _KERNEL_FILE_TEXT if name in fields]
        if stray and "kernel" in model.model_fields:
            raise InvalidArgumentError(
                f"{', '.join(stray)} describe a kernel_file, and no kernel_file part was "
                "sent", field=stray[0])
    if not isinstance(image, FilePart):
        raise InvalidArgumentError(
            f"multipart requests need an 'image' file part ({imaging.ACCEPTED_FORMATS})",
            field="image",
        )
    data = image.data
    del form, image, kernel_file
    try:
        # As JSON, so that a form field is held to the JSON types its text was turned into.
        options = model.model_validate_json(pydantic_core.to_json(fields))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return options, data, upload


def _refuse_form_file_keys(fields: dict[str, Any]) -> None:
    """``/v1/layers`` names a file's tensors per layer, not as form fields."""
    for name in _KERNEL_FILE_TEXT:
        if name in fields:
            raise InvalidArgumentError(
                f"on /v1/layers, {name} goes in a conv2d entry of layers (e.g. "
                '[{"type": "conv2d", "kernel_key": "features.0.weight"}]), where each layer '
                "names its own tensor of the kernel_file part", field=name)


async def parse_body(
    request: Request,
    limits: Limits,
    form_model: type[OptionsT],
    json_model: type[OptionsT],
    json_fields: Collection[str],
) -> tuple[OptionsT, Source]:
    """Parse multipart (``form_model``, ``json_fields`` given as JSON text) or a JSON body
    (``json_model``: ``form_model`` plus ``input``) into options plus the request's input
    (its ``color_mode`` included)."""
    options, source, _ = await _parse_any(request, limits, form_model, json_model, json_fields)
    return options, source


async def parse_conv_body(
    request: Request,
    limits: Limits,
    form_model: type[ConvOptionsT],
    json_model: type[ConvOptionsT],
    json_fields: Collection[str],
) -> tuple[ConvOptionsT, Source, dict[str, Any]]:
    """:func:`parse_body` for ``/v1/convolve`` and ``/v1/explain``, plus the layer's options
    as :mod:`convserve.flows` takes them (:func:`layer_options`), with ``kernel_source``, the
    description of a ``kernel_file`` the kernel was read from (None without one)."""
    options, source, part = await _parse_any(request, limits, form_model, json_model,
                                             json_fields)
    return options, source, layer_options(
        options, kernel_source=None if part is None else part.described)


def _is_multipart(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "multipart/form-data"


async def _parse_any(
    request: Request,
    limits: Limits,
    form_model: type[OptionsT],
    json_model: type[OptionsT],
    json_fields: Collection[str],
    *,
    keep_weight_file: bool = False,
) -> tuple[OptionsT, Source, _KernelFilePart | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        options, data, upload = await _parse_multipart(request, limits, form_model,
                                                       json_fields,
                                                       keep_weight_file=keep_weight_file)
        return (options, Source(data=data, color_mode=getattr(options, "color_mode", "rgb")),
                upload)
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            req = await _off_loop(request, json_model.model_validate_json)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        given = getattr(req, "input", None)
        if not isinstance(given, InputSpec):
            raise TypeError(f"{json_model.__name__} has no 'input' field")
        return req, Source(array=given.array, image_base64=given.image_base64,
                           color_mode=getattr(req, "color_mode", "rgb")), None
    raise UnsupportedMediaTypeError(
        f"content type {content_type or 'none'!r} is not accepted; send multipart/form-data "
        "(an 'image' file plus form fields) or application/json (with 'input')"
    )


async def parse_layers_body(
    request: Request, limits: Limits, json_fields: Collection[str]
) -> tuple[LayersOptions, Source, WeightArchive | None]:
    """:func:`parse_body` for ``/v1/layers``, plus its weight file: a multipart body's
    ``kernel_file`` part, opened (its tensors listed, none read), whose tensors the conv2d
    entries name with ``kernel_key`` (or ``kernel_file: true``).

    Raises
    ------
    InvalidArgumentError
        An entry naming a file's tensor with no ``kernel_file`` part (a JSON body cannot
        carry one), or a ``kernel_file`` part that no entry reads (422).
    PickleRefusedError
        A pickled ``kernel_file`` (415).
    """
    options, source, upload = await _parse_any(request, limits, LayersOptions, LayersRequest,
                                               json_fields, keep_weight_file=True)
    readers = [(index, "kernel_key" if entry.kernel_key is not None else "kernel_file")
               for index, entry in enumerate(options.layers)
               if isinstance(entry, Conv2dLayerSpec) and entry.from_file]
    if upload is None and readers:
        index, name = readers[0]
        if _is_multipart(request):
            why = ("and no kernel_file part was sent: add the weight file (.npz, .safetensors "
                   "or .npy) as a file part named kernel_file")
        else:
            why = ("which a JSON body cannot carry: send multipart/form-data with an image part, "
                   "the weight file as a kernel_file part and layers as a JSON text field, or "
                   "give the weights in the JSON body as kernel.weight")
        raise InvalidArgumentError(
            f"layers.{index}.{name} takes its weight from a kernel_file part, {why}",
            field=f"layers.{index}.{name}")
    if upload is None:
        return options, source, None
    if not readers:
        raise InvalidArgumentError(
            "a kernel_file part was sent and no layer reads it: name its tensors in conv2d "
            'entries of layers with kernel_key (e.g. {"type": "conv2d", "kernel_key": '
            '"features.0.weight"}), or kernel_file: true for a file of one tensor (.npy)',
            field="kernel_file")
    weights = await run_in_threadpool(open_weight_file, upload.data, upload.filename,
                                      max_bytes=limits.max_output_bytes)
    return options, source, weights


def layer_options(options: ConvolveOptions | ExplainOptions, *,
                  kernel_source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The layer and engine fields of a request, as :mod:`convserve.flows` takes them
    (``kernel_source``: where a ``kernel`` read from a weight file came from)."""
    return {
        "kernel": None if options.kernel is None else options.kernel.model_dump(),
        "kernel_source": kernel_source,
        "preset": options.preset,
        "preset_params": dict(options.preset_params),
        "stride": options.stride,
        "padding": options.padding,
        "dilation": options.dilation,
        "groups": options.groups,
        "padding_mode": options.padding_mode,
        "engine": options.engine,
        "device": options.device,
    }
