"""When ONNX Runtime's ``packed`` strategy runs, and what it costs: the rules that the engine
(:class:`~convserve.conv.onnx_engine.OnnxRuntimeEngine`), ``engine="auto"`` and the admission
estimate share.

``packed`` builds a layer's weights into a session of their own, so that ONNX Runtime lays them
out once for its blocked ``NCHWc`` kernels (see :mod:`convserve.conv.onnx_engine`). Measured on
2 cores it pays on many-channel layers and costs on 3-channel ones and large images, hence
these bounds. Standard library and the spec only, so the admission estimate can ask without
importing an engine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

if TYPE_CHECKING:
    import numpy as np

    from convserve.conv.spec import ConvSpec

__all__ = [
    "ORT_STRATEGIES",
    "OrtStrategy",
    "PACKED_MAX_ARRAY_BYTES",
    "PACKED_MAX_WEIGHT_BYTES",
    "PACKED_MIN_OUT_CHANNELS",
    "packed_applies",
    "packed_may_run",
    "packed_work_bytes",
    "packs",
]

OrtStrategy: TypeAlias = Literal["inputs", "packed"]
"""How the engine hands ONNX Runtime the weights: as graph inputs, or packed into the graph."""
ORT_STRATEGIES: tuple[OrtStrategy, ...] = get_args(OrtStrategy)

PACKED_MAX_WEIGHT_BYTES = 1 << 20
"""Weights above this many bytes run as graph inputs even under ``packed``: each packed
session holds its own copies of them, so the packed LRU (16 sessions by default) holds at most
a few times 16 MiB of weights. 1 MiB covers 3x3 layers up to 160 to 160 channels."""
PACKED_MAX_ARRAY_BYTES = 16 << 20
"""Layers whose float32 input or output is larger run as graph inputs even under ``packed``.
ONNX Runtime's blocked layout rounds the channels up to its block (16 floats on AVX-512) and
reorders the output back, about two outputs more at the peak (a 16 MiB output: 79-81 MiB
against 46 MiB as inputs); on large images it was also slower (4096x4096, 3 to 4 channels:
981 ms against 103 ms; 1024x1024, 3 to 16: 26.7 against 6.6 ms)."""
PACKED_MIN_OUT_CHANNELS = 8
"""Layers with fewer output channels run as graph inputs even under ``packed``: rounded up to
a block of 16, most of the blocked output would be padding (512x512, 3 to 2 channels: 1.29
against 0.85 ms)."""


def packs(weight: np.ndarray) -> bool:
    """Whether the ``packed`` strategy builds this weight into a session (not too large; the
    bias, one value per output channel, is not counted, so ``auto``, which plans before it
    sees the bias, and the engine decide alike)."""
    return 4 * weight.size <= PACKED_MAX_WEIGHT_BYTES


def packed_may_run(in_values: int, out_values: int, out_channels: int) -> bool:
    """Whether the ``packed`` strategy runs a layer of these sizes (float32 values of its input
    and output): :data:`PACKED_MIN_OUT_CHANNELS` and :data:`PACKED_MAX_ARRAY_BYTES`. The
    admission estimate asks too (:func:`packed_work_bytes`)."""
    return (out_channels >= PACKED_MIN_OUT_CHANNELS
            and 4 * max(in_values, out_values) <= PACKED_MAX_ARRAY_BYTES)


def packed_applies(spec: ConvSpec) -> bool:
    """:func:`packed_may_run` for ``spec``."""
    return packed_may_run(math.prod(spec.input_shape), math.prod(spec.output_shape),
                          spec.out_channels)


def packed_work_bytes(in_values: int, out_values: int, out_channels: int) -> int:
    """Bytes a packed run may need beyond an ``inputs`` run of the same layer: ONNX Runtime's
    blocked output and its reorder, two outputs (see :data:`PACKED_MAX_ARRAY_BYTES`); 0 where
    the packed strategy never runs."""
    return 8 * out_values if packed_may_run(in_values, out_values, out_channels) else 0
