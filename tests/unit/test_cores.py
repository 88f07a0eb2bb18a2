"""``convserve.cores.l2_cache_bytes``: one core's L2 cache from sysfs, with a default."""

from __future__ import annotations

from pathlib import Path

import pytest

from convserve.cores import DEFAULT_L2_BYTES, l2_cache_bytes


def _cache(root: Path, index: int, level: int, kind: str, size: str) -> None:
    entry = root / f"index{index}"
    entry.mkdir(parents=True)
    (entry / "level").write_text(f"{level}\n")
    (entry / "type").write_text(f"{kind}\n")
    (entry / "size").write_text(f"{size}\n")


@pytest.mark.parametrize(("size", "expected"), [
    ("1024K", 1 << 20), ("2048K", 2 << 20), ("2M", 2 << 20), ("512k", 512 << 10),
    ("262144", 256 << 10),
])
def test_l2_is_read_from_the_level_2_data_or_unified_entry(
    tmp_path: Path, size: str, expected: int,
) -> None:
    _cache(tmp_path, 0, 1, "Data", "48K")
    _cache(tmp_path, 1, 1, "Instruction", "32K")
    _cache(tmp_path, 2, 2, "Unified", size)
    _cache(tmp_path, 3, 3, "Unified", "32768K")
    assert l2_cache_bytes(tmp_path) == expected


@pytest.mark.parametrize("layout", ["missing", "instruction-only", "unreadable-size"])
def test_l2_falls_back_to_the_default(tmp_path: Path, layout: str) -> None:
    if layout == "instruction-only":
        _cache(tmp_path, 0, 2, "Instruction", "1024K")
    elif layout == "unreadable-size":
        _cache(tmp_path, 0, 2, "Unified", "lots")
    root = tmp_path / "absent" if layout == "missing" else tmp_path
    assert l2_cache_bytes(root) == DEFAULT_L2_BYTES

