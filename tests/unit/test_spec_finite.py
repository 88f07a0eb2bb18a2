"""``prepare_arrays`` rejects every non-finite value, also where its fast sum overflows."""

from __future__ import annotations

import numpy as np
import pytest

from convserve import InvalidArgumentError, conv2d
from convserve.conv import EngineName
from convserve.conv.spec import ConvSpec, all_finite, conv_spec, prepare_arrays

WEIGHT = np.ones((1, 2, 1, 1), np.float32)


@pytest.mark.parametrize(
    ("values", "count"),
    [
        pytest.param([np.nan], 1, id="nan"),
        pytest.param([np.inf], 1, id="inf"),
        pytest.param([np.inf, -np.inf], 2, id="inf-and-minus-inf"),
        pytest.param([3e38, 3e38, np.nan], 1, id="nan-after-overflowing-values"),
    ],
)
def test_non_finite_input_is_rejected_with_its_count(values: list[float], count: int) -> None:
    x = np.zeros((2, 4, 4), np.float32)
    x[0, 0, 1:1 + len(values)] = values  # row 0 is kept by the strided view below
    with pytest.raises(InvalidArgumentError) as info:
        prepare_arrays(x[:, ::2], WEIGHT, None)  # a strided view takes the same path
    assert info.value.detail == (
        f"input holds {count} NaN or infinite value(s); only finite numbers are allowed"
    )
    assert info.value.errors == [{"field": "input", "message": info.value.detail}]


def test_finite_values_whose_sum_overflows_are_accepted() -> None:
    x = np.full((2, 8, 8), 3e38, np.float32)
    x[1] = -3e38
    x_out, _, _ = prepare_arrays(x, WEIGHT, None)
    np.testing.assert_array_equal(x_out, x)


def test_check_finite_false_skips_only_the_input() -> None:
    x = np.full((2, 2, 2), np.nan, np.float32)
    x_out, _, _ = prepare_arrays(x, WEIGHT, None, check_finite=False)
    assert np.isnan(x_out).all()
    with pytest.raises(InvalidArgumentError, match=r"^weight holds 1 NaN"):
        prepare_arrays(x, np.array([[[[np.nan]], [[1.0]]]], np.float32), None,
                       check_finite=False)
    with pytest.raises(InvalidArgumentError, match=r"^bias holds 1 NaN"):
        prepare_arrays(x, WEIGHT, np.array([np.inf], np.float32), check_finite=False)


@pytest.mark.parametrize("engine", ["numpy", "onnxruntime"])
def test_conv2d_check_finite(engine: EngineName) -> None:
    x = np.ones((2, 3, 3), np.float32)
    x[0, 1, 1] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, WEIGHT, engine=engine)
    y = conv2d(x, WEIGHT, engine=engine, check_finite=False)
    assert np.isnan(y[0, 1, 1])
    assert np.count_nonzero(np.isnan(y)) == 1  # a 1x1 kernel spreads it nowhere else


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
def test_conv2d_finds_non_finite_input_that_reaches_no_output(engine: EngineName) -> None:
    """Stride 2 with a 1x1 kernel reads no odd row: the input itself must be scanned."""
    x = np.ones((2, 5, 5), np.float32)
    x[1, 3, 2] = np.inf
    with pytest.raises(InvalidArgumentError) as info:
        conv2d(x, WEIGHT, stride=2, engine=engine)
    assert info.value.detail == (
        "input holds 1 NaN or infinite value(s); only finite numbers are allowed"
    )
    assert info.value.errors == [{"field": "input", "message": info.value.detail}]
    assert np.isfinite(conv2d(x, WEIGHT, stride=2, engine=engine, check_finite=False)).all()


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
def test_conv2d_finds_non_finite_input_under_zero_weights(engine: EngineName) -> None:
    x = np.ones((2, 4, 4), np.float32)
    x[0, 2, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, np.zeros((1, 2, 3, 3), np.float32), padding=1, engine=engine)


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
def test_conv2d_returns_an_overflowing_output_of_a_finite_input(engine: EngineName) -> None:
    """A finite input whose output overflows is valid (as before): the scan finds it finite."""
    x = np.full((2, 3, 3), 3e38, np.float32)
    with np.errstate(over="ignore"):  # NumPy's matmul warns of the overflow
        y = conv2d(x, np.full((1, 2, 1, 1), 4.0, np.float32), engine=engine)
    assert np.isposinf(y).all()


def test_conv2d_checks_the_input_of_an_engine_that_may_skip_zeros() -> None:
    """An engine object that does not declare ``propagates_non_finite`` gets its input scanned,
    whatever its output holds."""

    class Zeros:
        name = "numpy"

        def conv2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   spec: ConvSpec, device: str = "cpu") -> np.ndarray:
            return np.zeros(spec.output_shape, np.float32)

    x = np.ones((2, 3, 3), np.float32)
    x[1, 0, 0] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, WEIGHT, engine=Zeros())  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
def test_conv2d_scans_an_input_smaller_than_its_output(engine: EngineName) -> None:
    """One channel in, four out: the input is the smaller pass, and the one taken."""
    x = np.ones((1, 4, 4), np.float32)
    x[0, 3, 0] = -np.inf
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, np.ones((4, 1, 1, 1), np.float32), engine=engine)


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
def test_conv2d_finds_non_finite_input_that_the_first_channel_weighs_zero(
    engine: EngineName,
) -> None:
    """The first output channel stands in for the input: it reads every input channel, even one
    it weighs by zero (IEEE ``0 * nan`` is NaN), so a NaN there is still found."""
    x = np.ones((3, 6, 6), np.float32)
    x[2, 4, 1] = np.nan
    weight = np.ones((4, 3, 1, 1), np.float32)
    weight[0, 2] = 0.0  # channel 0 weighs input channel 2 by zero
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, weight, engine=engine)


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
@pytest.mark.parametrize("where", [0, 1, 2, 3])
def test_conv2d_finds_non_finite_input_in_every_group(engine: EngineName, where: int) -> None:
    """Two groups of two output channels each: the first channel of each group is checked,
    and an infinity in either group's input channels is found."""
    x = np.ones((2, 4, 5, 5), np.float32)
    x[1, where, 2, 3] = -np.inf
    weight = np.ones((4, 2, 3, 3), np.float32)
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, weight, padding=1, groups=2, engine=engine)


def test_sentinel_outputs_are_the_first_channel_of_each_group() -> None:
    spec = conv_spec((2, 4, 5, 5), (6, 2, 3, 3), None, padding=1, groups=2)
    y = np.arange(np.prod(spec.output_shape), dtype=np.float32).reshape(spec.output_shape)
    sentinel = spec.sentinel_outputs(y)
    np.testing.assert_array_equal(sentinel, y[:, [0, 3]])
    assert sentinel.size == spec.sentinel_size == 2 * 2 * 5 * 5
    assert np.shares_memory(sentinel, y)
    depthwise = conv_spec((1, 3, 4, 4), (3, 1, 3, 3), None, groups=3)
    y = np.zeros(depthwise.output_shape, np.float32)
    assert depthwise.sentinel_outputs(y) is y


LARGE = (3 << 20) + 7  # over all_finite's exact-at-once size: parts on threads, a short tail


@pytest.mark.parametrize("where", [0, 1 << 20, (1 << 21) + 5, LARGE - 1])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_one_non_finite_value_in_any_part(where: int, value: float) -> None:
    x = np.ones(LARGE, np.float32)
    assert all_finite(x)
    x[where] = value
    assert not all_finite(x)
    assert not all_finite(x.reshape(1, -1))


def test_all_finite_accepts_parts_whose_sum_overflows() -> None:
    x = np.full(LARGE, 3e38, np.float32)
    assert all_finite(x)
    x[-1] = np.nan  # and still finds a NaN in another part than the overflowing ones
    assert not all_finite(x)


@pytest.mark.parametrize("where", [(0, 0, 0, 0), (1, 1, 700, 3), (1, 2, 1023, 1023)])
def test_all_finite_on_a_strided_view_checks_only_its_values(
    where: tuple[int, int, int, int],
) -> None:
    """Every fourth channel of (2, 12, 1024, 1024): six 4 MiB planes, not contiguous."""
    y = np.zeros((2, 12, 1024, 1024), np.float32)
    view = y[:, ::4]
    y[:, 1::4] = np.nan  # outside the view
    assert all_finite(view)
    view[where] = np.inf
    assert not all_finite(view)


def test_all_finite_on_short_rows_of_a_strided_array() -> None:
    y = np.zeros((4096, 2048), np.float32)
    view = y[:, ::2]  # 4096 rows of 1024 values, 4 M values in all
    y[:, 1::2] = np.nan
    assert all_finite(view)
    view[4095, 1023] = np.nan
    assert not all_finite(view)
