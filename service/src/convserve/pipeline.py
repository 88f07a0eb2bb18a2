"""From a parsed request to a result: decode, resolve the kernel, check limits, convolve, encode.

This is the one place that ties the numerical core (``convserve.conv``) and the pixel codecs
(``convserve.imaging``) together for the HTTP API. It imports no FastAPI: the routers parse
HTTP into :class:`~convserve.api.schemas.ConvolveOptions` and call these functions in a worker
thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from convserve import imaging
from convserve.conv.engine import Engine
from convserve.conv.presets import resolve_preset
from convserve.conv.spec import ConvSpec, conv_spec, hwio_to_oihw, prepare_arrays
from convserve.errors import (
    ConvServeError,
    InvalidArgumentError,
    InvalidInputError,
    LimitExceededError,
    ShapeError,
)
from convserve.settings import Settings

__all__ = [
    "EncodedResult",
    "PreparedConv",
    "channel_stats",
    "check_limits",
    "check_tensor_values",
    "cost_of",
    "decode_request_input",
    "is_range_preserving",
    "prepare_convolution",
    "render_result",
    "run_convolution",
    "tensor_limit",
]

_INPUT_FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF (first frame) or a .npy array"


@dataclass
class PreparedConv:
    """A validated convolution, ready to run: arrays, spec and what the response reports."""

    x: np.ndarray
    """float32 (1, C_in, H, W)."""
    weight: np.ndarray
    """float32 (C_out, C_in/groups, k_h, k_w)."""
    bias: np.ndarray | None
    spec: ConvSpec
    decoded: imaging.DecodedInput
    kernel_info: dict[str, Any]
    range_preserving: bool
    output_names: tuple[str, ...]
    engine: str
    device: str
    timing_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class EncodedResult:
    """A rendered response: a JSON-able body or raw bytes with their media type."""

    media_type: str
    body: bytes | None = None
    payload: dict[str, Any] | None = None
    filename: str | None = None


def _ms(started: float) -> float:
    return round(1000 * (time.perf_counter() - started), 3)


def decode_request_input(
    data: bytes | None,
    array: Sequence[Any] | None,
    image_base64: str | None,
    *,
    color_mode: imaging.ColorMode,
    settings: Settings,
) -> imaging.DecodedInput:
    """Decode an upload (bytes), a JSON array or a base64 image into float32 (C, H, W)."""
    if array is not None:
        try:
            with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
                values = np.asarray(array, dtype=np.float32)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(
                "input.array must be nested lists of numbers of equal length, shaped (C, H, W) "
                f"or (H, W): {exc}",
                field="input.array",
            ) from None
        if values.size > settings.max_array_values:
            raise LimitExceededError(
                f"input.array holds {values.size} numbers, more than the limit of "
                f"{settings.max_array_values} (CONVSERVE_MAX_ARRAY_VALUES); upload a .npy file "
                "or an image instead",
                field="input.array",
            )
        try:
            return imaging.array_input(values)
        except ConvServeError as exc:
            raise exc.with_field("input.array") from None
    if image_base64 is not None:
        text = image_base64.strip()
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(
                "input.image_base64 is not valid base64 (standard alphabet, with padding)",
                field="input.image_base64",
            ) from None
    if not data:
        raise InvalidInputError(
            f"no input was sent: upload an image file ({_INPUT_FORMATS})", field="image"
        )
    try:
        return imaging.decode_input(
            data,
            color_mode=color_mode,
            max_pixels=settings.max_pixels,
            max_values=tensor_limit(settings),
        )
    except ConvServeError as exc:
        if exc.field is not None:  # an option such as color_mode, already named
            raise
        raise exc.with_field("image" if image_base64 is None else "input.image_base64") from None


def is_range_preserving(weight: np.ndarray, bias: np.ndarray | None) -> bool:
    """True when every output channel's weights are non-negative and sum to 1 (no bias)."""
    if bias is not None and np.any(bias != 0):
        return False
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    return bool(np.all(flat >= 0) and np.allclose(flat.sum(axis=1), 1.0, rtol=0, atol=1e-5))


def tensor_limit(settings: Settings) -> int:
    """Most float32 values one input, output, feature map or weight tensor may hold."""
    return 16 * settings.max_array_values


def check_tensor_values(what: str, values: int, settings: Settings, field: str | None) -> None:
    """Raise LimitExceededError when ``what`` would hold more than :func:`tensor_limit` values."""
    limit = tensor_limit(settings)
    if values > limit:
        raise LimitExceededError(
            f"{what} would hold {values} float32 values, more than the limit of {limit} "
            f"(16 x CONVSERVE_MAX_ARRAY_VALUES); use a smaller image, fewer channels or a "
            "larger stride",
            field=field,
        )


def check_limits(spec: ConvSpec, settings: Settings, macs_so_far: int = 0) -> None:
    """Raise LimitExceededError naming the limit and its setting."""
    if max(spec.kernel_h, spec.kernel_w) > settings.max_kernel_size:
        raise LimitExceededError(
            f"kernel {spec.kernel_h}x{spec.kernel_w} is larger than the limit of "
            f"{settings.max_kernel_size} per side (CONVSERVE_MAX_KERNEL_SIZE)",
            field="kernel",
        )
    if spec.out_channels > settings.max_out_channels:
        raise LimitExceededError(
            f"c_out={spec.out_channels} is more than the limit of {settings.max_out_channels} "
            "output channels (CONVSERVE_MAX_OUT_CHANNELS)",
            field="kernel",
        )
    macs = macs_so_far + spec.macs
    if macs > settings.max_macs:
        raise LimitExceededError(
            f"this request would cost {macs:.3g} multiply-accumulates, more than the limit of "
            f"{settings.max_macs:.3g} (CONVSERVE_MAX_MACS); use a smaller image, kernel, "
            "fewer channels or a larger stride",
        )


def cost_of(spec: ConvSpec) -> dict[str, Any]:
    """Parameters, MACs, FLOPs and bytes of one layer, plus the output-size formula."""
    c_out, c_in_g, k_h, k_w = spec.weight_shape
    return {
        "params": spec.params,
        "macs": spec.macs,
        "flops": spec.flops,
        "input_bytes": 4 * int(np.prod(spec.input_shape)),
        "weight_bytes": 4 * (c_out * c_in_g * k_h * k_w + (c_out if spec.bias else 0)),
        "output_bytes": 4 * int(np.prod(spec.output_shape)),
        "output_size": spec.output_size_formula(),
    }


def _kernel_arrays(
    weight: Any, bias: Any, layout: str
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        _, w, b = prepare_arrays(np.zeros(1, np.float32), weight, bias)
    except InvalidArgumentError as exc:
        raise exc.with_field("kernel") from None
    if w.ndim != 4:
        expected = "(c_out, c_in/groups, k_h, k_w)" if layout == "OIHW" else \
            "(k_h, k_w, c_in/groups, c_out)"
        raise ShapeError(
            f"kernel.weight has shape {w.shape}; {layout} needs 4 axes {expected}",
            field="kernel.weight",
        )
    if layout == "HWIO":
        w = hwio_to_oihw(w)
    return w, b


def prepare_convolution(
    *,
    decoded: imaging.DecodedInput,
    kernel: dict[str, Any] | None,
    preset: str | None,
    preset_params: dict[str, Any],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int | None,
    padding_mode: str | None,
    engine: str | None,
    device: str | None,
    settings: Settings,
    macs_so_far: int = 0,
) -> PreparedConv:
    """Resolve the kernel and defaults, validate everything and check the limits.

    With a preset, padding defaults to 'same' and padding_mode to 'reflect'; with a kernel to
    0 and 'zeros'. An explicit value always wins.
    """
    x = decoded.array[np.newaxis]
    c_in = x.shape[1]
    if preset is not None:
        resolved = resolve_preset(preset, c_in, preset_params, decoded.channel_names)
        weight, bias = resolved.weight, resolved.bias
        if groups is not None and groups != resolved.groups:
            raise InvalidArgumentError(
                f"groups={groups} conflicts with preset {preset!r}, which needs "
                f"groups={resolved.groups} for {c_in} input channels ({resolved.rule} rule); "
                "leave groups out or send an explicit kernel",
                field="groups",
            )
        groups = resolved.groups
        kernel_info = {
            "source": "preset",
            "name": resolved.name,
            "rule": resolved.rule,
            "params": resolved.params,
            "weight_shape": list(weight.shape),
            "bias": None if bias is None else bias.tolist(),
        }
        output_names = tuple(resolved.output_names)
        default_padding: Any = "same"
        default_mode = "reflect"
    else:
        assert kernel is not None
        weight, bias = _kernel_arrays(kernel.get("weight"), kernel.get("bias"),
                                      kernel.get("layout", "OIHW"))
        groups = 1 if groups is None else groups
        kernel_info = {
            "source": "kernel",
            "layout": kernel.get("layout", "OIHW"),
            "weight_shape": list(weight.shape),
            "bias": None if bias is None else bias.tolist(),
        }
        output_names = tuple(str(i) for i in range(weight.shape[0]))
        default_padding = 0
        default_mode = "zeros"
    try:
        spec = conv_spec(
            x.shape,
            weight.shape,
            None if bias is None else bias.shape,
            stride=stride,
            padding=default_padding if padding is None else padding,
            dilation=dilation,
            groups=groups,
            padding_mode=default_mode if padding_mode is None else padding_mode,
        )
    except ConvServeError as exc:
        if kernel is not None and exc.field in ("weight", "bias"):
            raise exc.with_field("kernel") from None  # the field the caller sent
        raise
    check_limits(spec, settings, macs_so_far)
    check_tensor_values(
        f"the output {spec.out_channels}x{spec.out_height}x{spec.out_width}",
        spec.out_channels * spec.out_height * spec.out_width, settings,
        "kernel" if kernel is not None else "preset",
    )
    kernel_info["groups"] = spec.groups
    return PreparedConv(
        x=x,
        weight=weight,
        bias=bias,
        spec=spec,
        decoded=decoded,
        kernel_info=kernel_info,
        range_preserving=is_range_preserving(weight, bias),
        output_names=output_names,
        engine=engine or settings.engine,
        device=device or settings.device,
    )


def run_convolution(
    prepared: PreparedConv,
    engine: Engine,
    observe: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Run the prepared convolution; returns float32 (C_out, H_out, W_out)."""
    started = time.perf_counter()
    y = engine.conv2d(prepared.x, prepared.weight, prepared.bias, prepared.spec,
                      prepared.device)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    prepared.timing_ms["convolve"] = round(1000 * elapsed, 3)
    if observe is not None:
        observe(elapsed)
    maps: np.ndarray = y[0]
    return maps


def channel_stats(y: np.ndarray) -> list[dict[str, float]]:
    """min, max and mean of each channel of float32 (C, H, W), computed in float64."""
    flat = y.reshape(y.shape[0], -1)
    mins, maxs = flat.min(axis=1), flat.max(axis=1)
    means = flat.mean(axis=1, dtype=np.float64)
    return [
        {"min": float(lo), "max": float(hi), "mean": float(m)}
        for lo, hi, m in zip(mins, maxs, means, strict=True)
    ]


def resolved_normalize(mode: str, range_preserving: bool) -> imaging.NormalizeMode:
    """The mode ``auto`` stands for: clip for range-preserving kernels, else minmax."""
    if mode == "auto":
        return "clip" if range_preserving else "minmax"
    return cast(imaging.NormalizeMode, mode)


def describe(prepared: PreparedConv, normalize: str) -> dict[str, Any]:
    """The metadata every JSON answer carries (shapes, options used, cost)."""
    spec = prepared.spec
    return {
        "shape": [spec.out_channels, spec.out_height, spec.out_width],
        "engine": prepared.engine,
        "device": prepared.device,
        "padding": list(spec.pads),
        "padding_mode": spec.padding_mode,
        "stride": list(spec.stride),
        "dilation": list(spec.dilation),
        "groups": spec.groups,
        "normalize": resolved_normalize(normalize, prepared.range_preserving),
        "input": prepared.decoded.to_dict(),
        "kernel": prepared.kernel_info,
        "cost": cost_of(spec),
    }


def render_result(
    y: np.ndarray,
    prepared: PreparedConv,
    *,
    fmt: str,
    normalize: str,
    channel: int | None,
    settings: Settings,
    executor: Executor | None,
) -> EncodedResult:
    """Encode float32 (C_out, H, W) as the requested format."""
    started = time.perf_counter()
    level = settings.png_compress_level
    c_out = y.shape[0]
    mode = resolved_normalize(normalize, prepared.range_preserving)
    if channel is not None and not 0 <= channel < c_out:
        raise InvalidArgumentError(
            f"channel={channel} is outside [0, {c_out}): the output has {c_out} channel(s)",
            field="channel",
        )
    result: EncodedResult
    if fmt == "npy":
        result = EncodedResult("application/octet-stream", body=imaging.encode_npy(y),
                               filename="convserve.npy")
    elif fmt == "array":
        if y.size > settings.max_array_values:
            raise LimitExceededError(
                f"format=array would return {y.size} numbers, more than the limit of "
                f"{settings.max_array_values} (CONVSERVE_MAX_ARRAY_VALUES); use format=npy",
                field="format",
            )
        payload = describe(prepared, normalize)
        payload.update({"dtype": "float32", "data": y.tolist()})
        result = EncodedResult("application/json", payload=payload)
    elif fmt == "png":
        index = 0 if channel is None else channel
        pixels = imaging.to_pixels(y[index:index + 1], mode,
                                   range_preserving=prepared.range_preserving)
        result = EncodedResult("image/png", body=imaging.encode_png(pixels[0], level=level),
                               filename=f"channel_{index:03d}.png")
    else:
        pixels = imaging.to_pixels(y, mode, range_preserving=prepared.range_preserving)
        if fmt == "image":
            result = EncodedResult("image/png", body=imaging.compose_png(pixels, level=level),
                                   filename="image.png")
        elif fmt == "grid":
            result = EncodedResult("image/png", body=imaging.grid_png(pixels, level=level),
                                   filename="grid.png")
        else:
            result = _per_channel_result(y, pixels, prepared, fmt, normalize, level, executor)
    prepared.timing_ms["encode"] = _ms(started)
    if result.payload is not None:
        result.payload["timing_ms"] = prepared.timing_ms
    return result


def _per_channel_result(
    y: np.ndarray,
    pixels: np.ndarray,
    prepared: PreparedConv,
    fmt: str,
    normalize: str,
    level: int,
    executor: Executor | None,
) -> EncodedResult:
    """format=json (base64 PNG per channel) or zip (PNG files plus manifest.json)."""
    c_out = y.shape[0]
    pngs = imaging.encode_pngs(pixels, level=level, executor=executor)
    stats = channel_stats(y)
    names = [prepared.output_names[i] if i < len(prepared.output_names) else str(i)
             for i in range(c_out)]
    payload = describe(prepared, normalize)
    if fmt == "zip":
        payload["channels"] = [
            {"index": i, "name": names[i], "file": f"channel_{i:03d}.png", **stats[i]}
            for i in range(c_out)
        ]
        return EncodedResult("application/zip", body=imaging.zip_pngs(pngs, payload),
                             filename="convserve.zip")
    payload["channels"] = [
        {"index": i, "name": names[i], **stats[i],
         "png_base64": base64.b64encode(pngs[i]).decode("ascii")}
        for i in range(c_out)
    ]
    return EncodedResult("application/json", payload=payload)


def parse_json_field(name: str, text: str) -> Any:
    """Parse a JSON-valued multipart field, with a 422 naming the field when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"{name} is not valid JSON: {exc}", field=name) from None
