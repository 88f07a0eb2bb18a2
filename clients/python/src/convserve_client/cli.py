"""The ``convserve`` command line.

    convserve [--url URL] [--api-key KEY] [--timeout S] COMMAND ...

    convserve convolve cat.png --preset sobel -o out/          one PNG per output channel
    convserve convolve x.npy --kernel kernel.json --format npy -o y.npy
    convserve presets | preset gabor --channels 3 | engines | health
    convserve explain x.json --kernel kernel.json --at 0,0,0
    convserve layers cat.png --layers stack.json --format onnx -o model.onnx
    convserve model upload cnn.onnx | list | show ID | features ID cat.png --layers conv1

Global options come before the command. Exit status: 0 success, 1 the server answered with
an error (its ``detail`` on stderr) or a result could not be written, 2 a usage error (bad
option, unreadable input file), 3 the server could not be reached or did not answer in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convserve_client._client import Client
from convserve_client._constants import API_KEY_ENV, DEFAULT_BASE_URL, URL_ENV
from convserve_client._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
)
from convserve_client._models import ConvolveResult, Cost, ExplainResult, LayersResult
from convserve_client._version import __version__

__all__ = ["main"]

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3

_FILE_FORMATS = ("npy", "png", "image", "grid", "zip")


class UsageError(Exception):
    """A bad argument found after parsing (an unreadable file, a malformed value)."""


# --- argument values -------------------------------------------------------------------------


def _ints(text: str, name: str, counts: Sequence[int]) -> int | tuple[int, ...]:
    parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name} must be integers like 2 or 2,3; got {text!r}"
        ) from None
    if len(values) not in counts:
        allowed = " or ".join(str(c) for c in counts)
        raise argparse.ArgumentTypeError(f"{name} takes {allowed} integers; got {text!r}")
    return values[0] if len(values) == 1 else values


def _pair(name: str) -> Callable[[str], int | tuple[int, ...]]:
    def parse(text: str) -> int | tuple[int, ...]:
        return _ints(text, name, (1, 2))

    return parse


def _padding(text: str) -> int | tuple[int, ...] | str:
    if text.strip().lower() in ("same", "valid"):
        return text.strip().lower()
    return _ints(text, "padding", (1, 2, 4))


def _position(text: str) -> tuple[int, ...]:
    value = _ints(text, "at", (3,))
    assert isinstance(value, tuple)
    return value


def _param(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"a parameter is NAME=VALUE, like sigma=2; got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"parameter {name} must be a number; got {value!r}"
        ) from None
    return name.strip(), int(number) if number.is_integer() else number


def _read_json(spec: str, what: str) -> Any:
    """A JSON value given inline (``[...]``, ``{...}``) or as a file path."""
    text = spec
    if not spec.lstrip().startswith(("[", "{")):
        try:
            text = Path(spec).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {what} {spec!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} {spec!r} is not valid JSON: {exc}") from None


def _load_input(spec: str) -> Any:
    """The input argument: a file path (image or .npy), ``-`` for stdin, or a .json array."""
    if spec == "-":
        return sys.stdin.buffer.read()
    path = Path(spec)
    if path.suffix.lower() == ".json":
        data = _read_json(spec, "input array")
        if isinstance(data, dict) and "array" in data:
            data = data["array"]
        return np.asarray(data, dtype=np.float32)
    if not path.is_file():
        reason = "no such file" if not path.exists() else "not a file"
        raise UsageError(f"cannot read input {spec!r}: {reason}")
    return path


def _load_kernel(spec: str) -> Any:
    data = _read_json(spec, "kernel")
    if isinstance(data, list):
        return {"weight": data}
    if not isinstance(data, dict) or "weight" not in data:
        raise UsageError(
            f"kernel {spec!r} must be a JSON list (the weight) or an object with 'weight' "
            "(and optionally 'bias', 'layout')"
        )
    return data


# --- output ----------------------------------------------------------------------------------


def _is_dir_target(out: str) -> bool:
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def _write(out: str, content: bytes) -> None:
    if out == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    print(f"wrote {path} ({len(content)} bytes)", file=sys.stderr)


def _number(value: float) -> str:
    return f"{value:.6g}"


def _cost_lines(cost: Cost | None) -> list[str]:
    if cost is None:
        return []
    lines = [f"params    {cost.params:,}", f"macs      {cost.macs:,}  (flops {cost.flops:,})"]
    lines += [f"{axis:<9} {formula}" for axis, formula in cost.output_size.items()]
    return lines


def _summary(result: ConvolveResult) -> str:
    lines = [
        f"shape     {' x '.join(str(s) for s in result.shape)} (c_out, h, w)",
        f"padding   {','.join(str(p) for p in result.padding)} (top, bottom, left, right)"
        + (f" {result.padding_mode}" if result.padding_mode else ""),
        f"engine    {result.engine} on {result.device}",
    ]
    lines += _cost_lines(result.cost)
    if result.timing_ms:
        lines.append("timing    " + ", ".join(f"{k} {v:g} ms" for k, v in result.timing_ms.items()))
    for channel in result.channels:
        s = channel.stats
        lines.append(f"channel {channel.index} ({channel.name}): min {_number(s.min)}  "
                     f"max {_number(s.max)}  mean {_number(s.mean)}")
    if result.dry_run:
        lines.append("dry run: nothing was computed")
    return "\n".join(lines)


def _without_pngs(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_pngs(v) for k, v in data.items() if k != "png_base64"}
    if isinstance(data, list):
        return [_without_pngs(v) for v in data]
    return data


def _print_json(data: Any) -> None:
    print(json.dumps(_without_pngs(data), indent=2))


# --- commands --------------------------------------------------------------------------------


def _conv_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if (args.kernel is None) == (args.preset is None):
        raise UsageError("give exactly one of --kernel FILE and --preset NAME")
    if args.param and args.preset is None:
        raise UsageError("--param belongs to --preset")
    kernel = None if args.kernel is None else _load_kernel(args.kernel)
    bias = None
    if args.bias is not None:
        try:
            bias = [float(b) for b in args.bias.split(",")]
        except ValueError:
            raise UsageError(f"--bias must be numbers like 0.5,-1; got {args.bias!r}") from None
    return {
        "kernel": kernel,
        "bias": bias,
        "layout": args.layout,
        "preset": args.preset,
        "preset_params": dict(args.param) if args.param else None,
        "stride": args.stride,
        "padding": args.padding,
        "dilation": args.dilation,
        "groups": args.groups,
        "padding_mode": args.padding_mode,
        "engine": args.engine,
        "device": args.device,
        "color_mode": args.color_mode,
    }


def cmd_convolve(cs: Client, args: argparse.Namespace) -> int:
    kwargs = _conv_kwargs(args)
    image = _load_input(args.image)
    fmt = args.format
    if fmt in _FILE_FORMATS and args.output is None and not args.dry_run:
        raise UsageError(f"--format {fmt} returns a file: give -o FILE (or -o - for stdout)")
    result = cs.convolve(image, format=fmt, normalize=args.normalize, channel=args.channel,
                         dry_run=args.dry_run, **kwargs)
    out = args.output
    if out is not None and not result.dry_run:
        if fmt in ("json", "zip") and (fmt == "json" or _is_dir_target(out)):
            for path in result.save(out):
                print(f"wrote {path}", file=sys.stderr)
        elif fmt == "array":
            if _is_dir_target(out):
                for path in result.save(out):
                    print(f"wrote {path}", file=sys.stderr)
            else:
                _write(out, json.dumps(dict(result.raw)).encode())
        elif _is_dir_target(out):
            for path in result.save(out):
                print(f"wrote {path}", file=sys.stderr)
        else:
            assert result.content is not None
            _write(out, result.content)
    if out == "-":
        return EXIT_OK
    if args.json and result.raw:
        _print_json(dict(result.raw))
    else:
        print(_summary(result))
    return EXIT_OK


def _grid(values: np.ndarray, padded: np.ndarray | None = None) -> list[str]:
    cells = [[_number(float(v)) + ("*" if padded is not None and padded[i, j] else "")
              for j, v in enumerate(row)] for i, row in enumerate(values)]
    width = max(len(c) for row in cells for c in row)
    return ["  ".join(c.rjust(width) for c in row) for row in cells]


def _explain_text(result: ExplainResult) -> str:
    c, y, x = result.at
    where = f"output shape {tuple(result.output_shape)}, window origin (y, x) " \
        f"{tuple(result.window_origin)}"
    if result.padding is not None:
        where += f", padding {','.join(str(p) for p in result.padding)} (top, bottom, left, right)"
    lines = [f"output[{c}, {y}, {x}] = {_number(result.value)}", where, "", result.expression]
    for term in result.terms:
        lines += ["", f"input channel {term.input_channel}: sum {_number(term.sum)}", "window"
                  + (" (* = padding)" if term.padded is not None and term.padded.any() else "")]
        lines += ["  " + row for row in _grid(term.window, term.padded)]
        lines += ["kernel"] + ["  " + row for row in _grid(term.kernel)]
    if result.bias:
        lines += ["", f"bias {_number(result.bias)}"]
    return "\n".join(lines)


def cmd_explain(cs: Client, args: argparse.Namespace) -> int:
    kwargs = _conv_kwargs(args)
    result = cs.explain(_load_input(args.image), at=args.at, **kwargs)
    if args.json:
        _print_json(dict(result.raw))
    else:
        print(_explain_text(result))
    return EXIT_OK


def _layers_text(result: LayersResult) -> str:
    lines = [f"{'#':>2}  {'type':<10} {'output (c, h, w)':<18} {'params':>10} {'macs':>14}"]
    for layer in result.layers:
        shape = "x".join(str(s) for s in layer.output_shape)
        lines.append(f"{layer.index:>2}  {layer.type:<10} {shape:<18} {layer.params:>10,} "
                     f"{layer.macs:>14,}")
    if result.total_params is not None and result.total_macs is not None:
        lines.append(f"{'':>2}  {'total':<10} {'':<18} {result.total_params:>10,} "
                     f"{result.total_macs:>14,}")
    if result.timing_ms:
        lines.append("timing " + ", ".join(f"{k} {v:g} ms" for k, v in result.timing_ms.items()))
    return "\n".join(lines)


def cmd_layers(cs: Client, args: argparse.Namespace) -> int:
    stack = _read_json(args.layers, "layers")
    if isinstance(stack, dict) and "layers" in stack:
        stack = stack["layers"]
    if not isinstance(stack, list):
        raise UsageError(f"--layers {args.layers!r} must hold a JSON list of layer objects")
    fmt = args.format
    if fmt in ("npy", "onnx") and args.output is None and not args.dry_run:
        raise UsageError(f"--format {fmt} returns a file: give -o FILE (or -o - for stdout)")
    result = cs.layers(_load_input(args.image), layers=stack, returns=args.returns, format=fmt,
                       normalize=args.normalize, color_mode=args.color_mode,
                       engine=args.engine, device=args.device, dry_run=args.dry_run)
    out = args.output
    if out is not None and not result.dry_run:
        if fmt == "json" or _is_dir_target(out):
            for path in result.save(out):
                print(f"wrote {path}", file=sys.stderr)
        else:
            assert result.content is not None
            _write(out, result.content)
    if out == "-":
        return EXIT_OK
    if args.json and result.raw:
        _print_json(dict(result.raw))
    elif result.layers:
        print(_layers_text(result))
    elif result.output_shape is not None:
        print(f"output shape {tuple(result.output_shape)}")
    return EXIT_OK


def cmd_presets(cs: Client, args: argparse.Namespace) -> int:
    presets = cs.presets()
    if args.json:
        _print_json([dict(p.raw) for p in presets])
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
        _write(args.output, (json.dumps(kernel) + "\n").encode())
    if args.json:
        _print_json(dict(resolved.raw))
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
        _print_json(dict(info.raw))
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


# --- parser ----------------------------------------------------------------------------------


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
    kernel.add_argument("--layout", choices=("OIHW", "HWIO"), help="weight layout (OIHW)")
    kernel.add_argument("--preset", metavar="NAME", help="a preset name (see: convserve presets)")
    kernel.add_argument("--param", metavar="NAME=VALUE", type=_param, action="append",
                        default=[], help="preset parameter, repeatable (sigma=2)")
    conv = parser.add_argument_group("convolution")
    conv.add_argument("--stride", type=_pair("stride"), metavar="S|SH,SW")
    conv.add_argument("--padding", type=_padding, metavar="P",
                      help="P, PH,PW, TOP,BOTTOM,LEFT,RIGHT, same or valid "
                           "(default 0 with --kernel, same with --preset)")
    conv.add_argument("--dilation", type=_pair("dilation"), metavar="D|DH,DW")
    conv.add_argument("--groups", type=int, metavar="G")
    conv.add_argument("--padding-mode", choices=("zeros", "reflect", "replicate", "circular"))
    _add_runtime_options(conv)


def _add_runtime_options(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument("--engine", choices=("numpy", "onnxruntime"))
    group.add_argument("--device", choices=("cpu", "cuda"))
    group.add_argument("--color-mode", choices=("rgb", "gray", "rgba", "keep"),
                       help="how an image becomes channels (rgb)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convserve",
        description="Apply convolution layers to images with a convserve server.",
        epilog="Exit status: 0 ok, 1 the server answered with an error, 2 usage error, "
               "3 server unreachable or no answer in time.",
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
                            description="Apply one convolution layer to an image or array.")
    _add_input(p)
    _add_conv_options(p)
    out = p.add_argument_group("output")
    out.add_argument("--format", default="json",
                     choices=("json", "array", "npy", "png", "image", "grid", "zip"),
                     help="json (default): statistics and one PNG per channel; npy: float32 "
                          "(c_out, h, w); png: one channel; image, grid, zip")
    out.add_argument("--normalize", choices=("auto", "clip", "minmax", "abs", "symmetric"))
    out.add_argument("--channel", type=int, metavar="K", help="channel of --format png")
    out.add_argument("-o", "--output", metavar="PATH",
                     help="directory for one PNG per channel (json), or file (npy, png, ...); "
                          "- for stdout")
    out.add_argument("--dry-run", action="store_true", help="shapes and cost only")
    out.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(run=cmd_convolve, parser=p)

    p = commands.add_parser("explain", help="show the arithmetic of one output element",
                            description="Show how one output element is computed.")
    _add_input(p)
    p.add_argument("--at", type=_position, required=True, metavar="C,Y,X",
                   help="output channel, row and column")
    _add_conv_options(p)
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(run=cmd_explain, parser=p)

    p = commands.add_parser("layers", help="run a stack of layers",
                            description="Run a stack of layers (conv2d, activations, pooling).")
    _add_input(p)
    p.add_argument("--layers", required=True, metavar="FILE",
                   help='JSON file (or inline JSON) with the list of layers, e.g. '
                        '[{"type": "conv2d", "preset": "sobel"}, {"type": "relu"}]')
    p.add_argument("--returns", choices=("all", "last", "none"),
                   help="whose feature maps come back")
    p.add_argument("--format", default="json", choices=("json", "npy", "zip", "onnx"))
    p.add_argument("--normalize", choices=("auto", "clip", "minmax", "abs", "symmetric"))
    _add_runtime_options(p)
    p.add_argument("-o", "--output", metavar="PATH",
                   help="directory for the feature maps, or file (npy, zip, onnx); - for stdout")
    p.add_argument("--dry-run", action="store_true", help="shapes and cost only")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(run=cmd_layers, parser=p)

    p = commands.add_parser("presets", help="list the named kernels")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_presets, parser=p)

    p = commands.add_parser("preset", help="show a preset's weights for C input channels")
    p.add_argument("name")
    p.add_argument("--channels", type=int, default=3, metavar="C", help="input channels (3)")
    p.add_argument("--param", metavar="NAME=VALUE", type=_param, action="append", default=[])
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the weights as a kernel.json for --kernel")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_preset, parser=p)

    p = commands.add_parser("engines", help="engines and devices of the server")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_engines, parser=p)

    p = commands.add_parser("health", help="liveness and readiness (exit 1 when not ready)")
    p.set_defaults(run=cmd_health, parser=p)

    from convserve_client.cli_models import add_model_commands  # it imports this module

    add_model_commands(commands)
    return parser


def _error(message: str) -> None:
    print(f"convserve: error: {message}", file=sys.stderr)


def _status_message(exc: APIStatusError) -> str:
    problem = exc.problem
    lines = [problem.detail]
    for entry in problem.errors:
        if entry.message not in problem.detail:
            lines.append(f"  {entry.field}: {entry.message}" if entry.field
                         else f"  {entry.message}")
    if isinstance(exc, AuthenticationError):
        lines.append(f"  (give the key with --api-key or ${API_KEY_ENV})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[Client, argparse.Namespace], int] = args.run
    parser: argparse.ArgumentParser = args.parser
    try:
        with Client(args.url, api_key=args.api_key, timeout=args.timeout,
                    max_retries=args.max_retries) as cs:
            return run(cs, args)
    except (UsageError, ValueError, TypeError) as exc:
        # argparse's own format and exit status 2: "convserve convolve: error: ..."
        parser.error(str(exc))
    except APITimeoutError as exc:
        _error(f"{exc.message} (--timeout sets the limit)")
        return EXIT_CONNECTION
    except APIConnectionError as exc:
        _error(f"{exc.message}; is the server running? (--url or ${URL_ENV} sets where)")
        return EXIT_CONNECTION
    except APIStatusError as exc:
        _error(_status_message(exc))
        return EXIT_API_ERROR
    except APIError as exc:
        _error(exc.message)
        return EXIT_API_ERROR
    except BrokenPipeError:
        # The reader of stdout went away (| head): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
