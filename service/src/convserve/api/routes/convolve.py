"""POST /v1/convolve: one convolution layer over one image, as multipart or JSON."""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from typing import Any, TypeVar

import pydantic_core
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from convserve import jsonbody, pipeline
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.api.runtime import Runtime
from convserve.api.schemas import (
    ConvolveOptions,
    ConvolveRequest,
    ConvolveResponse,
    ExplainOptions,
    InputSpec,
    Problem,
)
from convserve.errors import InvalidArgumentError, UnsupportedMediaTypeError

router = APIRouter(prefix="/v1", tags=["convolve"], dependencies=[Depends(require_api_key)])

_JSON_FIELDS = {"kernel", "preset_params"}
_PAIR_FIELDS = {"stride", "dilation", "padding"}
_NUMBERS = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")
OptionsT = TypeVar("OptionsT", bound=BaseModel)

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": text}
    for status, text in {
        401: "Missing or invalid API key",
        413: "Upload or decoded image over the limit",
        415: "Content type other than multipart/form-data or application/json",
        422: "Invalid input, kernel or option; detail says what and what is allowed",
        503: "Compute queue full (Retry-After)",
        504: "Computation timed out",
    }.items()
}


def multipart_schema(
    model: type[BaseModel] = ConvolveOptions, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The multipart/form-data schema: the ``image`` file part plus ``model``'s fields as text;
    ``fields`` gives the schema of fields that need more than their description."""
    special: dict[str, Any] = {
        "kernel": {"type": "string",
                   "description": 'JSON: {"weight": [...], "bias": [...], "layout": "OIHW"}'},
        "preset_params": {"type": "string", "description": "JSON object of preset parameters"},
        "stride": {"type": "string", "description": "2, 2,3 or [2, 3]"},
        "dilation": {"type": "string", "description": "2, 2,3 or [2, 3]"},
        "padding": {"type": "string",
                    "description": "1, 1,2, 0,1,0,1 (top,bottom,left,right), same or valid"},
        **(fields or {}),
    }
    props: dict[str, Any] = {
        "image": {"type": "string", "format": "binary",
                  "description": "PNG, JPEG, WebP, BMP, TIFF, GIF (first frame) or .npy"},
    }
    for name, field in model.model_fields.items():
        key = field.alias or name
        props[key] = special.get(key) or {"type": "string",
                                          "description": field.description or ""}
    return {"type": "object", "required": ["image"], "properties": props}


_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": multipart_schema()},
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ConvolveRequest"},
                "examples": {
                    "d2l": {
                        "summary": "Dive into Deep Learning: 2 input channels, one 2x2 kernel",
                        "value": {
                            "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                                                [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
                            "kernel": {"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]},
                            "format": "array",
                        },
                    }
                },
            },
        },
    }
}

_BINARY_MEDIA: dict[str, dict[str, Any]] = {
    "image/png": {},
    "application/zip": {},
    "application/octet-stream": {},
}


def _form_value(name: str, text: str, json_fields: Collection[str] = _JSON_FIELDS) -> Any:
    """Turn a multipart text field into the JSON value the schema expects."""
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


async def _parse_multipart(
    request: Request, runtime: Runtime, model: type[OptionsT], json_fields: Collection[str]
) -> tuple[OptionsT, bytes]:
    try:
        form = await request.form(max_files=2, max_fields=64,
                                  max_part_size=runtime.settings.max_upload_bytes)
    except StarletteHTTPException as exc:  # Starlette's 400 for a body it cannot parse
        raise StarletteHTTPException(
            exc.status_code,
            f"the multipart/form-data body could not be parsed ({exc.detail}); send an 'image' "
            "file part and text fields, separated by the boundary the Content-Type names",
        ) from None
    try:
        image = form.get("image")
        fields: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name == "image":
                continue
            if not isinstance(value, str):
                raise InvalidArgumentError(
                    f"form field {name!r} must be text; only 'image' is a file", field=name
                )
            fields[name] = _form_value(name, value, json_fields)
        if not isinstance(image, UploadFile):
            raise InvalidArgumentError(
                "multipart requests need an 'image' file part (PNG, JPEG, WebP, BMP, TIFF, "
                "GIF or .npy)",
                field="image",
            )
        data = await image.read()
    finally:
        await form.close()  # the spooled upload files
    try:
        options = model.model_validate(fields)
    except ValidationError as exc:
        raise _as_request_error(exc) from None
    return options, data


def _as_request_error(exc: ValidationError) -> Exception:
    from fastapi.exceptions import RequestValidationError

    return RequestValidationError(exc.errors(include_url=False))


async def parse_request(
    request: Request, runtime: Runtime
) -> tuple[ConvolveOptions, bytes | None, list[Any] | None, str | None]:
    """Parse either body type into options plus the raw input."""
    return await parse_body(request, runtime, ConvolveOptions, ConvolveRequest, _JSON_FIELDS)


async def parse_body(
    request: Request,
    runtime: Runtime,
    form_model: type[OptionsT],
    json_model: type[OptionsT],
    json_fields: Collection[str],
) -> tuple[OptionsT, bytes | None, list[Any] | None, str | None]:
    """Parse multipart (``form_model``, ``json_fields`` given as JSON text) or a JSON body
    (``json_model``: ``form_model`` plus ``input``) into options plus the raw input."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        options, data = await _parse_multipart(request, runtime, form_model, json_fields)
        return options, data, None, None
    if content_type == "application/json" or content_type.endswith("+json"):
        body = await request.body()
        try:
            req = json_model.model_validate_json(body)
        except ValidationError as exc:
            raise _as_request_error(exc) from None
        source = getattr(req, "input", None)
        if not isinstance(source, InputSpec):
            raise TypeError(f"{json_model.__name__} has no 'input' field")
        return req, None, source.array, source.image_base64
    raise UnsupportedMediaTypeError(
        f"content type {content_type or 'none'!r} is not accepted; send multipart/form-data "
        "(an 'image' file plus form fields) or application/json (with 'input')"
    )


def layer_options(options: ConvolveOptions | ExplainOptions) -> dict[str, Any]:
    """The layer and engine options of :func:`pipeline.prepare_convolution`, from a request."""
    return {
        "kernel": None if options.kernel is None else options.kernel.model_dump(),
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


def serialized(result: pipeline.EncodedResult) -> pipeline.EncodedResult:
    """Serialise a JSON payload to bytes (in the worker thread, off the event loop)."""
    if result.payload is not None:
        result.body = jsonbody.dumps(result.payload)
        result.payload = None
    return result


def conv_headers(prepared: pipeline.PreparedConv) -> dict[str, str]:
    """The headers of a one-layer answer: output shape, resolved padding, engine, timings."""
    spec = prepared.spec
    return {
        "X-Convserve-Shape": f"{spec.out_channels},{spec.out_height},{spec.out_width}",
        "X-Convserve-Padding": ",".join(str(p) for p in spec.pads),
        "X-Convserve-Engine": f"{prepared.engine}/{prepared.device}",
        "Server-Timing": ", ".join(
            f"{stage};dur={ms}" for stage, ms in prepared.timing_ms.items()
        ),
    }


def _respond(result: pipeline.EncodedResult, prepared: pipeline.PreparedConv) -> Response:
    headers = conv_headers(prepared)
    if result.filename:
        headers["Content-Disposition"] = f'attachment; filename="{result.filename}"'
    return Response(result.body, media_type=result.media_type, headers=headers)


@router.post(
    "/convolve",
    summary="One convolution layer over one image",
    response_model=ConvolveResponse,
    responses={
        200: {"content": {"application/json": {}, **_BINARY_MEDIA},
              "description": "format=json (schema below); array is JSON with data; npy, png, "
                             "image, grid, zip are files"},
        **PROBLEMS,
    },
    openapi_extra=_OPENAPI_EXTRA,
)
async def convolve(request: Request, runtime: RuntimeDep) -> Response:
    """Apply a kernel tensor (c_out, c_in/groups, k_h, k_w) or a named preset to an image.

    Send ``multipart/form-data`` (an ``image`` file plus form fields) or ``application/json``
    (``input`` as ``{"array": ...}`` or ``{"image_base64": ...}``). With a kernel, padding
    defaults to 0 and zeros (PyTorch, Keras); with a preset to ``same`` and ``reflect``. The
    answer reports the resolved padding (top, bottom, left, right), engine, device, cost and
    timings.
    """
    options, data, array, image_b64 = await parse_request(request, runtime)
    settings = runtime.settings

    def work() -> tuple[pipeline.EncodedResult, pipeline.PreparedConv]:
        started = time.perf_counter()
        decoded = pipeline.decode_request_input(
            data, array, image_b64, color_mode=options.color_mode, settings=settings
        )
        decode_ms = round(1000 * (time.perf_counter() - started), 3)
        prepared = pipeline.prepare_convolution(
            decoded=decoded, settings=settings, **layer_options(options)
        )
        prepared.timing_ms["decode"] = decode_ms
        engine = runtime.engine(prepared.engine)
        if options.dry_run:
            payload = pipeline.describe(prepared, options.normalize)
            payload.update({"dry_run": True, "channels": [],
                            "timing_ms": prepared.timing_ms})
            return serialized(pipeline.EncodedResult("application/json", payload=payload)), \
                prepared
        metric = runtime.metrics.convolution.labels(prepared.engine, prepared.device)
        y = pipeline.run_convolution(prepared, engine, observe=metric.observe)
        runtime.metrics.stage.labels("decode").observe(decode_ms / 1000)
        runtime.metrics.stage.labels("convolve").observe(prepared.timing_ms["convolve"] / 1000)
        result = pipeline.render_result(
            y, prepared, fmt=options.format, normalize=options.normalize,
            channel=options.channel, settings=settings, executor=runtime.encoder,
        )
        runtime.metrics.stage.labels("encode").observe(prepared.timing_ms["encode"] / 1000)
        prepared.timing_ms["total"] = round(1000 * (time.perf_counter() - started), 3)
        return serialized(result), prepared

    result, prepared = await runtime.pool.run(work)
    return _respond(result, prepared)
