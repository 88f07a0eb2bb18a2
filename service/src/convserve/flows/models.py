"""The model requests: feature maps, the explanation of a Conv layer's element, a kernel.

Each function decodes the input (:mod:`.inputs`), asks the
:class:`~convserve.models.ModelService` for ONNX Runtime's values and encodes the answer, in the
worker thread that calls it. A request that names no device runs on ``CONVSERVE_DEVICE``, as
``/v1/convolve`` does; the answer reports the device and the execution provider that ran.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve import imaging, jsonbody
from convserve.conv.explain import check_explainable, check_position, explain_position
from convserve.conv.spec import conv_spec
from convserve.errors import InvalidArgumentError, LimitExceededError
from convserve.flows.context import FlowContext
from convserve.flows.inputs import Source, decode_source
from convserve.flows.render import (
    EncodedResult,
    Outcome,
    channels_json,
    elapsed_ms,
    pngs_of,
    resolved_normalize,
)
from convserve.models import ModelService, Preprocess
from convserve.models.runner import FeatureResult

__all__ = ["FeatureOptions", "features", "layer_explanation", "layer_kernel"]

ENGINE = "onnxruntime"


@dataclass(frozen=True)
class FeatureOptions:
    """What a features request asks for, besides its input."""

    layers: list[str | int]
    preprocess: Preprocess
    format: str = "json"
    normalize: str = "auto"
    device: str | None = None
    """cpu or cuda; None for CONVSERVE_DEVICE."""


def features(ctx: FlowContext, service: ModelService, model_id: str, source: Source,
             options: FeatureOptions) -> Outcome:
    """The feature maps of ``options.layers`` for ``source``, encoded as ``options.format``:
    json, npy (one layer), zip (a folder per layer) or grid (one layer)."""
    started = time.perf_counter()
    decoded = decode_source(source, ctx.limits)
    timing = {"decode": elapsed_ms(started)}
    if options.format in ("npy", "grid") and len(options.layers) != 1:
        raise InvalidArgumentError(
            f"format={options.format} returns one layer and {len(options.layers)} were asked "
            "for; ask for one, or use format=json or zip", field="format")
    result = service.features(model_id, decoded.array, options.layers, options.preprocess,
                              options.device or ctx.settings.device)
    timing.update(result.timing_ms)
    encoded = _render(ctx, result, decoded, options, timing)
    timing["total"] = elapsed_ms(started)
    shape = tuple(result.maps[0].shape) if len(result.maps) == 1 else (len(result.maps),)
    return Outcome(encoded, shape, ENGINE, result.device, timing_ms=timing)


def _folder(row: dict[str, Any]) -> str:
    """``003_features.0_Conv``: a ZIP folder name from the row's index and name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", row["name"]).strip("._") or "layer"
    return f"{row['index']:03d}_{safe[:80]}"


def _render(ctx: FlowContext, result: FeatureResult, decoded: imaging.DecodedInput,
            options: FeatureOptions, timing: dict[str, float]) -> EncodedResult:
    started = time.perf_counter()
    level = ctx.settings.png_compress_level
    mode = resolved_normalize(options.normalize, False)
    if options.format == "npy":
        return EncodedResult("application/octet-stream", imaging.encode_npy(result.maps[0]),
                             "features.npy")
    if options.format == "grid":
        pixels = imaging.to_pixels(result.maps[0], mode, range_preserving=False)
        return EncodedResult("image/png", imaging.grid_png(pixels, level=level), "grid.png")
    described = []
    files: list[tuple[str, bytes]] = []
    for row, maps in zip(result.rows, result.maps, strict=True):
        channels, pngs = pngs_of(maps, mode, False, level, ctx.encoder)
        layer: dict[str, Any] = {"index": row["index"], "name": row["name"], "op": row["op"],
                                 "shape": list(maps.shape), "layout": row["layout"]}
        if options.format == "zip":
            folder = _folder(row)
            names = [f"{folder}/{imaging.channel_png_name(i)}" for i in range(len(pngs))]
            files += [*zip(names, pngs, strict=True),
                      (f"{folder}/features.npy", imaging.encode_npy(maps))]
            layer.update({"folder": folder, "channels": [
                {**entry, "file": name} for entry, name in zip(channels, names, strict=True)]})
        else:
            layer["channels"] = channels_json(channels, pngs)
        described.append(layer)
    timing["encode"] = elapsed_ms(started)
    payload = {"model": result.model.id, "engine": ENGINE, "device": result.device,
               "provider": result.provider, "preprocess": result.preprocess,
               "input": decoded.to_dict(), "normalize": mode, "layers": described,
               "timing_ms": timing}
    if options.format == "zip":
        return EncodedResult("application/zip", imaging.zip_files(files, payload),
                             "features.zip")
    return EncodedResult("application/json", jsonbody.dumps(payload))


def layer_explanation(ctx: FlowContext, service: ModelService, model_id: str, source: Source,
                      layer: str | int, at: tuple[int, int, int],
                      preprocess: Preprocess, device: str | None = None) -> Outcome:
    """Output element ``at`` = (channel, y, x) of Conv layer ``layer`` on its real input, term
    by term; ``value`` is what ONNX Runtime computed there, on ``device`` (None for
    CONVSERVE_DEVICE)."""
    started = time.perf_counter()
    decoded = decode_source(source, ctx.limits)
    row, kernel, conv_in, conv_out, report, ran = service.conv_io(
        model_id, layer, decoded.array, preprocess, device or ctx.settings.device)
    spec = conv_spec(conv_in.shape, kernel.weight.shape,
                     None if kernel.bias is None else kernel.bias.shape,
                     stride=kernel.stride, padding=list(kernel.padding),
                     dilation=kernel.dilation, groups=kernel.groups)
    channel, y, x = at
    check_position(spec, channel, y, x)
    check_explainable(spec)
    value = float(np.float32(conv_out[channel, y, x]))
    explanation = explain_position(conv_in, kernel.weight, kernel.bias, spec, channel, y, x)
    timing = {"total": elapsed_ms(started)}
    payload = {"model": model_id, "engine": ENGINE, "device": ran.device,
               "provider": ran.provider, "layer": row, "value": value,
               **explanation.to_dict(value), "padding": list(spec.pads),
               "stride": list(spec.stride), "dilation": list(spec.dilation),
               "groups": spec.groups, "preprocess": report, "timing_ms": timing}
    return Outcome(EncodedResult("application/json", jsonbody.dumps(payload)),
                   (spec.out_channels, spec.out_height, spec.out_width), ENGINE, ran.device,
                   padding=spec.pads, timing_ms=timing)


def layer_kernel(ctx: FlowContext, service: ModelService, model_id: str,
                 name: str) -> EncodedResult:
    """A Conv layer's kernel as /v1/convolve takes it, plus its row and input name."""
    row, kernel = service.kernel(model_id, name)
    ctx.limits.check_output_bytes(f"the weight of layer {row['name']!r}", kernel.weight.size,
                                  field="name")
    if kernel.weight.size > ctx.limits.max_array_values:
        raise LimitExceededError(
            f"the weight of layer {row['name']!r} holds {kernel.weight.size} numbers, more than "
            f"the {ctx.limits.max_array_values} a JSON answer may hold "
            "(CONVSERVE_MAX_ARRAY_VALUES)", field="name")
    return EncodedResult("application/json", jsonbody.dumps(
        {"layer": row, "input": kernel.input, **kernel.to_dict()}))
