"""kernel_file on /v1/convolve and /v1/explain: .npy, .npz, .safetensors; pickles refused."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convserve.errors import InvalidArgumentError, InvalidInputError
from convserve.weightfiles import PickleRefusedError, load_kernel_file
from tests.api.conftest import load_npy, npy_bytes
from tests.weightfiles import npz_bytes, safetensors_bytes

# Dive into Deep Learning: X (2, 3, 3), K (1, 2, 2, 2) -> [[56, 72], [104, 120]]
X = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], np.float32)
K = np.array([[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]], np.float32)
D2L = [[56.0, 72.0], [104.0, 120.0]]
MB = 1 << 20


def convolve(client: TestClient, name: str, data: bytes, **fields: str) -> np.ndarray:
    response = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X)),
                                                  "kernel_file": (name, data)},
                           data={"format": "npy", **fields})
    assert response.status_code == 200, response.text
    return load_npy(response.content)


def test_npy_kernel_gives_the_d2l_numbers(client: TestClient) -> None:
    assert convolve(client, "k.npy", npy_bytes(K)).tolist() == [D2L]


def test_npz_with_key_reads_the_bias_beside_the_weight(client: TestClient) -> None:
    data = npz_bytes(**{"features.0.weight": K, "features.0.bias": np.array([1.0], np.float32),
                        "other": np.array([10.0], np.float32)})
    y = convolve(client, "w.npz", data, kernel_key="features.0.weight")
    assert y.tolist() == [[[57.0, 73.0], [105.0, 121.0]]]
    named = convolve(client, "w.npz", data, kernel_key="features.0.weight", bias_key="other")
    assert named.tolist() == [[[66.0, 82.0], [114.0, 130.0]]]
    response = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X)),
                                                  "kernel_file": ("w.npz", data)},
                           data={"format": "npy"})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "the .npz file holds 3 tensors; name the weight with kernel_key: 'features.0.bias', "
        "'features.0.weight', 'other'")


def test_safetensors_with_keras_hwio_layout(client: TestClient) -> None:
    hwio = K.transpose(2, 3, 1, 0)  # Keras' get_weights() order (k_h, k_w, c_in, c_out)
    data = safetensors_bytes({"conv.weight": hwio, "conv.bias": np.array([-6.0], np.float32)})
    y = convolve(client, "w.safetensors", data, kernel_key="conv.weight", layout="HWIO")
    assert y.tolist() == [[[50.0, 66.0], [98.0, 114.0]]]


def test_explain_takes_a_kernel_file(client: TestClient) -> None:
    response = client.post("/v1/explain", files={"image": ("x.npy", npy_bytes(X)),
                                                 "kernel_file": ("k.npy", npy_bytes(K))},
                           data={"at": '{"channel": 0, "y": 0, "x": 0}'})
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 56.0


@pytest.mark.parametrize(("name", "data"), [
    pytest.param("model.pt", b"PK\x03\x04 anything", id="pt-suffix"),
    pytest.param("weights.bin", pickle.dumps(K), id="pickle-bytes"),
    pytest.param("w.pkl", pickle.dumps({"weight": K}), id="pkl"),
])
def test_pickles_are_refused_with_advice(client: TestClient, name: str, data: bytes) -> None:
    response = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X)),
                                                  "kernel_file": (name, data)})
    assert response.status_code == 415
    body = response.json()
    assert body["title"] == "Pickled weight files are refused"
    assert "save the tensors with safetensors" in body["detail"]
    assert body["errors"][0]["field"] == "kernel_file"


def test_object_array_and_torch_zip_are_refused_as_pickles() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([K, None], dtype=object), allow_pickle=True)
    with pytest.raises(PickleRefusedError, match="object array"):
        load_kernel_file(buffer.getvalue(), "k.npy", max_bytes=MB)
    torch_like = io.BytesIO()
    with zipfile.ZipFile(torch_like, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
        archive.writestr("archive/data/0", K.tobytes())
    with pytest.raises(PickleRefusedError, match="PyTorch checkpoint"):
        load_kernel_file(torch_like.getvalue(), "model.zip", max_bytes=MB)


def test_malformed_files_and_limits() -> None:
    data = safetensors_bytes({"w": K})
    with pytest.raises(InvalidArgumentError, match="has no tensor 'x'; it holds 'w'"):
        load_kernel_file(data, "w.safetensors", kernel_key="x", max_bytes=MB)
    with pytest.raises(InvalidArgumentError, match="CONVSERVE_MAX_OUTPUT_BYTES"):
        load_kernel_file(data, "w.safetensors", max_bytes=8)
    big = npz_bytes(w=np.zeros(10_000, np.float32))
    with pytest.raises(InvalidArgumentError, match="inflates to 40,128 bytes"):
        load_kernel_file(big, "w.npz", max_bytes=1000)
    with pytest.raises(InvalidInputError, match="safetensors header claims"):
        load_kernel_file(data[:20], "w.safetensors", max_bytes=MB)
    with pytest.raises(InvalidInputError, match="is not a .npy, .npz or .safetensors file"):
        load_kernel_file(b"hello world", "w.txt", max_bytes=MB)


def test_kernel_and_kernel_file_together_or_stray_keys_are_422(client: TestClient) -> None:
    both = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X)),
                                              "kernel_file": ("k.npy", npy_bytes(K))},
                       data={"kernel": json.dumps({"weight": K.tolist()})})
    assert both.status_code == 422
    assert both.json()["detail"] == "give kernel (JSON) or kernel_file (a weight file), not both"
    stray = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X))},
                        data={"preset": "sobel", "kernel_key": "w"})
    assert stray.status_code == 422
    assert stray.json()["errors"][0]["field"] == "kernel_key"


def test_the_answer_reports_the_kernels_file_and_keys(client: TestClient) -> None:
    data = npz_bytes(**{"features.0.weight": K, "features.0.bias": np.array([1.0], np.float32)})
    response = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X)),
                                                  "kernel_file": ("w.npz", data)},
                           data={"kernel_key": "features.0.weight", "dry_run": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["kernel"] == {
        "source": "kernel_file", "format": "npz", "weight_key": "features.0.weight",
        "bias_key": "features.0.bias", "layout": "OIHW", "weight_shape": [1, 2, 2, 2],
        "bias": [1.0], "groups": 1}
    explained = client.post("/v1/explain", files={"image": ("x.npy", npy_bytes(X)),
                                                  "kernel_file": ("k.npy", npy_bytes(K))},
                            data={"at": '{"channel": 0, "y": 0, "x": 0}'})
    assert explained.status_code == 200, explained.text
    assert explained.json()["kernel"]["source"] == "kernel_file"
    assert explained.json()["kernel"]["format"] == "npy"
    typed = client.post("/v1/convolve", json={"input": {"array": X.tolist()},
                                              "kernel": {"weight": K.tolist()},
                                              "dry_run": True})
    assert typed.json()["kernel"]["source"] == "kernel"


def test_a_corrupt_npz_member_is_a_422(client: TestClient) -> None:
    data = bytearray(npz_bytes(w=np.random.default_rng(0).random((4, 2, 3, 3))))
    start = data.index(b"w.npy") + 100  # inside the member's deflate stream
    data[start:start + 40] = bytes(b ^ 0x5A for b in data[start:start + 40])
    response = client.post("/v1/convolve", files={"image": ("x.npy", npy_bytes(X)),
                                                  "kernel_file": ("w.npz", bytes(data))})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(
        "kernel_file member 'w' cannot be read from the .npz (ZIP) file: ")


def npy_with_header(header: str, data: bytes = b"\0" * 16) -> bytes:
    """A .npy (version 1.0) with ``header`` as its dictionary text."""
    text = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + data


def zip_version_129(data: bytes) -> bytes:
    """``data`` (a ZIP) with its first central-directory entry needing ZIP version 12.9."""
    edited = bytearray(data)
    edited[edited.index(b"PK\x01\x02") + 6] = 129
    return bytes(edited)


@pytest.mark.parametrize(("data", "message"), [
    pytest.param(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, "),
                 "kernel_file is not a valid .npy array: ('EOF in multi-line statement'",
                 id="npy-header-unbalanced"),
    pytest.param(npy_with_header(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"),
        "kernel_file's header claims shape (1000000000000,) of float32 (4,000,000,000,000 "
        "bytes) and it holds 16 bytes of data", id="npy-header-claims-terabytes"),
    pytest.param(zip_version_129(npz_bytes(w=K)),
                 "kernel_file is not a valid .npz (ZIP) file: zip file version 12.9",
                 id="zip-version"),
])
def test_mangled_headers_are_invalid_input_not_errors(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        load_kernel_file(data, "w", max_bytes=MB)
    assert info.value.detail.startswith(message)
