"""Seeded initial weights for conv2d layers, as deep-learning libraries draw them
(:func:`initial_weights`; He, Glorot, LeCun and PyTorch's default)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

__all__ = ["INITS", "InitName", "WeightInit", "initial_weights"]

InitName: TypeAlias = Literal[
    "he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal",
    "lecun_uniform", "pytorch_default",
]
INITS: tuple[InitName, ...] = (
    "he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal",
    "lecun_uniform", "pytorch_default",
)


@dataclass(frozen=True)
class WeightInit:
    """Seeded initial weights: the initialiser's name and the seed (the layer says whether a
    bias exists)."""

    name: InitName
    seed: int


def initial_weights(
    name: str, weight_shape: tuple[int, int, int, int], bias: bool, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw initial weights, as deep-learning libraries do, from ``numpy.random.default_rng(seed)``.

    With ``fan_in = C_in/groups * k_h * k_w`` and ``fan_out = C_out * k_h * k_w`` (PyTorch's and
    Keras' fans for a conv weight):

    ============== =====================================================
    he_normal      normal, std ``sqrt(2 / fan_in)`` (PyTorch kaiming_normal_)
    he_uniform     uniform in ``±sqrt(6 / fan_in)``
    glorot_normal  normal, std ``sqrt(2 / (fan_in + fan_out))``
    glorot_uniform uniform in ``±sqrt(6 / (fan_in + fan_out))`` (Keras' default)
    lecun_normal   normal, std ``sqrt(1 / fan_in)``
    lecun_uniform  uniform in ``±sqrt(3 / fan_in)``
    pytorch_default uniform in ``±1 / sqrt(fan_in)`` for weight and bias (nn.Conv2d's default)
    ============== =====================================================

    Normals are not truncated (Keras truncates at two standard deviations). The bias is zero
    except for ``pytorch_default``.

    Parameters
    ----------
    weight_shape : (C_out, C_in // groups, k_h, k_w)

    Returns
    -------
    weight : ndarray of float32, shape ``weight_shape``
    bias : ndarray of float32, shape (C_out,), or None when ``bias`` is False
    """
    c_out, c_in_g, k_h, k_w = weight_shape
    fan_in, fan_out = c_in_g * k_h * k_w, c_out * k_h * k_w
    rng = np.random.default_rng(seed)
    if name.endswith("_normal"):
        variance = {"he_normal": 2 / fan_in, "glorot_normal": 2 / (fan_in + fan_out),
                    "lecun_normal": 1 / fan_in}[name]
        weight = rng.normal(0.0, math.sqrt(variance), weight_shape)
    else:
        limit = {"he_uniform": math.sqrt(6 / fan_in),
                 "glorot_uniform": math.sqrt(6 / (fan_in + fan_out)),
                 "lecun_uniform": math.sqrt(3 / fan_in),
                 "pytorch_default": 1 / math.sqrt(fan_in)}[name]
        weight = rng.uniform(-limit, limit, weight_shape)
    b = None
    if bias:
        b = (rng.uniform(-1, 1, c_out) / math.sqrt(fan_in) if name == "pytorch_default"
             else np.zeros(c_out))
    return weight.astype(np.float32), None if b is None else b.astype(np.float32)
