"""convserve.admission: the byte pools, the fitted budget, the header probe, the estimate."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from PIL import Image

from convserve.admission import (
    INTAKE_FACTOR,
    WORKER_BASELINE_BYTES,
    BytePool,
    MemoryBudget,
    default_memory_budget,
    estimate_working_bytes,
    memory_budget,
    probe_image,
    resource_exhaustion,
)
from convserve.api.runtime import ComputePool
from convserve.cores import cgroup_memory_limit
from convserve.errors import OverloadedError, ResourceExhaustedError
from convserve.imaging import probe_input
from convserve.settings import Settings
from tests.images import DATA, odd_files, png_with_header_size

MiB = 2**20


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --- BytePool --------------------------------------------------------------------------------

def test_pool_grants_what_fits_and_clamps_what_never_could() -> None:
    async def scenario() -> list[int]:
        pool = BytePool("work", 100)
        got = [await pool.acquire(60, 1.0), await pool.acquire(40, 1.0)]
        assert pool.in_use == 100
        pool.release(100)
        got.append(await pool.acquire(500, 1.0))  # larger than the pool: runs alone
        assert pool.in_use == 100
        return got

    assert run(scenario()) == [60, 40, 100]


def test_pool_waits_for_room_then_times_out_with_a_retryable_503() -> None:
    async def scenario() -> OverloadedError:
        pool = BytePool("intake", 100)
        await pool.acquire(80, 1.0)
        with pytest.raises(OverloadedError) as caught:
            await pool.acquire(30, 0.05)
        assert pool.in_use == 80 and pool.waiting == 0  # the waiter left no trace
        return caught.value

    error = run(scenario())
    assert isinstance(error, OverloadedError)
    assert error.status == 503 and error.retry_after >= 1
    assert "CONVSERVE_MEMORY_BUDGET_BYTES" in error.detail and "intake" in error.detail


def test_pool_serves_waiters_first_come_first_served() -> None:
    async def scenario() -> list[str]:
        pool = BytePool("work", 100)
        await pool.acquire(100, 1.0)
        order: list[str] = []

        async def want(name: str, nbytes: int) -> None:
            await pool.acquire(nbytes, 5.0)
            order.append(name)

        big = asyncio.create_task(want("big", 90))
        await asyncio.sleep(0)
        small = asyncio.create_task(want("small", 10))  # fits beside big, but waits its turn
        await asyncio.sleep(0.01)
        assert order == [] and pool.waiting == 2
        pool.release(100)
        await asyncio.gather(big, small)
        return order

    assert run(scenario()) == ["big", "small"]


def test_a_cancelled_waiter_frees_its_place_for_those_behind_it() -> None:
    async def scenario() -> int:
        pool = BytePool("work", 100)
        await pool.acquire(50, 1.0)
        blocked = asyncio.create_task(pool.acquire(80, 5.0))
        await asyncio.sleep(0.01)
        behind = asyncio.create_task(pool.acquire(40, 5.0))
        await asyncio.sleep(0.01)
        blocked.cancel()  # a client that went away while waiting
        granted = await behind
        assert pool.waiting == 0
        return granted + pool.in_use

    assert run(scenario()) == 40 + 90


def test_budget_moves_a_request_from_intake_to_work_and_frees_all() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(800, wait_s=0.05)
        assert (budget.intake.capacity, budget.work.capacity) == (100, 700)
        reservation = await budget.admit_body(30)
        assert budget.intake.in_use == INTAKE_FACTOR * 30
        await reservation.reserve_work(600)
        assert (budget.intake.in_use, budget.work.in_use) == (0, 600)
        second = await budget.admit_body(10)
        with pytest.raises(OverloadedError):  # the work pool is full: a bounded wait
            await second.reserve_work(150)
        assert budget.intake.in_use == INTAKE_FACTOR * 10  # still its body's, until it ends
        second.release()
        reservation.release()
        reservation.release()  # idempotent
        assert (budget.intake.in_use, budget.work.in_use) == (0, 0)

    run(scenario())


# --- the fitted budget -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "2147483648\n"}, 2 * 2**30),
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "1073741824\n"}, 2**30),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 unlimited
        ({}, None),
    ],
)
def test_cgroup_memory_limit_reads_v2_and_v1(tmp_path: Path, files: dict[str, str],
                                              expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_memory_limit(tmp_path) == expected


def test_default_budget_divides_the_limit_among_workers() -> None:
    assert default_memory_budget(2, 2 * 2**30) == 768 * MiB
    assert default_memory_budget(1, 2 * 2**30) == 2 * 2**30 - WORKER_BASELINE_BYTES
    assert default_memory_budget(8, 512 * MiB) == 64 * MiB  # never below the floor
    assert default_memory_budget(1, None) > 0  # no cgroup limit: the machine's RAM


def test_an_explicit_budget_wins_over_the_fitted_one() -> None:
    assert memory_budget(Settings(memory_budget_bytes=123_456_789)) == 123_456_789
    assert memory_budget(Settings(memory_budget_bytes=0, web_concurrency=2)) == (
        default_memory_budget(2, cgroup_memory_limit()))


# --- header probe and estimate ---------------------------------------------------------------

def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_probe_reads_sizes_from_headers_without_decoding() -> None:
    photo = (DATA / "chelsea.png").read_bytes()
    with Image.open(io.BytesIO(photo)) as im:
        width, height = im.size
    assert probe_image(photo) == (3, height, width)
    assert probe_image(photo, "gray") == (1, height, width)
    rgba = np.zeros((7, 5, 4), dtype=np.uint8)
    assert probe_image(encoded(rgba, "PNG"), "auto") == (4, 7, 5)
    assert probe_image(encoded(rgba[..., :3], "JPEG"), "rgba") == (4, 7, 5)
    npy = io.BytesIO()
    np.save(npy, np.zeros((2, 6, 9), dtype=np.float32))
    assert probe_image(npy.getvalue()) == (2, 6, 9)
    assert probe_image(b"not an image") is None
    truncated = encoded(np.zeros((4000, 4000), dtype=np.uint8), "PNG")[:100]
    assert probe_image(truncated) == (3, 4000, 4000)  # the header is enough
    # Past Pillow's bomb guard (89.5 MP): no warning (an error under pytest), no answer; the
    # decoder refuses it with a 413 of its own.
    assert probe_image(png_with_header_size(10_000, 10_000)) is None


def test_estimate_matches_the_measured_33_bytes_a_pixel_for_sobel_json() -> None:
    pixels = 48_000_000
    side = int(pixels ** 0.5)
    per_pixel = estimate_working_bytes(side, side, 3, 2, "json", padding=1) / pixels
    assert 30 <= per_pixel <= 34
    body = estimate_working_bytes(100, 100, 3, 2, "json", body_bytes=5000)
    assert body == estimate_working_bytes(100, 100, 3, 2, "json") + 5000
    assert estimate_working_bytes(100, 100, 3, 2, "array") > estimate_working_bytes(
        100, 100, 3, 2, "npy")


# --- resource exhaustion ---------------------------------------------------------------------

def test_resource_exhaustion_names_memory_and_disk_only() -> None:
    assert resource_exhaustion(MemoryError()) == "memory"
    assert resource_exhaustion(OSError(errno.ENOSPC, "No space left on device")) == "disk space"
    assert resource_exhaustion(OSError(errno.ENOMEM, "Cannot allocate memory")) == "memory"
    allocation = ort_state.RuntimeException(
        "Failed to allocate memory for requested buffer of size 2147483648")
    assert resource_exhaustion(allocation) == "memory"
    assert resource_exhaustion(OSError(errno.ENOENT, "No such file")) is None
    assert resource_exhaustion(ort_state.InvalidArgument("bad shape")) is None
    assert resource_exhaustion(ValueError("x")) is None


def test_compute_pool_turns_a_real_enospc_and_memory_error_into_a_503() -> None:
    def fill_the_disk() -> None:
        with open("/dev/full", "wb") as full:  # every write to /dev/full fails with ENOSPC
            full.write(b"x")
            full.flush()

    def out_of_memory() -> None:
        raise MemoryError

    async def scenario() -> list[ResourceExhaustedError]:
        pool = ComputePool(1, 0, timeout_s=10.0)
        errors = []
        for fn in (fill_the_disk, out_of_memory):
            with pytest.raises(ResourceExhaustedError) as caught:
                await pool.run(fn)
            errors.append(caught.value)
        assert pool.in_flight == 0
        pool.shutdown()
        return errors

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    disk, memory = asyncio.run(scenario())
    assert disk.status == memory.status == 503
    assert "disk space" in disk.detail and "memory" in memory.detail


def test_a_timed_out_computation_keeps_its_bytes_until_its_thread_ends() -> None:
    from concurrent.futures import Future

    async def scenario() -> list[int]:
        budget = MemoryBudget(400, wait_s=0.05)
        reservation = await budget.admit_body(10)
        await reservation.reserve_work(200)
        still_running: Future[None] = Future()
        reservation.release_when_done(still_running)
        reservation.release()  # the request was answered (504)...
        seen = [budget.work.in_use]  # ...but the thread still uses the memory
        still_running.set_result(None)
        await asyncio.sleep(0.01)
        seen.append(budget.work.in_use)
        return seen

    assert run(scenario()) == [200, 0]


def test_the_png_header_probe_agrees_with_pillow_on_every_png() -> None:
    """The IHDR fast path gives what Pillow's header gives, for every PNG kind the tests
    use, a bomb's header and a broken IHDR CRC included (those two go to Pillow)."""
    pngs = {name: data for name, data in odd_files().items() if data[:4] == b"\x89PNG"}
    pngs["chelsea.png"] = (DATA / "chelsea.png").read_bytes()  # an ICC profile before IDAT
    bad_crc = bytearray(pngs["chelsea.png"])
    bad_crc[30] ^= 0xFF
    pngs["bad-ihdr-crc.png"] = bytes(bad_crc)
    pngs["bomb.png"] = png_with_header_size(10_000, 10_000)
    assert len(pngs) >= 8
    for name, data in pngs.items():
        via_pillow = None
        with contextlib.suppress(Exception):  # what probe_input's Pillow path answers
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    via_pillow = (len(im.getbands()), im.size[1], im.size[0])
        if name == "header_only.png":  # cut after IHDR: Pillow wants the next chunk's header
            assert via_pillow is None
            assert probe_input(data) == (3, 48, 64)  # the IHDR's size: the decoder refuses it
            continue
        assert probe_input(data) == via_pillow, name


def test_the_probe_reads_npy_headers_of_versions_1_and_2_only() -> None:
    """One reader of .npy headers (``imaging.arrays.read_npy_header``) serves the probe, the
    decoder and weight files: a version 3.0 file is no shape to the probe, and the decoder
    refuses it naming the version."""
    array = np.zeros((2, 6, 9), dtype=np.float32)
    for version, expected in (((1, 0), (2, 6, 9)), ((2, 0), (2, 6, 9)), ((3, 0), None)):
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, version=version)
        assert probe_input(buffer.getvalue()) == expected, version
