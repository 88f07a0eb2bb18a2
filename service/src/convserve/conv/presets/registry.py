"""The preset registry: :data:`PRESETS` (plain data: a bank, a channel rule, parameters and
documentation per preset) and :func:`resolve_preset`, which makes one concrete for ``C`` input
channels.

Past 500 lines because most of it is the :data:`PRESETS` table, plain data kept whole so that
each preset's bank, rule, parameters, source and description read in one place."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from convserve.conv.presets.kernels import (
    CHANNEL_SWAP_WEIGHTS,
    D2L_EDGE_WEIGHTS,
    D2L_MULTI_IN_OUT_WEIGHTS,
    D2L_MULTI_IN_WEIGHTS,
    EMBOSS_WEIGHTS,
    GRAYSCALE_WEIGHTS,
    IDENTITY_WEIGHTS,
    KIRSCH_DIRECTIONS,
    KIRSCH_WEIGHTS,
    OUTLINE_WEIGHTS,
    PREWITT_X_WEIGHTS,
    PREWITT_Y_WEIGHTS,
    SCHARR_X_WEIGHTS,
    SCHARR_Y_WEIGHTS,
    SEPIA_WEIGHTS,
    SHARPEN_WEIGHTS,
    SOBEL_X_WEIGHTS,
    SOBEL_Y_WEIGHTS,
    FloatArray,
    ParamValue,
    box_kernel,
    constant_kernel,
    gabor_bank,
    gabor_output_names,
    gaussian_kernel,
    laplacian_kernel,
    motion_blur_kernel,
    unsharp_mask_kernel,
)
from convserve.conv.presets.params import PresetParam
from convserve.conv.presets.rules import (
    CHANNEL_ADVICE,
    ChannelRule,
    default_channel_names,
    is_range_preserving,
    luminance_weights,
    spread_bank,
)
from convserve.errors import InvalidArgumentError, NotFoundError, ShapeError

__all__ = [
    "MAX_PRESET_CHANNELS",
    "PRESETS",
    "Preset",
    "ResolvedKernel",
    "resolve_preset",
]

MAX_PRESET_CHANNELS = 4096
"""Most input channels a preset is resolved for (a guard against absurd allocations)."""



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
            layout, advice = CHANNEL_ADVICE.get(self.requires_channels, ("", "send an array"))
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
    """Nested lists of the shortest decimals that round-trip each float32 (0.299, not 0.2989...).

    Each distinct value (by its bits, so -0.0 stays -0.0) is formatted once: a bank spread over
    thousands of channels repeats a few hundred values, and formatting each of its millions of
    elements took 12 s.
    """
    bits, inverse = np.unique(np.ascontiguousarray(array, dtype=np.float32).view(np.uint32),
                              return_inverse=True)
    decimals = np.array([float(str(v)) for v in bits.view(np.float32)], dtype=np.float64)
    return decimals[inverse.reshape(-1)].reshape(array.shape).tolist()


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
            False, constant_kernel(np.stack([SOBEL_X_WEIGHTS, SOBEL_Y_WEIGHTS])),
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
            False, constant_kernel(np.stack([SCHARR_X_WEIGHTS, SCHARR_Y_WEIGHTS])),
            output_names=("x", "y"),
        ),
        Preset(
            "prewitt", "Prewitt gradients of the luminance, x and y (signs as sobel)",
            "luminance", "Prewitt 1970", False,
            constant_kernel(np.stack([PREWITT_X_WEIGHTS, PREWITT_Y_WEIGHTS])),
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
    key = _memo_key(name, channels, params, channel_names)
    if key is None:
        return preset.resolve(channels, params, channel_names)
    resolved = _resolve_memo(key)
    return dataclasses.replace(  # fresh arrays and params for the caller, as without the memo
        resolved, weight=resolved.weight.copy(),
        bias=None if resolved.bias is None else resolved.bias.copy(),
        params=dict(resolved.params),
    )


def _memo_key(name: str, channels: int, params: Mapping[str, object] | None,
              channel_names: Sequence[str] | None) -> tuple[Any, ...] | None:
    """The memo key of a resolution, or None when a parameter value is not hashable. Each
    value goes with its type: ``True == 1``, yet a boolean is refused where 1 is not."""
    if type(channels) is not int or (params is not None and not isinstance(params, Mapping)):
        return None  # Preset.resolve says what is wrong with them
    items = tuple(sorted((k, type(v).__name__, v) for k, v in (params or {}).items()))
    names = None if channel_names is None else tuple(channel_names)
    key = (name, channels, items, names)
    try:
        hash(key)
    except TypeError:
        return None
    return key


@functools.lru_cache(maxsize=256)
def _resolve_memo(key: tuple[Any, ...]) -> ResolvedKernel:
    """:meth:`Preset.resolve`, memoised: presets are pure functions of their arguments, and the
    same one is resolved twice per request (admission's estimate, then the flow). The arrays
    are made read-only, as they are shared."""
    name, channels, items, names = key
    params: dict[str, object] = {k: v for k, _, v in items}
    resolved = PRESETS[name].resolve(channels, params, names)
    resolved.weight.flags.writeable = False
    if resolved.bias is not None:
        resolved.bias.flags.writeable = False
    return resolved
