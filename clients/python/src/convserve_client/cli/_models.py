"""``convserve model ...``: upload ONNX models and look inside them.

    convserve model upload cnn.onnx [--input-size 224,224]
    convserve model list | show ID | delete ID
    convserve model features ID cat.png --layers conv1,relu1 [--preprocess imagenet] -o maps/
    convserve model features ID photos/ -r --layers conv1 --format npy -o maps/  (a batch)
    convserve model kernel ID conv1 [-o kernel.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from convserve_client._async_client import AsyncClient
from convserve_client._client import Client
from convserve_client._model_types import FeatureMaps, ModelInfo
from convserve_client._types import DEVICES
from convserve_client.cli._args import EXIT_OK, UsageError, load_input, read_json
from convserve_client.cli._batch import (
    Batch,
    add_batch_options,
    add_inputs,
    batch_sources,
    run_batch,
    single_file,
)
from convserve_client.cli._text import print_json, write_output

__all__ = ["add_model_commands"]

FEATURES_SUFFIXES: dict[str, str | None] = {"json": None, "npy": ".npy", "zip": ".zip",
                                            "grid": ".png"}
"""A batch's output per input: a folder of channel PNGs per layer (json), or one file."""


def _size(text: str) -> tuple[int, int]:
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input-size is H,W like 224,224; got {text!r}") from None
    return h, w


def _table(info: ModelInfo) -> str:
    lines = [f"id        {info.id}",
             f"input     {info.input.name} {list(info.input.shape)} {info.input.layout}",
             f"params    {info.total_params:,}", f"macs      {info.total_macs:,}"]
    if info.layers:
        width = max(len(row.name) for row in info.layers)
        lines.append(f"{'#':>4}  {'name':<{width}}  {'op':<18} {'output':<18} {'params':>12} "
                     f"{'macs':>14}")
        lines += [f"{row.index:>4}  {row.name:<{width}}  {row.op:<18} "
                  f"{'x'.join(map(str, row.output_shape)):<18} {row.params:>12,} {row.macs:>14,}"
                  for row in info.layers]
    return "\n".join(lines)


def cmd_upload(cs: Client, args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise UsageError(f"cannot read model {args.file!r}: no such file")
    info = cs.upload_model(args.file, input_size=args.input_size)
    if args.json:
        print_json(info.raw)
    else:
        print(_table(info))
        print("stored" if info.created_now else "already stored (same id)")
    return EXIT_OK


def cmd_list(cs: Client, args: argparse.Namespace) -> int:
    models = cs.models()
    if args.json:
        print_json({"models": [m.raw for m in models]})
        return EXIT_OK
    for m in models:
        print(f"{m.id}  {m.filename or '-'}  {list(m.input.shape)} {m.input.layout}  "
              f"{m.total_params:,} params  {m.created}")
    return EXIT_OK


def cmd_show(cs: Client, args: argparse.Namespace) -> int:
    info = cs.model(args.id)
    if args.json:
        print_json(info.raw)
    else:
        print(_table(info))
    return EXIT_OK


def cmd_delete(cs: Client, args: argparse.Namespace) -> int:
    cs.delete_model(args.id)
    print(f"deleted {args.id}")
    return EXIT_OK


def _preprocess(text: str | None) -> str | dict[str, Any] | None:
    if text is None or text in ("none", "imagenet"):
        return text
    value = read_json(text, "preprocess")
    if not isinstance(value, dict):
        raise UsageError("--preprocess is none, imagenet or a JSON object")
    return value


def _layers(text: str) -> list[str | int]:
    return [int(p) if p.strip().isdigit() else p.strip() for p in text.split(",") if p.strip()]


def cmd_features(cs: Client, args: argparse.Namespace) -> int:
    layers = _layers(args.layers)
    preprocess = _preprocess(args.preprocess)
    sources = batch_sources(args.image, args.recursive)
    if sources is not None:
        suffix = FEATURES_SUFFIXES[args.format]

        async def send(client: AsyncClient, image: Any) -> FeatureMaps:
            return await client.features(args.id, image, layers, preprocess=preprocess,
                                         format=args.format, normalize=args.normalize,
                                         color_mode=args.color_mode, device=args.device)

        files = FeatureMaps.files if suffix is None else single_file
        return run_batch(args, Batch(send, files, suffix), sources)
    maps = cs.features(args.id, load_input(args.image[0]), layers, preprocess=preprocess,
                       format=args.format, normalize=args.normalize,
                       color_mode=args.color_mode, device=args.device)
    if args.format != "json":
        if args.output is None:
            raise UsageError(f"--format {args.format} needs -o FILE (or - for stdout)")
        assert maps.content is not None
        write_output(args.output, maps.content)
        return EXIT_OK
    if args.json:
        print_json(maps.raw)
    for layer in maps.layers:
        print(f"{layer.index:>4} {layer.name} ({layer.op}) {'x'.join(map(str, layer.shape))}")
        for channel in layer.channels:
            s = channel.stats
            print(f"     channel {channel.index}: min {s.min:.6g}  max {s.max:.6g}  "
                  f"mean {s.mean:.6g}")
        if args.output is not None:
            folder = Path(args.output) / f"{layer.index:03d}"
            for channel in layer.channels:
                if channel.png is not None:
                    write_output(str(folder / f"channel_{channel.index:03d}.png"), channel.png)
    return EXIT_OK


def cmd_kernel(cs: Client, args: argparse.Namespace) -> int:
    kernel = cs.model_kernel(args.id, args.layer)
    if args.json:
        print_json(kernel.raw)
    else:
        print(f"layer     {kernel.layer.name} (index {kernel.layer.index}) reads {kernel.input}")
        print(f"weight    {' x '.join(map(str, kernel.weight.shape))} (OIHW)"
              f"{'' if kernel.bias is None else ' + bias'}")
        print(f"stride {list(kernel.stride)}  padding {list(kernel.padding)} (top, bottom, left, "
              f"right)  dilation {list(kernel.dilation)}  groups {kernel.groups}")
    if args.output is not None:
        spec = {"weight": kernel.raw["weight"], "bias": kernel.raw["bias"], "layout": "OIHW"}
        write_output(args.output, json.dumps(spec).encode())
    return EXIT_OK


def add_model_commands(commands: Any) -> None:
    """Add ``model`` and its subcommands to the ``convserve`` parser's subcommands."""
    model = commands.add_parser("model", help="upload ONNX models and look inside them",
                                description="Upload ONNX models, list, show and delete them, "
                                            "and get feature maps and Conv kernels.")
    sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = sub.add_parser("upload", help="upload an .onnx file (its layer table back)")
    p.add_argument("file", metavar="MODEL.onnx")
    p.add_argument("--input-size", type=_size, metavar="H,W",
                   help="for a model whose input size is dynamic")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_upload, parser=p)

    p = sub.add_parser("list", help="stored models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_list, parser=p)

    p = sub.add_parser("show", help="a model's layer table")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_show, parser=p)

    p = sub.add_parser("delete", help="delete a stored model")
    p.add_argument("id")
    p.set_defaults(run=cmd_delete, parser=p)

    p = sub.add_parser("features", help="feature maps of some layers for an image, or many",
                       description="Feature maps of some layers of a stored model for an "
                                   "image, or for many (a batch: give -o DIR).")
    p.add_argument("id")
    add_inputs(p)
    p.add_argument("--layers", required=True, metavar="NAME,INDEX,...",
                   help="node output names or row indices, comma-separated")
    p.add_argument("--preprocess", metavar="SPEC",
                   help='none (default), imagenet, or JSON {"resize": "stretch", ...}')
    p.add_argument("--format", default="json", choices=("json", "npy", "zip", "grid"))
    p.add_argument("--normalize", choices=("auto", "clip", "minmax", "abs", "symmetric"))
    p.add_argument("--color-mode", choices=("rgb", "gray", "rgba", "keep"))
    p.add_argument("--device", choices=DEVICES,
                   help="cpu or cuda (default: the server's CONVSERVE_DEVICE)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="directory for the PNGs (json), or file (npy, zip, grid); - for "
                        "stdout; a batch's directory (<input>/<layer>/channel_<k>.png for "
                        "json, <input>.npy, .zip or .png)")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    add_batch_options(p)
    p.set_defaults(run=cmd_features, parser=p)

    p = sub.add_parser("kernel", help="a Conv layer's weights and geometry")
    p.add_argument("id")
    p.add_argument("layer", help="the layer's name or row index")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write a kernel.json for convserve convolve --kernel")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_kernel, parser=p)
