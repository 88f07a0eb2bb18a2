"""The commands: each takes the client and the parsed arguments, returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from convserve_client._async_client import AsyncClient
from convserve_client._client import Client
from convserve_client._models import ConvolveResult, LayersResult
from convserve_client._types import ConvolveFormat
from convserve_client.cli._args import (
    EXIT_API_ERROR,
    EXIT_OK,
    FILE_FORMATS,
    UsageError,
    conv_kwargs,
    load_input,
    read_json,
    read_kernel_file,
)
from convserve_client.cli._batch import Batch, batch_sources, run_batch, single_file
from convserve_client.cli._text import (
    convolve_text,
    explain_text,
    is_dir_target,
    layers_text,
    print_json,
    write_output,
)

__all__ = [
    "cmd_convolve",
    "cmd_engines",
    "cmd_explain",
    "cmd_health",
    "cmd_layers",
    "cmd_preset",
    "cmd_presets",
]


CONVOLVE_SUFFIXES: dict[str, str | None] = {
    "json": None, "array": ".npy", "npy": ".npy", "png": ".png", "image": ".png",
    "grid": ".png", "zip": ".zip",
}
"""A batch's output per input: a folder of channel PNGs (json), or one file."""
LAYERS_SUFFIXES: dict[str, str | None] = {"json": None, "npy": ".npy", "zip": ".zip",
                                          "onnx": ".onnx"}


def cmd_convolve(cs: Client, args: argparse.Namespace) -> int:
    kwargs = conv_kwargs(args)
    fmt = args.format
    sources = batch_sources(args.image, args.recursive)
    if sources is not None:
        suffix = CONVOLVE_SUFFIXES[fmt]
        # json's folder of channel PNGs comes whole in a zip answer: the same PNGs, without
        # base64 and a JSON parse of them (the client's largest cost per image).
        wire: ConvolveFormat = "zip" if fmt == "json" else fmt

        async def send(client: AsyncClient, image: Any) -> ConvolveResult:
            return await client.convolve(image, format=wire, normalize=args.normalize,
                                         channel=args.channel, **kwargs)

        files = ConvolveResult.files if suffix is None else single_file
        return run_batch(args, Batch(send, files, suffix), sources)
    image = load_input(args.image[0])
    if fmt in FILE_FORMATS and args.output is None and not args.dry_run:
        raise UsageError(f"--format {fmt} returns a file: give -o FILE (or -o - for stdout)")
    result = cs.convolve(image, format=fmt, normalize=args.normalize, channel=args.channel,
                         dry_run=args.dry_run, **kwargs)
    out = args.output
    if out is not None and not result.dry_run:
        _write_single(result, out, fmt)
    if out == "-":
        return EXIT_OK
    if args.json and result.raw:
        print_json(dict(result.raw))
    else:
        print(convolve_text(result))
    return EXIT_OK



def _write_single(result: ConvolveResult | LayersResult, out: str, fmt: str) -> None:
    """Write one answer to ``out``: json as a folder of channel files (so does any format to a
    folder), format=array as its JSON, every other format as the file it is."""
    if fmt == "json" or is_dir_target(out):
        for path in result.save(out):
            print(f"wrote {path}", file=sys.stderr)
    elif fmt == "array":
        write_output(out, json.dumps(dict(result.raw)).encode())
    else:
        assert result.content is not None
        write_output(out, result.content)


def cmd_explain(cs: Client, args: argparse.Namespace) -> int:
    kwargs = conv_kwargs(args)
    result = cs.explain(load_input(args.image), at=args.at, **kwargs)
    if args.json:
        print_json(dict(result.raw))
    else:
        print(explain_text(result))
    return EXIT_OK



def cmd_layers(cs: Client, args: argparse.Namespace) -> int:
    stack = read_json(args.layers, "layers")
    if isinstance(stack, dict) and "layers" in stack:
        stack = stack["layers"]
    if not isinstance(stack, list):
        raise UsageError(f"--layers {args.layers!r} must hold a JSON list of layer objects")
    weights = read_kernel_file(args.kernel_file)
    fmt = args.format
    sources = batch_sources(args.image, args.recursive)
    if sources is not None:
        suffix = LAYERS_SUFFIXES[fmt]

        async def send(client: AsyncClient, image: Any) -> LayersResult:
            return await client.layers(image, layers=stack, return_=args.return_, format=fmt,
                                       normalize=args.normalize, color_mode=args.color_mode,
                                       engine=args.engine, device=args.device,
                                       kernel_file=weights)

        files = LayersResult.files if suffix is None else single_file
        return run_batch(args, Batch(send, files, suffix), sources)
    if fmt in ("npy", "onnx") and args.output is None and not args.dry_run:
        raise UsageError(f"--format {fmt} returns a file: give -o FILE (or -o - for stdout)")
    result = cs.layers(load_input(args.image[0]), layers=stack, return_=args.return_, format=fmt,
                       normalize=args.normalize, color_mode=args.color_mode,
                       engine=args.engine, device=args.device, dry_run=args.dry_run,
                       kernel_file=weights)
    out = args.output
    if out is not None and not result.dry_run:
        _write_single(result, out, fmt)
    if out == "-":
        return EXIT_OK
    if args.json and result.raw:
        print_json(dict(result.raw))
    elif result.layers:
        print(layers_text(result))
    elif result.output_shape is not None:
        print(f"output shape {tuple(result.output_shape)}")
    return EXIT_OK


def cmd_presets(cs: Client, args: argparse.Namespace) -> int:
    presets = cs.presets()
    if args.json:
        print_json([dict(p.raw) for p in presets])
        return EXIT_OK
    width = max(len(p.name) for p in presets)
    for p in presets:
        params = ", ".join(f"{q.name}={q.default}" for q in p.parameters)
        rule = p.rule + (", range-preserving" if p.range_preserving else "")
        print(f"{p.name:<{width}}  [{rule}]  {p.description}"
              + (f"  ({params})" if params else ""))
    return EXIT_OK


def cmd_preset(cs: Client, args: argparse.Namespace) -> int:
    resolved = cs.preset(args.name, channels=args.channels,
                         params=dict(args.param) if args.param else None)
    if args.output is not None:
        kernel = {"weight": resolved.weight.tolist(),
                  "bias": None if resolved.bias is None else resolved.bias.tolist()}
        write_output(args.output, (json.dumps(kernel) + "\n").encode())
    if args.json:
        print_json(dict(resolved.raw))
        return EXIT_OK
    print(f"{resolved.name} for {args.channels} input channel(s): weight "
          f"{tuple(resolved.weight.shape)} (c_out, c_in/groups, k_h, k_w), groups "
          f"{resolved.groups}" + (f", rule {resolved.rule}" if resolved.rule else ""))
    if resolved.params:
        print("params " + ", ".join(f"{k}={v}" for k, v in resolved.params.items()))
    with np.printoptions(precision=4, suppress=True, linewidth=100):
        for o, name in enumerate(resolved.output_names):
            print(f"output {o} ({name}):")
            print(np.array2string(resolved.weight[o], prefix="  "))
        if resolved.bias is not None:
            print(f"bias {resolved.bias}")
    if args.output is not None and resolved.groups != 1:
        print(f"note: apply {args.output} with --groups {resolved.groups}", file=sys.stderr)
    return EXIT_OK


def cmd_engines(cs: Client, args: argparse.Namespace) -> int:
    info = cs.engines()
    if args.json:
        print_json(dict(info.raw))
        return EXIT_OK
    print(f"default: {info.default_engine} on {info.default_device}")
    for engine in info.engines:
        for device in engine.devices:
            state = "available" if device.available else f"unavailable: {device.reason}"
            print(f"{engine.name} {engine.version} {device.device}: {state}")
    return EXIT_OK


def cmd_health(cs: Client, args: argparse.Namespace) -> int:
    health = cs.health()
    ready = cs.ready()
    print(f"live: {health.status}")
    if ready.ready:
        print(f"ready: yes ({ready.engine} on {ready.device})")
        return EXIT_OK
    print(f"ready: no ({ready.detail})")
    return EXIT_API_ERROR


