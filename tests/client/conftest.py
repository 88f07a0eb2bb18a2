"""Real servers for the SDK and CLI tests, and clients connected to them.

Every server is a uvicorn subprocess on a free loopback port (``tests.server.run_server``);
the clients talk real HTTP to it. Servers start on first use and live for the session.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from convserve_client import Client
from tests.server import run_server

DATA = Path(__file__).resolve().parent.parent / "data"

API_KEY = "client-test-key"
UPLOAD_LIMIT = 4000
"""Bytes the restricted server accepts per request: enough for the D2L arrays, not a photo."""

# Dive into Deep Learning, "Multiple Input and Output Channels".
D2L_X = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]],
                 dtype=np.float32)
D2L_K = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]], dtype=np.float32)
D2L_Y = np.array([[56, 72], [104, 120]], dtype=np.float32)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with default settings, but its model store in the test's temporary folders
    (the README uploads a model)."""
    store = tmp_path_factory.mktemp("readme-store")
    with run_server({"CONVSERVE_MODEL_DIR": str(store)}) as url:
        yield url


@pytest.fixture(scope="session")
def restricted_url() -> Iterator[str]:
    """A server that wants an API key and takes at most ``UPLOAD_LIMIT`` bytes a request."""
    with run_server({"CONVSERVE_API_KEYS": API_KEY,
                     "CONVSERVE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}) as url:
        yield url


@pytest.fixture(scope="module")
def models_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with a model store of its own (one per test module)."""
    store = tmp_path_factory.mktemp("store")
    with run_server({"CONVSERVE_MODEL_DIR": str(store)}) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator[Client]:
    with Client(server_url, max_retries=0) as cs:
        yield cs


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def cat_png() -> Path:
    """Chelsea the cat, 451x300 RGB (see tests/data/README.md)."""
    return DATA / "chelsea.png"


@pytest.fixture
def workdir(tmp_path: Path, cat_png: Path) -> Path:
    """A scratch directory holding ``cat.png`` (the README's file name)."""
    shutil.copy(cat_png, tmp_path / "cat.png")
    return tmp_path
