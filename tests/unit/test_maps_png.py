"""PNGs written straight from float maps (``imaging.maps_pngs``, ``imaging.maps_png``) hold
exactly the pixels of ``to_pixels``, in every normalize mode, for every output kind (grey per
channel; L, RGB and RGBA composed) and odd size, with non-finite values, read back by Pillow
and by libspng alike; the maps are left as they were."""

from __future__ import annotations

import concurrent.futures
import io
import re
from collections.abc import Callable

import numpy as np
import pyspng  # type: ignore[import-untyped]
import pytest
from PIL import Image

from convserve import imaging
from convserve.errors import InvalidArgumentError

MODES: list[imaging.NormalizeMode] = ["clip", "minmax", "abs", "symmetric", "auto"]
SHAPES = [(1, 1, 1), (2, 1, 9), (3, 7, 1), (3, 1, 5000), (4, 13, 17), (1, 700, 1100),
          (3, 300, 900)]


def maps_of(shape: tuple[int, int, int], seed: int, *, non_finite: bool) -> np.ndarray:
    """Feature-map-like floats around [0, 1] (some below and above), optionally with NaN and
    infinities."""
    rng = np.random.default_rng(seed)
    maps = np.cumsum(rng.normal(0, 0.05, shape), axis=2).astype(np.float32) + 0.5
    if non_finite and maps.size > 3:
        flat = maps.reshape(-1)
        flat[rng.choice(flat.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    return maps


def decoded(data: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(data)) as image:
        mode, pixels = image.mode, np.asarray(image)
    np.testing.assert_array_equal(pyspng.load(data), pixels)
    return mode, pixels


@pytest.mark.parametrize("non_finite", [False, True], ids=["finite", "non-finite"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_maps_pngs_are_the_pixels_of_to_pixels(
    shape: tuple[int, int, int], mode: imaging.NormalizeMode, non_finite: bool
) -> None:
    maps = maps_of(shape, sum(shape), non_finite=non_finite)
    before = maps.copy()
    expected = imaging.to_pixels(maps, mode, range_preserving=False)
    pngs = imaging.maps_pngs(maps, mode, range_preserving=False)
    assert len(pngs) == shape[0]
    for channel, data in enumerate(pngs):
        png_mode, pixels = decoded(data)
        assert png_mode == "L"
        np.testing.assert_array_equal(pixels, expected[channel])
    np.testing.assert_array_equal(maps, before)  # read, never written


@pytest.mark.parametrize("non_finite", [False, True], ids=["finite", "non-finite"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (9, 1), (300, 900)],
                         ids=lambda s: "x".join(map(str, s)))
def test_maps_png_composes_the_pixels_of_to_pixels(
    size: tuple[int, int], channels: int, mode: imaging.NormalizeMode, non_finite: bool
) -> None:
    maps = maps_of((channels, *size), channels + sum(size), non_finite=non_finite)
    expected = imaging.to_pixels(maps, mode, range_preserving=True)
    png_mode, pixels = decoded(imaging.maps_png(maps, mode, range_preserving=True))
    assert png_mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    np.testing.assert_array_equal(pixels, expected[0] if channels == 1 else
                                  np.moveaxis(expected, 0, -1))
    assert imaging.maps_png(maps, mode, range_preserving=True) == imaging.compose_png(expected)


def test_given_ranges_give_the_same_files_and_any_executor_the_same_bytes() -> None:
    maps = maps_of((3, 400, 700), 1, non_finite=True)
    ranges = [(float(plane.min()), float(plane.max())) for plane in maps]
    alone = imaging.maps_pngs(maps, "minmax", range_preserving=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert imaging.maps_pngs(maps, "minmax", range_preserving=False, executor=pool,
                                 ranges=ranges) == alone
    assert alone == imaging.encode_pngs(imaging.to_pixels(maps, "minmax",
                                                          range_preserving=False))


def test_strided_and_non_float32_maps_are_read_as_their_values() -> None:
    maps = maps_of((2, 50, 80), 5, non_finite=False)
    view = maps[:, ::-2, ::3]
    expected = imaging.to_pixels(np.ascontiguousarray(view), "minmax", range_preserving=False)
    for given in (view, view.astype(np.float64)):
        pngs = imaging.maps_pngs(given, "minmax", range_preserving=False)
        for channel, data in enumerate(pngs):
            np.testing.assert_array_equal(decoded(data)[1], expected[channel])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: imaging.maps_pngs(np.zeros((4, 4), np.float32), "clip", range_preserving=False),
         "shape (C, H, W)"),
        (lambda: imaging.maps_pngs(np.zeros((1, 0, 4), np.float32), "clip",
                                   range_preserving=False), "shape (C, H, W)"),
        (lambda: imaging.maps_pngs(np.zeros((1, 2, 2), np.float32), "gamma",  # type: ignore[arg-type]
                                   range_preserving=False), "normalize='gamma'"),
        (lambda: imaging.maps_pngs(np.zeros((1, 2, 2), np.float32), "clip",
                                   range_preserving=False, level=10), "level=10"),
        (lambda: imaging.maps_pngs(np.zeros((2, 2, 2), np.float32), "minmax",
                                   range_preserving=False, ranges=[(0.0, 1.0)]), "ranges has 1"),
        (lambda: imaging.maps_png(np.zeros((2, 2, 2), np.float32), "clip",
                                  range_preserving=False), "composes 1, 3 or 4 channels"),
    ],
    ids=["2d", "empty", "mode", "level", "ranges", "two-channels"],
)
def test_bad_arguments_are_invalid_argument_errors(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        call()


def test_rounding_is_numpys_rint_half_to_even_for_every_half_pixel() -> None:
    # 255 * v lands on every k / 2 in [0, 255] (halves included) and just beside them.
    halves = np.arange(511, dtype=np.float32) / np.float32(2)
    near = np.concatenate([halves, np.nextafter(halves, np.float32(0)),
                           np.nextafter(halves, np.float32(300))])
    for scaled in (near, -near, near + np.float32(255)):
        maps = (scaled / np.float32(255))[None, None, :].astype(np.float32)
        with np.errstate(over="ignore"):
            expected = np.clip(np.rint(maps * np.float32(255)), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(imaging.to_pixels(maps, "clip", range_preserving=True),
                                      expected)
        (png,) = imaging.maps_pngs(maps, "clip", range_preserving=True)
        np.testing.assert_array_equal(decoded(png)[1], expected[0])


def test_a_nan_with_a_payload_is_a_zero_pixel() -> None:
    # Quiet NaNs whose low bits are not zero (arithmetic passes an input NaN's payload on).
    payload_nan = np.array([0x7FC000AB, 0xFFC00017, 0x7FFFFFFF], np.uint32).view(np.float32)
    values = np.array([0.5, np.inf, -np.inf], np.float32)
    maps = np.concatenate([payload_nan, values])[None, None, :]
    for mode in MODES:
        pixels = imaging.to_pixels(maps, mode, range_preserving=False)[0, 0]
        assert pixels[:3].tolist() == [0, 0, 0], mode
        (png,) = imaging.maps_pngs(maps, mode, range_preserving=False)
        np.testing.assert_array_equal(decoded(png)[1][0], pixels)
