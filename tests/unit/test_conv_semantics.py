"""What a convolution layer is, checked on every engine: the Dive into Deep Learning numbers,
1x1 convolution as a matrix product, output channels as independent kernels, and Keras's HWIO
kernel layout."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import pytest

from convserve import conv2d, hwio_to_oihw, oihw_to_hwio
from convserve.conv import ENGINES, EngineName
from convserve.errors import ShapeError

# Dive into Deep Learning, section "Multiple Input and Multiple Output Channels".
D2L_X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
D2L_K = [[[0, 1], [2, 3]], [[1, 2], [3, 4]]]


@pytest.mark.parametrize("engine", ENGINES)
def test_d2l_two_input_channels_sum_into_one_map(engine: EngineName) -> None:
    y = conv2d(D2L_X, [D2L_K], engine=engine)
    assert y.dtype == np.float32
    assert y.tolist() == [[[56.0, 72.0], [104.0, 120.0]]]


@pytest.mark.parametrize("engine", ENGINES)
def test_d2l_stacked_kernels_give_one_map_each(engine: EngineName) -> None:
    k = np.array(D2L_K)
    y = conv2d(D2L_X, np.stack([k, k + 1, k + 2]), engine=engine)
    assert y.tolist() == [
        [[56.0, 72.0], [104.0, 120.0]],
        [[76.0, 100.0], [148.0, 172.0]],
        [[96.0, 128.0], [192.0, 224.0]],
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_1x1_convolution_is_a_matrix_product_over_channels(engine: EngineName) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    y = conv2d(x, w, engine=engine)
    product = w[:, :, 0, 0].astype(np.float64) @ x.reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(y, product.reshape(4, 5, 7), rtol=1e-5, atol=1e-6)


class SharedOptions(TypedDict):
    """The options the full and the per-kernel convolutions share (groups is passed apart)."""

    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    padding_mode: str


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("engine", ENGINES)
def test_each_output_kernel_alone_stacks_to_the_full_convolution(
    engine: EngineName, groups: int
) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    options: SharedOptions = {"stride": (1, 2), "padding": (1, 0, 2, 1), "padding_mode": "reflect"}
    full = conv2d(x, w, b, groups=groups, engine=engine, **options)
    per_group_out, per_group_in = 6 // groups, 4 // groups
    maps = []
    for o in range(6):
        first = (o // per_group_out) * per_group_in
        inputs = x[:, first : first + per_group_in]
        maps.append(conv2d(inputs, w[o : o + 1], b[o : o + 1], engine=engine,
                           **options))
    # Same arithmetic, possibly summed in another order: float32 rounding apart, equal.
    scale = float(np.abs(full).max())
    np.testing.assert_allclose(np.concatenate(maps, axis=1), full, rtol=1e-5, atol=1e-6 * scale)


def test_hwio_and_oihw_round_trip() -> None:
    w = np.arange(4 * 3 * 2 * 5, dtype=np.float32).reshape(4, 3, 2, 5)  # (O, I, H, W)
    hwio = oihw_to_hwio(w)
    assert hwio.shape == (2, 5, 3, 4)
    assert hwio.flags.c_contiguous
    assert hwio[1, 4, 2, 3] == w[3, 2, 1, 4]
    back = hwio_to_oihw(hwio)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, w)


@pytest.mark.parametrize("engine", ENGINES)
def test_hwio_kernel_converted_gives_the_same_result(engine: EngineName) -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 8, 9)).astype(np.float32)
    # A Keras kernel (k_h, k_w, C_in, C_out), built element by element from the OIHW one.
    oihw = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)
    keras = np.empty((3, 2, 3, 2), np.float32)
    for o, i, u, v in np.ndindex(*oihw.shape):
        keras[u, v, i, o] = oihw[o, i, u, v]
    expected = conv2d(x, oihw, padding="same", engine=engine)
    y = conv2d(x, hwio_to_oihw(keras), padding="same", engine=engine)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"),
    [pytest.param(1, 0, 1, 1, id="plain"), pytest.param(2, "valid", 1, 2, id="s2-g2"),
     pytest.param(1, "same", 2, 1, id="same-d2")],
)
def test_empty_batch_gives_an_empty_output_of_the_right_shape(
    engine: EngineName, stride: int, padding: int | str, dilation: int, groups: int
) -> None:
    x = np.zeros((0, 4, 9, 7), np.float32)
    w = np.ones((6, 4 // groups, 3, 3), np.float32)
    y = conv2d(x, w, np.ones(6, np.float32), stride=stride, padding=padding,
               dilation=dilation, groups=groups, engine=engine)
    reference = conv2d(np.zeros((1, 4, 9, 7), np.float32), w, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, engine=engine)
    assert y.shape == (0, *reference.shape[1:])
    assert y.dtype == np.float32


def test_empty_channel_or_image_axes_are_still_refused() -> None:
    with pytest.raises(ShapeError) as info:
        conv2d(np.zeros((1, 0, 4, 4), np.float32), np.ones((1, 0, 1, 1), np.float32))
    assert "C_in, H and W must be >= 1" in str(info.value)
