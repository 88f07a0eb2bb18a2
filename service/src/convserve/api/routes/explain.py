"""POST /v1/explain: every product behind one output element of a convolution layer."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from convserve import jsonbody, pipeline
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.routes.convolve import (
    PROBLEMS,
    conv_headers,
    layer_options,
    multipart_schema,
    parse_body,
)
from convserve.api.schemas import ExplainOptions, ExplainRequest, ExplainResponse
from convserve.conv.explain import (
    MAX_EXPLAIN_PRODUCTS,
    check_explainable,
    check_position,
    explain_position,
)

router = APIRouter(prefix="/v1", tags=["explain"], dependencies=[Depends(require_api_key)])

_JSON_FIELDS = frozenset({"kernel", "preset_params", "at"})

_D2L = {
    "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
    "kernel": {"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]},
    "at": {"channel": 0, "y": 0, "x": 0},
}

_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {**multipart_schema(ExplainOptions, {
                "at": {"type": "string", "description": 'JSON: {"channel": 0, "y": 0, "x": 0}'},
            }), "required": ["image", "at"]}},
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ExplainRequest"},
                "examples": {
                    "d2l": {
                        "summary": "Dive into Deep Learning: output (0, 0, 0) is 19 + 37 = 56",
                        "value": _D2L,
                    },
                    "padding": {
                        "summary": "A corner of a reflect-padded 3x3 layer: the window reaches "
                                   "into the padding",
                        "value": {**_D2L, "kernel": {"weight": [[[[1, 0, -1]] * 3] * 2],
                                                     "bias": [0.5]},
                                  "padding": 1, "padding_mode": "reflect"},
                    },
                },
            },
        },
    }
}


_DESCRIPTION = f"""\
Show how output element `at` = (channel, y, x) of a convolution layer is computed.

Takes what `/v1/convolve` takes (multipart or JSON, a kernel or a preset, every option) plus
`at`. The answer has one term per input channel that the output channel reads (`C_in/groups` of
them, respecting groups, in input-channel order): the `k_h x k_w` window of input values
(dilation applied; values in the padding are what the padding mode puts there, and are marked
in `in_padding`), the kernel, their products and their sum; then the bias, the whole
`expression` on one line, and `value`.

`value` is the engine's float32 output at `at`, exactly what `/v1/convolve` returns there: the
layer runs in full on the chosen engine, so this request costs what `/v1/convolve` costs
(reported in `cost`). Products and sums are computed in float64 from the same float32 numbers,
so `total` (the terms' sums plus the bias) equals `value` up to float32 rounding, about
`1e-6 * (sum |products| + |bias|)`.

One element may read at most {MAX_EXPLAIN_PRODUCTS} products (`C_in/groups * k_h * k_w`); a
position outside the output is a 422 naming the valid ranges.
"""


@router.post(
    "/explain",
    summary="The arithmetic behind one output element",
    description=_DESCRIPTION,
    response_model=ExplainResponse,
    responses=PROBLEMS,
    openapi_extra=_OPENAPI_EXTRA,
)
async def explain(request: Request, runtime: RuntimeDep) -> Response:
    """Show how output element ``at`` = (channel, y, x) of a layer is computed (see
    :data:`_DESCRIPTION`, the OpenAPI description)."""
    options, data, array, image_b64 = await parse_body(
        request, runtime, ExplainOptions, ExplainRequest, _JSON_FIELDS
    )
    settings = runtime.settings
    at = options.at

    def work() -> tuple[bytes, pipeline.PreparedConv]:
        started = time.perf_counter()
        decoded = pipeline.decode_request_input(
            data, array, image_b64, color_mode=options.color_mode, settings=settings
        )
        prepared = pipeline.prepare_convolution(
            decoded=decoded, settings=settings, **layer_options(options)
        )
        prepared.timing_ms["decode"] = round(1000 * (time.perf_counter() - started), 3)
        check_position(prepared.spec, at.channel, at.y, at.x)
        check_explainable(prepared.spec)
        metric = runtime.metrics.convolution.labels(prepared.engine, prepared.device)
        y = pipeline.run_convolution(prepared, runtime.engine(prepared.engine),
                                     observe=metric.observe)
        value = float(y[at.channel, at.y, at.x])
        explained_at = time.perf_counter()
        explanation = explain_position(prepared.x, prepared.weight, prepared.bias,
                                       prepared.spec, at.channel, at.y, at.x)
        described = pipeline.describe(prepared, "auto")
        for unused in ("shape", "normalize"):
            described.pop(unused)
        payload = {"value": value, **explanation.to_dict(value), **described}
        prepared.timing_ms["explain"] = round(1000 * (time.perf_counter() - explained_at), 3)
        prepared.timing_ms["total"] = round(1000 * (time.perf_counter() - started), 3)
        payload["timing_ms"] = prepared.timing_ms
        return jsonbody.dumps(payload), prepared

    body, prepared = await runtime.pool.run(work)
    return Response(body, media_type="application/json", headers=conv_headers(prepared))
