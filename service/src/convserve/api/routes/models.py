"""/v1/models: upload ONNX models, list and delete them, and look inside them.

Glue only: parse, call :class:`convserve.models.ModelService` in the compute pool, respond.
The service is built on first use from the app's settings and kept on ``app.state``.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from convserve import imaging, jsonbody, pipeline
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.api.routes.convolve import parse_body
from convserve.api.runtime import Runtime
from convserve.api.schemas import Problem
from convserve.api.schemas_models import (
    FeaturesOptions,
    FeaturesRequest,
    FeaturesResponse,
    ModelExplainOptions,
    ModelExplainRequest,
    ModelExplainResponse,
    ModelInfo,
    ModelKernelResponse,
    ModelList,
)
from convserve.conv.explain import check_explainable, check_position, explain_position
from convserve.conv.spec import conv_spec
from convserve.errors import InvalidArgumentError, LimitExceededError, UnsupportedMediaTypeError
from convserve.models import ModelService, Preprocess
from convserve.models.runner import FeatureResult

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])


def _problems(**texts: str) -> dict[int | str, dict[str, Any]]:
    base = {"401": "Missing or invalid API key"}
    return {
        int(status): {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": text}
        for status, text in {**base, **texts}.items()
    }


_RUN_PROBLEMS = _problems(**{
    "404": "No model with this id (never uploaded, deleted or evicted)",
    "413": "Upload or decoded image over the limit",
    "415": "Content type other than multipart/form-data or application/json",
    "422": "Invalid input, layer or option; detail says what and what is allowed",
    "503": "Compute queue full (Retry-After)", "504": "Computation timed out",
})

ModelId = Annotated[str, Path(description="The model's id (32 hex digits)",
                              examples=["3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7"])]


async def get_models(request: Request) -> ModelService:
    """The app's model service, built on first use (the event loop runs this, so once)."""
    service: ModelService | None = getattr(request.app.state, "models", None)
    if service is None:
        settings = request.app.state.runtime.settings
        service = ModelService(
            settings.model_dir,
            store_bytes=settings.model_store_bytes,
            max_model_bytes=settings.max_model_bytes,
            max_macs=settings.max_macs,
            max_tensor_values=pipeline.tensor_limit(settings),
            sessions=settings.model_sessions,
            intra_op_threads=settings.threads_per_op,
        )
        request.app.state.models = service
    return service


ModelsDep = Annotated[ModelService, Depends(get_models)]

_INPUT_SIZE = re.compile(r"^\s*\[?\s*(\d+)\s*[, x]\s*(\d+)\s*\]?\s*$")


def _input_size(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    match = _INPUT_SIZE.match(text)
    if match is None:
        raise InvalidArgumentError(
            f"input_size={text!r} must be [H, W], 'H,W' or 'HxW' with positive integers",
            field="input_size")
    return [int(match[1]), int(match[2])]


_UPLOAD_DESCRIPTION = """\
Upload an ONNX model (what `torch.onnx.export` and tf2onnx write) as the multipart file
`model`, with `input_size` `[H, W]` when its input height or width is dynamic.

The model is untrusted: before anything runs, tensors with external data are refused (before
`onnx.checker` or ONNX Runtime see the file), then opsets outside 11 to the newest the
installed ONNX Runtime runs, custom domains, control flow (If, Loop, Scan), operators outside
the CNN allow-list, files over `CONVSERVE_MAX_MODEL_BYTES` (413) and models whose MACs for their
input size exceed `CONVSERVE_MAX_MACS`. Each refusal names the node, operator or limit.

201 with the description for a new model, 200 with the same `id` for a file stored already.
The answer's `layers` has one row per node output in graph order, with `output_shape` (no
batch axis, the model's own layout), `params` and `macs`.
"""


@router.post(
    "/models",
    summary="Upload an ONNX model",
    description=_UPLOAD_DESCRIPTION,
    status_code=201,
    response_model=ModelInfo,
    responses={200: {"model": ModelInfo, "description": "The same file was stored already"},
               **_problems(**{
                   "413": "Model over CONVSERVE_MAX_MODEL_BYTES or the whole store",
                   "415": "Content type other than multipart/form-data",
                   "422": "Not an ONNX model, or refused: detail names the node, operator or "
                          "limit",
                   "503": "Compute queue full (Retry-After)",
               })},
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["model"], "properties": {
            "model": {"type": "string", "format": "binary",
                      "description": "An .onnx file with its weights inside"},
            "input_size": {"type": "string", "description": "[H, W] for a dynamic input",
                           "examples": ["[224, 224]"]},
        }}}}}},
)
async def upload_model(request: Request, runtime: RuntimeDep, models: ModelsDep) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"content type {content_type or 'none'!r} is not accepted; send multipart/form-data "
            "with the file part 'model' (curl -F model=@net.onnx)")
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=1024)
    except StarletteHTTPException as exc:
        raise StarletteHTTPException(
            exc.status_code, f"the multipart/form-data body could not be parsed ({exc.detail}); "
            "send the file part 'model' and optionally the text field 'input_size'") from None
    try:
        upload = form.get("model")
        size_field = form.get("input_size")
        unknown = sorted(set(form.keys()) - {"model", "input_size"})
        if unknown:
            raise InvalidArgumentError(
                f"unknown form field(s) {', '.join(unknown)}; send 'model' and 'input_size'",
                field=unknown[0])
        if not isinstance(upload, UploadFile):
            raise InvalidArgumentError("send the ONNX file as the multipart file part 'model'",
                                       field="model")
        if size_field is not None and not isinstance(size_field, str):
            raise InvalidArgumentError("input_size must be a text field", field="input_size")
        input_size = _input_size(size_field)
        data = await upload.read()
        filename = upload.filename
    finally:
        await form.close()
    meta, created = await runtime.pool.run(lambda: models.upload(data, input_size, filename))
    return Response(jsonbody.dumps(meta), status_code=201 if created else 200,
                    media_type="application/json",
                    headers={"Location": f"/v1/models/{meta['id']}"})


@router.get("/models", summary="Stored models", response_model=ModelList,
            responses=_problems())
def list_models(models: ModelsDep) -> Response:
    items = [{k: v for k, v in meta.items() if k != "layers"} for meta in models.store.list()]
    return Response(jsonbody.dumps({"models": items}), media_type="application/json")


@router.get("/models/{model_id}", summary="A stored model and its layer table",
            response_model=ModelInfo,
            responses=_problems(**{"404": "No model with this id"}))
def get_model(model_id: ModelId, models: ModelsDep) -> Response:
    return Response(jsonbody.dumps(models.get(model_id).meta), media_type="application/json")


@router.delete("/models/{model_id}", summary="Delete a stored model", status_code=204,
               responses=_problems(**{"404": "No model with this id"}))
def delete_model(model_id: ModelId, models: ModelsDep) -> Response:
    models.delete(model_id)
    return Response(status_code=204)


_KERNEL_DESCRIPTION = """\
A Conv layer's weights and geometry: `weight` (OIHW), `bias` (or null), `stride`, `padding`
(convserve's `[top, bottom, left, right]`, converted from ONNX's `[top, left, bottom, right]`,
`auto_pad` resolved), `dilation`, `groups`. Passed to `/v1/convolve` (`kernel` = `{weight,
bias}` and the other fields as they are) on the layer's input (`input`), they reproduce the
layer's output. `name` is the layer's output name, percent-encoded (exporters' names hold `/`
and `:`), or its row index.
"""


@router.get("/models/{model_id}/layers/{name:path}/kernel",
            summary="The kernel of a Conv layer", description=_KERNEL_DESCRIPTION,
            response_model=ModelKernelResponse, responses=_RUN_PROBLEMS)
async def model_kernel(model_id: ModelId, name: str, runtime: RuntimeDep,
                       models: ModelsDep) -> Response:
    def work() -> bytes:
        row, kernel = models.kernel(model_id, name)
        limit = runtime.settings.max_array_values
        if kernel.weight.size > limit:
            raise LimitExceededError(
                f"the weight of layer {row['name']!r} holds {kernel.weight.size} numbers, more "
                f"than the limit of {limit} a JSON answer may hold "
                "(CONVSERVE_MAX_ARRAY_VALUES)", field="name")
        return jsonbody.dumps({"layer": row, "input": kernel.input, **kernel.to_dict()})

    return Response(await runtime.pool.run(work), media_type="application/json")


def _decode(runtime: Runtime, options: Any, data: bytes | None, array: list[Any] | None,
            image_b64: str | None) -> imaging.DecodedInput:
    return pipeline.decode_request_input(data, array, image_b64, color_mode=options.color_mode,
                                         settings=runtime.settings)


def _steps(options: FeaturesOptions | ModelExplainOptions) -> Preprocess:
    value = options.preprocess
    return Preprocess.from_request(value if isinstance(value, str) else value.model_dump())


_FEATURE_EXAMPLE = {"input": {"array": [[[0.0] * 4] * 4] * 3}, "layers": ["conv1", 2],
                    "format": "json"}


@router.post(
    "/models/{model_id}/features",
    summary="Feature maps of any layers of a model",
    response_model=FeaturesResponse,
    responses={200: {"content": {"application/json": {}, "application/octet-stream": {},
                                 "application/zip": {}, "image/png": {}},
                     "description": "format=json (schema below); npy, zip and grid are files"},
               **_RUN_PROBLEMS},
    openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image", "layers"],
                                           "properties": {
            "image": {"type": "string", "format": "binary",
                      "description": "PNG, JPEG, WebP, BMP, TIFF, GIF (first frame) or .npy"},
            "layers": {"type": "string", "description": "JSON list or comma-separated names"},
            "preprocess": {"type": "string", "description": "none, imagenet or a JSON object"},
            "color_mode": {"type": "string"}, "format": {"type": "string"},
            "normalize": {"type": "string"}}}},
        "application/json": {"schema": {"$ref": "#/components/schemas/FeaturesRequest"},
                             "examples": {"two-layers": {"summary": "Two layers by name and "
                                                         "index", "value": _FEATURE_EXAMPLE}}},
    }}},
)
async def model_features(model_id: ModelId, request: Request, runtime: RuntimeDep,
                         models: ModelsDep) -> Response:
    """The values ONNX Runtime computes for the chosen node outputs on this input: the input as
    /v1/convolve takes it ((C, H, W), converted to the model's layout), ``preprocess`` applied
    and reported, each layer as (C, H, W)."""
    options, data, array, image_b64 = await parse_body(
        request, runtime, FeaturesOptions, FeaturesRequest, ())

    def work() -> tuple[bytes, str, str | None]:
        started = time.perf_counter()
        decoded = _decode(runtime, options, data, array, image_b64)
        decode_ms = round(1000 * (time.perf_counter() - started), 3)
        result = models.features(model_id, decoded.array, options.layers, _steps(options))
        result.timing_ms = {"decode": decode_ms, **result.timing_ms}
        return _render(result, decoded, options, runtime, started)

    body, media, filename = await runtime.pool.run(work)
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else {}
    return Response(body, media_type=media, headers=headers)


def _folder(row: dict[str, Any]) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", row["name"]).strip("._") or "layer"
    return f"{row['index']:03d}_{safe[:80]}"


def _render(result: FeatureResult, decoded: imaging.DecodedInput, options: FeaturesOptions,
            runtime: Runtime, started: float) -> tuple[bytes, str, str | None]:
    """Encode the maps as ``options.format``: (body, media type, file name or None)."""
    level = runtime.settings.png_compress_level
    mode = pipeline.resolved_normalize(options.normalize, False)
    if options.format in ("npy", "grid") and len(result.rows) != 1:
        raise InvalidArgumentError(
            f"format={options.format} returns one layer and {len(result.rows)} were asked for; "
            "ask for one, or use format=json or zip", field="format")
    if options.format == "npy":
        return imaging.encode_npy(result.maps[0]), "application/octet-stream", "features.npy"
    pixels = [imaging.to_pixels(m, mode, range_preserving=False) for m in result.maps]
    if options.format == "grid":
        return imaging.grid_png(pixels[0], level=level), "image/png", "grid.png"
    described = []
    files: list[tuple[str, bytes]] = []
    for row, maps, planes in zip(result.rows, result.maps, pixels, strict=True):
        pngs = imaging.encode_pngs(planes, level=level, executor=runtime.encoder)
        stats = pipeline.channel_stats(maps)
        layer = {"index": row["index"], "name": row["name"], "op": row["op"],
                 "shape": list(maps.shape), "layout": row["layout"]}
        if options.format == "zip":
            folder = _folder(row)
            files += [(f"{folder}/{imaging.channel_png_name(i)}", png)
                      for i, png in enumerate(pngs)]
            files.append((f"{folder}/features.npy", imaging.encode_npy(maps)))
            layer.update({"folder": folder, "channels": [
                {"index": i, "file": f"{folder}/{imaging.channel_png_name(i)}", **stats[i]}
                for i in range(len(pngs))]})
        else:
            layer["channels"] = [
                {"index": i, **stats[i], "png_base64": base64.b64encode(png).decode("ascii")}
                for i, png in enumerate(pngs)]
        described.append(layer)
    result.timing_ms["total"] = round(1000 * (time.perf_counter() - started), 3)
    payload = {"model": result.model.id, "preprocess": result.preprocess,
               "input": decoded.to_dict(), "normalize": mode, "layers": described,
               "timing_ms": result.timing_ms}
    if options.format == "zip":
        return imaging.zip_files(files, payload), "application/zip", "features.zip"
    return jsonbody.dumps(payload), "application/json", None


@router.post(
    "/models/{model_id}/explain",
    summary="The arithmetic of one output element of a model's Conv layer",
    response_model=ModelExplainResponse,
    responses=_RUN_PROBLEMS,
    openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object",
                                           "required": ["image", "layer", "at"], "properties": {
            "image": {"type": "string", "format": "binary"},
            "layer": {"type": "string", "description": "A Conv layer's name or index"},
            "at": {"type": "string", "description": 'JSON: {"channel": 0, "y": 0, "x": 0}'},
            "preprocess": {"type": "string"}, "color_mode": {"type": "string"}}}},
        "application/json": {"schema": {"$ref": "#/components/schemas/ModelExplainRequest"},
                             "examples": {"first-conv": {"summary": "Output (0, 0, 0) of conv1",
                                                         "value": {
            "input": {"array": [[[0.0] * 4] * 4] * 3}, "layer": "conv1",
            "at": {"channel": 0, "y": 0, "x": 0}}}}},
    }}},
)
async def model_explain(model_id: ModelId, request: Request, runtime: RuntimeDep,
                        models: ModelsDep) -> Response:
    """Explain output ``at`` of Conv layer ``layer`` on its real input (what ONNX Runtime
    computes before that layer for this image): the terms per input channel, window, kernel
    slice, products, sums, bias and expression, as /v1/explain gives them."""
    options, data, array, image_b64 = await parse_body(
        request, runtime, ModelExplainOptions, ModelExplainRequest, ())
    at = options.at

    def work() -> bytes:
        started = time.perf_counter()
        decoded = _decode(runtime, options, data, array, image_b64)
        row, kernel, conv_in, conv_out, report = models.conv_io(
            model_id, options.layer, decoded.array, _steps(options))
        spec = conv_spec(conv_in.shape, kernel.weight.shape,
                         None if kernel.bias is None else kernel.bias.shape,
                         stride=kernel.stride, padding=list(kernel.padding),
                         dilation=kernel.dilation, groups=kernel.groups)
        check_position(spec, at.channel, at.y, at.x)
        check_explainable(spec)
        value = float(np.float32(conv_out[at.channel, at.y, at.x]))
        explanation = explain_position(conv_in, kernel.weight, kernel.bias, spec,
                                       at.channel, at.y, at.x)
        payload = {"model": model_id, "layer": row, "value": value,
                   **explanation.to_dict(value), "padding": list(spec.pads),
                   "stride": list(spec.stride), "dilation": list(spec.dilation),
                   "groups": spec.groups, "preprocess": report,
                   "timing_ms": {"total": round(1000 * (time.perf_counter() - started), 3)}}
        return jsonbody.dumps(payload)

    return Response(await runtime.pool.run(work), media_type="application/json")

