"""The argument parser of ``convserve``: global options, then one subcommand."""

from __future__ import annotations

import argparse
import os

from convserve_client._constants import API_KEY_ENV, DEFAULT_BASE_URL, URL_ENV
from convserve_client._types import (
    COLOR_MODES,
    CONVOLVE_FORMATS,
    DEVICES,
    ENGINES,
    LAYERS_FORMATS,
    LAYOUTS,
    NORMALIZE_MODES,
    PADDING_MODES,
    RETURNS,
)
from convserve_client._version import __version__
from convserve_client.cli._args import (
    padding_arg,
    pair_arg,
    param_arg,
    position_arg,
)
from convserve_client.cli._batch import add_batch_options, add_inputs
from convserve_client.cli._commands import (
    cmd_convolve,
    cmd_engines,
    cmd_explain,
    cmd_health,
    cmd_layers,
    cmd_preset,
    cmd_presets,
)
from convserve_client.cli._models import add_model_commands

__all__ = ["build_parser"]


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="INPUT",
                        help="image file (PNG, JPEG, WebP, BMP, TIFF, GIF), .npy array (C, H, W) "
                             "or (H, W), .json nested lists, or - for stdin")


def _add_conv_options(parser: argparse.ArgumentParser) -> None:
    kernel = parser.add_argument_group("kernel (give exactly one of --kernel and --preset)")
    kernel.add_argument("--kernel", metavar="FILE",
                        help='JSON file (or inline JSON): {"weight": [...], "bias": [...], '
                             '"layout": "OIHW"} or the bare weight list')
    kernel.add_argument("--bias", metavar="B0,B1,...", help="one number per output channel")
    kernel.add_argument("--layout", choices=LAYOUTS, help="weight layout (OIHW)")
    kernel.add_argument("--preset", metavar="NAME", help="a preset name (see: convserve presets)")
    kernel.add_argument("--param", metavar="NAME=VALUE", type=param_arg, action="append",
                        default=[], help="preset parameter, repeatable (sigma=2)")
    conv = parser.add_argument_group("convolution")
    conv.add_argument("--stride", type=pair_arg("stride"), metavar="S|SH,SW")
    conv.add_argument("--padding", type=padding_arg, metavar="P",
                      help="P, PH,PW, TOP,BOTTOM,LEFT,RIGHT, same or valid "
                           "(default 0 with --kernel, same with --preset)")
    conv.add_argument("--dilation", type=pair_arg("dilation"), metavar="D|DH,DW")
    conv.add_argument("--groups", type=int, metavar="G")
    conv.add_argument("--padding-mode", choices=PADDING_MODES)
    _add_runtime_options(conv)


def _add_runtime_options(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument("--engine", choices=ENGINES)
    group.add_argument("--device", choices=DEVICES)
    group.add_argument("--color-mode", choices=COLOR_MODES,
                       help="how an image becomes channels (rgb)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convserve",
        description="Apply convolution layers to images with a convserve server.",
        epilog="Exit status: 0 ok, 1 the server answered with an error (or an input of a "
               "batch failed), 2 usage error, 3 server unreachable or no answer in time, "
               "130 interrupted.",
    )
    parser.add_argument("--url", default=os.environ.get(URL_ENV) or DEFAULT_BASE_URL,
                        help=f"server URL (${URL_ENV}; default {DEFAULT_BASE_URL})")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"API key (${API_KEY_ENV})")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="per request (default 60)")
    parser.add_argument("--max-retries", type=int, default=2, metavar="N",
                        help="retries on connection errors, 429 and 503 (default 2)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("convolve", help="apply one convolution layer",
                            description="Apply one convolution layer to an image or array, "
                                        "or to many (a batch: give -o DIR).")
    add_inputs(p)
    _add_conv_options(p)
    out = p.add_argument_group("output")
    out.add_argument("--format", default="json",
                     choices=CONVOLVE_FORMATS,
                     help="json (default): statistics and one PNG per channel; npy: float32 "
                          "(c_out, h, w); png: one channel; image, grid, zip")
    out.add_argument("--normalize", choices=NORMALIZE_MODES)
    out.add_argument("--channel", type=int, metavar="K", help="channel of --format png")
    out.add_argument("-o", "--output", metavar="PATH",
                     help="directory for one PNG per channel (json), or file (npy, png, ...); "
                          "- for stdout")
    out.add_argument("--dry-run", action="store_true", help="shapes and cost only")
    out.add_argument("--json", action="store_true", help="print the JSON answer")
    add_batch_options(p)
    p.set_defaults(run=cmd_convolve, parser=p)

    p = commands.add_parser("explain", help="show the arithmetic of one output element",
                            description="Show how one output element is computed.")
    _add_input(p)
    p.add_argument("--at", type=position_arg, required=True, metavar="C,Y,X",
                   help="output channel, row and column")
    _add_conv_options(p)
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(run=cmd_explain, parser=p)

    p = commands.add_parser("layers", help="run a stack of layers",
                            description="Run a stack of layers (conv2d, activations, pooling) "
                                        "over an image, or over many (a batch: give -o DIR).")
    add_inputs(p)
    p.add_argument("--layers", required=True, metavar="FILE",
                   help='JSON file (or inline JSON) with the list of layers, e.g. '
                        '[{"type": "conv2d", "preset": "sobel"}, {"type": "relu"}]')
    p.add_argument("--kernel-file", metavar="FILE",
                   help="trained weights (.npz, .safetensors, or .npy of one tensor) whose "
                        'tensors conv2d layers name: {"type": "conv2d", "kernel_key": '
                        '"features.0.weight"} (or "kernel_file": true for a .npy)')
    p.add_argument("--return", dest="return_", choices=RETURNS,
                   help="whose feature maps come back")
    p.add_argument("--format", default="json", choices=LAYERS_FORMATS)
    p.add_argument("--normalize", choices=NORMALIZE_MODES)
    _add_runtime_options(p)
    p.add_argument("-o", "--output", metavar="PATH",
                   help="directory for the feature maps, or file (npy, zip, onnx); - for stdout")
    p.add_argument("--dry-run", action="store_true", help="shapes and cost only")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    add_batch_options(p)
    p.set_defaults(run=cmd_layers, parser=p)

    p = commands.add_parser("presets", help="list the named kernels")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_presets, parser=p)

    p = commands.add_parser("preset", help="show a preset's weights for C input channels")
    p.add_argument("name")
    p.add_argument("--channels", type=int, default=3, metavar="C", help="input channels (3)")
    p.add_argument("--param", metavar="NAME=VALUE", type=param_arg, action="append", default=[])
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the weights as a kernel.json for --kernel")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_preset, parser=p)

    p = commands.add_parser("engines", help="engines and devices of the server")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_engines, parser=p)

    p = commands.add_parser("health", help="liveness and readiness (exit 1 when not ready)")
    p.set_defaults(run=cmd_health, parser=p)

    add_model_commands(commands)
    return parser


