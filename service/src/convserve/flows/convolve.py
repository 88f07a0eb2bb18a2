"""``/v1/convolve``: decode, resolve the kernel, check the limits, convolve, encode.

:func:`prepare_convolution` and :func:`run_convolution` are shared with ``/v1/explain``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convserve import imaging
from convserve.conv.presets import is_range_preserving
from convserve.conv.spec import ConvSpec, conv_spec
from convserve.errors import ConvServeError, InvalidArgumentError
from convserve.flows.bands import convolve_in_bands, needs_bands
from convserve.flows.context import FlowContext
from convserve.flows.cost import layer_cost
from convserve.flows.inputs import Source, decode_source
from convserve.flows.kernels import layer_kernel
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

__all__ = [
    "PreparedConv",
    "convolve",
    "describe",
    "prepare_convolution",
    "render",
    "run_convolution",
]


@dataclass
class PreparedConv:
    """A validated convolution, ready to run: arrays, spec and what the answer reports."""

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
    input_info: dict[str, Any] = field(default_factory=dict)
    """``decoded.to_dict()``, taken before :meth:`release_input` may drop the array."""

    @property
    def x(self) -> np.ndarray:
        """The input as float32 (1, C_in, H, W) (made once from the decoded samples)."""
        return self.decoded.array[np.newaxis]

    def release_input(self) -> None:
        """Drop the input once it is convolved, so that encoding the answer does not hold it
        too: ``decoded`` becomes an empty array (``input_info`` keeps what answers report)."""
        self.decoded = dataclasses.replace(
            self.decoded, samples=np.empty((self.decoded.shape[0], 0, 0), np.float32),
            scale=None, planar=True,
        )

    def outcome(self, result: EncodedResult) -> Outcome:
        """``result`` with the shape, padding, engine and timings this layer reports."""
        spec = self.spec
        return Outcome(result, (spec.out_channels, spec.out_height, spec.out_width),
                       self.engine, self.device, spec.pads, self.timing_ms)


def prepare_convolution(
    decoded: imaging.DecodedInput,
    options: Mapping[str, Any],
    limits: Limits,
    *,
    default_engine: str,
    default_device: str,
) -> PreparedConv:
    """Resolve the kernel and its defaults (see :mod:`convserve.flows.kernels`), validate every
    option against the input and check the limits.

    ``options`` holds the layer fields of the request (``kernel`` or ``preset``,
    ``preset_params``, ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``)
    and ``engine`` and ``device`` (None for the defaults).
    """
    x_shape = (1, *decoded.shape)  # the float32 array itself is made when convolving
    kernel = layer_kernel(options, x_shape[1], decoded.channel_names)
    from_json = options.get("preset") is None
    try:
        spec = conv_spec(
            x_shape, kernel.weight.shape, None if kernel.bias is None else kernel.bias.shape,
            stride=options["stride"], padding=kernel.padding, dilation=options["dilation"],
            groups=kernel.groups, padding_mode=kernel.padding_mode,
        )
    except ConvServeError as exc:
        if from_json and exc.field in ("weight", "bias"):
            raise exc.with_field("kernel") from None  # the field the caller sent
        raise
    field_name = "kernel" if from_json else "preset"
    limits.check_kernel_size(spec.kernel_h, spec.kernel_w)
    limits.check_out_channels(spec.out_channels)
    limits.check_macs(spec.macs)
    limits.check_output_bytes(
        f"the output {spec.out_channels}x{spec.out_height}x{spec.out_width}",
        spec.out_channels * spec.out_height * spec.out_width, field=field_name,
    )
    info = {**kernel.info, "weight_shape": list(kernel.weight.shape),
            "bias": None if kernel.bias is None else kernel.bias.tolist(), "groups": spec.groups}
    return PreparedConv(
        weight=kernel.weight, bias=kernel.bias, spec=spec, decoded=decoded,
        kernel_info=info, range_preserving=is_range_preserving(kernel.weight, kernel.bias),
        output_names=kernel.output_names,
        engine=options.get("engine") or default_engine,
        device=options.get("device") or default_device,
        input_info=decoded.to_dict(),
    )


def run_convolution(prepared: PreparedConv, ctx: FlowContext) -> np.ndarray:
    """Run the prepared convolution on its engine; returns float32 (C_out, H_out, W_out)."""
    started = time.perf_counter()
    device: Any = prepared.device
    plan = None
    banded = needs_bands(prepared.decoded)
    if prepared.engine == "auto" and banded:
        # Above WHOLE_BYTES memory decides, not speed: ONNX Runtime in bands from the decoded
        # samples is the path the admission estimate (flows.memory) reserves for.
        prepared.engine = "onnxruntime"
    elif prepared.engine == "auto":
        # Every input a flow sees is finite (images by construction; arrays, .npy files and
        # float TIFFs are refused with a 422 otherwise), so OpenCV may skip zero taps.
        plan = ctx.auto.plan(prepared.spec, prepared.weight, device, finite_input=True)
        prepared.engine = plan.engine  # the answer names the engine that ran
    if plan is not None:  # its engine may be OpenCV, which only auto runs
        y = ctx.auto.run(plan, prepared.x, prepared.weight, prepared.bias, prepared.spec, device)
    elif prepared.engine == "onnxruntime" and banded:
        # A large image: never the whole float32 input, nor ONNX Runtime's padded copy of it.
        engine = ctx.engine(prepared.engine)
        y = convolve_in_bands(
            prepared.decoded, prepared.spec,
            lambda band, spec: engine.conv2d(band, prepared.weight, prepared.bias, spec, device),
        )
    else:
        y = ctx.engine(prepared.engine).conv2d(prepared.x, prepared.weight, prepared.bias,
                                               prepared.spec, device)
    seconds = time.perf_counter() - started
    prepared.timing_ms["convolve"] = round(1000 * seconds, 3)
    ctx.observe_convolution(prepared.engine, prepared.device, seconds)
    ctx.observe_stage("convolve", seconds)
    maps: np.ndarray = y[0]
    return maps


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
        "input": prepared.input_info,
        "kernel": prepared.kernel_info,
        "cost": layer_cost(spec),
    }


def render(
    y: np.ndarray,
    prepared: PreparedConv,
    ctx: FlowContext,
    *,
    fmt: str,
    normalize: str,
    channel: int | None,
    owned: bool = False,
) -> EncodedResult | dict[str, Any]:
    """Encode float32 (C_out, H, W) as ``fmt``: a file, or a JSON payload (carrying
    :func:`describe`) that :func:`~convserve.flows.render.finish` serialises once the request's
    timings are complete. PNGs are written from ``y`` band by band (no full-size pixel array);
    with ``owned`` the caller gives ``y`` up, and a grid quantises it in place (it must not be
    read afterwards)."""
    started = time.perf_counter()
    level = ctx.settings.png_compress_level
    c_out = y.shape[0]
    mode = resolved_normalize(normalize, prepared.range_preserving)
    if channel is not None and not 0 <= channel < c_out:
        raise InvalidArgumentError(
            f"channel={channel} is outside [0, {c_out}): the output has {c_out} channel(s)",
            field="channel",
        )
    payload: dict[str, Any] | None = None
    result: EncodedResult | None = None
    if fmt == "npy":
        result = EncodedResult("application/octet-stream", imaging.encode_npy(y),
                               "convserve.npy")
    elif fmt == "array":
        ctx.limits.check_array_answer(y.size)
        payload = {**describe(prepared, normalize), "dtype": "float32", "data": y.tolist()}
    elif fmt == "png":
        index = 0 if channel is None else channel
        body = imaging.maps_pngs(y[index:index + 1], mode,
                                 range_preserving=prepared.range_preserving, level=level,
                                 executor=ctx.encoder)[0]
        result = EncodedResult("image/png", body, imaging.channel_png_name(index))
    elif fmt == "image":
        # Each band of rows is quantised, filtered and deflated where it is needed.
        body = imaging.maps_png(y, mode, range_preserving=prepared.range_preserving,
                                level=level, executor=ctx.encoder)
        result = EncodedResult("image/png", body, "image.png")
    elif fmt == "grid":
        pixels = imaging.to_pixels(y, mode, range_preserving=prepared.range_preserving,
                                   overwrite=owned)
        result = EncodedResult("image/png", imaging.grid_png(pixels, level=level), "grid.png")
    else:  # json or zip: one PNG per channel
        channels, pngs = pngs_of(y, mode, prepared.range_preserving, level, ctx.encoder)
        del y  # freed here when the caller handed it over: base64 and JSON need only the PNGs
        names = [prepared.output_names[i] if i < len(prepared.output_names) else str(i)
                 for i in range(c_out)]
        for entry in channels:
            entry["name"] = names[entry["index"]]
        payload = describe(prepared, normalize)
        if fmt == "zip":
            payload["channels"] = [{**entry, "file": imaging.channel_png_name(entry["index"])}
                                   for entry in channels]
            result = EncodedResult("application/zip", imaging.zip_pngs(pngs, payload),
                                   "convserve.zip")
            payload = None
        else:
            payload["channels"] = channels_json(channels, pngs)
    prepared.timing_ms["encode"] = elapsed_ms(started)
    ctx.observe_stage("encode", time.perf_counter() - started)
    if payload is not None:
        return payload
    assert result is not None
    return result


def convolve(
    ctx: FlowContext,
    source: Source,
    options: Mapping[str, Any],
    *,
    fmt: str = "json",
    normalize: str = "auto",
    channel: int | None = None,
    dry_run: bool = False,
) -> Outcome:
    """One convolution layer over one input: the whole ``/v1/convolve`` request.

    ``options`` as :func:`prepare_convolution` takes them. With ``dry_run`` the answer describes
    the layer (shapes, padding, cost) without computing it.
    """
    started = time.perf_counter()
    decoded = decode_source(source, ctx.limits)
    decode_ms = elapsed_ms(started)
    ctx.observe_stage("decode", decode_ms / 1000)
    prepared = prepare_convolution(decoded, options, ctx.limits,
                                   default_engine=ctx.settings.engine,
                                   default_device=ctx.settings.device)
    del decoded  # prepared holds it, until release_input
    prepared.timing_ms["decode"] = decode_ms
    rendered: EncodedResult | dict[str, Any]
    if dry_run:
        rendered = {**describe(prepared, normalize), "dry_run": True, "channels": []}
    else:
        held = [run_convolution(prepared, ctx)]
        prepared.release_input()
        # Popped, the maps are referenced by render alone, which frees them once encoded.
        rendered = render(held.pop(), prepared, ctx, fmt=fmt, normalize=normalize,
                          channel=channel, owned=True)
    answer = serialise(rendered)
    if not dry_run:
        prepared.timing_ms["total"] = elapsed_ms(started)
    return prepared.outcome(finish(answer, prepared.timing_ms))

