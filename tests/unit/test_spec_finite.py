"""``prepare_arrays`` rejects every non-finite value, also where its fast sum overflows."""

from __future__ import annotations

from typing import Literal

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
def test_conv2d_accepts_non_finite_input_that_no_output_reads(engine: EngineName) -> None:
    """Stride 2 with a 1x1 kernel reads no odd row: a value there cannot change the output,
    which is the exact convolution of the values read (as ``torch`` computes it)."""
    x = np.ones((2, 5, 5), np.float32)
    x[1, 3, 2] = np.inf
    y = conv2d(x, WEIGHT, stride=2, engine=engine)
    clean = x.copy()
    clean[1, 3, 2] = 0.0
    np.testing.assert_array_equal(y, conv2d(clean, WEIGHT, stride=2, engine=engine))
    assert np.isfinite(y).all()


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
@pytest.mark.parametrize(("value", "stride", "dilation", "padding", "count"), [
    pytest.param(np.inf, 2, 1, 0, 1, id="stride-2"),
    pytest.param(np.nan, 2, 2, 2, 1, id="stride-2-dilation-2"),
    pytest.param(-np.inf, 3, 1, 1, 1, id="stride-3"),
])
def test_conv2d_refuses_non_finite_input_that_an_output_reads_past_a_stride(
    engine: EngineName, value: float, stride: int, dilation: int, padding: int, count: int,
) -> None:
    """A stride that skips rows and columns: a value in a row and column read is refused with
    its count, and the message says it was counted where the convolution reads."""
    x = np.ones((2, 12, 12), np.float32)
    spec = conv_spec((1, *x.shape), (1, 2, 3, 3), stride=stride, padding=padding,
                     dilation=dilation)
    rows = np.arange(12)[spec.read_rows]
    cols = np.arange(12)[spec.read_cols]
    unread_row = sorted(set(range(12)) - set(rows))[0]
    x[0, unread_row, cols[0]] = np.nan  # not counted: no output reads it
    x[1, rows[-1], cols[len(cols) // 2]] = value
    weight = np.ones((1, 2, 3, 3), np.float32)
    kwargs = {"stride": stride, "dilation": dilation, "padding": padding, "engine": engine}
    with pytest.raises(InvalidArgumentError) as info:
        conv2d(x, weight, **kwargs)  # type: ignore[arg-type]
    assert info.value.detail == (
        f"input holds {count} NaN or infinite value(s) where the convolution reads it; "
        "only finite numbers are allowed"
    )
    assert info.value.errors == [{"field": "input", "message": info.value.detail}]


@pytest.mark.parametrize("engine", ["auto", "numpy", "onnxruntime"])
@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_conv2d_refuses_non_finite_input_read_only_through_the_padding(
    engine: EngineName, mode: str,
) -> None:
    """Stride 3, 1x1 kernel, pad 1: the windows read padded rows -1, 2, 5, 8 of 9. Row -1 is a
    copy of row 1 (reflect) or row 8 (circular): a NaN there reaches the output only through
    the padding, and is refused."""
    x = np.ones((1, 9, 9), np.float32)
    source = 1 if mode == "reflect" else 8
    spec = conv_spec((1, 1, 9, 9), (1, 1, 1, 1), stride=3, padding=1, padding_mode=mode)
    assert source in np.arange(9)[spec.read_rows]
    x[0, source, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"^input holds 1 NaN"):
        conv2d(x, np.ones((1, 1, 1, 1), np.float32), stride=3, padding=1, padding_mode=mode,
               engine=engine)


def _brute_force_read(h: int, w: int, pads: tuple[int, int, int, int], k: int, s: int,
                      d: int, mode: str) -> tuple[set[int], set[int]]:
    """The rows and columns a layer reads, through NumPy's padding: a row (column) is read
    when a NaN placed along it reaches some window."""
    spec = conv_spec((1, 1, h, w), (1, 1, k, k), stride=s, padding=pads, dilation=d,
                     padding_mode=mode)
    numpy_modes: dict[str, Literal["constant", "reflect", "edge", "wrap"]] = {
        "zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap",
    }
    numpy_mode = numpy_modes[mode]
    top, bottom, left, right = pads
    read: list[set[int]] = [set(), set()]
    for axis, size in ((0, h), (1, w)):
        for i in range(size):
            x = np.zeros((h, w))
            x[(i, slice(None)) if axis == 0 else (slice(None), i)] = np.nan  # a whole line
            xp = np.pad(x, ((top, bottom), (left, right)), mode=numpy_mode)
            for r in range(spec.out_height):
                for c in range(spec.out_width):
                    window = xp[r * s : r * s + d * (k - 1) + 1 : d,
                                c * s : c * s + d * (k - 1) + 1 : d]
                    if np.isnan(window).any():
                        read[axis].add(i)
    return read[0], read[1]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(("s", "d", "k"), [(1, 1, 3), (2, 1, 1), (2, 2, 3), (3, 1, 2),
                                           (3, 2, 2), (2, 3, 3), (4, 1, 3)])
def test_read_input_matches_a_brute_force(mode: str, s: int, d: int, k: int) -> None:
    for h, w, pads in [(9, 10, (0, 0, 0, 0)), (11, 9, (1, 0, 2, 1)), (10, 11, (2, 2, 0, 3))]:
        try:
            spec = conv_spec((1, 1, h, w), (1, 1, k, k), stride=s, padding=pads, dilation=d,
                             padding_mode=mode)
        except InvalidArgumentError:  # pads too wide for reflect, or no output
            continue
        rows, cols = _brute_force_read(h, w, pads, k, s, d, mode)
        assert set(np.arange(h)[spec.read_rows]) == rows
        assert set(np.arange(w)[spec.read_cols]) == cols
        x = np.arange(2 * 3 * h * w, dtype=np.float32).reshape(2, 3, h, w)
        expected = x[:, :, sorted(rows)][:, :, :, sorted(cols)]
        np.testing.assert_array_equal(spec.read_input(x), expected)
        assert spec.read_size == len(rows) * len(cols)
        assert spec.reads_every_input == (len(rows) * len(cols) == h * w)


def test_read_input_of_a_stride_is_a_view() -> None:
    spec = conv_spec((1, 3, 1024, 1024), (8, 3, 3, 3), stride=2, dilation=2, padding=2)
    x = np.zeros(spec.input_shape, np.float32)
    assert spec.read_rows == slice(0, 1023, 2)
    assert np.shares_memory(spec.read_input(x), x)
    assert spec.read_size == x.size // 4
    whole = conv_spec((1, 3, 8, 8), (1, 3, 3, 3), padding=1)
    corner = x[:, :, :8, :8]
    assert whole.reads_every_input and whole.read_input(corner) is corner


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
