"""Untrusted ONNX models: what passes, what is refused, and the layer table's numbers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import helper

from convserve.errors import (
    ConvServeError,
    InvalidArgumentError,
    InvalidInputError,
    LimitExceededError,
    PayloadTooLargeError,
)
from convserve.models import (
    ALLOWED_OPS,
    ModelRefusedError,
    max_supported_opset,
    summarize,
    validate_model,
)
from tests import onnx_models as m

MB = 1_000_000
TENSOR_BYTES = 256_000_000


def check(data: bytes, input_size: list[int] | None = None, max_macs: int = 20 * 10**9) -> None:
    validated = validate_model(data, max_bytes=100 * MB, input_size=input_size)
    summarize(validated, max_macs=max_macs, max_tensor_bytes=TENSOR_BYTES)


def test_keras_reference_table_equals_keras_summary() -> None:
    validated = validate_model(m.keras_cnn_bytes(), max_bytes=100 * MB)
    summary = summarize(validated, max_macs=20 * 10**9, max_tensor_bytes=TENSOR_BYTES)
    assert validated.input.to_dict() == {"name": "input", "shape": [1, 3, 150, 150],
                                         "layout": "NCHW"}
    rows = [(r.index, r.name, r.op, r.output_shape, r.params) for r in summary.layers]
    assert rows == [
        (0, "conv1", "Conv", (16, 148, 148), 448),
        (1, "relu1", "Relu", (16, 148, 148), 0),
        (2, "pool1", "MaxPool", (16, 74, 74), 0),
        (3, "conv2", "Conv", (32, 72, 72), 4640),
        (4, "relu2", "Relu", (32, 72, 72), 0),
        (5, "pool2", "MaxPool", (32, 36, 36), 0),
        (6, "conv3", "Conv", (64, 34, 34), 18496),
        (7, "relu3", "Relu", (64, 34, 34), 0),
        (8, "pool3", "MaxPool", (64, 17, 17), 0),
        (9, "flatten", "Flatten", (18496,), 0),
        (10, "dense1", "Gemm", (512,), 9_470_464),
        (11, "relu4", "Relu", (512,), 0),
        (12, "dense2", "Gemm", (1,), 513),
        (13, "prob", "Sigmoid", (1,), 0),
    ]
    assert summary.total_params == m.KERAS_TOTAL == sum(m.KERAS_PARAMS)
    # MACs as DESIGN.md: c_out * c_in/groups * k_h * k_w * h_out * w_out, bias not counted.
    macs = {r.name: r.macs for r in summary.layers if r.macs}
    assert macs == {
        "conv1": 16 * 3 * 9 * 148 * 148,
        "conv2": 32 * 16 * 9 * 72 * 72,
        "conv3": 64 * 32 * 9 * 34 * 34,
        "dense1": 512 * 18496,
        "dense2": 512,
    }
    assert summary.total_macs == sum(macs.values())


def test_nhwc_model_is_detected_and_its_layouts_follow_the_transposes() -> None:
    validated = validate_model(m.serialize(m.nhwc_cnn()), max_bytes=MB)
    summary = summarize(validated, max_macs=10**9, max_tensor_bytes=TENSOR_BYTES)
    assert validated.input.to_dict() == {"name": "image", "shape": [1, 12, 12, 3],
                                         "layout": "NHWC"}
    assert [(r.name, r.output_shape, r.layout) for r in summary.layers] == [
        ("to_nchw", (3, 12, 12), "NCHW"), ("conv", (4, 6, 6), "NCHW"),
        ("relu", (4, 6, 6), "NCHW"), ("out", (6, 6, 4), "NHWC"),
    ]


def test_batchnorm_counts_its_four_vectors_as_params() -> None:
    summary = summarize(validate_model(m.serialize(m.bn_cnn()), max_bytes=MB),
                        max_macs=10**9, max_tensor_bytes=TENSOR_BYTES)
    assert [(r.op, r.params) for r in summary.layers] == [
        ("Conv", 5 * 2 * 9), ("BatchNormalization", 4 * 5), ("Relu", 0)]


def test_dynamic_input_needs_input_size() -> None:
    data = m.serialize(m.dynamic_cnn())
    with pytest.raises(InvalidArgumentError) as caught:
        validate_model(data, max_bytes=MB)
    assert caught.value.field == "input_size"
    assert "send input_size [H, W]" in caught.value.detail
    validated = validate_model(data, max_bytes=MB, input_size=[20, 30])
    assert validated.input.shape == (1, 3, 20, 30)
    assert validated.input_size_given


def test_static_model_refuses_a_conflicting_input_size() -> None:
    with pytest.raises(InvalidArgumentError, match=r"conflicts with the model's fixed input"):
        validate_model(m.serialize(m.bn_cnn()), max_bytes=MB, input_size=[5, 5])


def test_model_over_the_byte_limit_is_413_naming_the_setting() -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        validate_model(m.serialize(m.bn_cnn()), max_bytes=100)
    assert caught.value.status == 413
    assert "CONVSERVE_MAX_MODEL_BYTES" in caught.value.detail


def test_external_data_is_refused_before_the_checker_reads_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The named file exists in the working directory: onnx.checker would accept the model and
    # ONNX Runtime would read the file as weights.
    (tmp_path / "secrets.bin").write_bytes(b"\0\0\x80?")
    monkeypatch.chdir(tmp_path)
    model = m.external_data_model("secrets.bin")
    onnx.checker.check_model(model)  # the hole this check closes
    with pytest.raises(ModelRefusedError) as caught:
        validate_model(m.serialize(model), max_bytes=MB)
    assert caught.value.detail.startswith(
        "initializer 'w' refers to external data (location 'secrets.bin')")
    assert os.getcwd() == str(tmp_path)


def test_external_data_in_a_node_attribute_is_refused() -> None:
    tensor = onnx.numpy_helper.from_array(__import__("numpy").ones(2, "float32"), "c")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    model = m.tiny_conv([helper.make_node("Constant", [], ["k"], name="const", value=tensor)])
    with pytest.raises(ModelRefusedError, match="attribute 'value' of node 'const' refers to "
                                                 "external data"):
        validate_model(m.serialize(model), max_bytes=MB)


HOSTILE: list[tuple[str, Callable[[], onnx.ModelProto], type[ConvServeError], str]] = [
    ("custom-domain", m.custom_domain_model, ModelRefusedError,
     "node 'evil' uses operator 'Steal' of the custom domain 'com.evil'"),
    ("loop", m.loop_model, ModelRefusedError, "node 'forever' is control flow (Loop)"),
    ("two-inputs", m.two_input_model, ModelRefusedError, "the model has 2 inputs ('a', 'b')"),
    ("zero-inputs", m.zero_input_model, ModelRefusedError, "the model has 0 inputs (none)"),
    ("int-input", m.int_input_model, ModelRefusedError, "input 'x' has element type INT64"),
    ("1e12-macs", m.huge_macs_model, LimitExceededError,
     "the model costs more than 2e+10 multiply-accumulates for the input [1, 128, 8192, 8192] "
     "(reached at node 'huge', Conv: 9.89e+12), over the limit CONVSERVE_MAX_MACS"),
]


@pytest.mark.parametrize(("build", "error", "message"),
                         [pytest.param(*case[1:], id=case[0]) for case in HOSTILE])
def test_hostile_models_are_refused_with_what_and_where(
    build: Callable[[], onnx.ModelProto], error: type[ConvServeError], message: str
) -> None:
    with pytest.raises(error) as caught:
        check(m.serialize(build()))
    assert type(caught.value) is error
    assert caught.value.status == 422
    assert caught.value.detail.startswith(message), caught.value.detail


def test_operator_outside_the_allow_list_names_it() -> None:
    model = m.tiny_conv([helper.make_node("RandomNormalLike", ["y"], ["z"], name="noise")],
                        out="z")
    with pytest.raises(ModelRefusedError, match="node 'noise' uses operator 'RandomNormalLike', "
                                                 "which is not in the allow-list"):
        check(m.serialize(model))
    assert "Conv" in ALLOWED_OPS and "Loop" not in ALLOWED_OPS


@pytest.mark.parametrize("opset", [10, 99])
def test_opset_outside_the_supported_range_is_refused(opset: int) -> None:
    model = m.tiny_conv()
    model.opset_import[0].version = opset
    with pytest.raises(ModelRefusedError) as caught:
        check(m.serialize(model))
    assert caught.value.detail.startswith(
        f"the model's default-domain opset is {opset}; accepted are 11 to "
        f"{max_supported_opset()}")


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated_file_is_422_not_an_onnx_model(fraction: float) -> None:
    data = m.serialize(m.bn_cnn())
    with pytest.raises(InvalidInputError) as caught:
        check(data[: int(len(data) * fraction)])
    assert caught.value.status == 422
    assert caught.value.detail.startswith("the file is not an ONNX model")


def test_random_bytes_are_not_a_model() -> None:
    with pytest.raises(InvalidInputError):
        check(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_macs_limit_counts_the_whole_model() -> None:
    data = m.serialize(m.bn_cnn())
    check(data, max_macs=5940)
    with pytest.raises(LimitExceededError, match="CONVSERVE_MAX_MACS"):
        check(data, max_macs=5939)
