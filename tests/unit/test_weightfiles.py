"""convserve.weightfiles.open_weight_file: one file's tensors listed from its headers, each read
when asked for, in every format; the same picks as load_kernel_file."""

from __future__ import annotations

import numpy as np
import pytest

from convserve.errors import InvalidArgumentError
from convserve.weightfiles import WeightFile, open_weight_file
from tests.weightfiles import npy_file, npz_bytes, safetensors_bytes

MB = 1 << 20
RNG = np.random.default_rng(3)
STATE = {
    "features.0.weight": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
    "features.0.bias": RNG.standard_normal(4).astype(np.float32),
    "head.weight": RNG.standard_normal((2, 4, 1, 1)).astype(np.float32),
}


@pytest.mark.parametrize(("name", "data", "keys"), [
    pytest.param("w.npz", npz_bytes(**STATE), sorted(STATE), id="npz"),
    pytest.param("w.safetensors", safetensors_bytes(STATE), list(STATE), id="safetensors"),
])
def test_a_state_dict_is_listed_with_shapes_and_read_per_tensor(
    name: str, data: bytes, keys: list[str]
) -> None:
    weights = open_weight_file(data, name, max_bytes=MB)
    assert weights.keys == keys
    assert weights.shape("features.0.weight") == (4, 3, 3, 3)
    assert weights.shape("nope") is None
    assert weights.pick("features.0.weight") == ("features.0.weight", "features.0.bias")
    assert weights.pick("head.weight") == ("head.weight", None)
    assert weights.pick("head.weight", "features.0.bias") == ("head.weight", "features.0.bias")
    for key, array in STATE.items():
        np.testing.assert_array_equal(weights.read(key), array)
    loaded = weights.load("features.0.weight")
    assert isinstance(loaded, WeightFile)
    assert loaded.describe() == {"source": "kernel_file", "format": weights.format,
                                 "weight_key": "features.0.weight",
                                 "bias_key": "features.0.bias"}
    with pytest.raises(InvalidArgumentError, match="holds 3 tensors; name the weight"):
        weights.pick()


def test_a_npy_holds_one_unnamed_tensor() -> None:
    weights = open_weight_file(npy_file(STATE["head.weight"]), "k.npy", max_bytes=MB)
    assert (weights.format, weights.keys) == ("npy", [])
    assert weights.shape(None) == (2, 4, 1, 1)
    assert weights.pick() == (None, None)
    np.testing.assert_array_equal(weights.read(None), STATE["head.weight"])
    with pytest.raises(InvalidArgumentError, match="a .npy file holds one tensor"):
        weights.pick("head.weight")
    with pytest.raises(InvalidArgumentError, match="CONVSERVE_MAX_OUTPUT_BYTES"):
        open_weight_file(npy_file(STATE["head.weight"]), "k.npy", max_bytes=16)
