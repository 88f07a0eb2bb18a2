"""Check a running convserve container from the host: readiness, exact numbers, real PNGs.

Run with the repository's virtualenv (httpx, NumPy and Pillow are in the dev extras)::

    .venv/bin/python .ci/docker_check.py --url http://127.0.0.1:8000 --image tests/data/chelsea.png
    .venv/bin/python .ci/docker_check.py --url http://127.0.0.1:8080 --replicas 2   # behind lb

Exits 0 when every check passes, 1 with the failed check's details otherwise. Each step
prints what it checked and how long it took.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

# Dive into Deep Learning, "Multiple Input and Output Channels": the contract's reference.
D2L_X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
D2L_K = [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]
D2L_Y = [[[56, 72], [104, 120]]]


class CheckFailed(Exception):
    """A check found something wrong; the message says what."""


def step(name: str, fn: Callable[[], str]) -> None:
    started = time.perf_counter()
    detail = fn()
    print(f"  ok  {name} ({time.perf_counter() - started:.2f} s): {detail}", flush=True)


def wait_ready(client: httpx.Client, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = client.get("/readyz")
            if response.status_code == 200:
                return response.text
            last = f"{response.status_code} {response.text}"
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise CheckFailed(f"/readyz not 200 within {timeout:g} s; last answer: {last}")


def check_health(client: httpx.Client) -> str:
    health = client.get("/healthz")
    if health.status_code != 200:
        raise CheckFailed(f"/healthz answered {health.status_code}: {health.text}")
    metrics = client.get("/metrics")
    if metrics.status_code != 200 or "# TYPE" not in metrics.text:
        raise CheckFailed(f"/metrics answered {metrics.status_code}: {metrics.text[:200]!r}")
    return f"/healthz {health.json()}, /metrics {len(metrics.text)} bytes"


def check_d2l(client: httpx.Client) -> str:
    body = {"input": {"array": D2L_X}, "kernel": {"weight": D2L_K}, "format": "array"}
    response = client.post("/v1/convolve", json=body)
    if response.status_code != 200:
        raise CheckFailed(f"D2L request answered {response.status_code}: {response.text}")
    answer = response.json()
    if answer.get("data") != D2L_Y or answer.get("shape") != [1, 2, 2]:
        raise CheckFailed(f"D2L example gave {answer}, expected shape [1, 2, 2] data {D2L_Y}")
    return f"data {answer['data']}"


def check_photo(client: httpx.Client, image: Path) -> str:
    with Image.open(image) as photo:
        width, height = photo.size
    files = {"image": (image.name, image.read_bytes(), "application/octet-stream")}
    response = client.post("/v1/convolve", files=files,
                           data={"preset": "sobel", "format": "json"})
    if response.status_code != 200:
        raise CheckFailed(f"sobel on {image.name} answered {response.status_code}: "
                          f"{response.text[:500]}")
    answer: dict[str, Any] = response.json()
    c_out = len(answer["channels"])
    if answer["shape"] != [c_out, height, width] or c_out != 2:
        raise CheckFailed(f"sobel on {width}x{height} {image.name} gave shape {answer['shape']}"
                          f" and {c_out} channels; expected [2, {height}, {width}]")
    if answer["padding"] != [1, 1, 1, 1]:
        raise CheckFailed(f"sobel 3x3 with padding 'same' reported {answer['padding']}")
    for channel in answer["channels"]:
        with Image.open(io.BytesIO(base64.b64decode(channel["png_base64"]))) as png:
            png.load()
            if png.format != "PNG" or png.size != (width, height):
                raise CheckFailed(f"channel {channel['index']} is a {png.format} of {png.size},"
                                  f" expected a PNG of {(width, height)}")
            low, high = png.convert("L").getextrema()
            if low == high:
                raise CheckFailed(f"channel {channel['index']} PNG is one flat colour")
        if not channel["min"] <= channel["mean"] <= channel["max"]:
            raise CheckFailed(f"channel {channel['index']} statistics out of order: {channel}")
    return f"{image.name} {width}x{height} -> shape {answer['shape']}, {c_out} PNGs decoded"


def wait_sample(client: httpx.Client, timeout: float = 90.0) -> str:
    """The sample network's id once a worker has stored it (at start, from the image's file)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/v1/models/sample")
        if answer.status_code != 200:
            raise CheckFailed(f"GET /v1/models/sample answered {answer.status_code}: "
                              f"{answer.text[:300]}")
        if answer.json().get("stored"):
            return str(answer.json()["id"])
        if time.monotonic() > deadline:
            raise CheckFailed(f"the sample network was not stored {timeout:g} s after start: "
                              f"{answer.json()}")
        time.sleep(0.5)


def tiny_model() -> bytes:
    """A 1->2 3x3 Conv model made here, distinct from anything the image ships."""
    weight = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) / 10 - 0.8
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["conv"], name="conv", kernel_shape=[3, 3])],
        "ci_tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("conv", TensorProto.FLOAT, [1, 2, 6, 6])],
        initializer=[numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    data: bytes = model.SerializeToString()
    return data


def check_models(client: httpx.Client, image: Path | None, rounds: int) -> str:
    """The sample is stored at start; an upload is seen by every worker (and every replica)."""
    sample = wait_sample(client)
    listed = client.get("/v1/models").json()["models"]
    if sample not in {m["id"] for m in listed}:
        raise CheckFailed(f"the sample {sample} is not in GET /v1/models: {listed}")
    if image is not None:
        files = {"image": (image.name, image.read_bytes(), "application/octet-stream")}
        data = {"layers": '["conv1", "relu1"]', "preprocess": '{"resize": "stretch"}'}
        answer = client.post(f"/v1/models/{sample}/features", files=files, data=data)
        if answer.status_code != 200:
            raise CheckFailed(f"sample features answered {answer.status_code}: "
                              f"{answer.text[:500]}")
        shapes = [layer["shape"] for layer in answer.json()["layers"]]
        if shapes != [[16, 148, 148]] * 2:
            raise CheckFailed(f"sample conv1/relu1 features have shapes {shapes}")
    created = client.post("/v1/models", files={"model": ("tiny.onnx", tiny_model())})
    if created.status_code not in (200, 201):
        raise CheckFailed(f"uploading a model answered {created.status_code}: {created.text}")
    ident = created.json()["id"]
    body = {"input": {"array": [[[float(x + 8 * y) for x in range(8)] for y in range(8)]]},
            "layers": ["conv"], "format": "json"}
    upstreams: set[str] = set()
    for _ in range(rounds):  # behind the balancer: replicas that did not take the upload
        answer = client.post(f"/v1/models/{ident}/features", json=body)
        if answer.status_code != 200:
            raise CheckFailed(f"features of the uploaded model answered {answer.status_code} "
                              f"from {answer.headers.get('X-Convserve-Upstream')}: "
                              f"{answer.text[:300]}")
        upstreams.add(answer.headers.get("X-Convserve-Upstream", "direct"))
    deleted = client.delete(f"/v1/models/{ident}")
    gone = client.get(f"/v1/models/{ident}")
    if deleted.status_code != 204 or gone.status_code != 404:
        raise CheckFailed(f"DELETE answered {deleted.status_code}, then GET {gone.status_code}")
    return (f"sample {sample[:12]} stored at start; an upload served {rounds} feature requests"
            f" via {sorted(upstreams)}, then deleted (404)")


def check_replicas(client: httpx.Client, replicas: int, requests: int = 40) -> str:
    seen: dict[str, int] = {}
    for _ in range(requests):
        response = client.get("/readyz")
        upstream = response.headers.get("X-Convserve-Upstream", "")
        if response.status_code != 200 or not upstream:
            raise CheckFailed(f"through the balancer /readyz gave {response.status_code}, "
                              f"X-Convserve-Upstream={upstream!r}")
        seen[upstream] = seen.get(upstream, 0) + 1
    if len(seen) < replicas:
        raise CheckFailed(f"{requests} requests reached {len(seen)} replicas {seen}, "
                          f"expected {replicas}")
    return f"{requests} requests spread over {seen}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--image", type=Path, action="append", default=[],
                        help="a photo for the PNG check (repeatable)")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--replicas", type=int, default=0,
                        help="behind the lb profile: replicas that must all answer")
    args = parser.parse_args(argv)
    print(f"checking {args.url}", flush=True)
    with httpx.Client(base_url=args.url, timeout=60.0) as client:
        try:
            step("ready", lambda: wait_ready(client, args.ready_timeout))
            step("health and metrics", lambda: check_health(client))
            step("D2L array example", lambda: check_d2l(client))
            for image in args.image:
                step(f"PNG maps of {image.name}", lambda image=image: check_photo(client, image))
            if args.replicas:
                step("load balancing", lambda: check_replicas(client, args.replicas))
            first = args.image[0] if args.image else None
            rounds = 12 if args.replicas else 3

            def models() -> str:
                return check_models(client, first, rounds)

            step("models: sample at start, shared store", models)
        except CheckFailed as exc:
            print(f"FAIL {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
