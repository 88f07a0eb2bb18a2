"""convserve.imaging: uploads to float32 (C, H, W) and feature maps back to PNG, npy and zip."""

from __future__ import annotations

import concurrent.futures
import io
import json
import struct
import warnings
import zipfile
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from convserve import imaging
from convserve.errors import InvalidArgumentError, InvalidInputError, PayloadTooLargeError
from tests.images import (
    DATA,
    ODD_FILE_EXPECTATIONS,
    PALETTE,
    PALETTE_ALPHA,
    QUADRANT_COLORS,
    encode,
    odd_files,
    pickle_tripwire_count,
    png_with_exif_orientation,
    png_with_header_size,
    rgb_pixels,
)

LIMIT = 50_000_000
PILLOW_GUARD = 1024 * 1024 * 1024 // 4 // 3  # Pillow's default Image.MAX_IMAGE_PIXELS
ACCEPTED = "Accepted formats: PNG, JPEG, WebP, BMP, TIFF, GIF (first frame) or a NumPy .npy array."
FILES = odd_files()


def decode(name: str, color_mode: imaging.ColorMode = "rgb", **limits: Any) -> np.ndarray:
    """The float32 (C, H, W) array of odd file ``name``."""
    limits.setdefault("max_pixels", LIMIT)
    return imaging.decode_input(FILES[name], color_mode=color_mode, **limits).array


def pillow(name: str) -> Image.Image:
    image = Image.open(io.BytesIO(FILES[name]))
    image.load()
    return image


def chw(pixels: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """(H, W, C) or (H, W) samples as the float32 (C, H, W) that decoding must give."""
    planes = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    return planes.astype(np.float32) / np.float32(scale)


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


# --------------------------------------------------------------------------------------------
# The odd-files table that the API tests reuse
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ODD_FILE_EXPECTATIONS))
def test_odd_file_decodes_as_its_expectation_says(name: str) -> None:
    expected = ODD_FILE_EXPECTATIONS[name]
    if expected.status == 200:
        decoded = imaging.decode_input(FILES[name], max_pixels=LIMIT)
        assert (decoded.array.shape, decoded.source_mode) == (expected.shape, expected.mode)
        assert decoded.array.dtype == np.float32 and decoded.array.flags.c_contiguous
    else:
        error = PayloadTooLargeError if expected.status == 413 else InvalidInputError
        with pytest.raises(error) as caught:
            imaging.decode_input(FILES[name], max_pixels=LIMIT)
        assert caught.value.status == expected.status
        assert type(caught.value) is error


def test_odd_files_cover_every_expectation_and_stay_small() -> None:
    assert set(FILES) == set(ODD_FILE_EXPECTATIONS)
    assert sum(len(data) for data in FILES.values()) < 200_000


# --------------------------------------------------------------------------------------------
# 8-bit images, real photos, the identity round trip
# --------------------------------------------------------------------------------------------


def test_decode_8bit_rgb_png_scales_by_255_exactly() -> None:
    decoded = imaging.decode_input(FILES["rgb.png"], max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.array, chw(rgb_pixels()))
    assert decoded.to_dict() == {
        "shape": [3, 24, 32],
        "format": "PNG",
        "mode": "RGB",
        "bit_depth": 8,
        "channels": ["R", "G", "B"],
    }


@pytest.mark.parametrize(
    ("filename", "color_mode"),
    [
        pytest.param("chelsea.png", "rgb", id="chelsea-rgb"),
        pytest.param("camera.png", "keep", id="camera-gray"),
        pytest.param("rocket.jpg", "rgb", id="rocket-jpeg"),
    ],
)
def test_identity_round_trip_of_real_photo_is_bit_exact(
    filename: str, color_mode: imaging.ColorMode
) -> None:
    data = (DATA / filename).read_bytes()
    decoded = imaging.decode_input(data, color_mode=color_mode, max_pixels=LIMIT)
    pixels = imaging.to_pixels(decoded.array, "clip", range_preserving=True)
    back = png_pixels(imaging.compose_png(pixels))
    with Image.open(io.BytesIO(data)) as original:
        np.testing.assert_array_equal(back, np.asarray(original))


def test_identity_round_trip_of_rgba_is_bit_exact() -> None:
    decoded = imaging.decode_input(FILES["rgba.png"], color_mode="rgba", max_pixels=LIMIT)
    pixels = imaging.to_pixels(decoded.array, "auto", range_preserving=True)
    np.testing.assert_array_equal(
        png_pixels(imaging.compose_png(pixels)), np.asarray(pillow("rgba.png"))
    )


def test_real_jpeg_photo_decodes_as_pillow_does() -> None:
    data = (DATA / "rocket.jpg").read_bytes()
    decoded = imaging.decode_input(data, max_pixels=LIMIT)
    with Image.open(io.BytesIO(data)) as image:
        expected = chw(np.asarray(image))
    assert decoded.array.shape == (3, 427, 640)
    np.testing.assert_array_equal(decoded.array, expected)
    assert (decoded.source_format, decoded.bit_depth) == ("JPEG", 8)


def _oracle(image: Image.Image, color_mode: str) -> np.ndarray:
    """The expected (C, H, W) from Pillow's own conversions, for 8-bit and bilevel files."""
    rgba = image.convert("RGBA")
    if color_mode == "rgb":
        return chw(np.asarray(rgba)[:, :, :3])
    if color_mode == "rgba":
        return chw(np.asarray(rgba))
    if color_mode == "gray":
        return chw(np.asarray(rgba.convert("L")))
    keep = {"1": "L", "L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA"}.get(
        image.mode, "RGBA" if image.has_transparency_data else "RGB"
    )
    if image.mode in ("L", "RGB") and "transparency" in image.info:
        keep = image.mode + "A"
    return chw(np.asarray(image.convert(keep)))


KEEP_CHANNELS = {
    "rgb.png": ("R", "G", "B"),
    "gray.png": ("L",),
    "rgba.png": ("R", "G", "B", "A"),
    "la.png": ("L", "A"),
    "gray_trns.png": ("L", "A"),
    "rgb_trns.png": ("R", "G", "B", "A"),
    "bilevel.png": ("L",),
    "palette.png": ("R", "G", "B"),
    "palette_trns.png": ("R", "G", "B", "A"),
    "animated.gif": ("R", "G", "B"),
    "image.bmp": ("R", "G", "B"),
    "lossless.webp": ("R", "G", "B"),
}
MODE_CHANNELS = {"rgb": ("R", "G", "B"), "gray": ("L",), "rgba": ("R", "G", "B", "A")}


@pytest.mark.parametrize("color_mode", ["rgb", "gray", "rgba", "keep"])
@pytest.mark.parametrize("name", sorted(KEEP_CHANNELS))
def test_color_mode_gives_pillows_conversion(name: str, color_mode: imaging.ColorMode) -> None:
    decoded = imaging.decode_input(FILES[name], color_mode=color_mode, max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.array, _oracle(pillow(name), color_mode))
    names = KEEP_CHANNELS[name] if color_mode == "keep" else MODE_CHANNELS[color_mode]
    assert decoded.channel_names == names
    assert decoded.array.shape[0] == len(names)


def test_gray_is_itu_601_luma_rounded_as_pillow_does() -> None:
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    data = encode(Image.fromarray(pixels), "PNG")
    gray = imaging.decode_input(data, color_mode="gray", max_pixels=LIMIT).array
    luma = [round(r * 0.299 + g * 0.587 + b * 0.114) for r, g, b in pixels[0].tolist()]
    np.testing.assert_array_equal(gray, np.array([[luma]], np.float32) / 255)


def test_trns_colour_key_becomes_alpha_under_keep() -> None:
    for name, channels in (("gray_trns.png", 2), ("rgb_trns.png", 4)):
        alpha = decode(name, "keep")[channels - 1]
        assert alpha[0, 0] == 0 and alpha.min() == 0 and alpha.max() == 1
        assert decode(name, "rgb").shape == (3, 24, 32)


def test_la_keeps_gray_and_alpha() -> None:
    decoded = imaging.decode_input(FILES["la.png"], color_mode="keep", max_pixels=LIMIT)
    rgb = rgb_pixels()
    np.testing.assert_array_equal(decoded.array, chw(np.dstack([rgb[:, :, 1], rgb[:, :, 2]])))
    assert decoded.source_mode == "LA"


def test_bilevel_pixels_become_zero_and_one() -> None:
    decoded = imaging.decode_input(FILES["bilevel.png"], color_mode="gray", max_pixels=LIMIT)
    expected = (rgb_pixels()[:, :, 0] > 127).astype(np.float32)[None]
    np.testing.assert_array_equal(decoded.array, expected)
    assert (decoded.source_mode, decoded.bit_depth) == ("1", 1)


def test_rgba_request_on_opaque_image_adds_alpha_one() -> None:
    array = decode("rgb.png", "rgba")
    np.testing.assert_array_equal(array[:3], chw(rgb_pixels()))
    np.testing.assert_array_equal(array[3], np.ones((24, 32), np.float32))


def test_unknown_color_mode_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="color_mode='cmyk' is not one of"):
        imaging.decode_input(FILES["rgb.png"], color_mode="cmyk", max_pixels=LIMIT)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# 16-bit, float and integer images
# --------------------------------------------------------------------------------------------


def _ramp16() -> np.ndarray:
    return np.asarray(pillow("gray16.png")).astype(np.uint16)


def test_16bit_png_keeps_all_16_bits() -> None:
    decoded = imaging.decode_input(FILES["gray16.png"], color_mode="gray", max_pixels=LIMIT)
    ramp = _ramp16()
    assert len(np.unique(ramp)) > 256 and len(np.unique(ramp % 256)) > 1
    np.testing.assert_array_equal(decoded.array, chw(ramp, 65535.0))
    assert len(np.unique(decoded.array)) == len(np.unique(ramp))
    assert (decoded.source_mode, decoded.bit_depth, decoded.channel_names) == ("I;16", 16, ("L",))


@pytest.mark.parametrize(
    ("color_mode", "channels"),
    [("rgb", 3), ("rgba", 4), ("keep", 1), ("gray", 1)],
)
def test_16bit_gray_in_every_color_mode(color_mode: imaging.ColorMode, channels: int) -> None:
    array = decode("gray16.png", color_mode)
    plane = _ramp16().astype(np.float32) / np.float32(65535)
    assert array.shape == (channels, 24, 32)
    for c in range(min(channels, 3)):
        np.testing.assert_array_equal(array[c], plane)
    if channels == 4:
        np.testing.assert_array_equal(array[3], np.ones_like(plane))


def test_32bit_int_image_in_16bit_range_scales_by_65535() -> None:
    decoded = imaging.decode_input(FILES["int32.tiff"], color_mode="gray", max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.array, chw(_ramp16(), 65535.0))
    assert decoded.bit_depth == 16


def test_32bit_int_image_beyond_16_bits_is_refused_with_its_range() -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode("int32_wide.tiff")
    assert caught.value.detail == (
        "The 32-bit integer image holds values in [23, 260803]; only values in [0, 65535] "
        "(16-bit) are accepted. Send such data as a .npy array."
    )


def test_float_tiff_is_used_as_stored() -> None:
    decoded = imaging.decode_input(FILES["float.tiff"], color_mode="keep", max_pixels=LIMIT)
    expected = (np.arange(24 * 32, dtype=np.float32).reshape(1, 24, 32) - 100) / 50
    np.testing.assert_array_equal(decoded.array, expected)
    assert decoded.array.min() < 0 and decoded.array.max() > 1
    assert (decoded.source_mode, decoded.bit_depth) == ("F", 32)


def test_float_tiff_with_nan_is_refused_with_the_position() -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode("float_nan.tiff")
    assert caught.value.detail == (
        "The float TIFF image holds 1 NaN and 0 infinite values in float32 (the first at index "
        "(0, 3, 4)); every value must be a finite number within float32's range."
    )


# --------------------------------------------------------------------------------------------
# JPEG variants, palettes, animation, other containers
# --------------------------------------------------------------------------------------------


def _quadrant_means(array: np.ndarray) -> list[tuple[int, int, int]]:
    """Mean colour (0-255) of each quadrant's centre of a (3, H, W) array: TL, TR, BL, BR."""
    _, height, width = array.shape
    h, w = height // 4, width // 4
    centres = [(h, w), (h, 3 * w), (3 * h, w), (3 * h, 3 * w)]
    means: list[tuple[int, int, int]] = []
    for row, col in centres:
        patch = array[:, row - 2 : row + 2, col - 2 : col + 2].mean(axis=(1, 2)) * 255
        red, green, blue = (int(round(v)) for v in patch)
        means.append((red, green, blue))
    return means


def _assert_colors(
    actual: list[tuple[int, int, int]], expected: list[tuple[int, int, int]]
) -> None:
    np.testing.assert_allclose(np.array(actual), np.array(expected), atol=6)


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = imaging.decode_input(FILES["cmyk.jpg"], max_pixels=LIMIT)
    assert (decoded.source_mode, decoded.channel_names) == ("CMYK", ("R", "G", "B"))
    _assert_colors(_quadrant_means(decoded.array), list(QUADRANT_COLORS))
    keep = imaging.decode_input(FILES["cmyk.jpg"], color_mode="keep", max_pixels=LIMIT)
    np.testing.assert_array_equal(keep.array, decoded.array)


def test_progressive_jpeg_decodes_as_pillow_does() -> None:
    image = pillow("progressive.jpg")
    assert image.info.get("progressive") == 1
    np.testing.assert_array_equal(decode("progressive.jpg"), chw(np.asarray(image)))
    # The same quantised coefficients as the baseline file, sent in several scans.
    np.testing.assert_allclose(decode("progressive.jpg"), decode("baseline.jpg"), atol=2 / 255)


def test_palette_with_transparency_gives_alpha_under_rgba_and_keep() -> None:
    colors = np.array(PALETTE, np.float32).reshape(4, 3) / 255
    alpha = np.frombuffer(PALETTE_ALPHA, np.uint8).astype(np.float32) / 255
    index = (np.arange(24 * 32) % 4).reshape(24, 32)
    for color_mode in ("rgba", "keep"):
        array = decode("palette_trns.png", color_mode)
        np.testing.assert_array_equal(array[:3], np.moveaxis(colors[index], -1, 0))
        np.testing.assert_array_equal(array[3], alpha[index])
    rgb = decode("palette_trns.png", "rgb")
    np.testing.assert_array_equal(rgb, np.moveaxis(colors[index], -1, 0))


def test_palette_with_transparency_decodes_without_pillow_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for color_mode in imaging.COLOR_MODES:
            decode("palette_trns.png", color_mode)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("name", ["animated.gif", "animated.png", "animated.webp"])
def test_animated_file_gives_its_first_frame(name: str) -> None:
    array = decode(name)
    first = np.array(QUADRANT_COLORS[0], np.float32) / 255
    np.testing.assert_array_equal(array, np.broadcast_to(first[:, None, None], (3, 24, 32)))


@pytest.mark.parametrize("name", ["lossless.webp", "image.bmp", "image.tiff"])
def test_lossless_container_decodes_exactly(name: str) -> None:
    np.testing.assert_array_equal(decode(name), chw(rgb_pixels()))


def test_source_format_is_the_files_format() -> None:
    formats = {
        name: imaging.decode_input(FILES[name], max_pixels=LIMIT).source_format
        for name in ("rgb.png", "baseline.jpg", "lossless.webp", "image.bmp", "image.tiff",
                     "animated.gif")
    }
    assert formats == {
        "rgb.png": "PNG",
        "baseline.jpg": "JPEG",
        "lossless.webp": "WEBP",
        "image.bmp": "BMP",
        "image.tiff": "TIFF",
        "animated.gif": "GIF",
    }


# --------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------


def test_exif_orientation_6_jpeg_turns_clockwise() -> None:
    array = decode("exif_rotated.jpg")
    assert array.shape == (3, 32, 24)
    top_left, top_right, bottom_left, bottom_right = QUADRANT_COLORS
    # Turned 90 degrees clockwise: the stored bottom-left comes to the top-left, and so on.
    _assert_colors(_quadrant_means(array), [bottom_left, top_left, bottom_right, top_right])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    pixels = rgb_pixels(5, 7, seed=orientation)
    data = png_with_exif_orientation(pixels, orientation)
    with Image.open(io.BytesIO(data)) as image:
        expected = chw(np.asarray(ImageOps.exif_transpose(image)))
    np.testing.assert_array_equal(imaging.decode_input(data, max_pixels=LIMIT).array, expected)


def test_tiff_orientation_is_applied_once() -> None:
    expected = chw(np.rot90(rgb_pixels(), -1))
    np.testing.assert_array_equal(decode("exif_rotated.tiff"), expected)


def test_corrupt_exif_counts_as_no_orientation() -> None:
    pixels = rgb_pixels(6, 8)
    bad_exif = b"MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03"  # IFD cut short
    data = encode(Image.fromarray(pixels), "PNG", exif=bad_exif)
    np.testing.assert_array_equal(imaging.decode_input(data, max_pixels=LIMIT).array, chw(pixels))


# --------------------------------------------------------------------------------------------
# Broken and foreign bytes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("truncated.png", "The PNG file could not be decoded (OSError: image file is truncated); "
         f"it is truncated or corrupt. {ACCEPTED}"),
        ("truncated.jpg", "The JPEG file could not be decoded (OSError: image file is truncated "
         f"(138 bytes not processed)); it is truncated or corrupt. {ACCEPTED}"),
        ("header_only.png", "The upload starts like a PNG file but its header is truncated or "
         f"corrupt (40 bytes). {ACCEPTED}"),
        ("text.txt", f"The upload is text (35 bytes), not an image. {ACCEPTED}"),
        ("empty.bin", f"The upload is empty (0 bytes). {ACCEPTED}"),
        ("archive.zip", f"The upload is a ZIP archive, not an image. {ACCEPTED}"),
        ("data.json", "The upload is JSON text, not an image; send JSON with Content-Type "
         "application/json and the input as input.array or input.image_base64. " + ACCEPTED),
        ("icon.ico", f"The upload is an ICO icon (not accepted), not an image. {ACCEPTED}"),
    ],
)
def test_undecodable_bytes_say_what_they_are(name: str, detail: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        imaging.decode_input(FILES[name], max_pixels=LIMIT)
    problem = caught.value.to_problem()
    assert problem == {
        "type": "/problems/invalid-input",
        "title": "Input could not be decoded",
        "status": 422,
        "detail": detail,
    }


def test_format_pillow_reads_but_the_service_does_not_accept_is_refused() -> None:
    with Image.open(io.BytesIO(FILES["image.pcx"])) as image:
        assert image.format == "PCX"  # Pillow alone would open it
    with pytest.raises(InvalidInputError, match="is not an image in an accepted format"):
        imaging.decode_input(FILES["image.pcx"], max_pixels=LIMIT)


def test_truncated_files_fail_without_load_truncated_images() -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for name in ("truncated.png", "truncated.jpg"):
        with pytest.raises(InvalidInputError, match="truncated"):
            decode(name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --------------------------------------------------------------------------------------------
# Pixel limits and Pillow's decompression-bomb guard
# --------------------------------------------------------------------------------------------


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        decode("rgb.png", max_pixels=767)
    assert caught.value.to_problem() == {
        "type": "/problems/payload-too-large",
        "title": "Payload too large",
        "status": 413,
        "detail": "The image is 32x24 = 768 pixels; the limit is 767 pixels. Send a smaller "
        "image or raise CONVSERVE_MAX_PIXELS.",
    }
    assert decode("rgb.png", max_pixels=768).shape == (3, 24, 32)


def test_oversized_header_is_refused_before_decoding() -> None:
    # 3000x3000 claimed, one pixel of data: decoding would fail as truncated (422), so a 413
    # shows that the size was refused from the header, before any pixel memory was needed.
    data = png_with_header_size(3000, 3000)
    with pytest.raises(PayloadTooLargeError, match=r"3000x3000 = 9,000,000 pixels"):
        imaging.decode_input(data, max_pixels=8_999_999)
    with pytest.raises(InvalidInputError, match="truncated"):
        imaging.decode_input(data, max_pixels=9_000_000)


@pytest.mark.parametrize(
    ("name", "pixels"),
    [("bomb.png", "900,000,000"), ("bomb_warning_range.png", "100,000,000")],
)
def test_decompression_bomb_is_413_and_no_warning_escapes(
    name: str, pixels: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow's default guard (a decode with a higher limit earlier in this process raises it).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_GUARD)
    # "always" as in production logs: the bomb warning must become the 413, never a log line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(PayloadTooLargeError) as error:
            decode(name)
    assert caught == []
    assert error.value.detail == (
        f"The image header claims {pixels} pixels, over Pillow's decompression-bomb guard; the "
        "limit is 50,000,000 pixels. Send a smaller image or raise CONVSERVE_MAX_PIXELS (the "
        "guard follows it)."
    )


def test_bomb_guard_is_raised_to_the_limit_never_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    # 768 pixels: over the guard's 2 x 100, but within a configured limit of 1000.
    assert decode("rgb.png", max_pixels=1000).shape == (3, 24, 32)
    assert Image.MAX_IMAGE_PIXELS == 1000
    decode("rgb.png", max_pixels=800)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_default_limit_leaves_pillows_guard_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_GUARD)
    decode("rgb.png")
    assert Image.MAX_IMAGE_PIXELS == PILLOW_GUARD > LIMIT


# --------------------------------------------------------------------------------------------
# .npy arrays and JSON arrays
# --------------------------------------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_chw_is_used_as_sent() -> None:
    decoded = imaging.decode_input(FILES["chw_float32.npy"], color_mode="gray", max_pixels=LIMIT)
    expected = np.arange(60, dtype=np.float32).reshape(2, 5, 6) / 7 - 3
    np.testing.assert_array_equal(decoded.array, expected)
    assert decoded.to_dict() == {
        "shape": [2, 5, 6],
        "format": "NPY",
        "mode": "array",
        "bit_depth": 0,
        "channels": ["0", "1"],
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hw_float64.npy", np.linspace(-1, 1, 30).reshape(1, 5, 6)),
        ("int16.npy", np.arange(-15, 15).reshape(1, 5, 6)),
        ("uint16.npy", np.arange(65505, 65535).reshape(1, 5, 6)),
        ("bool.npy", np.eye(5, 6)[None]),
        ("fortran.npy", np.arange(60, dtype=np.float32).reshape(2, 5, 6) / 7 - 3),
        ("big_endian.npy", np.arange(60, dtype=np.float32).reshape(2, 5, 6) / 7 - 3),
    ],
)
def test_npy_dtypes_and_layouts_become_float32(name: str, expected: np.ndarray) -> None:
    array = decode(name)
    assert array.dtype == np.float32 and array.flags.c_contiguous
    np.testing.assert_array_equal(array, expected.astype(np.float32))


def test_npy_with_objects_is_refused_without_unpickling() -> None:
    fired = pickle_tripwire_count()
    with pytest.raises(InvalidInputError) as caught:
        decode("object.npy")
    assert caught.value.detail == (
        "The .npy array has dtype object (Python objects); only bool, integer and real float "
        "dtypes are accepted."
    )
    assert pickle_tripwire_count() == fired
    # The tripwire works: numpy's own loader, allowed to unpickle, does fire it.
    np.load(io.BytesIO(FILES["object.npy"]), allow_pickle=True)
    assert pickle_tripwire_count() == fired + 1


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("complex.npy", "The .npy array has dtype complex64 (complex numbers); only bool, "
         "integer and real float dtypes are accepted."),
        ("structured.npy", "The .npy array has dtype [('x', '<f4'), ('y', '<i4')] (structured "
         "records); only bool, integer and real float dtypes are accepted."),
        ("strings.npy", "The .npy array has dtype <U1 (strings); only bool, integer and real "
         "float dtypes are accepted."),
        ("4d.npy", "The .npy array has shape (1, 2, 3, 4) (4-D); it must be (C, H, W) or (H, W)."),
        ("1d.npy", "The .npy array has shape (6,) (1-D); it must be (C, H, W) or (H, W)."),
        ("nan.npy", "The .npy array holds 1 NaN and 0 infinite values in float32 (the first at "
         "index (0, 0, 1)); every value must be a finite number within float32's range."),
        ("inf.npy", "The .npy array holds 0 NaN and 1 infinite values in float32 (the first at "
         "index (0, 0, 1)); every value must be a finite number within float32's range."),
        ("truncated.npy", "The .npy file is truncated: shape (2, 5, 6) of float32 needs 240 "
         "bytes of data after the header, and 232 came."),
    ],
)
def test_unusable_npy_is_refused_with_the_reason(name: str, detail: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode(name)
    assert caught.value.detail == detail


def test_npy_with_an_empty_axis_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"shape \(2, 0, 3\); every size must be >= 1"):
        imaging.decode_input(_npy(np.zeros((2, 0, 3), np.float32)), max_pixels=LIMIT)


def test_npy_malformed_header_is_refused() -> None:
    data = bytearray(FILES["chw_float32.npy"])
    data[10:20] = b"{'oops': ("
    with pytest.raises(InvalidInputError, match=r"^The .npy header could not be read"):
        imaging.decode_input(bytes(data), max_pixels=LIMIT)


def test_npy_format_3_is_refused() -> None:
    data = bytearray(FILES["chw_float32.npy"])
    data[6] = 3
    with pytest.raises(InvalidInputError, match="format version 3.0; versions 1.0 and 2.0"):
        imaging.decode_input(bytes(data), max_pixels=LIMIT)


def test_npy_value_limit_is_checked_from_the_header() -> None:
    header_only = _npy(np.zeros((64, 1000, 1000), np.float32))[:128]  # no data at all
    with pytest.raises(PayloadTooLargeError) as caught:
        imaging.decode_input(header_only, max_pixels=LIMIT, max_values=1_000_000)
    assert caught.value.detail == (
        "The .npy array of shape (64, 1000, 1000) holds 64,000,000 values; the limit is "
        "1,000,000. Send a smaller array or raise CONVSERVE_MAX_ARRAY_VALUES."
    )
    assert caught.value.status == 413


def test_npy_pixel_limit_applies_to_h_times_w() -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        decode("chw_float32.npy", max_pixels=29)
    assert caught.value.detail == (
        "The .npy array of shape (2, 5, 6) is 5x6 = 30 pixels; the limit is 29 pixels. Send a "
        "smaller array or raise CONVSERVE_MAX_PIXELS."
    )
    assert decode("chw_float32.npy", max_pixels=30, max_values=60).shape == (2, 5, 6)


def test_array_input_wraps_nested_lists() -> None:
    decoded = imaging.array_input([[[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]]])
    np.testing.assert_array_equal(decoded.array, np.array(
        [[[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]]], np.float32))
    assert decoded.to_dict() == {
        "shape": [2, 2, 3], "format": "ARRAY", "mode": "array", "bit_depth": 0,
        "channels": ["0", "1"],
    }
    assert imaging.array_input(np.eye(3, dtype=bool)).array.shape == (1, 3, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param([[1, 2], [3]], "not a regular", id="ragged"),
        pytest.param([[["a"]]], r"dtype <U1 \(strings\)", id="strings"),
        pytest.param(np.zeros((1, 1, 2, 2)), r"shape \(1, 1, 2, 2\) \(4-D\)", id="4d"),
        pytest.param([[0.0, float("nan")]], "1 NaN and 0 infinite", id="nan"),
        pytest.param([[0.0, 1e300]], "0 NaN and 1 infinite", id="beyond-float32"),
        pytest.param([[1 + 2j]], "complex", id="complex"),
    ],
)
def test_array_input_rejects_unusable_arrays(value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        imaging.array_input(value)


def test_array_input_limits() -> None:
    with pytest.raises(PayloadTooLargeError, match="CONVSERVE_MAX_ARRAY_VALUES"):
        imaging.array_input(np.zeros((3, 4, 4)), max_values=47)
    with pytest.raises(PayloadTooLargeError, match="CONVSERVE_MAX_PIXELS"):
        imaging.array_input(np.zeros((3, 4, 4)), max_pixels=15)


# --------------------------------------------------------------------------------------------
# to_pixels
# --------------------------------------------------------------------------------------------

TINY = np.array([[[-1.0, 0.0, 0.25, 0.5, 1.0, 2.0]]], np.float32)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # 0.25 * 255 = 63.75 -> 64; 0.5 * 255 = 127.5 -> 128 (halves to even).
        ("clip", [0, 0, 64, 128, 255, 255]),
        # (v + 1) / 3 * 255: 0, 85, 106.25, 127.5, 170, 255.
        ("minmax", [0, 85, 106, 128, 170, 255]),
        # |v| / 2 * 255: 127.5, 0, 31.875, 63.75, 127.5, 255.
        ("abs", [128, 0, 32, 64, 128, 255]),
        # 127.5 + 127.5 * v / 2: 63.75, 127.5, 143.4375, 159.375, 191.25, 255.
        ("symmetric", [64, 128, 143, 159, 191, 255]),
    ],
)
def test_to_pixels_exact_values(mode: imaging.NormalizeMode, expected: list[int]) -> None:
    pixels = imaging.to_pixels(TINY, mode, range_preserving=False)
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 1, 6)
    assert pixels[0, 0].tolist() == expected


def test_to_pixels_auto_is_clip_or_minmax() -> None:
    clip = imaging.to_pixels(TINY, "clip", range_preserving=False)
    minmax = imaging.to_pixels(TINY, "minmax", range_preserving=True)
    np.testing.assert_array_equal(imaging.to_pixels(TINY, "auto", range_preserving=True), clip)
    np.testing.assert_array_equal(imaging.to_pixels(TINY, "auto", range_preserving=False), minmax)


def test_to_pixels_clip_inverts_8bit_decoding_for_every_value() -> None:
    levels = np.arange(256, dtype=np.uint8)
    values = levels.astype(np.float32)[None, None] / np.float32(255)
    np.testing.assert_array_equal(imaging.to_pixels(values, "clip", range_preserving=True)[0, 0],
                                  levels)


def test_to_pixels_works_per_channel() -> None:
    maps = np.array([[[0.0, 1.0]], [[-4.0, 4.0]], [[10.0, 30.0]]], np.float32)
    for mode in ("minmax", "abs", "symmetric"):
        pixels = imaging.to_pixels(maps, mode, range_preserving=False)
        assert pixels[:, 0, 1].tolist() == [255, 255, 255], mode
    assert imaging.to_pixels(maps, "minmax", range_preserving=False)[:, 0, 0].tolist() == [0, 0, 0]
    # 127.5 + 127.5 * v / max|v|: 0 -> 128, -4 -> 0, 10 / 30 -> 170.
    assert imaging.to_pixels(maps, "symmetric", range_preserving=False)[:, 0, 0].tolist() == [
        128, 0, 170]


@pytest.mark.parametrize(
    ("mode", "value"), [("minmax", 0), ("abs", 0), ("symmetric", 128), ("clip", 191)]
)
def test_to_pixels_constant_channel(mode: imaging.NormalizeMode, value: int) -> None:
    constant = np.full((1, 2, 3), 0.75 if mode == "clip" else 0.0, np.float32)
    if mode == "minmax":
        constant += 5.0
    pixels = imaging.to_pixels(constant, mode, range_preserving=False)
    assert (pixels == value).all()


def test_to_pixels_non_finite_values() -> None:
    maps = np.array([[[np.nan, np.inf, -np.inf, 0.0, 1.0, 2.0]]], np.float32)
    assert imaging.to_pixels(maps, "minmax", range_preserving=False)[0, 0].tolist() == [
        0, 255, 0, 0, 128, 255]
    assert imaging.to_pixels(maps, "clip", range_preserving=False)[0, 0].tolist() == [
        0, 255, 0, 0, 255, 255]
    assert imaging.to_pixels(maps, "symmetric", range_preserving=False)[0, 0].tolist() == [
        0, 255, 0, 128, 191, 255]
    only_nan = np.full((1, 1, 2), np.nan, np.float32)
    for mode in imaging.NORMALIZE_MODES:
        assert imaging.to_pixels(only_nan, mode, range_preserving=False).tolist() == [[[0, 0]]]


def test_to_pixels_survives_the_float32_range() -> None:
    maps = np.array([[[-3e38, 0.0, 3e38]]], np.float32)
    assert imaging.to_pixels(maps, "minmax", range_preserving=False)[0, 0].tolist() == [
        0, 128, 255]
    assert imaging.to_pixels(maps, "symmetric", range_preserving=False)[0, 0].tolist() == [
        0, 128, 255]


def test_to_pixels_resolves_a_narrow_range_far_from_zero() -> None:
    maps = (np.float32(1000) + np.arange(0, 256, dtype=np.float32)[None, None] / 4096)
    pixels = imaging.to_pixels(maps, "minmax", range_preserving=False)[0, 0]
    assert pixels[0] == 0 and pixels[-1] == 255
    assert np.all(np.diff(pixels.astype(int)) >= 0) and len(np.unique(pixels)) == 256


def test_to_pixels_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="normalize='gamma' is not one of"):
        imaging.to_pixels(TINY, "gamma", range_preserving=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"shape \(1, 6\)"):
        imaging.to_pixels(TINY[0], "clip", range_preserving=False)


# --------------------------------------------------------------------------------------------
# Encoding: PNG, several PNGs, composed image, grid, zip, npy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)], ids=["L", "RGB", "RGBA"])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_encode_png_round_trips(shape: tuple[int, ...], level: int) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(png_pixels(imaging.encode_png(pixels, level=level)), pixels)


def test_encode_png_level_0_stores_and_1_compresses() -> None:
    flat = np.zeros((256, 256), np.uint8)
    assert len(imaging.encode_png(flat, level=0)) > 256 * 256
    assert len(imaging.encode_png(flat, level=1)) < 2000


@pytest.mark.parametrize(
    ("pixels", "level"),
    [
        (np.zeros((2, 2), np.float32), 1),
        (np.zeros((2, 2, 2), np.uint8), 1),
        (np.zeros((2,), np.uint8), 1),
        (np.zeros((2, 2), np.uint8), 10),
        (np.zeros((2, 2), np.uint8), -1),
    ],
)
def test_encode_png_rejects_bad_arguments(pixels: np.ndarray, level: int) -> None:
    with pytest.raises(InvalidArgumentError):
        imaging.encode_png(pixels, level=level)


def test_encode_pngs_gives_one_gray_png_per_channel_in_order() -> None:
    planes = np.random.default_rng(4).integers(0, 256, (5, 9, 11), dtype=np.uint8)
    pngs = imaging.encode_pngs(planes)
    assert len(pngs) == 5
    for plane, png in zip(planes, pngs, strict=True):
        with Image.open(io.BytesIO(png)) as image:
            assert image.mode == "L"
        np.testing.assert_array_equal(png_pixels(png), plane)
    assert pngs == [imaging.encode_png(plane) for plane in planes]


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that counts the tasks submitted to it."""

    submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_encode_pngs_runs_on_the_given_executor() -> None:
    planes = np.random.default_rng(5).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    with CountingExecutor(2) as pool:
        pngs = imaging.encode_pngs(planes, level=0, executor=pool)
        assert pool.submitted == 2  # the calling thread encodes the first PNG itself
        assert imaging.encode_pngs(planes[:1], executor=pool) == [imaging.encode_png(planes[0])]
        assert pool.submitted == 2  # one job: nothing to share
    assert pngs == [imaging.encode_png(p, level=0) for p in planes]


def test_compose_png_makes_l_rgb_rgba() -> None:
    rng = np.random.default_rng(6)
    for channels, mode in ((1, "L"), (3, "RGB"), (4, "RGBA")):
        pixels = rng.integers(0, 256, (channels, 6, 8), dtype=np.uint8)
        png = imaging.compose_png(pixels)
        with Image.open(io.BytesIO(png)) as image:
            assert (image.mode, image.size) == (mode, (8, 6))
            np.testing.assert_array_equal(chw(np.asarray(image), 1.0), pixels.astype(np.float32))


def test_compose_png_refuses_two_channels_and_suggests_grid_or_zip() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        imaging.compose_png(np.zeros((2, 4, 4), np.uint8))
    assert caught.value.to_problem() == {
        "type": "/problems/invalid-argument",
        "title": "Invalid argument",
        "status": 422,
        "detail": "format=image composes 1, 3 or 4 channels into one PNG (L, RGB or RGBA), but "
        "this output has 2 channels; use format=grid for one montage of all channels, "
        "format=zip for one PNG per channel, or format=png with channel=k for one.",
        "errors": [{"field": "format", "message": caught.value.detail}],
    }


def test_grid_png_lays_out_tiles_row_by_row() -> None:
    pixels = np.stack([np.full((4, 6), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = png_pixels(imaging.grid_png(pixels, gap=2))
    # 5 channels: ceil(sqrt(5)) = 3 columns, 2 rows.
    assert grid.shape == (2 * 4 + 2, 3 * 6 + 2 * 2)
    for index in range(5):
        top, left = (index // 3) * 6, (index % 3) * 8
        assert (grid[top : top + 4, left : left + 6] == 10 * (index + 1)).all()
    assert (grid[4:6, :] == 255).all() and (grid[:, 6:8] == 255).all()
    assert (grid[6:, 16:] == 255).all()  # the empty sixth cell


def test_grid_png_options() -> None:
    pixels = np.zeros((4, 3, 5), np.uint8)
    assert png_pixels(imaging.grid_png(pixels, columns=4, gap=0)).shape == (3, 20)
    assert png_pixels(imaging.grid_png(pixels, columns=9, gap=1)).shape == (3, 23)
    assert png_pixels(imaging.grid_png(pixels[:1])).shape == (3, 5)
    bg = png_pixels(imaging.grid_png(pixels, columns=3, gap=1, background=7))
    assert bg.shape == (7, 17) and bg[3, 0] == 7 and bg[0, 5] == 7
    with pytest.raises(InvalidArgumentError, match="columns >= 1"):
        imaging.grid_png(pixels, columns=0)


def test_grid_png_labels_mark_each_tile_corner_only() -> None:
    pixels = np.full((2, 40, 40), 100, np.uint8)
    plain = png_pixels(imaging.grid_png(pixels, gap=0))
    labelled = png_pixels(imaging.grid_png(pixels, gap=0, labels=True))
    assert labelled.shape == plain.shape
    for left in (0, 40):
        corner = labelled[:16, left : left + 16]
        assert (corner == 0).any() and (corner > 200).any()  # white text on a black box
        assert (labelled[20:, left + 20 : left + 40] == 100).all()


def test_zip_pngs_holds_channel_files_and_the_manifest() -> None:
    planes = np.random.default_rng(7).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    pngs = imaging.encode_pngs(planes)
    manifest = {"shape": [3, 4, 5], "channels": [{"index": i} for i in range(3)]}
    data = imaging.zip_pngs(pngs, manifest)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [
            "channel_000.png", "channel_001.png", "channel_002.png", "manifest.json"]
        assert archive.testzip() is None
        for index, png in enumerate(pngs):
            assert archive.read(imaging.channel_png_name(index)) == png
        assert json.loads(archive.read("manifest.json")) == manifest
    assert imaging.zip_pngs(pngs, manifest) == data  # fixed timestamps: reproducible


def test_encode_npy_round_trips_as_float32() -> None:
    array = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 3
    loaded = np.load(io.BytesIO(imaging.encode_npy(array)), allow_pickle=False)
    assert loaded.dtype == np.float32 and loaded.shape == (2, 3, 4)
    np.testing.assert_array_equal(loaded, array.astype(np.float32))
    decoded = imaging.decode_input(imaging.encode_npy(array), max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.array, loaded)


def test_encode_npy_refuses_objects() -> None:
    with pytest.raises(InvalidArgumentError, match="real numbers"):
        imaging.encode_npy(np.array([object()]))


def test_header_size_helper_patches_the_ihdr() -> None:
    data = png_with_header_size(123, 45)
    assert struct.unpack(">II", data[16:24]) == (123, 45)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (123, 45)


@pytest.mark.parametrize("mode", ["clip", "minmax", "abs", "symmetric"])
def test_to_pixels_of_maps_larger_than_a_band_follow_the_rule_on_every_row(mode: str) -> None:
    """Maps are scaled band by band; the range is still the whole channel's, finite values only."""
    rng = np.random.default_rng(7)
    maps = rng.normal(0.3, 2.0, size=(2, 1100, 300)).astype(np.float32)
    maps[0, 1000, 5], maps[0, 1050, 7], maps[1, 3, 3] = np.nan, np.inf, -np.inf
    maps[1, 1099, 299] = 40.0  # the channel's maximum, in its last band
    got = imaging.to_pixels(maps, mode, range_preserving=False)  # type: ignore[arg-type]
    for c in range(2):
        v = maps[c].astype(np.float64)
        finite = np.isfinite(v)
        lo, hi = v[finite].min(), v[finite].max()
        peak = max(abs(lo), abs(hi))
        w = np.where(finite, v, 0.0)
        expected = {
            "clip": np.clip(w, 0, 1) * 255,
            "minmax": (w - lo) * 255 / (hi - lo),
            "abs": np.abs(w) * 255 / peak,
            "symmetric": 127.5 + 127.5 * w / peak,
        }[mode]
        want = np.clip(np.rint(expected), 0, 255)
        want[np.isposinf(v)] = 255
        want[np.isneginf(v) | np.isnan(v)] = 0
        # float32 arithmetic may round a value sitting on .5 the other way: at most 1 apart
        assert np.abs(got[c].astype(np.int16) - want).max() <= 1
    assert got[0, 1000, 5] == 0 and got[0, 1050, 7] == 255 and got[1, 3, 3] == 0
    assert got[1, 1099, 299] == 255
    # Quantised in place, over the maps' own memory, the pixels are the same.
    given_up = maps.copy()
    in_place = imaging.to_pixels(given_up, mode, range_preserving=False,  # type: ignore[arg-type]
                                 overwrite=True)
    assert np.shares_memory(in_place, given_up)
    np.testing.assert_array_equal(in_place, got)
    # A single-band map with non-finite values in its first rows, the overlapping case.
    small = maps[:, :40].copy()
    small[0, 0, 1], small[0, 2, 0] = np.inf, np.nan
    np.testing.assert_array_equal(
        imaging.to_pixels(small.copy(), mode, range_preserving=False,  # type: ignore[arg-type]
                          overwrite=True),
        imaging.to_pixels(small, mode, range_preserving=False),  # type: ignore[arg-type]
    )
