"""/v1/models: upload ONNX models, list and delete them, and look inside them.

Glue only: parse, call :class:`convserve.models.ModelService` in the compute pool, respond.
The service is built on first use from the app's settings and kept by its ``Runtime``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from convserve import jsonbody
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.middleware import reserve_work
from convserve.api.parsing import multipart_schema, parse_body
from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.api.responses import respond
from convserve.api.schemas import Problem
from convserve.api.schemas.models import (
    FeaturesOptions,
    FeaturesRequest,
    FeaturesResponse,
    ModelExplainOptions,
    ModelExplainRequest,
    ModelExplainResponse,
    ModelInfo,
    ModelKernelResponse,
    ModelList,
    SampleModelStatus,
)
from convserve.errors import InvalidArgumentError, UnsupportedMediaTypeError
from convserve.flows import models as flows
from convserve.flows.memory import model_working_bytes
from convserve.models import ModelService, Preprocess

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])


def _problems(**texts: str) -> dict[int | str, dict[str, Any]]:
    base = {"401": "Missing or invalid API key"}
    return {
        int(status): {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": text}
        for status, text in {**base, **texts}.items()
    }


_RUN_PROBLEMS = _problems(**{
    "400": "The multipart body could not be parsed",
    "404": "No model with this id (never uploaded, deleted or evicted)",
    "413": "Upload or decoded image over the limit",
    "415": "Content type other than multipart/form-data or application/json",
    "422": "Invalid input, layer or option; detail says what and what is allowed",
    "503": "Compute queue full (Retry-After)", "504": "Computation timed out",
})

ModelId = Annotated[str, Path(description="The model's id (32 hex digits)",
                              examples=["3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7"])]


async def get_models(runtime: RuntimeDep) -> ModelService:
    """The app's model service (:meth:`Runtime.model_service`)."""
    return runtime.model_service()


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
                   "400": "The multipart body could not be parsed",
                   "413": "Model over CONVSERVE_MAX_MODEL_BYTES or the whole store",
                   "415": "Content type other than multipart/form-data",
                   "422": "Not an ONNX model, or refused: detail names the node, operator or "
                          "limit",
                   "503": "Compute queue full (Retry-After)",
               })},
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["model"], "additionalProperties": False,
                   "properties": {
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
        form = await request.form(max_files=1, max_fields=8, max_part_size=1024)
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


@router.post(
    "/models/sample",
    summary="Store the sample network",
    description="Build and store the demo page's sample network: the Keras reference CNN "
                "(150x150x3, 9,494,561 parameters) whose first Conv holds the gabor preset's "
                "16 orientations at 3x3 and whose later layers hold seeded weights (untrained). "
                "The server stores it at start-up unless CONVSERVE_SAMPLE_MODEL=0; this stores "
                "it again after an eviction or deletion. 201 when stored now, 200 with the "
                "same id when it was stored already.",
    status_code=201,
    response_model=ModelInfo,
    responses={200: {"model": ModelInfo, "description": "Stored already"},
               **_problems(**{"413": "The store is smaller than the sample (38 MB)",
                              "503": "Compute queue full, or the store cannot be written "
                                     "(Retry-After)"})},
)
async def store_sample(runtime: RuntimeDep, models: ModelsDep) -> Response:
    meta, created = await runtime.pool.run(models.store_sample)
    return Response(jsonbody.dumps(meta), status_code=201 if created else 200,
                    media_type="application/json",
                    headers={"Location": f"/v1/models/{meta['id']}"})


@router.get(
    "/models/sample",
    summary="The sample network's id and whether it is stored",
    description="The id of the demo page's sample network, whether it is in the store now "
                "(GET /v1/models/{id} then describes it) and whether the server stores it at "
                "start-up (CONVSERVE_SAMPLE_MODEL). Nothing is stored here: POST "
                "/v1/models/sample does that.",
    response_model=SampleModelStatus,
    responses=_problems(**{"503": "Compute queue full (Retry-After)"}),
)
async def sample_status(runtime: RuntimeDep, models: ModelsDep) -> SampleModelStatus:
    # The id needs the sample's bytes once per process (read or built): off the event loop.
    ident = await runtime.pool.run(models.sample_id)
    return SampleModelStatus(id=ident, stored=models.store.has(ident),
                             store_at_start=runtime.settings.sample_model)


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
    result = await runtime.pool.run(
        lambda: flows.layer_kernel(runtime.context, models, model_id, name))
    return Response(result.body, media_type=result.media_type)


def _steps(options: FeaturesOptions | ModelExplainOptions) -> Preprocess:
    value = options.preprocess
    return Preprocess.from_request(value if isinstance(value, str) else value.model_dump())


_LAYERS_FIELD = {
    "type": "string", "pattern": r"^[^,\[\]{]*[^,\[\]{\s][^,\[\]]*(,[^,\[\]]*)*$",
    "description": "Layer names or row indices separated by commas (a JSON list works too)",
    "examples": ["conv1,relu1,2"]}
_PREPROCESS_FIELD = {
    "type": "string", "enum": ["none", "imagenet"],
    "description": "none or imagenet; a JSON object {resize, scale, mean, std, channel_order} "
                   "works too"}

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
        "multipart/form-data": {"schema": multipart_schema(FeaturesOptions, {
            "layers": _LAYERS_FIELD, "preprocess": _PREPROCESS_FIELD})},
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
    options, source = await parse_body(request, runtime.limits, FeaturesOptions,
                                       FeaturesRequest, ())
    wanted = flows.FeatureOptions(layers=list(options.layers), preprocess=_steps(options),
                                  format=options.format, normalize=options.normalize,
                                  device=options.device)
    meta = models.get(model_id).meta  # 404 for an unknown model, before any work
    await reserve_work(request, model_working_bytes(meta, source, wanted.layers, wanted.format))
    outcome = await runtime.pool.run(
        lambda: flows.features(runtime.context, models, model_id, source, wanted))
    return respond(outcome)


@router.post(
    "/models/{model_id}/explain",
    summary="The arithmetic of one output element of a model's Conv layer",
    response_model=ModelExplainResponse,
    responses=_RUN_PROBLEMS,
    openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": multipart_schema(ModelExplainOptions, {
            "layer": {"type": "string", "pattern": r"\S",
                      "description": "A Conv layer's name or row index"},
            "at": {"type": "string", "description": 'JSON: {"channel": 0, "y": 0, "x": 0}'},
            "preprocess": _PREPROCESS_FIELD})},
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
    options, source = await parse_body(request, runtime.limits, ModelExplainOptions,
                                       ModelExplainRequest, ("at",))
    at = (options.at.channel, options.at.y, options.at.x)
    meta = models.get(model_id).meta  # 404 for an unknown model, before any work
    await reserve_work(request, model_working_bytes(meta, source, [options.layer], "npy"))
    outcome = await runtime.pool.run(lambda: flows.layer_explanation(
        runtime.context, models, model_id, source, options.layer, at, _steps(options),
        options.device))
    return respond(outcome)
