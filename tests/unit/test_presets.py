"""Presets: shapes per channel rule, the numbers each kernel gives, and every error message."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image

from convserve import conv2d
from convserve.conv.presets import (
    BT601_LUMA,
    KIRSCH_WEIGHTS,
    MAX_PRESET_CHANNELS,
    PRESETS,
    SOBEL_X_WEIGHTS,
    Preset,
    ResolvedKernel,
    gabor_bank,
    is_range_preserving,
    luminance_weights,
    motion_blur_kernel,
    resolve_preset,
    spread_bank,
)
from convserve.errors import InvalidArgumentError, NotFoundError, ShapeError

DATA = Path(__file__).resolve().parents[1] / "data"

# D2L "Multiple Input and Output Channels" (DESIGN.md section 1).
D2L_X = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], float)

# Per preset at default parameters: rule, filters in the bank F (or the full weight's shape),
# and (k_h, k_w). This is the documented shape table; the first test checks it is complete.
SHAPES: dict[str, tuple[str, int | tuple[int, int, int, int], tuple[int, int]]] = {
    "identity": ("depthwise", 1, (1, 1)),
    "box_blur": ("depthwise", 1, (3, 3)),
    "gaussian_blur": ("depthwise", 1, (7, 7)),
    "sharpen": ("depthwise", 1, (3, 3)),
    "unsharp_mask": ("depthwise", 1, (7, 7)),
    "laplacian": ("luminance", 1, (3, 3)),
    "sobel": ("luminance", 2, (3, 3)),
    "sobel_x": ("luminance", 1, (3, 3)),
    "sobel_y": ("luminance", 1, (3, 3)),
    "scharr": ("luminance", 2, (3, 3)),
    "prewitt": ("luminance", 2, (3, 3)),
    "emboss": ("depthwise", 1, (3, 3)),
    "outline": ("luminance", 1, (3, 3)),
    "motion_blur": ("depthwise", 1, (9, 9)),
    "kirsch": ("luminance", 8, (3, 3)),
    "gabor": ("luminance", 4, (19, 19)),
    "grayscale": ("full", (1, 3, 1, 1), (1, 1)),
    "sepia": ("full", (3, 3, 1, 1), (1, 1)),
    "channel_swap": ("full", (3, 3, 1, 1), (1, 1)),
    "d2l_edge": ("luminance", 1, (1, 2)),
    "d2l_multi_in": ("full", (1, 2, 2, 2), (2, 2)),
    "d2l_multi_in_out": ("full", (3, 2, 2, 2), (2, 2)),
}


def correlate(x: np.ndarray, weight: np.ndarray, groups: int = 1, same: bool = False,
              mode: Literal["reflect", "constant"] = "reflect") -> np.ndarray:
    """Slow float64 oracle: PyTorch conv2d, stride 1, dilation 1, over ``x (C, H, W)``.

    ``same`` pads ``k - 1`` per axis (odd remainder bottom/right) with NumPy's ``mode``
    (``reflect`` is PyTorch's reflect); otherwise no padding.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(weight, np.float64)
    c_out, c_in_g, k_h, k_w = w.shape
    if same:
        top, left = (k_h - 1) // 2, (k_w - 1) // 2
        x = np.pad(x, ((0, 0), (top, k_h - 1 - top), (left, k_w - 1 - left)), mode=mode)
    h, wd = x.shape[1] - k_h + 1, x.shape[2] - k_w + 1
    out = np.zeros((c_out, h, wd))
    per_group = c_out // groups
    for o in range(c_out):
        first = (o // per_group) * c_in_g
        for i in range(c_in_g):
            for u in range(k_h):
                for v in range(k_w):
                    out[o] += w[o, i, u, v] * x[first + i, u:u + h, v:v + wd]
    return out


def apply(kernel: ResolvedKernel, x: np.ndarray, same: bool = False) -> np.ndarray:
    return correlate(x, kernel.weight, kernel.groups, same=same)


def channel_counts(preset: Preset) -> list[int]:
    return [preset.requires_channels] if preset.requires_channels else [1, 3, 4]


def param_corners(preset: Preset) -> list[dict[str, float]]:
    """Defaults, and each parameter at its minimum and at its maximum (odd/choice-respecting)."""
    corners: list[dict[str, float]] = [{}]
    for p in preset.params:
        low, high = (min(p.choices), max(p.choices)) if p.choices else (p.minimum, p.maximum)
        corners += [{p.name: low}, {p.name: high}]
    return corners


def all_presets_by_channels() -> list[object]:
    return [
        pytest.param(name, c, id=f"{name}-c{c}")
        for name, preset in PRESETS.items()
        for c in channel_counts(preset)
    ]


# --- The registry as a whole ---------------------------------------------------------------


def test_shape_table_covers_every_preset_and_the_required_ones() -> None:
    required = {
        "identity", "box_blur", "gaussian_blur", "sharpen", "unsharp_mask", "laplacian",
        "sobel", "sobel_x", "sobel_y", "scharr", "prewitt", "emboss", "outline",
        "motion_blur", "kirsch", "gabor", "grayscale", "d2l_edge", "d2l_multi_in",
        "d2l_multi_in_out",
    }
    assert required <= set(PRESETS)
    assert set(SHAPES) == set(PRESETS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_is_documented_and_its_parameters_are_consistent(name: str) -> None:
    preset = PRESETS[name]
    assert preset.name == name
    assert preset.description and preset.source
    assert preset.rule == SHAPES[name][0]
    assert (preset.requires_channels is not None) == (preset.rule == "full")
    names = [p.name for p in preset.params]
    assert len(set(names)) == len(names)
    for p in preset.params:
        assert p.minimum <= p.default <= p.maximum
        assert isinstance(p.default, int if p.kind == "int" else float)
        assert p.validate(p.default, name) == p.default
        if p.odd:
            assert p.default % 2 == 1 and p.kind == "int"
        if p.choices:
            assert p.default in p.choices
            assert (p.minimum, p.maximum) == (min(p.choices), max(p.choices))
    if callable(preset.filters):
        assert list(inspect.signature(preset.filters).parameters) == names
    else:
        assert not preset.params
        assert not preset.filters.flags.writeable


@pytest.mark.parametrize(("name", "channels"), all_presets_by_channels())
def test_resolves_to_documented_shape_and_groups(name: str, channels: int) -> None:
    rule, bank, (k_h, k_w) = SHAPES[name]
    kernel = resolve_preset(name, channels)
    shape: tuple[int, int, int, int]
    if isinstance(bank, tuple):
        assert rule == "full"
        shape, groups = bank, 1
    elif rule == "depthwise":
        shape, groups = (channels * bank, 1, k_h, k_w), channels
    else:
        assert rule == "luminance"
        shape, groups = (bank, channels, k_h, k_w), 1
    assert kernel.weight.shape == shape
    assert kernel.groups == groups
    assert kernel.rule == rule
    assert kernel.weight.dtype == np.float32 and kernel.weight.flags.c_contiguous
    assert kernel.bias is None
    assert len(kernel.output_names) == shape[0]
    assert kernel.params == {p.name: p.default for p in PRESETS[name].params}


def independent_range_check(weight: np.ndarray) -> bool:
    per_output = weight.astype(np.float64).reshape(weight.shape[0], -1)
    return bool((per_output >= 0).all() and np.all(np.abs(per_output.sum(axis=1) - 1) < 1e-5))


@pytest.mark.parametrize(("name", "channels"), all_presets_by_channels())
def test_range_preserving_flag_agrees_with_weights(name: str, channels: int) -> None:
    preset = PRESETS[name]
    kernel = resolve_preset(name, channels)
    assert kernel.range_preserving == independent_range_check(kernel.weight)
    assert kernel.range_preserving == preset.range_preserving
    if preset.range_preserving:  # declared for every allowed value, so check the corners too
        for params in param_corners(preset):
            corner = resolve_preset(name, channels, params)
            assert corner.range_preserving and independent_range_check(corner.weight), params


@pytest.mark.parametrize(("name", "channels"), all_presets_by_channels())
def test_info_and_resolved_dict_are_json(name: str, channels: int) -> None:
    info = json.loads(json.dumps(PRESETS[name].to_info()))
    assert set(info) == {
        "name", "description", "rule", "parameters", "range_preserving", "source",
        "requires_channels",
    }
    for param in info["parameters"]:
        assert {"name", "type", "default", "min", "max", "description"} <= set(param)
    kernel = resolve_preset(name, channels)
    body = json.loads(json.dumps(kernel.to_dict()))
    assert set(body) == {
        "name", "rule", "groups", "weight", "weight_shape", "bias", "params", "output_names",
        "range_preserving",
    }
    assert body["weight_shape"] == list(kernel.weight.shape)
    # The short decimals in the JSON read back as exactly the float32 weights.
    np.testing.assert_array_equal(np.array(body["weight"], np.float32), kernel.weight)
    assert body["output_names"] == list(kernel.output_names)


def test_weights_are_written_as_short_decimals() -> None:
    body = resolve_preset("grayscale", 3).to_dict()
    assert body["weight"] == [[[[0.299]], [[0.587]], [[0.114]]]]
    assert resolve_preset("box_blur", 1, {"size": 5}).to_dict()["weight"][0][0][0][0] == 0.04


def test_resolving_returns_fresh_arrays_not_the_constants() -> None:
    kernel = resolve_preset("sobel_x", 1)
    kernel.weight[:] = 0
    np.testing.assert_array_equal(resolve_preset("sobel_x", 1).weight[0, 0], SOBEL_X_WEIGHTS)


# --- Channel rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "names", "expected"),
    [
        pytest.param(1, None, [1.0], id="gray"),
        pytest.param(3, None, [0.299, 0.587, 0.114], id="rgb"),
        pytest.param(3, ("R", "G", "B"), [0.299, 0.587, 0.114], id="rgb-named"),
        pytest.param(3, ("B", "G", "R"), [0.114, 0.587, 0.299], id="bgr-named"),
        pytest.param(4, None, [0.299, 0.587, 0.114, 0.0], id="rgba-alpha-0"),
        pytest.param(4, ("r", "g", "b", "a"), [0.299, 0.587, 0.114, 0.0], id="rgba-lowercase"),
        pytest.param(2, None, [1.0, 0.0], id="la-alpha-0"),
        pytest.param(2, ("L", "A"), [1.0, 0.0], id="la-named"),
        pytest.param(5, None, [0.2] * 5, id="five-equal"),
        pytest.param(4, ("c0", "c1", "c2", "c3"), [0.25] * 4, id="unnamed-four-equal"),
        pytest.param(3, ("c0", "c1", "A"), [0.5, 0.5, 0.0], id="other-with-alpha"),
    ],
)
def test_luminance_weights(channels: int, names: tuple[str, ...] | None,
                           expected: list[float]) -> None:
    weights = luminance_weights(channels, names)
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-12)
    assert math.isclose(weights.sum(), 1.0)


def test_luminance_rule_weights_each_filter_by_channel() -> None:
    rgba = resolve_preset("sobel", 4).weight
    for c, lum in enumerate([0.299, 0.587, 0.114, 0.0]):
        np.testing.assert_allclose(rgba[0, c], lum * SOBEL_X_WEIGHTS, atol=1e-6)
        np.testing.assert_allclose(rgba[1, c], lum * SOBEL_X_WEIGHTS.T, atol=1e-6)
    la = resolve_preset("sobel_x", 2, channel_names=("L", "A")).weight
    np.testing.assert_array_equal(la[0, 0], SOBEL_X_WEIGHTS)
    np.testing.assert_array_equal(la[0, 1], np.zeros((3, 3)))
    assert resolve_preset("laplacian", 4, channel_names=("c0", "c1", "c2", "c3")).weight[
        0, :, 1, 1].tolist() == [-1.0] * 4


def test_depthwise_rule_names_outputs_after_input_channels() -> None:
    assert resolve_preset("box_blur", 3).output_names == ("R", "G", "B")
    assert resolve_preset("box_blur", 4).output_names == ("R", "G", "B", "A")
    assert resolve_preset("box_blur", 2, channel_names=("L", "A")).output_names == ("L", "A")
    assert resolve_preset("box_blur", 6).output_names == tuple(f"c{i}" for i in range(6))


def test_spread_bank_lays_out_depthwise_multiplier_like_pytorch() -> None:
    bank = np.stack([np.full((3, 3), 1.0), np.full((3, 3), 2.0)])  # F = 2
    weight, groups = spread_bank(bank, "depthwise", luminance_weights(3))
    assert weight.shape == (6, 1, 3, 3) and groups == 3
    # Output channel o reads input channel o // F and uses filter o % F.
    assert weight[:, 0, 0, 0].tolist() == [1, 2, 1, 2, 1, 2]


def test_luminance_blur_is_range_preserving() -> None:
    weight, groups = spread_bank(np.full((1, 3, 3), 1 / 9), "luminance", luminance_weights(4))
    assert groups == 1 and weight.shape == (1, 4, 3, 3)
    assert is_range_preserving(weight)
    assert not is_range_preserving(weight * 1.01)
    assert not is_range_preserving(resolve_preset("sharpen", 1).weight)


# --- Each kernel's numbers -----------------------------------------------------------------


def ramp(channels: int, slope: float, axis: str, size: tuple[int, int] = (6, 7)) -> np.ndarray:
    rows, cols = np.indices(size, dtype=np.float64)
    plane = slope * (cols if axis == "x" else rows)
    return np.repeat(plane[np.newaxis], channels, axis=0)


@pytest.mark.parametrize(
    ("name", "gain"), [("sobel_x", 8), ("scharr", 32), ("prewitt", 6), ("sobel", 8)]
)
@pytest.mark.parametrize("channels", [1, 3])
def test_x_gradient_is_positive_on_left_to_right_ramp(name: str, gain: int,
                                                      channels: int) -> None:
    out = apply(resolve_preset(name, channels), ramp(channels, 0.1, "x"))
    np.testing.assert_allclose(out[0], np.full((4, 5), gain * 0.1), rtol=1e-5)
    if out.shape[0] == 2:  # the y map sees no vertical change
        np.testing.assert_allclose(out[1], 0.0, atol=1e-6)


def test_sobel_y_is_positive_on_top_to_bottom_ramp() -> None:
    out = apply(resolve_preset("sobel_y", 1), ramp(1, 0.1, "y"))
    np.testing.assert_allclose(out[0], np.full((4, 5), 0.8), rtol=1e-5)
    np.testing.assert_allclose(apply(resolve_preset("sobel_x", 1), ramp(1, 0.1, "y")), 0.0,
                               atol=1e-6)


@pytest.mark.parametrize(("neighbours", "expected"), [(4, 2.0), (8, 6.0)])
def test_laplacian_of_a_parabola(neighbours: int, expected: float) -> None:
    cols = np.indices((5, 6), dtype=np.float64)[1]
    out = apply(resolve_preset("laplacian", 1, {"neighbours": neighbours}), cols[None] ** 2)
    np.testing.assert_allclose(out, expected)


def test_outline_is_the_negated_8_neighbour_laplacian() -> None:
    np.testing.assert_array_equal(resolve_preset("outline", 1).weight,
                                  -resolve_preset("laplacian", 1, {"neighbours": 8}).weight)


@pytest.mark.parametrize(("size", "sigma"), [(7, 1.0), (5, 0.5), (31, 5.0), (1, 2.0)])
def test_gaussian_sums_to_one_symmetric_rank_one(size: int, sigma: float) -> None:
    w = resolve_preset("gaussian_blur", 1, {"size": size, "sigma": sigma}).weight[0, 0]
    assert w.shape == (size, size)
    assert math.isclose(float(w.sum(dtype=np.float64)), 1.0, abs_tol=1e-6)
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    singular = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    assert (singular[1:] <= 1e-6 * singular[0]).all()  # rank 1 up to float32 rounding
    assert w[size // 2, size // 2] == w.max()
    centre_row = w[size // 2].astype(np.float64)
    if size > 1:  # ratio of neighbouring samples follows exp(-(2i+1)/(2 sigma^2))
        ratio = centre_row[size // 2 + 1] / centre_row[size // 2]
        assert math.isclose(ratio, math.exp(-1 / (2 * sigma**2)), rel_tol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5, 31])
def test_box_blur_weights_are_all_equal(size: int) -> None:
    w = resolve_preset("box_blur", 3, {"size": size}).weight
    assert w.shape == (3, 1, size, size)
    np.testing.assert_array_equal(w, np.float32(1 / size**2))


def test_unsharp_mask_is_identity_plus_amount_times_detail() -> None:
    params = {"size": 5, "sigma": 1.5, "amount": 2.0}
    w = resolve_preset("unsharp_mask", 1, params).weight[0, 0].astype(np.float64)
    gauss = resolve_preset("gaussian_blur", 1, {"size": 5, "sigma": 1.5}).weight[0, 0]
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    np.testing.assert_allclose(w, delta + 2.0 * (delta - gauss), atol=1e-6)
    assert math.isclose(w.sum(), 1.0, abs_tol=1e-6)
    np.testing.assert_array_equal(
        resolve_preset("unsharp_mask", 1, {"amount": 0}).weight[0, 0], np.pad([[1.0]], 3)
    )


def test_identity_with_numpy_engine_returns_input() -> None:
    x = np.random.default_rng(0).random((4, 9, 11), dtype=np.float32)
    kernel = resolve_preset("identity", 4)
    y = conv2d(x, kernel.weight, groups=kernel.groups, padding="same", padding_mode="reflect",
               engine="numpy")
    np.testing.assert_array_equal(y, x)


def test_identity_with_reference_returns_input() -> None:
    x = np.random.default_rng(1).random((3, 5, 6))
    np.testing.assert_array_equal(apply(resolve_preset("identity", 3), x, same=True), x)


def test_kirsch_is_eight_distinct_45_degree_turns() -> None:
    kernel = resolve_preset("kirsch", 1)
    w = kernel.weight[:, 0].astype(np.float64)
    assert kernel.output_names == ("E", "NE", "N", "NW", "W", "SW", "S", "SE")
    assert len({m.tobytes() for m in w}) == 8
    np.testing.assert_array_equal(w[0], [[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]])
    np.testing.assert_array_equal(w[1], [[-3, 5, 5], [-3, 0, 5], [-3, -3, -3]])
    for k in range(0, 8, 2):  # every second mask is the previous one turned 90 degrees
        np.testing.assert_array_equal(w[(k + 2) % 8], np.rot90(w[k]))
    np.testing.assert_array_equal(w[4], w[0][:, ::-1])
    assert (w.sum(axis=(1, 2)) == 0).all()
    np.testing.assert_array_equal(w, KIRSCH_WEIGHTS)


def test_kirsch_east_mask_answers_most_where_the_right_is_brighter() -> None:
    step = np.zeros((1, 5, 6))
    step[0, :, 3:] = 1.0
    out = apply(resolve_preset("kirsch", 1), step)
    assert out[:, 2, 1:3].max(axis=1).argmax() == 0  # E


@pytest.mark.parametrize("orientations", [1, 3, 4, 6])
def test_gabor_has_one_zero_mean_filter_per_orientation(orientations: int) -> None:
    kernel = resolve_preset("gabor", 3, {"orientations": orientations})
    assert kernel.weight.shape == (orientations, 3, 19, 19)
    step = 180 / orientations
    assert kernel.output_names == tuple(f"theta={k * step:g}" for k in range(orientations))
    bank = gabor_bank(orientations, 6.0, 3.0, 1.0, 0.0, 19)
    np.testing.assert_allclose(bank.sum(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.where(bank > 0, bank, 0).sum(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(kernel.weight.sum(axis=(1, 2, 3), dtype=np.float64), 0.0,
                               atol=1e-6)
    assert len({f.tobytes() for f in bank}) == orientations


def test_gabor_answers_most_to_a_grating_of_its_own_orientation() -> None:
    kernel = resolve_preset("gabor", 1, {"orientations": 4, "wavelength": 6.0, "gamma": 0.5})
    rows, cols = np.indices((40, 40), dtype=np.float64)
    for k, theta in enumerate(np.radians([0, 45, 90, 135])):
        along = cols * math.cos(theta) - rows * math.sin(theta)  # screen y points up
        grating = 0.5 + 0.5 * np.cos(2 * math.pi * along / 6.0)
        energy = (apply(kernel, grating[None]) ** 2).mean(axis=(1, 2))
        assert energy.argmax() == k, (k, energy)


def test_gabor_odd_phase_is_antisymmetric_and_degenerate_carrier_is_zero() -> None:
    odd = gabor_bank(1, 6.0, 2.0, 1.0, 90.0, 9)[0]
    np.testing.assert_allclose(odd, -odd[:, ::-1], atol=1e-12)
    # Wavelength 2 with phase 90 samples the sine at its zeros: nothing to see, all zero.
    np.testing.assert_array_equal(gabor_bank(1, 2.0, 2.0, 1.0, 90.0, 5), 0.0)


@pytest.mark.parametrize("angle", [0, 15, 30, 45, 90, 135, 200, -60, 359.5])
@pytest.mark.parametrize("length", [1, 5, 9, 31])
def test_motion_blur_sums_to_one_and_is_half_turn_symmetric(angle: float, length: int) -> None:
    w = resolve_preset("motion_blur", 1, {"length": length, "angle": angle}).weight[0, 0]
    assert w.shape == (length, length)
    assert (w >= 0).all()
    assert math.isclose(float(w.sum(dtype=np.float64)), 1.0, abs_tol=1e-6)
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-7)
    np.testing.assert_allclose(motion_blur_kernel(length, angle + 180),
                               motion_blur_kernel(length, angle), atol=1e-12)


def test_motion_blur_direction() -> None:
    horizontal = motion_blur_kernel(5, 0)
    expected = np.zeros((5, 5))
    expected[2] = 0.2
    np.testing.assert_allclose(horizontal, expected, atol=1e-12)
    np.testing.assert_allclose(motion_blur_kernel(5, 90), expected.T, atol=1e-12)
    # 45 degrees counter-clockwise on screen runs from bottom-left to top-right.
    diagonal = motion_blur_kernel(5, 45)
    rows, cols = np.nonzero(diagonal)
    assert set((rows + cols).tolist()) == {4}
    np.testing.assert_allclose(motion_blur_kernel(1, 33), [[1.0]])


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(DATA / "chelsea.png") as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return rgb.transpose(2, 0, 1)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("box_blur", {"size": 5}),
        ("gaussian_blur", {}),
        ("motion_blur", {"length": 9, "angle": 30}),
    ],
)
def test_depthwise_blur_on_rgb_photo_keeps_each_channels_mean(
        photo: np.ndarray, name: str, params: dict[str, float]) -> None:
    kernel = resolve_preset(name, 3, params)
    out = apply(kernel, photo, same=True)
    assert out.shape == photo.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2)), photo.mean(axis=(1, 2)), rtol=0.01)
    assert (out.std(axis=(1, 2)) < photo.std(axis=(1, 2))).all()  # it did blur
    assert 0 <= out.min() and out.max() <= 1


def test_d2l_edge_gives_d2l_numbers() -> None:
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    expected = np.zeros((6, 7))
    expected[:, 1], expected[:, 5] = 1, -1
    np.testing.assert_array_equal(apply(resolve_preset("d2l_edge", 1), x[None])[0], expected)
    # On RGB the luminance weights sum to 1, so a grey image gives the same map.
    np.testing.assert_allclose(apply(resolve_preset("d2l_edge", 3), np.stack([x] * 3))[0],
                               expected, atol=1e-6)


def test_d2l_multi_in_gives_d2l_numbers() -> None:
    out = apply(resolve_preset("d2l_multi_in", 2), D2L_X)
    np.testing.assert_array_equal(out, [[[56, 72], [104, 120]]])


def test_d2l_multi_in_out_gives_d2l_numbers() -> None:
    out = apply(resolve_preset("d2l_multi_in_out", 2), D2L_X)
    np.testing.assert_array_equal(out, [
        [[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]],
    ])


def test_colour_presets_mix_channels() -> None:
    pixel = np.array([0.2, 0.5, 0.9]).reshape(3, 1, 1)
    grey = apply(resolve_preset("grayscale", 3), pixel)
    assert math.isclose(grey.item(), float(BT601_LUMA @ [0.2, 0.5, 0.9]), rel_tol=1e-6)
    swapped = apply(resolve_preset("channel_swap", 3), pixel)
    np.testing.assert_allclose(swapped.ravel(), [0.9, 0.5, 0.2], rtol=1e-6)
    sepia = apply(resolve_preset("sepia", 3), np.ones((3, 1, 1)))
    np.testing.assert_allclose(sepia.ravel(), [1.351, 1.203, 0.937], rtol=1e-6)


def test_parameters_accept_numeric_strings_and_integral_floats() -> None:
    kernel = resolve_preset("gaussian_blur", 1, {"size": "5", "sigma": "2"})
    assert kernel.params == {"size": 5, "sigma": 2.0}
    assert isinstance(kernel.params["size"], int) and isinstance(kernel.params["sigma"], float)
    assert resolve_preset("box_blur", 1, {"size": 5.0}).params == {"size": 5}
    assert resolve_preset("motion_blur", 1, {"angle": 30}).params == {"length": 9,
                                                                       "angle": 30.0}


# --- Errors --------------------------------------------------------------------------------


def test_unknown_preset_is_not_found_listing_known_names() -> None:
    with pytest.raises(NotFoundError) as info:
        resolve_preset("blurr", 3)
    known = ", ".join(sorted(PRESETS))
    assert info.value.to_problem() == {
        "type": "/problems/not-found",
        "title": "Not found",
        "status": 404,
        "detail": f"unknown preset 'blurr'; known presets: {known}",
        "errors": [{"field": "preset",
                    "message": f"unknown preset 'blurr'; known presets: {known}"}],
    }


@pytest.mark.parametrize(
    ("name", "params", "field", "detail"),
    [
        pytest.param("gaussian_blur", {"radius": 2}, "preset_params.radius",
                     "gaussian_blur has no parameter 'radius'; its parameters are size, sigma",
                     id="unknown-parameter"),
        pytest.param("identity", {"size": 3}, "preset_params.size",
                     "identity has no parameter 'size'; it takes no parameters",
                     id="parameter-for-parameterless"),
        pytest.param("box_blur", {"size": 33}, "preset_params.size",
                     "box_blur parameter size=33 is above the maximum 31; "
                     "allowed: an odd integer with min 1 and max 31", id="above-max"),
        pytest.param("box_blur", {"size": -1}, "preset_params.size",
                     "box_blur parameter size=-1 is below the minimum 1; "
                     "allowed: an odd integer with min 1 and max 31", id="below-min"),
        pytest.param("box_blur", {"size": 4}, "preset_params.size",
                     "box_blur parameter size=4 must be odd; "
                     "allowed: an odd integer with min 1 and max 31", id="even-size"),
        pytest.param("box_blur", {"size": 3.5}, "preset_params.size",
                     "box_blur parameter size=3.5 is not an integer; "
                     "allowed: an odd integer with min 1 and max 31", id="fractional-int"),
        pytest.param("box_blur", {"size": "big"}, "preset_params.size",
                     "box_blur parameter size='big' is not a number; "
                     "allowed: an odd integer with min 1 and max 31", id="not-a-number"),
        pytest.param("box_blur", {"size": True}, "preset_params.size",
                     "box_blur parameter size=True is not a number; "
                     "allowed: an odd integer with min 1 and max 31", id="bool"),
        pytest.param("box_blur", {"size": [3]}, "preset_params.size",
                     "box_blur parameter size=[3] is not a number; "
                     "allowed: an odd integer with min 1 and max 31", id="list"),
        pytest.param("box_blur", {"size": "9" * 400}, "preset_params.size",
                     f"box_blur parameter size={'9' * 400!r} is above the maximum 31; "
                     "allowed: an odd integer with min 1 and max 31", id="huge-int"),
        pytest.param("gaussian_blur", {"sigma": float("nan")}, "preset_params.sigma",
                     "gaussian_blur parameter sigma=nan is not finite; "
                     "allowed: a number with min 0.1 and max 10", id="nan"),
        pytest.param("gaussian_blur", {"sigma": "inf"}, "preset_params.sigma",
                     "gaussian_blur parameter sigma='inf' is not finite; "
                     "allowed: a number with min 0.1 and max 10", id="inf"),
        pytest.param("gaussian_blur", {"sigma": 0}, "preset_params.sigma",
                     "gaussian_blur parameter sigma=0 is below the minimum 0.1; "
                     "allowed: a number with min 0.1 and max 10", id="float-below-min"),
        pytest.param("laplacian", {"neighbours": 6}, "preset_params.neighbours",
                     "laplacian parameter neighbours=6 is not one of the choices; "
                     "allowed: one of 4, 8", id="not-a-choice"),
        pytest.param("gabor", {"size": 1}, "preset_params.size",
                     "gabor parameter size=1 is below the minimum 3; "
                     "allowed: an odd integer with min 3 and max 31", id="gabor-size"),
    ],
)
def test_bad_parameter_is_invalid_argument_naming_limits(
        name: str, params: dict[str, object], field: str, detail: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        resolve_preset(name, 3, params)
    assert type(info.value) is InvalidArgumentError
    assert info.value.to_problem() == {
        "type": "/problems/invalid-argument",
        "title": "Invalid argument",
        "status": 422,
        "detail": detail,
        "errors": [{"field": field, "message": detail}],
    }


def test_several_bad_parameters_are_reported_together() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        resolve_preset("gaussian_blur", 3, {"size": 4, "sigma": 99, "blur": 1})
    assert info.value.errors == [
        {"field": "preset_params.blur",
         "message": "gaussian_blur has no parameter 'blur'; its parameters are size, sigma"},
        {"field": "preset_params.size",
         "message": "gaussian_blur parameter size=4 must be odd; "
                    "allowed: an odd integer with min 1 and max 31"},
        {"field": "preset_params.sigma",
         "message": "gaussian_blur parameter sigma=99 is above the maximum 10; "
                    "allowed: a number with min 0.1 and max 10"},
    ]
    assert info.value.detail == "; ".join(e["message"] for e in info.value.errors or [])


def test_preset_params_must_be_an_object() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        resolve_preset("box_blur", 3, [3])  # type: ignore[arg-type]
    assert info.value.detail == "preset_params must be an object {name: value}, got list"
    assert info.value.field == "preset_params"


@pytest.mark.parametrize(
    ("name", "channels", "detail"),
    [
        pytest.param("grayscale", 1,
                     "grayscale needs 3 input channels (RGB); got 1: use color_mode=rgb",
                     id="grayscale-on-gray"),
        pytest.param("sepia", 4,
                     "sepia needs 3 input channels (RGB); got 4: use color_mode=rgb",
                     id="sepia-on-rgba"),
        pytest.param("d2l_multi_in", 3,
                     "d2l_multi_in needs 2 input channels (e.g. D2L's two-channel X); got 3: "
                     "send a (2, H, W) array, or an LA image with color_mode=keep",
                     id="d2l-on-rgb"),
    ],
)
def test_full_preset_with_wrong_channel_count_says_how_to_fix(
        name: str, channels: int, detail: str) -> None:
    with pytest.raises(ShapeError) as info:
        resolve_preset(name, channels)
    assert info.value.to_problem() == {
        "type": "/problems/shape-mismatch",
        "title": "Shapes do not fit together",
        "status": 422,
        "detail": detail,
        "errors": [{"field": "preset", "message": detail}],
    }


@pytest.mark.parametrize("channels", [0, -3, 2.5, True, "3", MAX_PRESET_CHANNELS + 1])
def test_bad_channel_count_is_invalid_argument(channels: object) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        resolve_preset("box_blur", channels)  # type: ignore[arg-type]
    assert info.value.detail == (
        f"channels={channels!r} must be an integer from 1 to {MAX_PRESET_CHANNELS}"
    )
    assert info.value.field == "channels"


def test_channel_names_must_match_channel_count() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        resolve_preset("sobel", 4, channel_names=("R", "G", "B"))
    assert info.value.detail == (
        "channel_names=['R', 'G', 'B'] must be 4 strings, one per input channel"
    )
    assert info.value.field == "channel_names"


def test_repeated_resolutions_are_memoised_and_still_fresh() -> None:
    """A preset is resolved twice per request (admission, then the flow): the second comes
    from the memo, equal to the first but with arrays and params of its own."""
    first = resolve_preset("gabor", 3, {"orientations": 4})
    second = resolve_preset("gabor", 3, {"orientations": 4})
    np.testing.assert_array_equal(first.weight, second.weight)
    assert first.weight is not second.weight and first.params is not second.params
    second.weight[...] = 0.0  # the caller's to change
    second.params["orientations"] = 99
    third = resolve_preset("gabor", 3, {"orientations": 4})
    np.testing.assert_array_equal(third.weight, first.weight)
    assert third.params == first.params
