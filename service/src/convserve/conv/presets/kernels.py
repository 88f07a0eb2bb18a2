"""Named kernels as constants (``SOBEL_X_WEIGHTS``) and functions of parameters
(``gaussian_kernel``), in the manner of scikit-image's filters.

Conventions
-----------
- Cross-correlation without flip, as in every convserve layer: ``y[r, c] = sum w[u, v] *
  x[r + u - k_h // 2, c + v - k_w // 2]`` for an odd kernel with ``padding="same"``.
- ``x`` is the column index (grows to the right), ``y`` the row index (grows downwards).
  :data:`SOBEL_X_WEIGHTS` is positive where intensity increases to the right (a left-to-right
  ramp of slope 1 gives +8), :data:`SOBEL_Y_WEIGHTS` where it increases downwards.
- Angles are degrees counter-clockwise from +x as seen on screen (90 points up).
- Kernel sizes are explicit parameters with fixed defaults (never derived from ``sigma``), so a
  preset's shape is what its parameters say.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "constant_kernel",
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
    "OUTLINE_WEIGHTS",
    "PREWITT_X_WEIGHTS",
    "PREWITT_Y_WEIGHTS",
    "SCHARR_X_WEIGHTS",
    "SCHARR_Y_WEIGHTS",
    "SEPIA_WEIGHTS",
    "SHARPEN_WEIGHTS",
    "SOBEL_X_WEIGHTS",
    "SOBEL_Y_WEIGHTS",
    "FloatArray",
    "ParamValue",
    "box_kernel",
    "gabor_bank",
    "gabor_orientations",
    "gabor_output_names",
    "gaussian_kernel",
    "laplacian_kernel",
    "motion_blur_kernel",
    "unsharp_mask_kernel",
]

ParamValue: TypeAlias = int | float
FloatArray: TypeAlias = npt.NDArray[np.float64]


def constant_kernel(values: object) -> FloatArray:
    """A read-only float64 array, so the module's constants cannot be changed by accident."""
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


# --- Constant kernels, (k_h, k_w) unless stated --------------------------------------------

IDENTITY_WEIGHTS = constant_kernel([[1.0]])
"""The 1x1 Dirac delta: output equals input."""

SHARPEN_WEIGHTS = constant_kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
"""Identity plus the negated 4-neighbour Laplacian; sums to 1."""

EMBOSS_WEIGHTS = constant_kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
"""Relief lit from the bottom right; sums to 1, so flat areas keep their value."""

OUTLINE_WEIGHTS = constant_kernel([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
"""Ridge/edge detector: the negated 8-neighbour Laplacian; sums to 0."""

LAPLACIAN_4_WEIGHTS = constant_kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
"""Discrete Laplacian, 4-neighbour (5-point stencil); OpenCV ``Laplacian(ksize=1)``."""

LAPLACIAN_8_WEIGHTS = constant_kernel([[1, 1, 1], [1, -8, 1], [1, 1, 1]])
"""Discrete Laplacian, 8-neighbour (9-point stencil)."""

SOBEL_X_WEIGHTS = constant_kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
"""d/dx: positive where intensity increases to the right (responds to vertical edges)."""

SOBEL_Y_WEIGHTS = constant_kernel(SOBEL_X_WEIGHTS.T)
"""d/dy: positive where intensity increases downwards (responds to horizontal edges)."""

SCHARR_X_WEIGHTS = constant_kernel([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
"""Scharr's rotation-optimised d/dx; same sign convention as :data:`SOBEL_X_WEIGHTS`."""

SCHARR_Y_WEIGHTS = constant_kernel(SCHARR_X_WEIGHTS.T)
"""Scharr's d/dy, positive where intensity increases downwards."""

PREWITT_X_WEIGHTS = constant_kernel([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
"""Prewitt's d/dx, positive where intensity increases to the right."""

PREWITT_Y_WEIGHTS = constant_kernel(PREWITT_X_WEIGHTS.T)
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


KIRSCH_WEIGHTS = constant_kernel(_compass(np.array([[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]], float)))
"""Kirsch's 8 compass masks ``(8, 3, 3)`` in :data:`KIRSCH_DIRECTIONS` order; each is named by the
side that carries its 5s and answers most where that side is brighter."""

BT601_LUMA = constant_kernel([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights for R, G, B (Pillow's ``convert("L")``); they sum to 1."""

GRAYSCALE_WEIGHTS = constant_kernel(BT601_LUMA.reshape(1, 3, 1, 1))
"""``(1, 3, 1, 1)``: RGB to grey as one 1x1 convolution."""

SEPIA_WEIGHTS = constant_kernel(
    np.array(
        [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]
    ).reshape(3, 3, 1, 1)
)
"""``(3, 3, 1, 1)``: the common sepia-tone colour matrix; rows sum to 1.351, 1.203 and 0.937,
so bright inputs exceed 1 (clip them)."""

CHANNEL_SWAP_WEIGHTS = constant_kernel(np.eye(3)[::-1].reshape(3, 3, 1, 1))
"""``(3, 3, 1, 1)``: the permutation RGB -> BGR (OpenCV's channel order)."""

D2L_EDGE_WEIGHTS = constant_kernel([[1.0, -1.0]])
"""``(1, 2)``: D2L's edge detector ``K = [[1, -1]]``; ``y[r, c] = x[r, c] - x[r, c + 1]``,
so a bright-to-dark step to the right gives +1 and a dark-to-bright one gives -1."""

D2L_K = constant_kernel([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
"""``(2, 2, 2)``: D2L's two-input-channel kernel ``K``."""

D2L_MULTI_IN_WEIGHTS = constant_kernel(D2L_K[np.newaxis])
"""``(1, 2, 2, 2)``: ``K`` as one output channel over two input channels."""

D2L_MULTI_IN_OUT_WEIGHTS = constant_kernel(np.stack([D2L_K, D2L_K + 1, D2L_K + 2]))
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
