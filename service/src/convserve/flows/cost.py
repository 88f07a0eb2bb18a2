"""Parameters, MACs, FLOPs and bytes of one layer: one definition for every answer."""

from __future__ import annotations

import math
from typing import Any, Protocol

__all__ = ["CostedLayer", "layer_cost"]


class CostedLayer(Protocol):
    """A convolution spec or any layer of a stack."""

    @property
    def params(self) -> int: ...

    @property
    def macs(self) -> int: ...

    @property
    def flops(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def output_shape(self) -> tuple[int, ...]: ...

    def output_size_formula(self) -> dict[str, str]: ...


def layer_cost(layer: CostedLayer) -> dict[str, Any]:
    """The ``cost`` object of one layer: its parameters (weights plus bias, float32), MACs,
    FLOPs, the bytes of its input, weights and output, and the output-size formula."""
    return {
        "params": layer.params,
        "macs": layer.macs,
        "flops": layer.flops,
        "input_bytes": 4 * math.prod(layer.input_shape),
        "weight_bytes": 4 * layer.params,
        "output_bytes": 4 * math.prod(layer.output_shape),
        "output_size": layer.output_size_formula(),
    }
