"""A FlowContext of real engines, shared by the flow tests (no HTTP, no server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from convserve.flows import FlowContext
from convserve.settings import Settings


@pytest.fixture(scope="module")
def ctx() -> Iterator[FlowContext]:
    yield FlowContext.local(Settings(warmup=False))
