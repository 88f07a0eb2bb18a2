"""POST /v1/convolve: one convolution layer over one image, as multipart or JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from convserve import flows
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.middleware import reserve_work
from convserve.api.parsing import multipart_schema, parse_conv_body
from convserve.api.responses import BINARY_MEDIA, PROBLEMS, respond
from convserve.api.schemas import ConvolveOptions, ConvolveRequest, ConvolveResponse
from convserve.flows.memory import working_bytes

router = APIRouter(prefix="/v1", tags=["convolve"], dependencies=[Depends(require_api_key)])

_JSON_FIELDS = frozenset({"kernel", "preset_params"})

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


@router.post(
    "/convolve",
    summary="One convolution layer over one image",
    response_model=ConvolveResponse,
    responses={
        200: {"content": {"application/json": {}, **BINARY_MEDIA},
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
    options, source, layer = await parse_conv_body(request, runtime.limits, ConvolveOptions,
                                                   ConvolveRequest, _JSON_FIELDS)
    engine = options.engine or runtime.settings.engine
    await reserve_work(request, working_bytes(source, [layer], options.format, engine=engine))

    def work() -> flows.Outcome:
        return flows.convolve(runtime.context, source, layer, fmt=options.format,
                              normalize=options.normalize, channel=options.channel,
                              dry_run=options.dry_run)

    return respond(await runtime.pool.run(work))
