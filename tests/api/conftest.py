"""Apps and TestClients built from explicit Settings (the environment is never patched)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from convserve.main import create_app
from convserve.settings import Settings

ClientFactory = Callable[..., TestClient]


def app_settings(**overrides: Any) -> Settings:
    """``Settings(**overrides)`` for a test app: without the sample network at start-up
    (38 MB and a second of CPU per app) unless ``sample_model=True`` is given."""
    return Settings(**{"sample_model": False, **overrides})


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"/readyz never became 200: {client.get('/readyz').json()}")


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """Build a started TestClient for ``app_settings(**overrides)``; closed after the
    test."""
    opened: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        client = TestClient(create_app(app_settings(**overrides)))
        client.__enter__()
        opened.append(client)
        wait_ready(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """A started app with default settings (onnxruntime on cpu), shared by a module."""
    with TestClient(create_app(app_settings())) as c:
        wait_ready(c)
        yield c


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, C) as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)  # one .npy: an ndarray
    return array


@pytest.fixture(scope="session")
def rgb_image() -> np.ndarray:
    """A 48x64 RGB test picture with smooth gradients and a bright square."""
    yy, xx = np.mgrid[0:48, 0:64]
    image = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)
    image[10:20, 30:40] = 250
    return image


@pytest.fixture(scope="session")
def rgb_png(rgb_image: np.ndarray) -> bytes:
    return png_bytes(rgb_image)


@pytest.fixture(scope="session")
def photo_png() -> bytes:
    """A real photo: Chelsea the cat, 451x300 RGB (CC0, see tests/data/README.md)."""
    from pathlib import Path

    return (Path(__file__).parent.parent / "data" / "chelsea.png").read_bytes()
