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

Modules: :mod:`.kernels` (named kernel constants and kernel functions), :mod:`.rules` (the
channel rules) and :mod:`.registry` (the presets). Everything is re-exported here.
"""

from convserve.conv.presets.kernels import (
    BT601_LUMA,
    CHANNEL_SWAP_WEIGHTS,
    D2L_EDGE_WEIGHTS,
    D2L_K,
    D2L_MULTI_IN_OUT_WEIGHTS,
    D2L_MULTI_IN_WEIGHTS,
    EMBOSS_WEIGHTS,
    GRAYSCALE_WEIGHTS,
    IDENTITY_WEIGHTS,
    KIRSCH_DIRECTIONS,
    KIRSCH_WEIGHTS,
    LAPLACIAN_4_WEIGHTS,
    LAPLACIAN_8_WEIGHTS,
    OUTLINE_WEIGHTS,
    PREWITT_X_WEIGHTS,
    PREWITT_Y_WEIGHTS,
    SCHARR_X_WEIGHTS,
    SCHARR_Y_WEIGHTS,
    SEPIA_WEIGHTS,
    SHARPEN_WEIGHTS,
    SOBEL_X_WEIGHTS,
    SOBEL_Y_WEIGHTS,
    box_kernel,
    gabor_bank,
    gabor_orientations,
    gabor_output_names,
    gaussian_kernel,
    laplacian_kernel,
    motion_blur_kernel,
    unsharp_mask_kernel,
)
from convserve.conv.presets.params import ParamKind, PresetParam
from convserve.conv.presets.registry import (
    MAX_PRESET_CHANNELS,
    PRESETS,
    Preset,
    ResolvedKernel,
    resolve_preset,
)
from convserve.conv.presets.rules import (
    ChannelRule,
    default_channel_names,
    is_range_preserving,
    luminance_weights,
    spread_bank,
)

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
