"""``/v1/explain``: every product behind one output element of a convolution layer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from convserve.conv.explain import check_explainable, check_position, explain_position
from convserve.flows.context import FlowContext
from convserve.flows.convolve import describe, prepare_convolution, run_convolution
from convserve.flows.inputs import Source, decode_source
from convserve.flows.render import Outcome, elapsed_ms, finish, serialise

__all__ = ["explain"]


def explain(
    ctx: FlowContext, source: Source, options: Mapping[str, Any], at: tuple[int, int, int]
) -> Outcome:
    """Explain output element ``at`` = (channel, y, x) of the layer ``options`` describe.

    The layer runs in full on its engine, so the answer's ``value`` is exactly what
    ``/v1/convolve`` returns there; the terms are recomputed in float64 from the same float32
    numbers (:func:`convserve.conv.explain.explain_position`).
    """
    channel, y, x = at
    started = time.perf_counter()
    decoded = decode_source(source, ctx.limits)
    prepared = prepare_convolution(decoded, options, ctx.limits,
                                   default_engine=ctx.settings.engine,
                                   default_device=ctx.settings.device)
    prepared.timing_ms["decode"] = elapsed_ms(started)
    check_position(prepared.spec, channel, y, x)
    check_explainable(prepared.spec)
    maps = run_convolution(prepared, ctx)
    value = float(maps[channel, y, x])
    explained_at = time.perf_counter()
    explanation = explain_position(prepared.x, prepared.weight, prepared.bias, prepared.spec,
                                   channel, y, x)
    described = describe(prepared, "auto")
    for unused in ("shape", "normalize"):
        described.pop(unused)
    payload = {"value": value, **explanation.to_dict(value), **described}
    prepared.timing_ms["explain"] = elapsed_ms(explained_at)
    answer = serialise(payload)
    prepared.timing_ms["total"] = elapsed_ms(started)
    return prepared.outcome(finish(answer, prepared.timing_ms))
