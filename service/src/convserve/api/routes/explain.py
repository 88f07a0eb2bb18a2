"""POST /v1/explain: every product behind one output element of a convolution layer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from convserve import flows
from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.middleware import reserve_work
from convserve.api.parsing import multipart_schema, parse_conv_body
from convserve.api.responses import PROBLEMS, respond
from convserve.api.schemas import ExplainOptions, ExplainRequest, ExplainResponse
from convserve.conv.explain import MAX_EXPLAIN_PRODUCTS
from convserve.flows.memory import working_bytes

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
    options, source, layer = await parse_conv_body(request, runtime.limits, ExplainOptions,
                                                   ExplainRequest, _JSON_FIELDS)
    at = (options.at.channel, options.at.y, options.at.x)
    # The answer is one element's products; the work is a whole convolution (format "npy").
    await reserve_work(request, working_bytes(source, [layer], "npy"))

    def work() -> flows.Outcome:
        return flows.explain(runtime.context, source, layer, at)

    return respond(await runtime.pool.run(work))
