"""POST /v1/layers: a stack of layers (conv2d, activations, pooling) over one image."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from convserve import flows
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.middleware import reserve_work
from convserve.api.parsing import multipart_schema, parse_layers_body
from convserve.api.responses import PROBLEMS, respond
from convserve.api.schemas import LayersOptions, LayersResponse
from convserve.flows.memory import weight_file_bytes, working_bytes

router = APIRouter(prefix="/v1", tags=["layers"], dependencies=[Depends(require_api_key)])

_JSON_FIELDS = frozenset({"layers"})

_VGG_LIKE = [
    {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
]

_STATE_DICT_LAYERS = [
    {"type": "conv2d", "kernel_key": "features.0.weight", "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "kernel_key": "features.3.weight", "padding": 1, "activation": "relu"},
]


def _multipart_schema() -> dict[str, Any]:
    """The form: image, layers (JSON text) and the other options, plus the weight file."""
    schema = multipart_schema(LayersOptions, {
        "layers": {"type": "string",
                   "description": 'JSON list, e.g. [{"type": "conv2d", "preset": "sobel"}, '
                                  '{"type": "relu"}]; a conv2d entry takes its weight from the '
                                  "kernel_file part with kernel_key (or kernel_file: true)",
                   "examples": [json.dumps(_STATE_DICT_LAYERS)]},
    })
    schema["properties"]["kernel_file"] = {
        "type": "string", "format": "binary",
        "description": "A weight file whose tensors the conv2d entries of layers name with "
                       "kernel_key: an .npz or .safetensors file (e.g. a PyTorch state_dict "
                       "saved with safetensors.torch.save_file), or a .npy of one tensor "
                       "(kernel_file: true). Pickles (.pt, .pth, .pkl) are refused with 415. "
                       "Bounded with the rest of the body by CONVSERVE_MAX_UPLOAD_BYTES, each "
                       "tensor by CONVSERVE_MAX_OUTPUT_BYTES and the kernel limits.",
    }
    return {**schema, "required": ["image", "layers"]}


_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _multipart_schema()},
            "application/json": {
                "schema": {"$ref": "#/components/schemas/LayersRequest"},
                "examples": {
                    "vgg_like": {
                        "summary": "A small VGG-like stack with seeded weights, shapes and "
                                   "cost only",
                        "value": {"input": {"array": [[[0.0] * 32] * 32] * 3},
                                  "layers": _VGG_LIKE, "dry_run": True},
                    },
                    "edges": {
                        "summary": "Sobel, then ReLU, then 2x2 max pooling; every layer's maps",
                        "value": {"input": {"array": [[[0, 0, 1, 1]] * 4]},
                                  "layers": [{"type": "conv2d", "preset": "sobel_x",
                                              "activation": "relu"},
                                             {"type": "maxpool2d", "kernel_size": 2}],
                                  "return": "all"},
                    },
                },
            },
        },
    }
}

_DESCRIPTION = """\
Apply `layers` in order to one image (input as in `/v1/convolve`): `conv2d` (a `kernel`, a
`preset`, `filters` + `kernel_size` with seeded initial weights, or a tensor of a weight file;
every conv option; `bias`; an optional `activation` applied in the same layer), `relu`,
`leaky_relu` (`slope`),
`sigmoid`, `tanh`, `abs`, `maxpool2d` and `avgpool2d` (`kernel_size`, `stride` defaulting to
`kernel_size`, symmetric `padding`; output `floor((H + 2p - k) / s) + 1`; average pooling
counts padded zeros, PyTorch's `count_include_pad=true`, unless told otherwise).

The answer gives each layer's `index`, `type`, `input_shape`, `output_shape` `[c, h, w]`,
`params`, `macs`, `flops`, resolved `options` and `cost` (with its output-size formula), plus
`total_params`, `total_macs` and the stack's `cost`; `return` picks whose feature maps come
with it (`all`, `last`, `none`). `format`: `json`, `npy` (the last layer's float32 maps),
`zip` (every layer's PNGs and a manifest), `onnx` (the stack as a standalone ONNX model with
its weights, input `input` of shape `(N, C, H, W)`, output `output`; not run).

Trained weights: a multipart request may carry one `kernel_file` part, an `.npz` or
`.safetensors` file such as a network's whole `state_dict` (or a `.npy` of one tensor), and
each conv2d entry names its tensor with `kernel_key` (`"features.0.weight"`; the bias
`features.0.bias` comes with it when the file has it, `bias_key` names another, `"bias": false`
drops it; `"layout": "HWIO"` for Keras' `get_weights()` order), or takes a one-tensor file with
`"kernel_file": true`. The answer's `kernel` of such a layer reports `source: "kernel_file"`,
`format`, `weight_key`, `bias_key` and `layout`. A JSON body cannot carry the file. Pickles are
refused with 415; the file counts towards `CONVSERVE_MAX_UPLOAD_BYTES` with the rest of the
body, and each tensor is checked against `CONVSERVE_MAX_OUTPUT_BYTES` and the kernel limits
(from the file's header, before it is read).

The `onnxruntime` engine runs the whole stack as one ONNX graph in one cached session; the
`numpy` engine runs it layer by layer; they agree to 1e-4. `dry_run=true` validates and
returns shapes and cost without computing. Limits apply to the whole stack: layer count
(`CONVSERVE_MAX_LAYERS`), total MACs (`CONVSERVE_MAX_MACS`), kernel size and channels per
layer, and the size of every feature map and weight tensor (`CONVSERVE_MAX_OUTPUT_BYTES`).
"""


@router.post(
    "/layers",
    summary="A stack of layers over one image",
    description=_DESCRIPTION,
    response_model=LayersResponse,
    responses={
        200: {"content": {"application/json": {}, "application/zip": {},
                          "application/octet-stream": {}},
              "description": "format=json (schema below); npy and onnx are "
                             "application/octet-stream files, zip application/zip"},
        **PROBLEMS,
    },
    openapi_extra=_OPENAPI_EXTRA,
)
async def layers(request: Request, runtime: RuntimeDep) -> Response:
    """Run a layer stack; see :data:`_DESCRIPTION` (the OpenAPI description)."""
    options, source, weights = await parse_layers_body(request, runtime.limits, _JSON_FIELDS)
    entries = [entry.model_dump() for entry in options.layers]
    await reserve_work(request, working_bytes(source, entries, options.format, weights=weights)
                       + weight_file_bytes(weights, entries))

    def work() -> flows.Outcome:
        return flows.run_layers(
            runtime.context, source, entries, engine=options.engine, device=options.device,
            fmt=options.format, normalize=options.normalize, return_=options.return_,
            dry_run=options.dry_run, weights=weights,
        )

    return respond(await runtime.pool.run(work))
