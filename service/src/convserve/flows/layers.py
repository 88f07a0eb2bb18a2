"""``/v1/layers``: build a stack of layers, check its limits, run it, encode its maps.

Layer entries arrive as plain dicts (the validated request schema, dumped); the numerical work
is in :mod:`convserve.conv.layers`. Limits, for the whole stack:

- at most ``CONVSERVE_MAX_LAYERS`` layers;
- each convolution within ``CONVSERVE_MAX_KERNEL_SIZE`` and ``CONVSERVE_MAX_OUT_CHANNELS``, each
  pooling window within ``CONVSERVE_MAX_KERNEL_SIZE``, and the multiply-accumulates of all
  convolutions plus the window reads of all pooling layers (``k_h * k_w`` per output value)
  within ``CONVSERVE_MAX_MACS``;
- every layer's output, every layer's weights, all weights together and, when every layer's
  maps are kept, all outputs together within ``CONVSERVE_MAX_OUTPUT_BYTES``.

A conv2d entry may take its weight from the request's weight file (``kernel_key`` or
``kernel_file: true``, :func:`convserve.flows.kernels.file_kernel`): one file, typically a whole
network's ``state_dict``, serves every such layer; a tensor's shape is checked against the
kernel limits from the file's header before it is read.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convserve import imaging
from convserve.conv.graphs import stack_model
from convserve.conv.layers import (
    Activation,
    ActivationLayer,
    Conv2dLayer,
    Layer,
    Pool2dLayer,
    Stack,
    activation_layer,
    conv2d_layer,
    pool2d_layer,
)
from convserve.conv.presets import is_range_preserving
from convserve.errors import ConvServeError, ShapeError
from convserve.flows.context import FlowContext
from convserve.flows.cost import layer_cost, work_cost
from convserve.flows.inputs import Source, decode_source
from convserve.flows.kernels import file_kernel, layer_kernel, uses_weight_file
from convserve.flows.render import (
    EncodedResult,
    Outcome,
    channels_json,
    elapsed_ms,
    finish,
    pngs_of,
    resolved_normalize,
    serialise,
)
from convserve.limits import Limits
from convserve.weightfiles import WeightArchive

__all__ = [
    "PreparedStack",
    "describe_stack",
    "export_onnx",
    "prepare_stack",
    "render_stack",
    "run_layers",
    "run_stack",
]

Return = str
"""Whose maps an answer carries: ``all``, ``last`` or ``none``."""


@dataclass
class PreparedStack:
    """A validated stack, ready to run, with what the answer reports about each layer."""

    decoded: imaging.DecodedInput
    stack: Stack
    kernels: list[dict[str, Any] | None]
    """Per layer: where a conv2d's weights come from (None for other layers)."""
    engine: str
    device: str
    timing_ms: dict[str, float] = field(default_factory=dict)

    def outcome(self, result: EncodedResult) -> Outcome:
        """``result`` with the stack's output shape, engine and timings."""
        return Outcome(result, tuple(self.stack.output_shape), self.engine, self.device,
                       None, self.timing_ms)


def _activation(value: Any) -> Activation | None:
    if value is None:
        return None
    if isinstance(value, str):
        return activation_layer(value, (1, 1, 1)).activation
    return activation_layer(value["type"], (1, 1, 1), value.get("slope", 0.01)).activation


def _file_conv_layer(
    entry: Mapping[str, Any], shape: tuple[int, int, int], weights: WeightArchive | None,
    limits: Limits, options: dict[str, Any],
) -> tuple[Conv2dLayer, dict[str, Any]]:
    """A conv2d entry whose weight is a tensor of the weight file, plus its kernel info; a
    weight that does not fit the layer's input is attributed to ``kernel_key``."""
    kernel = file_kernel(entry, weights, limits)
    try:
        layer = conv2d_layer(shape, weight=kernel.weight, bias=kernel.bias,
                             groups=kernel.groups, padding=kernel.padding,
                             padding_mode=kernel.padding_mode, **options)
    except ShapeError as exc:
        if exc.field != "weight":
            raise
        named = kernel.info["weight_key"] or "the .npy"
        layout = "OIHW" if kernel.info["layout"] == "OIHW" else "HWIO, as OIHW"
        raise ShapeError(
            f"kernel_file tensor {named!r} ({layout} {tuple(kernel.weight.shape)}) does not "
            f"fit this layer's input (C, H, W)={shape}: {exc.detail}", field="kernel_key",
        ) from None
    return layer, dict(kernel.info)


def _conv_layer(
    entry: Mapping[str, Any], index: int, shape: tuple[int, int, int],
    channel_names: Sequence[str] | None, weights: WeightArchive | None, limits: Limits,
) -> tuple[Conv2dLayer, dict[str, Any]]:
    """A conv2d entry (kernel, preset, seeded filters or a weight file's tensor) as a layer
    plus its kernel info."""
    options: dict[str, Any] = {
        "stride": entry["stride"], "dilation": entry["dilation"],
        "use_bias": entry["bias"], "activation": _activation(entry["activation"]),
    }
    if uses_weight_file(entry):
        try:
            layer, info = _file_conv_layer(entry, shape, weights, limits, options)
        except ConvServeError as exc:
            # Several layers read one file: the detail says which one, as a validation
            # problem's does.
            where = f"layers.{index}" + (f".{exc.field}" if exc.field else "")
            raise type(exc)(f"{where}: {exc.detail}", field=exc.field) from None
    elif entry["preset"] is not None or entry["kernel"] is not None:
        kernel = layer_kernel(entry, shape[0], channel_names)
        layer = conv2d_layer(shape, weight=kernel.weight, bias=kernel.bias,
                             groups=kernel.groups, padding=kernel.padding,
                             padding_mode=kernel.padding_mode, **options)
        info = dict(kernel.info)
    else:
        seed = index if entry["seed"] is None else entry["seed"]
        layer = conv2d_layer(
            shape, filters=entry["filters"], kernel_size=entry["kernel_size"],
            init=entry["init"], seed=seed,
            groups=1 if entry["groups"] is None else entry["groups"],
            padding=0 if entry["padding"] is None else entry["padding"],
            padding_mode="zeros" if entry["padding_mode"] is None else entry["padding_mode"],
            **options,
        )
        info = {"source": "init", "init": entry["init"], "seed": seed}
    info["weight_shape"] = list(layer.spec.weight_shape)
    info["bias"] = layer.spec.bias
    return layer, info


def _layer(
    entry: Mapping[str, Any], index: int, shape: tuple[int, int, int],
    channel_names: Sequence[str] | None, weights: WeightArchive | None, limits: Limits,
) -> tuple[Layer, dict[str, Any] | None]:
    kind = entry["type"]
    if kind == "conv2d":
        return _conv_layer(entry, index, shape, channel_names, weights, limits)
    if kind in ("maxpool2d", "avgpool2d"):
        return pool2d_layer(kind, shape, entry["kernel_size"], entry["stride"], entry["padding"],
                            entry.get("count_include_pad", True)), None
    return activation_layer(kind, shape, entry.get("slope", 0.01)), None


def _check_layer(layer: Layer, limits: Limits, work_so_far: int) -> None:
    if isinstance(layer, Conv2dLayer):
        spec = layer.spec
        limits.check_kernel_size(spec.kernel_h, spec.kernel_w)
        limits.check_out_channels(spec.out_channels)
        limits.check_macs(work_so_far + spec.macs)
        limits.check_output_bytes("this layer's weights", layer.params, field="kernel")
    elif isinstance(layer, Pool2dLayer):
        limits.check_kernel_size(*layer.kernel, what="pooling window", field="kernel_size")
        limits.check_macs(work_so_far + layer.flops, pooling=True)
    limits.check_output_bytes(f"this layer's output {list(layer.output_shape)}",
                              math.prod(layer.output_shape), field=None)


def prepare_stack(
    decoded: imaging.DecodedInput,
    layers: Sequence[Mapping[str, Any]],
    limits: Limits,
    *,
    engine: str,
    device: str,
    keep_all: bool,
    weights: WeightArchive | None = None,
) -> PreparedStack:
    """Build and validate every layer for the shape it receives, and check the stack's limits.

    Parameters
    ----------
    decoded : DecodedInput
        The input, float32 (C, H, W).
    layers : sequence of dict
        Layer entries as the request schema dumps them (``type`` plus that layer's fields).
    keep_all : bool
        Whether every layer's output will be kept (return=all, format=zip), which bounds their
        sum as well.
    weights : WeightArchive, optional
        The request's weight file, for entries with ``kernel_key`` or ``kernel_file``.

    Raises
    ------
    ConvServeError
        Attributed to ``layers.{i}.<field>`` for a problem of layer ``i``.
    """
    limits.check_layers(len(layers))
    c, h, w = decoded.array.shape
    shape = (int(c), int(h), int(w))
    built: list[Layer] = []
    kernels: list[dict[str, Any] | None] = []
    work = params = maps = 0
    for index, entry in enumerate(layers):
        try:
            names = decoded.channel_names if index == 0 else None
            layer, info = _layer(entry, index, shape, names, weights, limits)
            _check_layer(layer, limits, work)
        except ConvServeError as exc:
            raise exc.with_field(f"layers.{index}") from None
        work += layer.macs + (layer.flops if isinstance(layer, Pool2dLayer) else 0)
        params += layer.params
        # As the layers are built, so that tensors read from a weight file stop at the limit.
        limits.check_output_bytes("the weights of all layers together", params, field="layers")
        maps += math.prod(layer.output_shape)
        built.append(layer)
        kernels.append(info)
        shape = layer.output_shape
    if keep_all:
        limits.check_output_bytes(
            "the outputs of all layers together (return=all or format=zip)", maps,
            field="layers",
        )
    return PreparedStack(decoded=decoded, stack=Stack((c, h, w), tuple(built)),
                         kernels=kernels, engine=engine, device=device)


def describe_stack(prepared: PreparedStack) -> dict[str, Any]:
    """Shapes, options and cost of every layer and of the whole stack (no maps)."""
    stack = prepared.stack
    layers = []
    for index, layer in enumerate(stack.layers):
        info: dict[str, Any] = {
            "index": index,
            "type": layer.type,
            "input_shape": list(layer.input_shape),
            "output_shape": list(layer.output_shape),
            "params": layer.params,
            "macs": layer.macs,
            "flops": layer.flops,
            "options": layer.options(),
            "cost": layer_cost(layer),
        }
        if prepared.kernels[index] is not None:
            info["kernel"] = prepared.kernels[index]
        layers.append(info)
    map_values = sum(math.prod(layer.output_shape) for layer in stack.layers)
    return {
        "input": prepared.decoded.to_dict(),
        "engine": prepared.engine,
        "device": prepared.device,
        "output_shape": list(stack.output_shape),
        "layers": layers,
        "total_params": stack.params,
        "total_macs": stack.macs,
        "total_flops": stack.flops,
        "cost": {**work_cost(stack), "feature_map_bytes": 4 * map_values},
    }


def stack_engine(name: str, ctx: FlowContext) -> str:
    """The engine a stack runs on: ``auto`` is ONNX Runtime (one graph for the whole stack,
    no Python between layers) where it is installed, else NumPy; others as named."""
    if name != "auto":
        return name
    return "onnxruntime" if ctx.auto.ort_installed else "numpy"


def run_stack(prepared: PreparedStack, ctx: FlowContext, *, keep_all: bool) -> list[np.ndarray]:
    """Draw seeded weights and run the stack; every layer's output or only the last one.

    Returns
    -------
    list of ndarray of float32, shapes (C_i, H_i, W_i)
    """
    prepared.stack = prepared.stack.materialized()
    started = time.perf_counter()
    outputs = ctx.layers.run(
        prepared.stack, prepared.decoded.array, prepared.engine,  # type: ignore[arg-type]
        prepared.device, keep_all=keep_all,  # type: ignore[arg-type]
        observe=lambda seconds: ctx.observe_convolution(prepared.engine, prepared.device,
                                                        seconds),
    )
    prepared.timing_ms["compute"] = elapsed_ms(started)
    ctx.observe_stage("convolve", time.perf_counter() - started)
    return outputs


def _range_preserving(stack: Stack) -> list[bool]:
    """Per layer: whether inputs in [0, 1] give outputs in [0, 1] (for normalize=auto)."""
    flags = []
    flag = True
    for layer in stack.layers:
        if isinstance(layer, Conv2dLayer):
            weight, bias = layer.arrays()
            flag = flag and is_range_preserving(weight, bias)
            activation = layer.activation
        else:
            activation = layer.activation if isinstance(layer, ActivationLayer) else None
        # relu, leaky_relu, tanh and abs map [0, 1] into [0, 1]; sigmoid maps anything there
        if activation is not None and activation.kind == "sigmoid":
            flag = True
        flags.append(flag)
    return flags


def render_stack(
    outputs: list[np.ndarray],
    prepared: PreparedStack,
    ctx: FlowContext,
    *,
    fmt: str,
    normalize: str,
    return_: Return,
) -> EncodedResult | dict[str, Any]:
    """Encode the outputs of :func:`run_stack` as npy, zip or a JSON payload.

    ``outputs`` holds every layer's maps for ``return_="all"`` and format zip, else the last
    layer's only.
    """
    started = time.perf_counter()
    stack = prepared.stack
    if fmt == "npy":
        result = EncodedResult("application/octet-stream", imaging.encode_npy(outputs[-1]),
                               "convserve_layers.npy")
        prepared.timing_ms["encode"] = elapsed_ms(started)
        return result
    payload = describe_stack(prepared)
    payload["return"] = return_
    first = len(stack.layers) - len(outputs)
    flags = _range_preserving(stack)
    files: list[tuple[str, bytes]] = []
    if fmt == "zip" or return_ != "none":
        for offset, y in enumerate(outputs):
            index = first + offset
            mode = resolved_normalize(normalize, flags[index])
            channels, pngs = pngs_of(y, mode, flags[index], ctx.settings.png_compress_level,
                                     ctx.encoder)
            if fmt == "zip":
                folder = f"layer_{index:02d}_{stack.layers[index].type}"
                for channel, png in zip(channels, pngs, strict=True):
                    channel["file"] = f"{folder}/{imaging.channel_png_name(channel['index'])}"
                    files.append((channel["file"], png))
            else:
                channels = channels_json(channels, pngs)
            payload["layers"][index].update({"normalize": mode, "channels": channels})
    prepared.timing_ms["encode"] = elapsed_ms(started)
    ctx.observe_stage("encode", time.perf_counter() - started)
    if fmt == "zip":
        return EncodedResult("application/zip",
                             imaging.zip_files(files, {**payload,
                                                       "timing_ms": prepared.timing_ms}),
                             "convserve_layers.zip")
    return payload


def export_onnx(prepared: PreparedStack) -> EncodedResult:
    """The stack as a standalone ONNX model: weights as initializers, input ``input`` of shape
    (N, C, H, W), output ``output``; the layer descriptions ride along as metadata."""
    started = time.perf_counter()
    prepared.stack = prepared.stack.materialized()
    model = stack_model(prepared.stack, export=True)
    description = describe_stack(prepared)
    entry = model.metadata_props.add()
    entry.key, entry.value = "convserve.layers", json.dumps(description["layers"])
    prepared.timing_ms["export"] = elapsed_ms(started)
    return EncodedResult("application/octet-stream", model.SerializeToString(),
                         "convserve_layers.onnx")


def run_layers(
    ctx: FlowContext,
    source: Source,
    layers: Sequence[Mapping[str, Any]],
    *,
    engine: str | None = None,
    device: str | None = None,
    fmt: str = "json",
    normalize: str = "auto",
    return_: Return = "last",
    dry_run: bool = False,
    weights: WeightArchive | None = None,
) -> Outcome:
    """A stack of layers over one input: the whole ``/v1/layers`` request (``weights``: its
    weight file, for entries with ``kernel_key`` or ``kernel_file``)."""
    started = time.perf_counter()
    keep_all = fmt == "zip" or (fmt == "json" and return_ == "all")
    decoded = decode_source(source, ctx.limits)
    decode_ms = elapsed_ms(started)
    ctx.observe_stage("decode", decode_ms / 1000)
    prepared = prepare_stack(decoded, layers, ctx.limits,
                             engine=stack_engine(engine or ctx.settings.engine, ctx),
                             device=device or ctx.settings.device, keep_all=keep_all,
                             weights=weights)
    prepared.timing_ms["decode"] = decode_ms
    rendered: EncodedResult | dict[str, Any]
    if fmt == "onnx":
        rendered = export_onnx(prepared)
    elif dry_run:
        rendered = {**describe_stack(prepared), "return": return_, "dry_run": True}
    else:
        outputs = run_stack(prepared, ctx, keep_all=keep_all)
        rendered = render_stack(outputs, prepared, ctx, fmt=fmt, normalize=normalize,
                                return_=return_)
    answer = serialise(rendered)
    prepared.timing_ms["total"] = elapsed_ms(started)
    return prepared.outcome(finish(answer, prepared.timing_ms))
