"""What the single-input commands print and write."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from convserve_client._constants import API_KEY_ENV
from convserve_client._exceptions import APIStatusError, AuthenticationError
from convserve_client._models import ConvolveResult, Cost, ExplainResult, LayersResult

__all__ = [
    "convolve_text",
    "explain_text",
    "is_dir_target",
    "layers_text",
    "print_error",
    "print_json",
    "status_message",
    "write_output",
]


def is_dir_target(out: str) -> bool:
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def write_output(out: str, content: bytes) -> None:
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


def convolve_text(result: ConvolveResult) -> str:
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


def print_json(data: Any) -> None:
    print(json.dumps(_without_pngs(data), indent=2))



def _grid(values: np.ndarray, padded: np.ndarray | None = None) -> list[str]:
    cells = [[_number(float(v)) + ("*" if padded is not None and padded[i, j] else "")
              for j, v in enumerate(row)] for i, row in enumerate(values)]
    width = max(len(c) for row in cells for c in row)
    return ["  ".join(c.rjust(width) for c in row) for row in cells]


def explain_text(result: ExplainResult) -> str:
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



def layers_text(result: LayersResult) -> str:
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


def print_error(message: str) -> None:
    print(f"convserve: error: {message}", file=sys.stderr)


def status_message(exc: APIStatusError) -> str:
    problem = exc.problem
    lines = [problem.detail]
    for entry in problem.errors:
        if entry.message not in problem.detail:
            lines.append(f"  {entry.field}: {entry.message}" if entry.field
                         else f"  {entry.message}")
    if isinstance(exc, AuthenticationError):
        lines.append(f"  (give the key with --api-key or ${API_KEY_ENV})")
    return "\n".join(lines)
