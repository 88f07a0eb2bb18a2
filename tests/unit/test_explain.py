"""convserve.conv.explain: the terms of one output element, checked against the float64 oracle."""

from __future__ import annotations

import numpy as np
import pytest

from convserve.conv.explain import (
    MAX_EXPLAIN_PRODUCTS,
    explain_position,
    format_number,
)
from convserve.conv.spec import conv_spec
from convserve.errors import InvalidArgumentError, LimitExceededError, ShapeError
from tests.reference import conv2d_reference, pad_reference

D2L_X = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]],
                 dtype=np.float32)
D2L_K = np.array([[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]], dtype=np.float32)


def test_d2l_element_is_two_channel_sums_and_reads_as_one_line() -> None:
    spec = conv_spec(D2L_X.shape, D2L_K.shape)
    explained = explain_position(D2L_X, D2L_K, None, spec, 0, 0, 0)
    assert [t.sum for t in explained.terms] == [19.0, 37.0]
    assert explained.total == 56.0
    assert explained.expression() == "(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56"
    first = explained.terms[0]
    assert first.input_channel == 0
    assert first.window.tolist() == [[0, 1], [3, 4]]
    assert first.kernel.tolist() == [[0, 1], [2, 3]]
    assert first.products.tolist() == [[0, 1], [6, 12]]
    assert not first.in_padding.any()
    assert explained.window_origin == (0, 0)
    assert explained.output_shape == (1, 2, 2)


def test_d2l_other_positions_match_the_book() -> None:
    spec = conv_spec(D2L_X.shape, D2L_K.shape)
    totals = [[explain_position(D2L_X, D2L_K, None, spec, 0, r, c).total for c in range(2)]
              for r in range(2)]
    assert totals == [[56, 72], [104, 120]]


@pytest.mark.parametrize(
    ("value", "text"),
    [(56.0, "56"), (-3.0, "-3"), (-0.0, "0"), (0.5, "0.5"), (1 / 3, "0.333333"),
     (float(np.float32(0.1)), "0.1"), (2.5e-9, "2.5e-09"), (12345678.0, "12345678"),
     (-1234.56789, "-1234.57")],
)
def test_numbers_are_compact(value: float, text: str) -> None:
    assert format_number(value) == text


def test_negative_factors_are_parenthesised_and_a_bias_is_appended() -> None:
    x = np.array([[[-1.0, 2.0]]], dtype=np.float32)
    w = np.array([[[[0.5, -2.0]]]], dtype=np.float32)
    spec = conv_spec(x.shape, w.shape, (1,))
    for bias, tail in [(0.25, " + 0.25 = -4.25"), (-1.5, " - 1.5 = -6")]:
        explained = explain_position(x, w, np.array([bias], np.float32), spec, 0, 0, 0)
        assert explained.expression() == "((-1)×0.5 + 2×(-2))" + tail
        assert explained.bias == bias


def test_expression_ends_with_the_value_it_is_given() -> None:
    spec = conv_spec(D2L_X.shape, D2L_K.shape)
    explained = explain_position(D2L_X, D2L_K, None, spec, 0, 1, 1)
    assert explained.expression(120.0).endswith("= 120")
    assert explained.to_dict(120.0)["expression"] == explained.expression()


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_window_in_the_padding_reads_what_the_mode_puts_there(mode: str) -> None:
    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5) + 1
    w = np.ones((3, 2, 3, 3), dtype=np.float32)
    pads = (2, 1, 3, 2)
    spec = conv_spec(x.shape, w.shape, padding=pads, padding_mode=mode, dilation=(1, 2))
    padded = pad_reference(x[None].astype(np.float64), pads, mode)[0]
    explained = explain_position(x, w, None, spec, 2, 0, 0)
    assert explained.window_origin == (-2, -3)
    assert explained.rows == (-2, -1, 0)
    assert explained.cols == (-3, -1, 1)
    for term in explained.terms:
        expected = padded[term.input_channel, 0:3, 0:5:2]
        np.testing.assert_array_equal(term.window, expected)
        assert term.in_padding.tolist() == [[True, True, True]] * 2 + [[True, True, False]]


def _cases() -> list[object]:
    return [
        pytest.param((3, 7, 6), (4, 3, 3, 3), 1, 1, 1, 1, "zeros", id="plain"),
        pytest.param((4, 9, 8), (6, 2, 3, 2), (2, 1), 2, (1, 2, 0, 3), 2, "reflect",
                     id="s2x1-d2-g2-reflect-asym"),
        pytest.param((3, 5, 7), (3, 1, 2, 3), 1, (2, 1), "same", 3, "replicate",
                     id="depthwise-same-even-replicate"),
        pytest.param((2, 6, 6), (4, 2, 3, 3), 3, 1, 2, 1, "circular", id="s3-circular"),
    ]


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "dilation", "padding", "groups",
                          "mode"), _cases())
def test_every_element_totals_the_reference(
    x_shape: tuple[int, int, int], w_shape: tuple[int, int, int, int],
    stride: int | tuple[int, int], dilation: int | tuple[int, int],
    padding: int | tuple[int, ...] | str, groups: int, mode: str,
) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    spec = conv_spec(x.shape, w.shape, b.shape, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, padding_mode=mode)
    expected = conv2d_reference(x, w, b, stride, padding, dilation, groups, mode)
    c_in_g = x_shape[0] // groups
    out_per_group = w_shape[0] // groups
    for o in range(spec.out_channels):
        for r in range(spec.out_height):
            for c in range(spec.out_width):
                explained = explain_position(x, w, b, spec, o, r, c)
                assert explained.total == pytest.approx(expected[o, r, c], rel=1e-12, abs=1e-12)
                first = (o // out_per_group) * c_in_g
                assert [t.input_channel for t in explained.terms] == list(
                    range(first, first + c_in_g))


def test_position_outside_the_output_names_the_valid_ranges() -> None:
    spec = conv_spec(D2L_X.shape, D2L_K.shape)
    with pytest.raises(InvalidArgumentError) as caught:
        explain_position(D2L_X, D2L_K, None, spec, 0, 2, -1)
    assert caught.value.detail == (
        "at=(channel=0, y=2, x=-1) is outside the output of shape (c_out, h_out, w_out)="
        "(1, 2, 2): channel must be in [0, 1), y in [0, 2) and x in [0, 2)"
    )
    assert caught.value.field == "at"


def test_too_many_products_is_a_limit_naming_the_numbers() -> None:
    x = np.zeros((MAX_EXPLAIN_PRODUCTS // 9 + 1, 3, 3), np.float32)
    w = np.zeros((1, x.shape[0], 3, 3), np.float32)
    spec = conv_spec(x.shape, w.shape)
    with pytest.raises(LimitExceededError) as caught:
        explain_position(x, w, None, spec, 0, 0, 0)
    products = x.shape[0] * 9
    assert caught.value.detail.startswith(
        f"one output element of this layer is a sum of C_in/groups * k_h * k_w = {x.shape[0]} "
        f"* 3 * 3 = {products} products, more than the {MAX_EXPLAIN_PRODUCTS} /v1/explain shows"
    )


def test_arrays_that_do_not_fit_the_spec_are_refused() -> None:
    spec = conv_spec(D2L_X.shape, D2L_K.shape)
    with pytest.raises(ShapeError):
        explain_position(D2L_X[:1], D2L_K, None, spec, 0, 0, 0)
