"""``bench.workloads.keep_heap_warm``: the benchmark's runners reuse warm memory.

Measured in a child process, since the setting is the process's for good: under glibc's
defaults a freed 40 MiB array goes back to the system (the next one is fresh pages, faulted in
again); once the heap keeps every block, its pages stay resident when it is freed and the next
array of that size reuses them (the resident size does not grow).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from bench.workloads import keep_heap_warm
    if sys.argv[1] == "warm":
        print(keep_heap_warm(), file=sys.stderr)
    def resident():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    def one_array():
        a = np.empty(40 * 2**20, dtype=np.uint8)
        a.fill(1)
        del a
    start = resident()
    one_array()
    kept = resident() - start
    one_array()
    print(kept, resident() - start)
""")


def resident_growth(mode: str) -> tuple[int, int, str]:
    """(bytes still resident after one array was freed, after a second, description)."""
    done = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60)
    kept, after_second = (int(v) for v in done.stdout.split())
    return kept, after_second, done.stderr.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_freed_block_stays_and_serves_the_next_array() -> None:
    mib = 2**20
    kept, _, _ = resident_growth("default")
    assert kept < 8 * mib  # glibc unmapped it: the next array faults in fresh pages
    kept, after_second, description = resident_growth("warm")
    assert "every block kept in the heap" in description
    assert kept >= 36 * mib  # still resident once freed
    assert after_second - kept < 4 * mib  # and the second array reused it
