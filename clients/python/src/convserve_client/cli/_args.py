"""Reading the command line's arguments: numbers, JSON files, inputs, kernels."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_CONNECTION",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "FILE_FORMATS",
    "UsageError",
    "conv_kwargs",
    "load_input",
    "load_kernel",
    "pair_arg",
    "padding_arg",
    "param_arg",
    "position_arg",
    "positive_int",
    "read_json",
    "read_kernel_file",
    "read_stdin",
]

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 130

FILE_FORMATS = ("npy", "png", "image", "grid", "zip")


class UsageError(Exception):
    """A bad argument found after parsing (an unreadable file, a malformed value)."""



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


def pair_arg(name: str) -> Callable[[str], int | tuple[int, ...]]:
    def parse(text: str) -> int | tuple[int, ...]:
        return _ints(text, name, (1, 2))

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def padding_arg(text: str) -> int | tuple[int, ...] | str:
    if text.strip().lower() in ("same", "valid"):
        return text.strip().lower()
    return _ints(text, "padding", (1, 2, 4))


def position_arg(text: str) -> tuple[int, ...]:
    value = _ints(text, "at", (3,))
    assert isinstance(value, tuple)
    return value


def param_arg(text: str) -> tuple[str, float]:
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


def read_json(spec: str, what: str) -> Any:
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


def read_kernel_file(spec: str | None) -> bytes | None:
    """The bytes of ``--kernel-file`` (read once for every request of a batch), or None."""
    if spec is None:
        return None
    try:
        return Path(spec).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --kernel-file {spec!r}: {exc.strerror or exc}") from None


@cache
def read_stdin() -> bytes:
    """Standard input's bytes, read once: ``-`` is looked at to tell a list of paths from a
    file, then used as either."""
    return sys.stdin.buffer.read()


def load_input(spec: str) -> Any:
    """The input argument: a file path (image or .npy), ``-`` for stdin, or a .json array."""
    if spec == "-":
        return read_stdin()
    path = Path(spec)
    if path.suffix.lower() == ".json":
        data = read_json(spec, "input array")
        if isinstance(data, dict) and "array" in data:
            data = data["array"]
        return np.asarray(data, dtype=np.float32)
    if not path.is_file():
        reason = "no such file" if not path.exists() else "not a file"
        raise UsageError(f"cannot read input {spec!r}: {reason}")
    return path


def load_kernel(spec: str) -> Any:
    data = read_json(spec, "kernel")
    if isinstance(data, list):
        return {"weight": data}
    if not isinstance(data, dict) or "weight" not in data:
        raise UsageError(
            f"kernel {spec!r} must be a JSON list (the weight) or an object with 'weight' "
            "(and optionally 'bias', 'layout')"
        )
    return data




def conv_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if (args.kernel is None) == (args.preset is None):
        raise UsageError("give exactly one of --kernel FILE and --preset NAME")
    if args.param and args.preset is None:
        raise UsageError("--param belongs to --preset")
    kernel = None if args.kernel is None else load_kernel(args.kernel)
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


