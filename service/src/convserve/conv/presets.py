"""Named kernels ("presets") and the rule that spreads each over an image's channels.

A preset is plain data: a filter bank (a named constant such as :data:`SOBEL_X_WEIGHTS`, or a
function of the preset's parameters such as :func:`gaussian_kernel`), a channel rule and its
documentation. :data:`PRESETS` is the one registry. :func:`resolve_preset` turns a preset into
the exact layer it becomes for ``C`` input channels: ``weight (c_out, C // groups, k_h, k_w)``
(OIHW, float32), ``bias`` and ``groups``.

Channel rules
-------------
``depthwise``
    Each input channel is filtered on its own. A bank of ``F`` filters ``(F, k_h, k_w)`` gives
    ``groups = C``, ``c_out = C * F`` and ``weight[c * F + f, 0] = bank[f]`` (PyTorch's depthwise
    layout: output channel ``o`` reads input channel ``o // F``). Blur on RGB gives blurred RGB.
``luminance``
    Each filter reads the luminance ``sum_c lum[c] * x[c]``: ``groups = 1``, ``c_out = F`` and
    ``weight[f, c] = lum[c] * bank[f]``, with ``lum`` from :func:`luminance_weights` (BT.601
    0.299, 0.587, 0.114 for RGB, 1 for grey, 0 for alpha, 1/C each for other channel counts).
``full``
    The preset's tensor ``(c_out, c_in, k_h, k_w)`` is the weight as it stands (``groups = 1``)
    and needs exactly ``c_in`` input channels.

Filters whose output is a picture (identity, blurs, sharpening, emboss) are depthwise; filters
whose output is a derivative or feature map (Sobel, Scharr, Prewitt, Laplacian, outline, Kirsch,
Gabor, D2L's edge detector) read luminance, so they give one map per filter, not per colour.

Conventions
-----------
- Cross-correlation without flip, as in every convserve layer: ``y[r, c] = sum w[u, v] *
  x[r + u - k_h // 2, c + v - k_w // 2]`` for an odd kernel with ``padding="same"``.
- ``x`` is the column index (grows to the right), ``y`` the row index (grows downwards).
  :data:`SOBEL_X_WEIGHTS` is positive where intensity increases to the right (a left-to-right
  ramp of slope 1 gives +8), :data:`SOBEL_Y_WEIGHTS` where it increases downwards.
- Angles are degrees counter-clockwise from +x as seen on screen (90 points up).
- Range-preserving means every output channel's weights, after the channel rule, are
  non-negative and sum to 1, so inputs in [0, 1] give outputs in [0, 1]
  (:func:`is_range_preserving`).
- Kernel sizes are explicit parameters with fixed defaults (never derived from ``sigma``), so a
  preset's shape is what its parameters say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from convserve.errors import InvalidArgumentError, NotFoundError, ShapeError

__all__ = [
    "BT601_LUMA",
    "CHANNEL_SWAP_WEIGHTS",
    "D2L_EDGE_WEIGHTS",
    "D2L_K",
    "D2L_MULTI_IN_OUT_WEIGHTS",
    "D2L_MULTI_IN_WEIGHTS",
    "EMBOSS_WEIGHTS",
    "GRAYSCALE_WEIGHTS",
    "IDENTITY_WEIGHTS",
    "KIRSCH_DIRECTIONS",
    "KIRSCH_WEIGHTS",
    "LAPLACIAN_4_WEIGHTS",
    "LAPLACIAN_8_WEIGHTS",
    "MAX_PRESET_CHANNELS",
    "OUTLINE_WEIGHTS",
    "PRESETS",
    "PREWITT_X_WEIGHTS",
    "PREWITT_Y_WEIGHTS",
    "SCHARR_X_WEIGHTS",
    "SCHARR_Y_WEIGHTS",
    "SEPIA_WEIGHTS",
    "SHARPEN_WEIGHTS",
    "SOBEL_X_WEIGHTS",
    "SOBEL_Y_WEIGHTS",
    "ChannelRule",
    "ParamKind",
    "Preset",
    "PresetParam",
    "ResolvedKernel",
    "box_kernel",
    "default_channel_names",
    "gabor_bank",
    "gabor_orientations",
    "gabor_output_names",
    "gaussian_kernel",
    "is_range_preserving",
    "laplacian_kernel",
    "luminance_weights",
    "motion_blur_kernel",
    "resolve_preset",
    "spread_bank",
    "unsharp_mask_kernel",
]

ChannelRule: TypeAlias = Literal["depthwise", "luminance", "full"]
ParamKind: TypeAlias = Literal["int", "float"]
ParamValue: TypeAlias = int | float
FloatArray: TypeAlias = npt.NDArray[np.float64]

MAX_PRESET_CHANNELS = 4096
"""Most input channels a preset is resolved for (a guard against absurd allocations)."""

_RANGE_TOLERANCE = 1e-5


def _const(values: object) -> FloatArray:
    """A read-only float64 array, so the module's constants cannot be changed by accident."""
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


# --- Constant kernels, (k_h, k_w) unless stated --------------------------------------------

IDENTITY_WEIGHTS = _const([[1.0]])
"""The 1x1 Dirac delta: output equals input."""

SHARPEN_WEIGHTS = _const([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
"""Identity plus the negated 4-neighbour Laplacian; sums to 1."""

EMBOSS_WEIGHTS = _const([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
"""Relief lit from the bottom right; sums to 1, so flat areas keep their value."""

OUTLINE_WEIGHTS = _const([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
"""Ridge/edge detector: the negated 8-neighbour Laplacian; sums to 0."""

LAPLACIAN_4_WEIGHTS = _const([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
"""Discrete Laplacian, 4-neighbour (5-point stencil); OpenCV ``Laplacian(ksize=1)``."""

LAPLACIAN_8_WEIGHTS = _const([[1, 1, 1], [1, -8, 1], [1, 1, 1]])
"""Discrete Laplacian, 8-neighbour (9-point stencil)."""

SOBEL_X_WEIGHTS = _const([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
"""d/dx: positive where intensity increases to the right (responds to vertical edges)."""

SOBEL_Y_WEIGHTS = _const(SOBEL_X_WEIGHTS.T)
"""d/dy: positive where intensity increases downwards (responds to horizontal edges)."""

SCHARR_X_WEIGHTS = _const([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
"""Scharr's rotation-optimised d/dx; same sign convention as :data:`SOBEL_X_WEIGHTS`."""

SCHARR_Y_WEIGHTS = _const(SCHARR_X_WEIGHTS.T)
"""Scharr's d/dy, positive where intensity increases downwards."""

PREWITT_X_WEIGHTS = _const([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
"""Prewitt's d/dx, positive where intensity increases to the right."""

PREWITT_Y_WEIGHTS = _const(PREWITT_X_WEIGHTS.T)
"""Prewitt's d/dy, positive where intensity increases downwards."""

KIRSCH_DIRECTIONS = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")
"""Names of the Kirsch masks, counter-clockwise from east (0, 45, ..., 315 degrees)."""

# The 3x3 border ring, clockwise from the top-left corner; moving every value one place
# back along it turns a 3x3 compass mask 45 degrees counter-clockwise.
_RING = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def _compass(first: FloatArray, count: int = 8) -> FloatArray:
    """``count`` masks ``(count, 3, 3)``: ``first`` and its successive 45-degree turns."""
    rows, cols = zip(*_RING, strict=True)
    masks = np.empty((count, 3, 3))
    ring = first[rows, cols]
    for k in range(count):
        masks[k] = first
        masks[k][rows, cols] = np.roll(ring, -k)
    return masks


KIRSCH_WEIGHTS = _const(_compass(np.array([[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]], float)))
"""Kirsch's 8 compass masks ``(8, 3, 3)`` in :data:`KIRSCH_DIRECTIONS` order; each is named by the
side that carries its 5s and answers most where that side is brighter."""

BT601_LUMA = _const([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights for R, G, B (Pillow's ``convert("L")``); they sum to 1."""

GRAYSCALE_WEIGHTS = _const(BT601_LUMA.reshape(1, 3, 1, 1))
"""``(1, 3, 1, 1)``: RGB to grey as one 1x1 convolution."""

SEPIA_WEIGHTS = _const(
    np.array(
        [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]
    ).reshape(3, 3, 1, 1)
)
"""``(3, 3, 1, 1)``: the common sepia-tone colour matrix; rows sum to 1.351, 1.203 and 0.937,
so bright inputs exceed 1 (clip them)."""

CHANNEL_SWAP_WEIGHTS = _const(np.eye(3)[::-1].reshape(3, 3, 1, 1))
"""``(3, 3, 1, 1)``: the permutation RGB -> BGR (OpenCV's channel order)."""

D2L_EDGE_WEIGHTS = _const([[1.0, -1.0]])
"""``(1, 2)``: D2L's edge detector ``K = [[1, -1]]``; ``y[r, c] = x[r, c] - x[r, c + 1]``,
so a bright-to-dark step to the right gives +1 and a dark-to-bright one gives -1."""

D2L_K = _const([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
"""``(2, 2, 2)``: D2L's two-input-channel kernel ``K``."""

D2L_MULTI_IN_WEIGHTS = _const(D2L_K[np.newaxis])
"""``(1, 2, 2, 2)``: ``K`` as one output channel over two input channels."""

D2L_MULTI_IN_OUT_WEIGHTS = _const(np.stack([D2L_K, D2L_K + 1, D2L_K + 2]))
"""``(3, 2, 2, 2)``: ``K``, ``K + 1`` and ``K + 2`` as three output channels."""


# --- Kernels built from parameters ---------------------------------------------------------


def box_kernel(size: int) -> FloatArray:
    """Mean filter.

    Parameters
    ----------
    size : int
        Side of the square kernel.

    Returns
    -------
    ndarray of shape (size, size)
        Every weight ``1 / size**2``.
    """
    return np.full((size, size), 1.0 / (size * size))


def gaussian_kernel(size: int, sigma: float) -> FloatArray:
    """Sampled, normalised 2-D Gaussian, the outer product of two 1-D Gaussians.

    Parameters
    ----------
    size : int
        Odd side of the square kernel; the samples sit at ``-(size // 2) .. size // 2``.
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    ndarray of shape (size, size)
        Non-negative, symmetric, rank 1, summing to 1.
    """
    offsets = np.arange(size) - size // 2
    g = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    g /= g.sum()
    return np.outer(g, g)


def unsharp_mask_kernel(size: int, sigma: float, amount: float) -> FloatArray:
    """Unsharp masking as one kernel: ``identity + amount * (identity - gaussian)``.

    Parameters
    ----------
    size : int
        Odd side of the Gaussian (and of the result).
    sigma : float
        Standard deviation of the Gaussian in pixels.
    amount : float
        How much of the detail (input minus its blur) is added back; 0 gives the identity.

    Returns
    -------
    ndarray of shape (size, size)
        Sums to 1, so flat areas keep their value.
    """
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return delta + amount * (delta - gaussian_kernel(size, sigma))


def laplacian_kernel(neighbours: int) -> FloatArray:
    """The 3x3 discrete Laplacian.

    Parameters
    ----------
    neighbours : {4, 8}
        4 for the 5-point stencil :data:`LAPLACIAN_4_WEIGHTS`, 8 for the 9-point
        :data:`LAPLACIAN_8_WEIGHTS`.

    Returns
    -------
    ndarray of shape (3, 3)
    """
    return np.array(LAPLACIAN_4_WEIGHTS if neighbours == 4 else LAPLACIAN_8_WEIGHTS)


def _slab(origin: float, step: float, low: FloatArray, high: FloatArray,
          ) -> tuple[FloatArray, FloatArray]:
    """Where ``origin + t * step`` lies in ``[low, high]``: the interval ``(t_enter, t_exit)``."""
    if abs(step) < 1e-12:
        inside = (low <= origin) & (origin <= high)
        return np.where(inside, -np.inf, np.inf), np.where(inside, np.inf, -np.inf)
    t_low, t_high = (low - origin) / step, (high - origin) / step
    return np.minimum(t_low, t_high), np.maximum(t_low, t_high)


def motion_blur_kernel(length: int, angle: float) -> FloatArray:
    """A straight motion blur: a line segment, area-sampled and normalised to sum 1.

    The segment has Euclidean length ``length``, is centred on the kernel's centre and points
    ``angle`` degrees counter-clockwise from +x (as seen on screen, rows growing downwards). Each
    pixel, a unit square, weighs the length of the segment inside it, so every angle is
    anti-aliased, 0 degrees gives a uniform row and 90 a uniform column.

    Parameters
    ----------
    length : int
        Odd length of the blur in pixels, which is also the kernel's side.
    angle : float
        Direction in degrees; ``angle`` and ``angle + 180`` give the same kernel.

    Returns
    -------
    ndarray of shape (length, length)
        Non-negative, summing to 1, symmetric under a half turn.
    """
    radians = math.radians(angle)
    dx, dy = math.cos(radians), -math.sin(radians)  # on screen: rows grow downwards
    half = length / 2.0
    start_x, start_y = -half * dx, -half * dy
    centres = np.arange(length, dtype=np.float64) - length // 2
    tx0, tx1 = _slab(start_x, length * dx, centres - 0.5, centres + 0.5)
    ty0, ty1 = _slab(start_y, length * dy, centres - 0.5, centres + 0.5)
    t_enter = np.maximum(np.maximum(ty0[:, None], tx0[None, :]), 0.0)
    t_exit = np.minimum(np.minimum(ty1[:, None], tx1[None, :]), 1.0)
    inside = np.clip(t_exit - t_enter, 0.0, None) * length
    inside[inside < 1e-9] = 0.0  # the segment only grazes a corner
    kernel: FloatArray = inside / inside.sum()
    return kernel


def gabor_orientations(orientations: int) -> list[float]:
    """The ``orientations`` angles of a Gabor bank in degrees: ``k * 180 / orientations``."""
    return [k * 180.0 / orientations for k in range(orientations)]


def gabor_bank(orientations: int, wavelength: float, sigma: float, gamma: float, psi: float,
               size: int) -> FloatArray:
    """A bank of zero-mean real Gabor filters, one per orientation.

    With ``x'`` along the carrier's wave vector (angle ``theta`` counter-clockwise from +x on
    screen) and ``y'`` across it, each filter is
    ``exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) * (cos(2 pi x' / wavelength + psi) - c)``, where
    the constant ``c`` removes the DC response (Morlet-style, so the filter still decays at
    its border) and the result is scaled so its positive weights sum to 1: inputs in [0, 1] give
    outputs in [-1, 1]. ``theta = 0`` answers to vertical stripes and edges.

    Parameters
    ----------
    orientations : int
        Number of filters, at ``theta = k * 180 / orientations`` degrees.
    wavelength : float
        Carrier wavelength in pixels (>= 2, the Nyquist limit).
    sigma : float
        Standard deviation of the Gaussian envelope along the wave vector, in pixels.
    gamma : float
        Spatial aspect ratio; the envelope's deviation across the wave vector is
        ``sigma / gamma`` (below 1: longer, more orientation-selective filters).
    psi : float
        Phase offset in degrees: 0 gives even (line/ridge) filters, 90 odd (edge) filters.
    size : int
        Odd side of each filter.

    Returns
    -------
    ndarray of shape (orientations, size, size)
        Each filter sums to 0 (a filter whose carrier the grid cannot show is all zeros).
    """
    offsets = np.arange(size) - size // 2
    x = offsets[np.newaxis, :].astype(float)
    y = -offsets[:, np.newaxis].astype(float)  # up on screen is +y
    bank = np.empty((orientations, size, size))
    for k, theta in enumerate(np.radians(gabor_orientations(orientations))):
        along = x * math.cos(theta) + y * math.sin(theta)
        across = -x * math.sin(theta) + y * math.cos(theta)
        envelope = np.exp(-(along**2 + (gamma * across) ** 2) / (2.0 * sigma * sigma))
        carrier = np.cos(2.0 * math.pi * along / wavelength + math.radians(psi))
        dc = (envelope * carrier).sum() / envelope.sum()
        kernel = envelope * (carrier - dc)
        positive = kernel[kernel > 0].sum()
        # A carrier the grid cannot show (wavelength 2, psi 90, theta 0 samples sin at its
        # zeros) leaves rounding noise only: that filter is honestly zero.
        bank[k] = kernel / positive if positive > 1e-9 else 0.0
    return bank


def gabor_output_names(orientations: int, **_: ParamValue) -> tuple[str, ...]:
    """``("theta=0", "theta=45", ...)``: one name per filter of :func:`gabor_bank`."""
    return tuple(f"theta={theta:g}" for theta in gabor_orientations(orientations))


# --- Channel rules -------------------------------------------------------------------------

_DEFAULT_NAMES: dict[int, tuple[str, ...]] = {
    1: ("L",),
    2: ("L", "A"),
    3: ("R", "G", "B"),
    4: ("R", "G", "B", "A"),
}

# What each "full" channel count is and how a caller gets it.
_CHANNEL_ADVICE: dict[int, tuple[str, str]] = {
    1: ("grey", "use color_mode=gray"),
    2: ("e.g. D2L's two-channel X", "send a (2, H, W) array, or an LA image with color_mode=keep"),
    3: ("RGB", "use color_mode=rgb"),
    4: ("RGBA", "use color_mode=rgba"),
}


def default_channel_names(channels: int) -> tuple[str, ...]:
    """The names convserve assumes for ``channels`` unnamed channels.

    1, 2, 3 and 4 channels are taken as the image modes the decoder produces (L, LA, RGB,
    RGBA); any other count gives ``("c0", "c1", ...)``.
    """
    return _DEFAULT_NAMES.get(channels, tuple(f"c{i}" for i in range(channels)))


def luminance_weights(channels: int, channel_names: Sequence[str] | None = None) -> FloatArray:
    """How much each input channel contributes to the luminance.

    Parameters
    ----------
    channels : int
        Number of input channels ``C``.
    channel_names : sequence of str, optional
        One name per channel (case-insensitive); None means :func:`default_channel_names`.

    Returns
    -------
    ndarray of shape (C,)
        Summing to 1. Channels named ``A`` (alpha) weigh 0. The others weigh BT.601
        (0.299, 0.587, 0.114) when they are exactly ``R``, ``G`` and ``B`` in any order, 1 when
        they are a single ``L``, and equal shares otherwise (1/C each when none is alpha).
    """
    names = default_channel_names(channels) if channel_names is None else channel_names
    upper = [name.upper() for name in names]
    colour = [i for i, name in enumerate(upper) if name != "A"]
    weights = np.zeros(channels)
    if not colour:  # nothing but alpha: it is all there is to look at
        weights[:] = 1.0 / channels
    elif sorted(upper[i] for i in colour) == ["B", "G", "R"]:
        for i in colour:
            weights[i] = BT601_LUMA["RGB".index(upper[i])]
    else:
        weights[colour] = 1.0 / len(colour)
    return weights


def spread_bank(bank: FloatArray, rule: Literal["depthwise", "luminance"],
                lum: FloatArray) -> tuple[FloatArray, int]:
    """Spread a filter bank over ``C`` input channels.

    Parameters
    ----------
    bank : ndarray of shape (F, k_h, k_w)
    rule : "depthwise" or "luminance"
    lum : ndarray of shape (C,)
        Luminance weights (:func:`luminance_weights`); only their count matters to depthwise.

    Returns
    -------
    weight : ndarray of shape (C * F, 1, k_h, k_w) (depthwise) or (F, C, k_h, k_w) (luminance)
    groups : int
        ``C`` (depthwise) or 1 (luminance).
    """
    channels = lum.shape[0]
    if rule == "depthwise":
        return np.tile(bank, (channels, 1, 1))[:, np.newaxis], channels
    return bank[:, np.newaxis] * lum[np.newaxis, :, np.newaxis, np.newaxis], 1


def is_range_preserving(
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    tolerance: float = _RANGE_TOLERANCE,
) -> bool:
    """Whether every output channel's weights are non-negative and sum to 1, without a bias.

    Parameters
    ----------
    weight : array_like of shape (C_out, C_in // groups, k_h, k_w)
    bias : array_like of shape (C_out,), optional
        A bias with any non-zero value makes the layer not range-preserving.
    tolerance : float
        Allowed deviation of each sum from 1 (float32 weights rarely sum to exactly 1).

    Returns
    -------
    bool
        True when inputs in [0, 1] always give outputs in [0, 1]; what ``normalize=auto``
        clips instead of stretching.
    """
    if bias is not None and np.any(np.asarray(bias) != 0):
        return False
    w = np.asarray(weight, dtype=np.float64)
    sums = w.reshape(w.shape[0], -1).sum(axis=1)
    return bool((w >= 0).all() and np.allclose(sums, 1.0, rtol=0.0, atol=tolerance))


# --- Presets and their parameters ----------------------------------------------------------


def _fmt(number: float) -> str:
    return f"{number:g}"


def _parse_number(value: object) -> int | float | None:
    """``value`` as a Python number (numeric strings from a query string included), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class PresetParam:
    """One parameter of a preset, with its limits.

    Attributes
    ----------
    name : str
    kind : "int" or "float"
    default : int or float
    minimum, maximum : float
        Inclusive bounds.
    description : str
    odd : bool
        Only odd integers are allowed (kernel sizes that must have a centre).
    choices : tuple of int
        When not empty, the only values allowed (``minimum`` and ``maximum`` are their bounds).
    """

    name: str
    kind: ParamKind
    default: ParamValue
    minimum: float
    maximum: float
    description: str
    odd: bool = False
    choices: tuple[int, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words: ``"an odd integer with min 1 and max 31"``."""
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        what = {"int": "an odd integer" if self.odd else "an integer", "float": "a number"}
        return f"{what[self.kind]} with min {_fmt(self.minimum)} and max {_fmt(self.maximum)}"

    def validate(self, value: object, preset: str) -> ParamValue:
        """``value`` checked and converted to this parameter's kind.

        Raises
        ------
        InvalidArgumentError
            With ``field="preset_params.<name>"``, naming the allowed values.
        """
        number = _parse_number(value)
        problem = "is not a number" if number is None else self._problem(number)
        if number is None or problem is not None:
            raise InvalidArgumentError(
                f"{preset} parameter {self.name}={value!r} {problem}; allowed: {self.allowed()}",
                field=f"preset_params.{self.name}",
            )
        return int(number) if self.kind == "int" else float(number)

    def _problem(self, number: int | float) -> str | None:
        """What is wrong with ``number`` for this parameter, or None."""
        if isinstance(number, float) and not math.isfinite(number):
            return "is not finite"
        if self.kind == "int" and isinstance(number, float) and not number.is_integer():
            return "is not an integer"
        if self.choices and number not in self.choices:
            return "is not one of the choices"
        if number < self.minimum:
            return f"is below the minimum {_fmt(self.minimum)}"
        if number > self.maximum:
            return f"is above the maximum {_fmt(self.maximum)}"
        if self.odd and int(number) % 2 == 0:
            return "must be odd"
        return None

    def to_info(self) -> dict[str, Any]:
        """JSON for ``GET /v1/presets``."""
        return {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "min": self.minimum,
            "max": self.maximum,
            "odd": self.odd,
            "choices": list(self.choices) or None,
            "description": self.description,
        }


Filters: TypeAlias = FloatArray | Callable[..., FloatArray]
OutputNames: TypeAlias = tuple[str, ...] | Callable[..., tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class Preset:
    """A named filter bank and the rule that spreads it over the input channels.

    Attributes
    ----------
    name, description : str
    rule : "depthwise", "luminance" or "full"
    source : str
        Where the kernel comes from.
    range_preserving : bool
        True when every allowed parameter value gives weights that are non-negative and sum to 1
        per output channel (after the channel rule).
    params : tuple of PresetParam
    filters : ndarray or callable
        The bank: ``(k_h, k_w)`` or ``(F, k_h, k_w)`` for depthwise and luminance, the weight
        ``(c_out, c_in, k_h, k_w)`` for full; or a function taking the parameters as keywords
        and returning one of those.
    output_names : tuple of str or callable
        One name per filter (luminance, full, and depthwise banks with F > 1), or a function of
        the parameters returning them. Depthwise outputs are named after the input channels.
    requires_channels : int or None
        The ``c_in`` a full preset needs.
    """

    name: str
    description: str
    rule: ChannelRule
    source: str
    range_preserving: bool
    filters: Filters
    params: tuple[PresetParam, ...] = ()
    output_names: OutputNames = ()
    requires_channels: int | None = None

    def param(self, name: str) -> PresetParam:
        """The parameter called ``name`` (KeyError when there is none)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def resolve_params(self, params: Mapping[str, object] | None) -> dict[str, ParamValue]:
        """Every parameter's value: ``params`` validated, defaults for the rest.

        Raises
        ------
        InvalidArgumentError
            Naming every unknown parameter (with the allowed ones) and every bad value.
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidArgumentError(
                f"preset_params must be an object {{name: value}}, got {type(params).__name__}",
                field="preset_params",
            )
        known = [p.name for p in self.params]
        allowed = (
            "its parameters are " + ", ".join(known) if known else "it takes no parameters"
        )
        problems: list[dict[str, Any]] = []
        for key in params:
            if key not in known:
                problems.append({
                    "field": f"preset_params.{key}",
                    "message": f"{self.name} has no parameter {key!r}; {allowed}",
                })
        values: dict[str, ParamValue] = {}
        for p in self.params:
            if p.name not in params:
                values[p.name] = p.default
                continue
            try:
                values[p.name] = p.validate(params[p.name], self.name)
            except InvalidArgumentError as exc:
                problems.extend(exc.errors or [])
        if len(problems) == 1:
            raise InvalidArgumentError(problems[0]["message"], field=problems[0]["field"])
        if problems:
            raise InvalidArgumentError(
                "; ".join(p["message"] for p in problems), errors=problems
            )
        return values

    def resolve(
        self,
        channels: int,
        params: Mapping[str, object] | None = None,
        channel_names: Sequence[str] | None = None,
    ) -> ResolvedKernel:
        """The layer this preset becomes for ``channels`` input channels.

        Parameters
        ----------
        channels : int
            ``C``, the input's channel count.
        params : mapping of str to number, optional
            Parameter values; missing ones take their defaults. Numeric strings are accepted.
        channel_names : sequence of str, optional
            One name per input channel (e.g. ``("R", "G", "B", "A")``); None assumes
            :func:`default_channel_names`. Decides the luminance weights and depthwise output names.

        Returns
        -------
        ResolvedKernel
            ``weight`` float32 ``(c_out, C // groups, k_h, k_w)``.

        Raises
        ------
        InvalidArgumentError, ShapeError
        """
        names = _check_channels(channels, channel_names)
        values = self.resolve_params(params)
        if self.requires_channels is not None and channels != self.requires_channels:
            layout, advice = _CHANNEL_ADVICE.get(self.requires_channels, ("", "send an array"))
            raise ShapeError(
                f"{self.name} needs {self.requires_channels} input channels ({layout}); "
                f"got {channels}: {advice}",
                field="preset",
            )
        bank = np.asarray(self.filters(**values) if callable(self.filters) else self.filters,
                          dtype=np.float64)
        filter_names = (
            self.output_names(**values) if callable(self.output_names) else self.output_names
        )
        if self.rule == "full":
            weight, groups, outputs = bank, 1, filter_names
        else:
            bank = bank[np.newaxis] if bank.ndim == 2 else bank
            lum = luminance_weights(channels, names)
            weight, groups = spread_bank(bank, self.rule, lum)
            if self.rule == "luminance":
                outputs = filter_names
            elif bank.shape[0] == 1:
                outputs = names
            else:
                labels = filter_names or tuple(str(f) for f in range(bank.shape[0]))
                outputs = tuple(f"{c}:{f}" for c in names for f in labels)
        weight32 = np.ascontiguousarray(weight, dtype=np.float32)
        return ResolvedKernel(
            name=self.name,
            weight=weight32,
            bias=None,
            groups=groups,
            rule=self.rule,
            range_preserving=is_range_preserving(weight32),
            params=values,
            output_names=tuple(outputs),
        )

    def to_info(self) -> dict[str, Any]:
        """JSON for ``GET /v1/presets``."""
        return {
            "name": self.name,
            "description": self.description,
            "rule": self.rule,
            "parameters": [p.to_info() for p in self.params],
            "range_preserving": self.range_preserving,
            "source": self.source,
            "requires_channels": self.requires_channels,
        }


def _check_channels(channels: object, channel_names: Sequence[str] | None) -> tuple[str, ...]:
    """Validate ``channels`` and ``channel_names``; return the names (defaults filled in)."""
    if (
        not isinstance(channels, int | np.integer) or isinstance(channels, bool)
        or not 1 <= channels <= MAX_PRESET_CHANNELS
    ):
        raise InvalidArgumentError(
            f"channels={channels!r} must be an integer from 1 to {MAX_PRESET_CHANNELS}",
            field="channels",
        )
    count = int(channels)
    if channel_names is None:
        return default_channel_names(count)
    names = tuple(channel_names)
    if len(names) != count or not all(isinstance(n, str) for n in names):
        raise InvalidArgumentError(
            f"channel_names={list(names)!r} must be {count} strings, one per input channel",
            field="channel_names",
        )
    return names


def _float32_lists(array: npt.NDArray[np.float32]) -> Any:
    """Nested lists of the shortest decimals that round-trip each float32 (0.299, not 0.2989...)."""
    flat = [float(str(v)) for v in array.ravel()]
    return np.array(flat, dtype=np.float64).reshape(array.shape).tolist()


@dataclass(frozen=True, eq=False)
class ResolvedKernel:
    """A preset made concrete for one input: the layer that ``conv2d`` runs.

    Attributes
    ----------
    name : str
    weight : ndarray of float32, shape (c_out, c_in // groups, k_h, k_w)
    bias : ndarray of float32, shape (c_out,), or None
    groups : int
    rule : "depthwise", "luminance" or "full"
    range_preserving : bool
        Whether these weights are non-negative and sum to 1 per output channel.
    params : dict
        Every parameter's value, defaults filled in.
    output_names : tuple of str
        One per output channel.
    """

    name: str
    weight: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32] | None
    groups: int
    rule: ChannelRule
    range_preserving: bool
    params: dict[str, ParamValue]
    output_names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``GET /v1/presets/{name}``."""
        return {
            "name": self.name,
            "rule": self.rule,
            "groups": self.groups,
            "weight_shape": list(self.weight.shape),
            "weight": _float32_lists(self.weight),
            "bias": None if self.bias is None else _float32_lists(self.bias),
            "params": dict(self.params),
            "output_names": list(self.output_names),
            "range_preserving": self.range_preserving,
        }


def _size(default: int, description: str = "odd side of the square kernel") -> PresetParam:
    return PresetParam("size", "int", default, 1, 31, description, odd=True)


_SIGMA = PresetParam("sigma", "float", 1.0, 0.1, 10.0, "standard deviation of the Gaussian, px")


PRESETS: Mapping[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "identity", "1x1 Dirac delta: every output channel equals its input channel",
            "depthwise", "the identity kernel (the unit impulse)", True, IDENTITY_WEIGHTS,
        ),
        Preset(
            "box_blur", "mean of the size x size neighbourhood",
            "depthwise", "mean filter, as OpenCV blur()", True, box_kernel,
            params=(_size(3),),
        ),
        Preset(
            "gaussian_blur", "sampled Gaussian, normalised to sum 1; size is explicit "
            "(about 6 sigma + 1 keeps the tails)",
            "depthwise", "sampled Gaussian, as OpenCV GaussianBlur() and torchvision "
            "GaussianBlur(kernel_size, sigma)", True, gaussian_kernel,
            params=(_size(7), _SIGMA),
        ),
        Preset(
            "sharpen", "identity plus the negated 4-neighbour Laplacian (centre 5, sides -1)",
            "depthwise", "classic 3x3 sharpen; setosa.io 'Image Kernels' (V. Powell)", False,
            SHARPEN_WEIGHTS,
        ),
        Preset(
            "unsharp_mask", "one kernel: identity + amount * (identity - gaussian(size, sigma))",
            "depthwise", "unsharp masking, as GIMP and scikit-image unsharp_mask()", False,
            unsharp_mask_kernel,
            params=(
                _size(7), _SIGMA,
                PresetParam("amount", "float", 1.0, 0.0, 10.0, "weight of the detail added back"),
            ),
        ),
        Preset(
            "laplacian", "discrete Laplacian (second derivative) of the luminance; "
            "neighbours=4: [[0,1,0],[1,-4,1],[0,1,0]], neighbours=8: centre -8, others 1",
            "luminance", "5- and 9-point Laplacian stencils; OpenCV Laplacian(ksize=1) for 4",
            False, laplacian_kernel,
            params=(
                PresetParam("neighbours", "int", 4, 4, 8, "4- or 8-neighbour stencil",
                            choices=(4, 8)),
            ),
            output_names=("laplacian",),
        ),
        Preset(
            "sobel", "Sobel gradients of the luminance: x (positive where it brightens to the "
            "right) and y (positive where it brightens downwards)",
            "luminance", "Sobel & Feldman 1968; OpenCV Sobel() (unnormalised, correlation)",
            False, _const(np.stack([SOBEL_X_WEIGHTS, SOBEL_Y_WEIGHTS])),
            output_names=("x", "y"),
        ),
        Preset(
            "sobel_x", "Sobel d/dx of the luminance, positive where it brightens to the right",
            "luminance", "Sobel & Feldman 1968; OpenCV Sobel(dx=1)", False, SOBEL_X_WEIGHTS,
            output_names=("x",),
        ),
        Preset(
            "sobel_y", "Sobel d/dy of the luminance, positive where it brightens downwards",
            "luminance", "Sobel & Feldman 1968; OpenCV Sobel(dy=1)", False, SOBEL_Y_WEIGHTS,
            output_names=("y",),
        ),
        Preset(
            "scharr", "Scharr gradients of the luminance, x and y (signs as sobel)",
            "luminance", "Scharr 2000 (rotation-optimised 3x3 derivative); OpenCV Scharr()",
            False, _const(np.stack([SCHARR_X_WEIGHTS, SCHARR_Y_WEIGHTS])),
            output_names=("x", "y"),
        ),
        Preset(
            "prewitt", "Prewitt gradients of the luminance, x and y (signs as sobel)",
            "luminance", "Prewitt 1970", False,
            _const(np.stack([PREWITT_X_WEIGHTS, PREWITT_Y_WEIGHTS])),
            output_names=("x", "y"),
        ),
        Preset(
            "emboss", "relief lit from the bottom right; weights sum to 1",
            "depthwise", "classic 3x3 emboss; setosa.io 'Image Kernels' (V. Powell)", False,
            EMBOSS_WEIGHTS,
        ),
        Preset(
            "outline", "8-neighbour ridge/edge detector on the luminance (centre 8, others -1)",
            "luminance", "negated 9-point Laplacian; setosa.io 'Image Kernels' (V. Powell)",
            False, OUTLINE_WEIGHTS, output_names=("outline",),
        ),
        Preset(
            "motion_blur", "straight motion blur: a centred line segment of the given length "
            "and angle (degrees counter-clockwise from +x), area-sampled (anti-aliased), sum 1",
            "depthwise", "linear motion point-spread function, like MATLAB fspecial('motion')",
            True, motion_blur_kernel,
            params=(
                PresetParam("length", "int", 9, 1, 31, "odd blur length in px (kernel side)",
                            odd=True),
                PresetParam("angle", "float", 0.0, -360.0, 360.0,
                            "direction in degrees counter-clockwise from +x"),
            ),
        ),
        Preset(
            "kirsch", "Kirsch's 8 compass masks on the luminance, one map per direction "
            "(E, NE, N, NW, W, SW, S, SE: the side with the 5s is the brighter one)",
            "luminance", "Kirsch 1971 compass masks", False, KIRSCH_WEIGHTS,
            output_names=KIRSCH_DIRECTIONS,
        ),
        Preset(
            "gabor", "bank of zero-mean real Gabor filters on the luminance, one map per "
            "orientation theta = k * 180 / orientations; positive weights sum to 1",
            "luminance", "Gabor 1946, Daugman 1985; OpenCV getGaborKernel() with the DC term "
            "removed", False, gabor_bank,
            params=(
                PresetParam("orientations", "int", 4, 1, 16, "number of orientations"),
                PresetParam("wavelength", "float", 6.0, 2.0, 32.0, "carrier wavelength, px"),
                PresetParam("sigma", "float", 3.0, 0.5, 16.0,
                            "envelope standard deviation along the wave vector, px"),
                PresetParam("gamma", "float", 1.0, 0.1, 4.0,
                            "aspect ratio: across-deviation is sigma / gamma"),
                PresetParam("psi", "float", 0.0, -180.0, 180.0,
                            "phase in degrees: 0 even (lines), 90 odd (edges)"),
                PresetParam("size", "int", 19, 3, 31, "odd side of each filter", odd=True),
            ),
            output_names=gabor_output_names,
        ),
        Preset(
            "grayscale", "RGB to grey as one 1x1 convolution: 0.299 R + 0.587 G + 0.114 B",
            "full", "ITU-R BT.601 luma weights, as Pillow convert('L')", True,
            GRAYSCALE_WEIGHTS, output_names=("L",), requires_channels=3,
        ),
        Preset(
            "sepia", "1x1 colour mix to a sepia tone; bright pixels exceed 1 (clip them)",
            "full", "the common sepia-tone colour matrix", False, SEPIA_WEIGHTS,
            output_names=("R", "G", "B"), requires_channels=3,
        ),
        Preset(
            "channel_swap", "1x1 permutation RGB -> BGR (output 0 is blue)",
            "full", "channel permutation, OpenCV's BGR order", True, CHANNEL_SWAP_WEIGHTS,
            output_names=("B", "G", "R"), requires_channels=3,
        ),
        Preset(
            "d2l_edge", "D2L's 1x2 edge detector K = [[1, -1]] on the luminance: "
            "x[r, c] - x[r, c + 1]",
            "luminance", "Dive into Deep Learning, sec. 7.2 'Convolutions for Images'", False,
            D2L_EDGE_WEIGHTS, output_names=("edge",),
        ),
        Preset(
            "d2l_multi_in", "D2L's two-input-channel kernel K as weight (1, 2, 2, 2); on D2L's "
            "X with padding 0 it gives [[56, 72], [104, 120]]",
            "full", "Dive into Deep Learning, sec. 7.4 'Multiple Input and Multiple Output "
            "Channels'", False, D2L_MULTI_IN_WEIGHTS, output_names=("K",),
            requires_channels=2,
        ),
        Preset(
            "d2l_multi_in_out", "D2L's K, K + 1 and K + 2 as three output channels, weight "
            "(3, 2, 2, 2)",
            "full", "Dive into Deep Learning, sec. 7.4 'Multiple Input and Multiple Output "
            "Channels'", False, D2L_MULTI_IN_OUT_WEIGHTS, output_names=("K", "K+1", "K+2"),
            requires_channels=2,
        ),
    )
}
"""Every preset, by name: the one registry."""


def resolve_preset(
    name: str,
    channels: int,
    params: Mapping[str, object] | None = None,
    channel_names: Sequence[str] | None = None,
) -> ResolvedKernel:
    """The layer preset ``name`` becomes for ``channels`` input channels.

    Parameters
    ----------
    name : str
        A key of :data:`PRESETS`.
    channels : int
        ``C``, the input's channel count.
    params : mapping of str to number, optional
        Parameter values (numeric strings accepted); missing ones take their defaults.
    channel_names : sequence of str, optional
        One name per input channel, e.g. ``("R", "G", "B", "A")`` or ``("L", "A")``; None
        assumes :func:`default_channel_names`.

    Returns
    -------
    ResolvedKernel
        ``weight`` float32 ``(c_out, C // groups, k_h, k_w)``, ``bias`` None, ``groups``.

    Raises
    ------
    NotFoundError
        Unknown ``name``; the message lists the known presets.
    InvalidArgumentError
        Unknown parameter, bad value, or bad ``channels``/``channel_names``.
    ShapeError
        A full preset given the wrong channel count; the message says how to get the right one.
    """
    preset = PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        raise NotFoundError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}",
            field="preset",
        )
    return preset.resolve(channels, params, channel_names)
