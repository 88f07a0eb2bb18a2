"""The model store, feature maps against ONNX Runtime, kernels, preprocessing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from convserve import conv2d
from convserve.errors import InvalidArgumentError, NotFoundError, PayloadTooLargeError, ShapeError
from convserve.limits import Limits
from convserve.models import ModelService, ModelStore, Preprocess, preprocess
from convserve.models.store import StoreUnavailableError
from convserve.models.validate import InputInfo
from tests import onnx_models as m


def service(root: Path, store_bytes: int = 10**9, sessions: int = 4) -> ModelService:
    return ModelService(root, Limits(model_store_bytes=store_bytes), sessions=sessions,
                        intra_op_threads=1)


def ort_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                names: list[str]) -> list[np.ndarray]:
    """An independent run: ONNX Runtime with ``names`` exposed as graph outputs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    del inferred.graph.output[:]
    inferred.graph.output.extend(values[n] for n in names)
    session = ort.InferenceSession(inferred.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in session.run(names, feeds)]


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelService, str]:
    svc = service(tmp_path_factory.mktemp("models"))
    meta, created = svc.upload(m.keras_cnn_bytes(), filename="keras.onnx")
    assert created
    return svc, str(meta["id"])


def test_same_file_twice_gives_the_same_id_and_is_not_stored_again(
    keras: tuple[ModelService, str]
) -> None:
    svc, ident = keras
    meta, created = svc.upload(m.keras_cnn_bytes())
    assert (meta["id"], created) == (ident, False)
    assert [r["params"] for r in meta["layers"] if r["params"]] == list(m.KERAS_PARAMS)
    assert meta["total_params"] == m.KERAS_TOTAL


def test_features_of_every_conv_relu_and_pool_row_equal_onnx_runtime(
    keras: tuple[ModelService, str]
) -> None:
    svc, ident = keras
    x = np.random.default_rng(5).random((3, 150, 150), dtype=np.float32)
    rows = [r["name"] for r in svc.get(ident).rows if r["op"] in ("Conv", "Relu", "MaxPool")]
    assert len(rows) == 10
    result = svc.features(ident, x, rows, Preprocess())
    expected = ort_outputs(m.keras_cnn(), {"input": x[np.newaxis]}, rows)
    for name, got, want in zip(rows, result.maps, expected, strict=True):
        # (C, H, W) as the answer gives it; dense rows (1, F) become (F, 1, 1).
        assert got.shape == (want.shape[1:] if want.ndim == 4 else (want.shape[1], 1, 1))
        np.testing.assert_allclose(got, want[0].reshape(got.shape), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_first_layers_equal_convserve_conv2d_relu_and_maxpool(
    keras: tuple[ModelService, str]
) -> None:
    svc, ident = keras
    x = np.random.default_rng(6).random((3, 150, 150), dtype=np.float32)
    conv1, relu1, pool1 = svc.features(ident, x, [0, "relu1", "2"], Preprocess()).maps
    _, kernel = svc.kernel(ident, "conv1")
    y = conv2d(x, kernel.weight, kernel.bias, stride=kernel.stride, padding=kernel.padding,
               dilation=kernel.dilation, groups=kernel.groups, engine="numpy")
    np.testing.assert_allclose(conv1, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(relu1, np.maximum(conv1, 0))
    np.testing.assert_array_equal(pool1, relu1.reshape(16, 74, 2, 74, 2).max(axis=(2, 4)))


def test_kernel_is_the_initializer_and_reproduces_the_layer(
    keras: tuple[ModelService, str]
) -> None:
    svc, ident = keras
    row, kernel = svc.kernel(ident, "conv2")
    inits = {t.name: numpy_helper.to_array(t) for t in m.keras_cnn().graph.initializer}
    np.testing.assert_array_equal(kernel.weight, inits["conv2.weight"])
    assert kernel.bias is not None
    np.testing.assert_array_equal(kernel.bias, inits["conv2.bias"])
    assert (row["index"], kernel.input, kernel.stride, kernel.padding, kernel.groups) == \
        (3, "pool1", (1, 1), (0, 0, 0, 0), 1)
    with pytest.raises(InvalidArgumentError, match=r"layer 'relu2' \(index 4\) is a Relu, not "
                                                   "a Conv"):
        svc.kernel(ident, "relu2")


def test_unknown_layer_is_422_listing_the_names(keras: tuple[ModelService, str]) -> None:
    svc, ident = keras
    with pytest.raises(InvalidArgumentError) as caught:
        svc.features(ident, np.zeros((3, 150, 150), np.float32), ["conv9"], Preprocess())
    assert caught.value.detail == (
        f"model {ident} has no layer 'conv9'; give a name or an index in [0, 14): 'conv1', "
        "'relu1', 'pool1', 'conv2', 'relu2', 'pool2', 'conv3', 'relu3', 'pool3', 'flatten', "
        f"'dense1', 'relu4', 'dense2', 'prob' (GET /v1/models/{ident} lists them)")


@pytest.mark.parametrize(("build", "size", "x_shape", "feed_layout"), [
    pytest.param(m.nhwc_cnn, None, (3, 12, 12), "NHWC", id="nhwc-same-upper-stride2"),
    pytest.param(m.bn_cnn, None, (2, 10, 9), "NCHW", id="batchnorm-asymmetric-pads"),
    pytest.param(m.dynamic_cnn, [7, 11], (3, 7, 11), "NCHW", id="dynamic-input"),
])
def test_every_row_equals_onnx_runtime_and_every_conv_equals_conv2d(
    tmp_path: Path, build: object, size: list[int] | None, x_shape: tuple[int, ...],
    feed_layout: str,
) -> None:
    model = build()  # type: ignore[operator]
    svc = service(tmp_path)
    meta, _ = svc.upload(m.serialize(model), size)
    x = np.random.default_rng(7).normal(size=x_shape).astype(np.float32)
    names = [r["name"] for r in meta["layers"]]
    result = svc.features(meta["id"], x, names, Preprocess())
    feed = x[np.newaxis] if feed_layout == "NCHW" else x.transpose(1, 2, 0)[np.newaxis]
    if size is not None:
        model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = size[0]
        model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = size[1]
    expected = ort_outputs(model, {model.graph.input[0].name: feed}, names)
    for row, got, want in zip(meta["layers"], result.maps, expected, strict=True):
        want = want[0].transpose(2, 0, 1) if row["layout"] == "NHWC" else want[0]
        np.testing.assert_allclose(got, want.reshape(got.shape), rtol=1e-5, atol=1e-6)
        if row["op"] == "Conv":
            _, kernel, conv_in, conv_out, _, _ = svc.conv_io(meta["id"], row["name"], x,
                                                             Preprocess())
            y = conv2d(conv_in, kernel.weight, kernel.bias, stride=kernel.stride,
                       padding=kernel.padding, dilation=kernel.dilation, groups=kernel.groups,
                       engine="numpy")
            np.testing.assert_allclose(y[0], got, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(conv_out, got)


def test_onnx_pads_become_top_bottom_left_right(tmp_path: Path) -> None:
    svc = service(tmp_path)
    meta, _ = svc.upload(m.serialize(m.bn_cnn()))
    _, kernel = svc.kernel(meta["id"], "conv")
    # ONNX pads=[top=1, left=0, bottom=2, right=1] -> convserve (top, bottom, left, right)
    assert (kernel.padding, kernel.dilation) == ((1, 2, 0, 1), (1, 2))
    _, nhwc = svc.kernel(svc.upload(m.serialize(m.nhwc_cnn()))[0]["id"], 1)
    # SAME_UPPER, stride 2, k 3 over 12: total pad 1, the odd one at the end.
    assert (nhwc.padding, nhwc.stride) == ((0, 1, 0, 1), (2, 2))


def test_store_evicts_least_recently_used_to_stay_under_its_bound(tmp_path: Path) -> None:
    small = [m.serialize(m.bn_cnn(seed)) for seed in range(3)]
    probe = service(tmp_path / "probe")
    probe.upload(small[0])
    one = probe.store.used_bytes()
    svc = service(tmp_path / "store", store_bytes=int(2.5 * one))
    first = svc.upload(small[0])[0]["id"]
    second = svc.upload(small[1])[0]["id"]
    svc.get(first)  # first is now more recently used than second
    third = svc.upload(small[2])[0]["id"]
    assert svc.store.used_bytes() <= int(2.5 * one)
    assert {meta["id"] for meta in svc.store.list()} == {first, third}
    with pytest.raises(NotFoundError, match="evicted to keep the store under "
                                            "CONVSERVE_MODEL_STORE_BYTES"):
        svc.get(second)


def test_model_larger_than_the_store_is_413(tmp_path: Path) -> None:
    svc = service(tmp_path, store_bytes=1000)
    with pytest.raises(PayloadTooLargeError, match="CONVSERVE_MODEL_STORE_BYTES"):
        svc.upload(m.serialize(m.bn_cnn()))
    assert svc.store.list() == []


def test_delete_drops_the_model_and_its_sessions(tmp_path: Path) -> None:
    svc = service(tmp_path)
    ident = svc.upload(m.serialize(m.bn_cnn()))[0]["id"]
    svc.features(ident, np.zeros((2, 10, 9), np.float32), ["y"], Preprocess())
    assert any(key[0] == ident for key in svc._sessions)
    svc.delete(ident)
    assert not any(key[0] == ident for key in svc._sessions)
    with pytest.raises(NotFoundError):
        svc.delete(ident)
    with pytest.raises(NotFoundError, match="ids are 32 hex digits"):
        svc.get("../etc/passwd")


def _upload_in_child(root: str, data: bytes) -> str:
    svc = service(Path(root))
    return str(svc.upload(data)[0]["id"])


def test_store_is_shared_by_processes(tmp_path: Path) -> None:
    data = m.serialize(m.bn_cnn())
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        ident = pool.apply(_upload_in_child, (str(tmp_path), data))
    svc = service(tmp_path)
    assert svc.get(ident).input.shape == (1, 2, 10, 9)
    assert svc.upload(data)[1] is False
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_store_list_is_in_upload_order(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, 10_000)
    for i, ident in enumerate(("b" * 32, "a" * 32)):
        store.put(ident, b"x", {"id": ident, "created": f"2026-01-0{i + 1}"})
    assert [meta["id"] for meta in store.list()] == ["b" * 32, "a" * 32]


NCHW = InputInfo("x", (1, 3, 4, 6), "NCHW")


def test_preprocess_imagenet_and_bgr() -> None:
    x = np.random.default_rng(1).random((3, 4, 6), dtype=np.float32)
    tensor, report = preprocess(x, Preprocess.from_request("imagenet"), NCHW)
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    np.testing.assert_allclose(tensor[0], (x - mean) / std, rtol=1e-6)
    assert report["name"] == "imagenet" and report["model_input_shape"] == [1, 3, 4, 6]
    bgr, _ = preprocess(x, Preprocess.from_request({"channel_order": "BGR", "scale": 2}), NCHW)
    np.testing.assert_array_equal(bgr[0], 2 * x[::-1])


def test_preprocess_resize_and_layout() -> None:
    x = np.ones((3, 2, 3), np.float32)
    with pytest.raises(ShapeError, match="the input is 2x3 and the model takes 4x6"):
        preprocess(x, Preprocess(), NCHW)
    stretched, _ = preprocess(x, Preprocess.from_request({"resize": "stretch"}), NCHW)
    np.testing.assert_allclose(stretched, np.ones((1, 3, 4, 6)), rtol=1e-6)
    tall = np.ones((3, 8, 3), np.float32)
    fit, _ = preprocess(tall, Preprocess.from_request({"resize": "fit"}), NCHW)
    # 8x3 scaled by 0.5 is 4x2 (rounded), centred on a 4x6 canvas of zeros.
    assert fit[0, 0].tolist() == [[0, 0, 1, 1, 0, 0]] * 4
    nhwc, _ = preprocess(np.arange(72, dtype=np.float32).reshape(3, 4, 6), Preprocess(),
                         InputInfo("x", (1, 4, 6, 3), "NHWC"))
    assert nhwc.shape == (1, 4, 6, 3) and nhwc[0, 1, 2].tolist() == [8, 32, 56]
    with pytest.raises(ShapeError, match="the input has 1 channel"):
        preprocess(np.ones((1, 4, 6), np.float32), Preprocess(), NCHW)


def test_unwritable_store_is_a_503_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreUnavailableError) as caught:
        ModelStore(blocker / "models", 10_000)
    assert caught.value.status == 503
    assert "CONVSERVE_MODEL_DIR" in caught.value.detail


def test_dynamic_model_ids_depend_on_the_input_size(tmp_path: Path) -> None:
    svc = service(tmp_path)
    data = m.serialize(m.dynamic_cnn())
    first, created = svc.upload(data, [8, 8])
    again, created_again = svc.upload(data, [8, 8])
    other, created_other = svc.upload(data, [9, 8])
    assert (created, created_again, created_other) == (True, False, True)
    assert first["id"] == again["id"] != other["id"]
    static = m.serialize(m.bn_cnn())
    ident = svc.upload(static)[0]["id"]
    assert svc.upload(static, [10, 9]) == (svc.get(ident).meta, False)
    with pytest.raises(InvalidArgumentError, match="conflicts with the model's fixed input"):
        svc.upload(static, [5, 5])
