"""``conv_spec`` memoises specs by value and type; ``reads_every_input`` matches a brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convserve import InvalidArgumentError
from convserve.conv.spec import conv_spec


def test_repeated_arguments_give_the_same_spec_object() -> None:
    first = conv_spec((1, 3, 8, 8), (2, 3, 3, 3), (2,), stride=1, padding=1)
    assert conv_spec((1, 3, 8, 8), (2, 3, 3, 3), (2,), stride=1, padding=1) is first


@pytest.mark.parametrize(
    ("name", "valid", "invalid"),
    [
        pytest.param("groups", 1, True, id="groups-True-after-1"),
        pytest.param("stride", 1, True, id="stride-True-after-1"),
        pytest.param("dilation", (1, 1), (True, 1), id="dilation-pair-with-True"),
        pytest.param("padding", 1, True, id="padding-True-after-1"),
        pytest.param("padding", 1, 1.0, id="padding-float-after-int"),
    ],
)
def test_memo_keys_tell_true_from_one(name: str, valid: object, invalid: object) -> None:
    """``True == 1`` and ``hash(True) == hash(1)``: a memo keyed by value alone would accept
    the bool once the int was seen."""
    conv_spec((1, 2, 6, 6), (2, 2, 3, 3), **{name: valid})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError) as info:
        conv_spec((1, 2, 6, 6), (2, 2, 3, 3), **{name: invalid})  # type: ignore[arg-type]
    assert info.value.errors == [{"field": name, "message": info.value.detail}]


def test_numpy_integers_lists_and_tuples_give_equal_specs() -> None:
    a = conv_spec((1, 2, 9, 9), (2, 2, 3, 3), stride=np.int64(2),  # type: ignore[arg-type]
                  padding=[1, 2])
    b = conv_spec((1, 2, 9, 9), (2, 2, 3, 3), stride=2, padding=(1, 2))
    assert a == b
    assert a.stride == (2, 2) and type(a.stride[0]) is int


def test_invalid_arguments_are_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidArgumentError, match="groups=0"):
            conv_spec((1, 2, 6, 6), (2, 2, 3, 3), groups=0)


def _brute_force_reads_every_input(h: int, w: int, pads: tuple[int, int, int, int], k: int,
                                   s: int, d: int) -> bool:
    spec = conv_spec((1, 1, h, w), (1, 1, k, k), stride=s, padding=pads, dilation=d)
    top, _, left, _ = pads
    rows = {r * s + u * d - top for r in range(spec.out_height) for u in range(k)}
    cols = {c * s + v * d - left for c in range(spec.out_width) for v in range(k)}
    return set(range(h)) <= rows and set(range(w)) <= cols


@pytest.mark.parametrize(("s", "d", "k"), list(itertools.product((1, 2, 3), (1, 2), (1, 2, 3))))
def test_reads_every_input_matches_brute_force(s: int, d: int, k: int) -> None:
    for h, w, pads in [(7, 6, (0, 0, 0, 0)), (8, 9, (1, 0, 2, 1)), (6, 7, (2, 2, 0, 3))]:
        try:
            spec = conv_spec((1, 1, h, w), (1, 1, k, k), stride=s, padding=pads, dilation=d)
        except Exception:  # noqa: BLE001 - output smaller than 1: nothing to compare
            continue
        assert spec.reads_every_input == _brute_force_reads_every_input(h, w, pads, k, s, d)
