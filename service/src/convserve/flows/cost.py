"""Parameters, MACs, FLOPs and bytes of one layer: one definition for every answer."""

from __future__ import annotations

import math
from typing import Any, Protocol

__all__ = ["Costed", "CostedLayer", "layer_cost", "work_cost"]


class Costed(Protocol):
    """A convolution spec, any layer of a stack, or a whole stack."""

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


class CostedLayer(Costed, Protocol):
    """A convolution spec or any layer of a stack."""

    def output_size_formula(self) -> dict[str, str]:
        """Per axis, the output-size formula with its numbers."""
        ...


def work_cost(layer: Costed) -> dict[str, Any]:
    """Parameters (weights plus bias, float32), MACs, FLOPs and the bytes of the input, the
    weights and the output of a layer or a whole stack."""
    return {
        "params": layer.params,
        "macs": layer.macs,
        "flops": layer.flops,
        "input_bytes": 4 * math.prod(layer.input_shape),
        "weight_bytes": 4 * layer.params,
        "output_bytes": 4 * math.prod(layer.output_shape),
    }


def layer_cost(layer: CostedLayer) -> dict[str, Any]:
    """The ``cost`` object of one layer: :func:`work_cost` plus the output-size formula."""
    return {**work_cost(layer), "output_size": layer.output_size_formula()}
