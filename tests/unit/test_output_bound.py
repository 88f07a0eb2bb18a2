"""The output bound is in bytes (CONVSERVE_MAX_OUTPUT_BYTES), fitted so the default pixel limit
is reachable with common presets: a 2-channel preset (Sobel) over 50 MP passes, four maps do
not, and the refusal names the bound and its variable."""

from __future__ import annotations

import pytest

from convserve.conv.presets import resolve_preset
from convserve.conv.spec import conv_spec
from convserve.errors import LimitExceededError
from convserve.limits import Limits
from convserve.settings import Settings

LIMITS = Limits.from_settings(Settings(warmup=False))
SIDE = 7071  # 7071 x 7071 = 49,999,041 pixels, under the default 50 MP


def sobel_output_values(channels: int) -> int:
    resolved = resolve_preset("sobel", channels)
    spec = conv_spec((channels, SIDE, SIDE), resolved.weight.shape, groups=resolved.groups,
                     padding="same", padding_mode="reflect")
    return spec.out_channels * spec.out_height * spec.out_width


def test_default_bound_admits_sobel_on_a_50_mp_photo() -> None:
    assert SIDE * SIDE <= LIMITS.max_pixels
    values = sobel_output_values(3)
    assert values == 2 * SIDE * SIDE
    LIMITS.check_output_bytes("the output", values, field="preset")  # 400 MB: no error


def test_four_maps_of_50_mp_are_refused_naming_the_bound() -> None:
    with pytest.raises(LimitExceededError) as info:
        LIMITS.check_output_bytes("the output 4x7071x7071", 4 * SIDE * SIDE, field="kernel")
    assert info.value.detail == (
        "the output 4x7071x7071 would hold 199996164 float32 values (799,984,656 bytes), more "
        "than the limit of 536,870,912 bytes (CONVSERVE_MAX_OUTPUT_BYTES); use a smaller "
        "image, fewer channels or a larger stride"
    )
