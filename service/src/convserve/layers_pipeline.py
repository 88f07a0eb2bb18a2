"""From a parsed /v1/layers request to a result: build the stack, check limits, run, encode.

The /v1/layers counterpart of :mod:`convserve.pipeline` (whose decoding, limit checks and
channel statistics it reuses). Layer entries arrive as plain dicts (the validated request
schema, dumped), so this module imports no FastAPI; the numerical work is in
:mod:`convserve.conv.layers`.

Limits, for the whole stack:

- at most ``CONVSERVE_MAX_LAYERS`` layers;
- each convolution within ``CONVSERVE_MAX_KERNEL_SIZE`` and ``CONVSERVE_MAX_OUT_CHANNELS``, each
  pooling window within ``CONVSERVE_MAX_KERNEL_SIZE``, and the multiply-accumulates of all
  convolutions plus the window reads of all pooling layers (``k_h * k_w`` per output value)
  within ``CONVSERVE_MAX_MACS``;
- every layer's output, every layer's weights, all weights together and, when every layer's
  maps are returned, all outputs together within ``16 x CONVSERVE_MAX_ARRAY_VALUES`` float32
  values (the bound a decoded ``.npy`` input has too; 64 M values, 256 MB, by default).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convserve import imaging, pipeline
from convserve.conv.layers import (
    Activation,
    ActivationLayer,
    Conv2dLayer,
    Layer,
    LayerRunner,
    Pool2dLayer,
    Stack,
    activation_layer,
    conv2d_layer,
    pool2d_layer,
    stack_model,
)
from convserve.conv.presets import resolve_preset
from convserve.conv.spec import hwio_to_oihw, prepare_arrays
from convserve.errors import ConvServeError, InvalidArgumentError, LimitExceededError, ShapeError
from convserve.settings import Settings

__all__ = [
    "PreparedStack",
    "describe_stack",
    "export_onnx",
    "prepare_stack",
    "render_stack",
    "run_stack",
]


@dataclass
class PreparedStack:
    """A validated stack, ready to run, with what the response reports about each layer."""

    decoded: imaging.DecodedInput
    stack: Stack
    kernels: list[dict[str, Any] | None]
    """Per layer: where a conv2d's weights come from (None for other layers)."""
    engine: str
    device: str
    timing_ms: dict[str, float] = field(default_factory=dict)


def _kernel_arrays(kernel: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, str]:
    layout = str(kernel.get("layout", "OIHW"))
    try:
        _, weight, bias = prepare_arrays(np.zeros(1, np.float32), kernel.get("weight"),
                                         kernel.get("bias"))
    except InvalidArgumentError as exc:
        raise exc.with_field("kernel") from None
    if weight.ndim != 4:
        axes = "(c_out, c_in/groups, k_h, k_w)" if layout == "OIHW" else \
            "(k_h, k_w, c_in/groups, c_out)"
        raise ShapeError(f"kernel.weight has shape {weight.shape}; {layout} needs 4 axes {axes}",
                         field="kernel.weight")
    return (hwio_to_oihw(weight) if layout == "HWIO" else weight), bias, layout


def _activation(value: Any) -> Activation | None:
    if value is None:
        return None
    if isinstance(value, str):
        return activation_layer(value, (1, 1, 1)).activation
    return activation_layer(value["type"], (1, 1, 1), value.get("slope", 0.01)).activation


def _conv_layer(
    entry: Mapping[str, Any], index: int, shape: tuple[int, int, int],
    channel_names: Sequence[str] | None,
) -> tuple[Conv2dLayer, dict[str, Any]]:
    """A conv2d entry (kernel, preset or filters) as a layer plus its kernel description."""
    options: dict[str, Any] = {
        "stride": entry["stride"], "dilation": entry["dilation"],
        "use_bias": entry["bias"], "activation": _activation(entry["activation"]),
    }
    padding, mode, groups = entry["padding"], entry["padding_mode"], entry["groups"]
    if entry["preset"] is not None:
        resolved = resolve_preset(entry["preset"], shape[0], entry["preset_params"],
                                  channel_names)
        if groups is not None and groups != resolved.groups:
            raise InvalidArgumentError(
                f"groups={groups} conflicts with preset {entry['preset']!r}, which needs "
                f"groups={resolved.groups} for {shape[0]} input channels ({resolved.rule} rule); "
                "leave groups out or send an explicit kernel",
                field="groups",
            )
        layer = conv2d_layer(
            shape, weight=resolved.weight, bias=resolved.bias, groups=resolved.groups,
            padding="same" if padding is None else padding,
            padding_mode="reflect" if mode is None else mode, **options,
        )
        info: dict[str, Any] = {"source": "preset", "name": resolved.name, "rule": resolved.rule,
                "params": resolved.params}
    elif entry["kernel"] is not None:
        weight, bias, layout = _kernel_arrays(entry["kernel"])
        layer = conv2d_layer(
            shape, weight=weight, bias=bias, groups=1 if groups is None else groups,
            padding=0 if padding is None else padding,
            padding_mode="zeros" if mode is None else mode, **options,
        )
        info = {"source": "kernel", "layout": layout}
    else:
        seed = index if entry["seed"] is None else entry["seed"]
        layer = conv2d_layer(
            shape, filters=entry["filters"], kernel_size=entry["kernel_size"],
            init=entry["init"], seed=seed, groups=1 if groups is None else groups,
            padding=0 if padding is None else padding,
            padding_mode="zeros" if mode is None else mode, **options,
        )
        info = {"source": "init", "init": entry["init"], "seed": seed}
    info["weight_shape"] = list(layer.spec.weight_shape)
    info["bias"] = layer.spec.bias
    return layer, info


def _layer(
    entry: Mapping[str, Any], index: int, shape: tuple[int, int, int],
    channel_names: Sequence[str] | None,
) -> tuple[Layer, dict[str, Any] | None]:
    kind = entry["type"]
    if kind == "conv2d":
        return _conv_layer(entry, index, shape, channel_names)
    if kind in ("maxpool2d", "avgpool2d"):
        return pool2d_layer(kind, shape, entry["kernel_size"], entry["stride"], entry["padding"],
                            entry.get("count_include_pad", True)), None
    return activation_layer(kind, shape, entry.get("slope", 0.01)), None


def _check_pool(layer: Pool2dLayer, settings: Settings, work_so_far: int) -> None:
    k_h, k_w = layer.kernel
    if max(k_h, k_w) > settings.max_kernel_size:
        raise LimitExceededError(
            f"pooling window {k_h}x{k_w} is larger than the limit of "
            f"{settings.max_kernel_size} per side (CONVSERVE_MAX_KERNEL_SIZE)",
            field="kernel_size",
        )
    work = work_so_far + layer.flops
    if work > settings.max_macs:
        raise LimitExceededError(
            f"this request would cost {work:.3g} multiply-accumulates and pooling-window reads, "
            f"more than the limit of {settings.max_macs:.3g} (CONVSERVE_MAX_MACS); use a "
            "smaller image, window or a larger stride",
        )


def prepare_stack(
    *,
    decoded: imaging.DecodedInput,
    layers: Sequence[Mapping[str, Any]],
    engine: str | None,
    device: str | None,
    settings: Settings,
    keep_all: bool,
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

    Raises
    ------
    ConvServeError
        Attributed to ``layers.{i}.<field>`` for a problem of layer ``i``.
    """
    if len(layers) > settings.max_layers:
        raise LimitExceededError(
            f"{len(layers)} layers is more than the limit of {settings.max_layers} "
            "(CONVSERVE_MAX_LAYERS)",
            field="layers",
        )
    shape: tuple[int, int, int] = tuple(int(s) for s in decoded.array.shape)  # type: ignore[assignment]
    built: list[Layer] = []
    kernels: list[dict[str, Any] | None] = []
    work = weights = maps = 0
    for index, entry in enumerate(layers):
        try:
            names = decoded.channel_names if index == 0 else None
            layer, info = _layer(entry, index, shape, names)
            if isinstance(layer, Conv2dLayer):
                pipeline.check_limits(layer.spec, settings, work)
                pipeline.check_tensor_values("this layer's weights", layer.weight_values,
                                             settings, "kernel")
            elif isinstance(layer, Pool2dLayer):
                _check_pool(layer, settings, work)
            pipeline.check_tensor_values(f"this layer's output {list(layer.output_shape)}",
                                         int(np.prod(layer.output_shape)), settings, None)
        except ConvServeError as exc:
            raise exc.with_field(f"layers.{index}") from None
        work += layer.macs + (layer.flops if isinstance(layer, Pool2dLayer) else 0)
        weights += layer.weight_values
        maps += int(np.prod(layer.output_shape))
        built.append(layer)
        kernels.append(info)
        shape = layer.output_shape
    pipeline.check_tensor_values("the weights of all layers together", weights, settings, "layers")
    if keep_all:
        pipeline.check_tensor_values(
            "the outputs of all layers together (return=all or format=zip)", maps, settings,
            "layers",
        )
    return PreparedStack(
        decoded=decoded, stack=Stack(tuple(decoded.array.shape), tuple(built)),
        kernels=kernels, engine=engine or settings.engine, device=device or settings.device,
    )


def _cost(layer: Layer) -> dict[str, Any]:
    return {
        "params": layer.params,
        "macs": layer.macs,
        "flops": layer.flops,
        "input_bytes": 4 * int(np.prod(layer.input_shape)),
        "weight_bytes": 4 * layer.weight_values,
        "output_bytes": 4 * int(np.prod(layer.output_shape)),
        "output_size": layer.output_size_formula(),
    }


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
            "cost": _cost(layer),
        }
        if prepared.kernels[index] is not None:
            info["kernel"] = prepared.kernels[index]
        layers.append(info)
    map_values = sum(int(np.prod(layer.output_shape)) for layer in stack.layers)
    return {
        "input": prepared.decoded.to_dict(),
        "engine": prepared.engine,
        "device": prepared.device,
        "output_shape": list(stack.output_shape),
        "layers": layers,
        "total_params": stack.params,
        "total_macs": stack.macs,
        "total_flops": stack.flops,
        "cost": {
            "params": stack.params,
            "macs": stack.macs,
            "flops": stack.flops,
            "input_bytes": 4 * int(np.prod(stack.input_shape)),
            "weight_bytes": 4 * sum(layer.weight_values for layer in stack.layers),
            "output_bytes": 4 * int(np.prod(stack.output_shape)),
            "feature_map_bytes": 4 * map_values,
        },
    }


def run_stack(prepared: PreparedStack, runner: LayerRunner, *, keep_all: bool) -> list[np.ndarray]:
    """Draw seeded weights and run the stack; every layer's output or only the last one.

    Returns
    -------
    list of ndarray of float32, shapes (C_i, H_i, W_i)
    """
    prepared.stack = prepared.stack.materialized()
    started = time.perf_counter()
    outputs = runner.run(prepared.stack, prepared.decoded.array, prepared.engine,  # type: ignore[arg-type]
                         prepared.device, keep_all=keep_all)  # type: ignore[arg-type]
    prepared.timing_ms["compute"] = round(1000 * (time.perf_counter() - started), 3)
    return outputs


def _range_preserving(stack: Stack) -> list[bool]:
    """Per layer: whether inputs in [0, 1] give outputs in [0, 1] (for normalize=auto)."""
    flags = []
    flag = True
    for layer in stack.layers:
        if isinstance(layer, Conv2dLayer):
            weight, bias = layer.arrays()
            flag = flag and pipeline.is_range_preserving(weight, bias)
            activation = layer.activation
        else:
            activation = layer.activation if isinstance(layer, ActivationLayer) else None
        # relu, leaky_relu, tanh and abs map [0, 1] into [0, 1]; sigmoid maps anything there
        if activation is not None and activation.kind == "sigmoid":
            flag = True
        flags.append(flag)
    return flags


def _channels(
    y: np.ndarray, mode: str, range_preserving: bool, settings: Settings,
    executor: Executor | None,
) -> tuple[list[dict[str, Any]], list[bytes]]:
    pixels = imaging.to_pixels(y, mode, range_preserving=range_preserving)  # type: ignore[arg-type]
    pngs = imaging.encode_pngs(pixels, level=settings.png_compress_level, executor=executor)
    stats = pipeline.channel_stats(y)
    return [{"index": i, **stats[i]} for i in range(y.shape[0])], pngs


def render_stack(
    outputs: list[np.ndarray],
    prepared: PreparedStack,
    *,
    fmt: str,
    normalize: str,
    returned: str,
    settings: Settings,
    executor: Executor | None,
) -> pipeline.EncodedResult:
    """Encode the outputs of :func:`run_stack` as json, npy or zip.

    ``outputs`` holds every layer's maps for ``returned="all"`` and format zip, else the last
    layer's only.
    """
    started = time.perf_counter()
    stack = prepared.stack
    if fmt == "npy":
        result = pipeline.EncodedResult("application/octet-stream",
                                        body=imaging.encode_npy(outputs[-1]),
                                        filename="convserve_layers.npy")
        prepared.timing_ms["encode"] = round(1000 * (time.perf_counter() - started), 3)
        return result
    payload = describe_stack(prepared)
    payload["return"] = returned
    first = len(stack.layers) - len(outputs)
    flags = _range_preserving(stack)
    files: list[tuple[str, bytes]] = []
    if fmt == "zip" or returned != "none":
        for offset, y in enumerate(outputs):
            index = first + offset
            mode = pipeline.resolved_normalize(normalize, flags[index])
            channels, pngs = _channels(y, mode, flags[index], settings, executor)
            folder = f"layer_{index:02d}_{stack.layers[index].type}"
            for channel, png in zip(channels, pngs, strict=True):
                if fmt == "zip":
                    channel["file"] = f"{folder}/{imaging.channel_png_name(channel['index'])}"
                    files.append((channel["file"], png))
                else:
                    channel["png_base64"] = base64.b64encode(png).decode("ascii")
            payload["layers"][index].update({"normalize": mode, "channels": channels})
    prepared.timing_ms["encode"] = round(1000 * (time.perf_counter() - started), 3)
    if fmt == "zip":
        payload["timing_ms"] = prepared.timing_ms
        return pipeline.EncodedResult("application/zip", body=imaging.zip_files(files, payload),
                                      filename="convserve_layers.zip")
    payload["timing_ms"] = prepared.timing_ms
    return pipeline.EncodedResult("application/json", payload=payload)


def export_onnx(prepared: PreparedStack) -> pipeline.EncodedResult:
    """The stack as a standalone ONNX model: weights as initializers, input ``input`` of shape
    (N, C, H, W), output ``output``; the layer descriptions ride along as metadata."""
    started = time.perf_counter()
    prepared.stack = prepared.stack.materialized()
    model = stack_model(prepared.stack, export=True)
    description = describe_stack(prepared)
    entry = model.metadata_props.add()
    entry.key, entry.value = "convserve.layers", json.dumps(description["layers"])
    prepared.timing_ms["export"] = round(1000 * (time.perf_counter() - started), 3)
    return pipeline.EncodedResult("application/octet-stream", body=model.SerializeToString(),
                                  filename="convserve_layers.onnx")
