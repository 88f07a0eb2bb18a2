"""``convserve.allocator``: glibc's mallopt applied where there is one, nothing elsewhere."""

from __future__ import annotations

import ctypes
import platform

import pytest

from convserve import allocator
from convserve.main import create_app
from convserve.settings import Settings


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_every_setting() -> None:
    assert allocator.tune() is True
    assert allocator.tune() is True  # again, as a second app in the process does


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert allocator.tune("/nonexistent/libc.so") is False  # none to load
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # as musl's: no mallopt
    assert allocator.tune() is False


def test_the_service_tunes_at_start_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []

    def tune() -> bool:
        calls.append(None)
        return True

    monkeypatch.setattr(allocator, "tune", tune)
    create_app(Settings(malloc_tuning=False, warmup=False, sample_model=False))
    assert calls == []
    create_app(Settings(warmup=False, sample_model=False))
    assert calls == [None]
