"""Over HTTP, a convolution cut into bands (CONVSERVE_BAND_BYTES) answers what the whole does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.api.conftest import ClientFactory, load_npy

PHOTO = (Path(__file__).parent.parent / "data" / "chelsea.png").read_bytes()

REQUESTS = [
    pytest.param({"preset": "sobel"}, id="sobel-reflect"),
    pytest.param({"preset": "gaussian_blur", "padding_mode": "circular"}, id="blur-circular"),
    pytest.param({"kernel": json.dumps({"weight": np.ones((4, 1, 3, 3)).tolist()}),
                  "groups": "4", "stride": "2", "dilation": "2", "padding": "3",
                  "padding_mode": "replicate", "color_mode": "rgba"},
                 id="g4-s2-d2-replicate"),
    pytest.param({"kernel": json.dumps({"weight": np.ones((2, 3, 5, 5)).tolist(),
                                        "bias": [0.5, -1.0]}), "padding": "2"},
                 id="k5-zeros-bias"),
]


@pytest.mark.parametrize("fields", REQUESTS)
def test_convolve_in_bands_equals_the_whole_image(make_client: ClientFactory,
                                                  fields: dict[str, str]) -> None:
    whole = make_client(band_bytes=0, warmup=False)
    banded = make_client(band_bytes=1, warmup=False)  # the smallest bands each engine allows
    for engine in ("numpy", "onnxruntime"):
        answers = [
            client.post("/v1/convolve", files={"image": ("cat.png", PHOTO, "image/png")},
                        data={**fields, "engine": engine, "format": "npy"})
            for client in (whole, banded)
        ]
        assert [a.status_code for a in answers] == [200, 200], answers[0].text
        expected, got = (load_npy(a.content) for a in answers)
        if engine == "numpy":
            np.testing.assert_array_equal(got, expected)
        else:
            scale = float(np.abs(expected).max())
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * scale)
