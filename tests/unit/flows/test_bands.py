"""A large image convolved in bands of rows gives the whole image's answer.

``convolve_in_bands`` is run with tiny bands (a few rows, so many band edges fall inside the
kernel's reach) against the whole-image convolution of the same engine, across padding modes,
strides, dilations and groups; both engines must agree with it to float32 rounding (the flow
bands ONNX Runtime only). The flow itself is checked end to end with the threshold lowered.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from convserve import flows, imaging
from convserve.conv.spec import conv_spec
from convserve.conv.tiling import source_rows
from convserve.flows import bands
from convserve.flows.context import FlowContext
from tests.images import rgb_pixels

NUMPY_PAD = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize(
    ("mode", "size", "before", "after"),
    [(mode, *axis) for mode in ("zeros", "reflect", "replicate", "circular")
     for axis in ((7, 3, 2), (5, 0, 4), (2, 1, 1), (9, 0, 0))
     if mode != "reflect" or max(axis[1:]) < axis[0]],  # the spec refuses reflect pads >= size
)
def test_source_rows_are_the_padded_axis(mode: str, size: int, before: int, after: int) -> None:
    got = source_rows(size, before, after, mode)  # type: ignore[arg-type]
    if mode == "zeros":
        expected = np.pad(np.arange(size), (before, after), constant_values=-1)
    else:
        expected = np.pad(np.arange(size), (before, after), mode=NUMPY_PAD[mode])  # type: ignore[call-overload]
    np.testing.assert_array_equal(got, expected)


def decoded_image(height: int, width: int) -> imaging.DecodedInput:
    """An 8-bit RGB image as the decoders leave it: samples, float32 made on demand."""
    return imaging.DecodedInput(rgb_pixels(height, width, seed=5), "PNG", "RGB",
                                ("R", "G", "B"), 8, "test", 255.0, planar=False)


CASES = [
    pytest.param(3, 1, 1, 1, 1, "zeros", id="k3-s1-zeros"),
    pytest.param(3, 1, 1, 1, 1, "reflect", id="k3-s1-reflect"),
    pytest.param(5, 2, 1, 1, 2, "replicate", id="k5-s2-replicate"),
    pytest.param(3, 1, 2, 1, 3, "circular", id="k3-d2-circular"),
    pytest.param(3, 3, 2, 3, 0, "zeros", id="k3-s3-d2-g3-valid"),
    pytest.param(4, 1, 1, 1, 3, "reflect", id="k4-even-reflect"),
    pytest.param(7, 2, 1, 3, 3, "replicate", id="k7-s2-g3-replicate"),
]


@pytest.mark.parametrize("engine_name", ["numpy", "onnxruntime"])
@pytest.mark.parametrize(("k", "stride", "dilation", "groups", "pad", "mode"), CASES)
def test_bands_equal_the_whole_image(
    ctx: FlowContext, engine_name: str, k: int, stride: int, dilation: int, groups: int,
    pad: int, mode: str,
) -> None:
    decoded = decoded_image(37, 23)
    rng = np.random.default_rng(k * 10 + stride)
    weight = rng.normal(size=(6, 3 // groups, k, k)).astype(np.float32)
    bias = rng.normal(size=6).astype(np.float32)
    spec = conv_spec((1, 3, 37, 23), weight.shape, bias.shape, stride=stride, padding=pad,
                     dilation=dilation, groups=groups, padding_mode=mode)
    engine = ctx.engine(engine_name)
    whole = engine.conv2d(decoded.array[np.newaxis], weight, bias, spec, "cpu")
    for band_bytes in (1, 4 * 3 * 23 * 5, 4 * 3 * 23 * 11):  # 1 output row, 5 and 11 input rows
        banded = bands.convolve_in_bands(
            decoded_image(37, 23), spec,
            lambda x, s: engine.conv2d(x, weight, bias, s, "cpu"), band_bytes,
        )
        assert banded.shape == whole.shape == spec.output_shape
        # The same products summed per element; BLAS may block the sums differently.
        np.testing.assert_allclose(banded, whole, rtol=1e-6, atol=1e-5)


def test_the_flow_convolves_large_images_in_bands_with_the_same_answer(
    ctx: FlowContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    Image.fromarray(rgb_pixels(120, 90, seed=2)).save(buffer, format="PNG")
    options: dict[str, object] = {
        "kernel": None, "preset": "sobel", "preset_params": {}, "stride": 1, "padding": None,
        "dilation": 1, "groups": None, "padding_mode": None, "engine": "onnxruntime",
        "device": None,
    }
    source = flows.Source(data=buffer.getvalue())
    whole = flows.convolve(ctx, source, options, fmt="npy").result.body
    calls: list[int] = []
    real = bands.convolve_in_bands

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bands, "WHOLE_BYTES", 1000)
    monkeypatch.setattr(bands, "BAND_BYTES", 4 * 3 * 90 * 7)
    # the module, not the function that convserve.flows exports under the same name
    monkeypatch.setattr(sys.modules["convserve.flows.convolve"], "convolve_in_bands", counted)
    banded = flows.convolve(ctx, source, options, fmt="npy").result.body
    assert calls == [1]
    got, want = (np.load(io.BytesIO(body)) for body in (banded, whole))
    assert got.shape == want.shape == (2, 120, 90)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
