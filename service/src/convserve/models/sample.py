"""The sample network of the demo page, built here from code (nothing is downloaded).

The small Keras CNN learners meet first, as ``torch.onnx.export`` would write it: input
``(1, 3, 150, 150)`` -> Conv2D 16 (3x3) -> ReLU -> MaxPool 2 -> Conv2D 32 -> ReLU -> MaxPool 2 ->
Conv2D 64 -> ReLU -> MaxPool 2 -> Flatten -> Dense 512 -> ReLU -> Dense 1 -> Sigmoid, 9,494,561
parameters. Its first layer holds meaningful kernels, the ``gabor`` preset's 16 orientations at
3x3 spread over RGB by luminance, so its feature maps show edges by direction; every later
layer has seeded He-normal weights (an untrained network, labelled as such).

The bytes are the same on every build (seeded weights, no timestamps), so the sample's id is
the same wherever it is built. The Docker images build it once at build time::

    python -m convserve.models.sample --out /opt/convserve/share/sample-keras-cnn.onnx

and name that file in ``CONVSERVE_SAMPLE_MODEL_FILE``; :func:`sample_bytes` reads it, or builds
the sample here when no file is named (or it cannot be read).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convserve.conv.presets import resolve_preset

__all__ = ["SAMPLE_FILENAME", "SAMPLE_SEED", "main", "sample_bytes", "sample_model_bytes",
           "write_sample"]

SAMPLE_FILENAME = "sample-keras-cnn.onnx"
SAMPLE_SEED = 0
_SIZE = 150

log = logging.getLogger("convserve")


def _tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def sample_model_bytes() -> bytes:
    """The sample model, serialized: 38 MB, built in about a second and not kept (it is asked
    for rarely); the same bytes, so the same id, every time."""
    rng = np.random.default_rng(SAMPLE_SEED)
    gabor = resolve_preset("gabor", 3, {"size": 3, "orientations": 16}, ("R", "G", "B"))
    weights: list[np.ndarray] = [gabor.weight]
    for c_in, c_out in ((16, 32), (32, 64)):
        weights.append(rng.normal(0, np.sqrt(2 / (c_in * 9)), (c_out, c_in, 3, 3)))
    inits, nodes = [], []
    previous = "input"
    for i, w in enumerate(weights, start=1):
        inits += [_tensor(f"conv{i}.weight", w), _tensor(f"conv{i}.bias", np.zeros(len(w)))]
        nodes += [
            helper.make_node("Conv", [previous, f"conv{i}.weight", f"conv{i}.bias"],
                             [f"conv{i}"], name=f"/conv{i}/Conv", kernel_shape=[3, 3]),
            helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"/relu{i}/Relu"),
            helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], name=f"/pool{i}/MaxPool",
                             kernel_shape=[2, 2], strides=[2, 2]),
        ]
        previous = f"pool{i}"
    flat = 64 * 17 * 17
    inits += [
        _tensor("dense1.weight", rng.normal(0, np.sqrt(2 / flat), (512, flat))),
        _tensor("dense1.bias", np.zeros(512)),
        _tensor("dense2.weight", rng.normal(0, np.sqrt(1 / 512), (1, 512))),
        _tensor("dense2.bias", np.zeros(1)),
    ]
    nodes += [
        helper.make_node("Flatten", ["pool3"], ["flatten"], name="/flatten/Flatten", axis=1),
        helper.make_node("Gemm", ["flatten", "dense1.weight", "dense1.bias"], ["dense1"],
                         name="/dense1/Gemm", transB=1),
        helper.make_node("Relu", ["dense1"], ["relu4"], name="/relu4/Relu"),
        helper.make_node("Gemm", ["relu4", "dense2.weight", "dense2.bias"], ["dense2"],
                         name="/dense2/Gemm", transB=1),
        helper.make_node("Sigmoid", ["dense2"], ["probability"], name="/sigmoid/Sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "sample_keras_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, _SIZE, _SIZE])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="convserve", producer_version="sample")
    model.doc_string = ("The Keras reference CNN; conv1 holds the gabor preset (16 orientations, "
                        "3x3), later layers seeded He-normal weights (untrained).")
    data: bytes = model.SerializeToString()
    return data


def sample_bytes(prebuilt: Path | None = None) -> bytes:
    """The sample's bytes: those of the file ``prebuilt`` (``CONVSERVE_SAMPLE_MODEL_FILE``),
    or built here when it is None or cannot be read (logged: the image should have it)."""
    if prebuilt is not None:
        try:
            return prebuilt.read_bytes()
        except OSError as exc:
            log.warning("the prebuilt sample network %s (CONVSERVE_SAMPLE_MODEL_FILE) cannot be "
                        "read (%s); building it instead", prebuilt, exc.strerror or exc)
    return sample_model_bytes()


def write_sample(path: Path) -> bytes:
    """Build the sample and write it to ``path`` atomically (a temporary file in the same
    directory, renamed into place); returns the bytes written."""
    data = sample_model_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # readable by the service's user, whoever builds the image
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convserve.models.sample --out FILE``: write the sample network to FILE."""
    parser = argparse.ArgumentParser(
        prog="python -m convserve.models.sample",
        description="Write the demo page's sample network (the Keras reference CNN, built "
                    "from code) to an .onnx file, for CONVSERVE_SAMPLE_MODEL_FILE.")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    args = parser.parse_args(argv)
    data = write_sample(args.out)
    # The store's id of a model with a static input: the first 32 hex digits of its SHA-256.
    print(f"{args.out}: {len(data):,} bytes, model id {hashlib.sha256(data).hexdigest()[:32]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
