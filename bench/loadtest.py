"""Load and fault tests against a real convserve: ``make loadtest`` (the long form).

(One file of about 650 lines on purpose: ``python bench/loadtest.py`` runs it as a script and
tests/e2e/test_load.py imports it as ``bench.loadtest``; a second module would need a
``sys.path`` edit in one of the two.)

Starts the service as the container does (``python -m convserve.launcher``: uvicorn with 2
workers) on a loopback port, or takes ``--url`` of a running one (the CI docker stage), runs
the scenarios of issue 11 and prints one table, a row per scenario with its pass criterion:

  burst     40 concurrent uploads near CONVSERVE_MAX_UPLOAD_BYTES, then 8 concurrent 16 MP
            photos: every answer 200, or 503 with Retry-After; no other status, no reset, no
            worker restarted (the server's own "Child process [..] died" lines)
  overload  4x the compute capacity (workers x (threads + queue)) of R1 requests (512x512
            photo, Sobel, json) for 30 s: only 200 and 503; each worker's RSS above idle stays
            inside CONVSERVE_MEMORY_BUDGET_BYTES; /readyz answers 200 throughout
  soak      10 minutes of mixed traffic over every endpoint, format and engine: zero errors;
            worker RSS at the end within 10 % of RSS after warm-up
  kill      SIGKILL the worker busy with an SDK request: the SDK's retry succeeds, the worker
            is replaced, /readyz recovers
  abort     300 clients at once that disconnect mid-upload or mid-response: no 500 and no
            traceback logged, the memory budget all free afterwards, /healthz under 100 ms

``--short`` is the form ``make test`` runs (tests/e2e/test_load.py): the same criteria at a
size that takes seconds (smaller images and queue, fewer clients, no soak). Load only ever
goes to loopback addresses, and every loop ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
from PIL import Image

from convserve.models.sample import write_sample

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "data" / "chelsea.png"
MiB = 2**20
_DIED = re.compile(r"Child process \[(\d+)\] died")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the long form (``make loadtest``) or the short one (``make test``)."""

    upload_clients: int = 40
    upload_bytes: int = 19_500_000
    photo_clients: int = 8
    photo_side: int = 4000  # 16 MP
    overload_s: float = 30.0
    soak_s: float = 600.0
    abort_clients: int = 300
    kill_side: int = 2000
    env: dict[str, str] = field(default_factory=lambda: {
        "CONVSERVE_MAX_PIXELS": "50000000",  # as compose
        "CONVSERVE_MEMORY_BUDGET_BYTES": str(768 * MiB),
        # The scenarios measure requests; the sample network's start-up store is not one.
        "CONVSERVE_SAMPLE_MODEL": "0",
    })


LONG = Plan()
SHORT = Plan(upload_clients=8, upload_bytes=3_000_000, photo_clients=4, photo_side=1500,
             overload_s=4.0, soak_s=0.0, abort_clients=300,
             env={"CONVSERVE_MAX_UPLOAD_BYTES": "3500000", "CONVSERVE_QUEUE_SIZE": "2",
                  "CONVSERVE_MEMORY_BUDGET_BYTES": str(96 * MiB), "CONVSERVE_SAMPLE_MODEL": "0"})


@dataclass
class Row:
    scenario: str
    criterion: str
    measured: str
    passed: bool


# --- images ----------------------------------------------------------------------------------

def photo(side: int, fmt: str = "PNG") -> bytes:
    """The test photo resized to ``side`` x ``side``, encoded as ``fmt``."""
    image = Image.open(PHOTO).convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()


def noise_png(target_bytes: int, seed: int = 0) -> bytes:
    """An RGB noise PNG (incompressible) of just under ``target_bytes``."""
    side = int((0.97 * target_bytes / 3) ** 0.5)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --- the server ------------------------------------------------------------------------------

class Server:
    """A convserve on loopback, with the process tree and the log of its uvicorn.

    Parameters
    ----------
    url : str
        Its base URL (a loopback address).
    root_pid : int or None
        The uvicorn supervisor, or any ancestor of it (a container's init); None: unknown
        (no RSS, no kill).
    read_log : callable
        Returns the server's log so far (uvicorn's and convserve's lines).
    budget : int
        ``CONVSERVE_MEMORY_BUDGET_BYTES`` as set, 0 if fitted (then read from /metrics).
    """

    def __init__(self, url: str, root_pid: int | None, read_log: Callable[[], str],
                 budget: int = 0) -> None:
        self.url = url
        self.root_pid = root_pid
        self.read_log = read_log
        self.budget = budget

    def restarts(self) -> int:
        """Workers that died and were replaced, from the supervisor's own log lines."""
        return len(_DIED.findall(self.read_log()))

    def workers(self) -> list[psutil.Process]:
        """The uvicorn worker processes (multiprocessing children of the supervisor)."""
        if self.root_pid is None:
            return []
        found = []
        for child in psutil.Process(self.root_pid).children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                continue
        return found

    def worker_rss(self) -> list[int]:
        rss = []
        for worker in self.workers():
            try:
                rss.append(worker.memory_info().rss)
            except psutil.Error:
                continue
        return rss


def container_server(url: str, container: str) -> Server:
    """A server in a Docker container on this machine (its processes are visible here)."""
    pid = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container],
                         check=True, capture_output=True, text=True).stdout.strip()

    def read_log() -> str:
        done = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        return done.stdout + done.stderr

    return Server(url, int(pid), read_log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 120.0, streak: int = 1) -> bool:
    """Whether ``url``/readyz answered 200 ``streak`` times in a row within ``timeout``."""
    deadline, good = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=2.0) as client:  # a new connection: any worker
                good = good + 1 if client.get(url + "/readyz").status_code == 200 else 0
        except httpx.TransportError:
            good = 0
        if good >= streak:
            return True
        time.sleep(0.1)
    return False


@contextmanager
def start_server(env: dict[str, str], workers: int = 2) -> Iterator[Server]:
    """Run ``python -m convserve.launcher`` with ``workers`` workers on a free loopback port,
    with the sample network built ahead as in the image (``CONVSERVE_SAMPLE_MODEL_FILE``)."""
    port = free_port()
    full = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(workers),
            "CONVSERVE_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1", **env}
    with tempfile.TemporaryDirectory(prefix="convserve-load-") as tmp:
        if not full.get("CONVSERVE_SAMPLE_MODEL_FILE"):
            # As the image does: the sample network built once, read by each worker at start
            # (a worker that builds it holds the GIL for about a second, beside its loop).
            sample = Path(tmp) / "sample.onnx"
            write_sample(sample)
            full["CONVSERVE_SAMPLE_MODEL_FILE"] = str(sample)
        log = Path(tmp) / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "convserve.launcher"], env=full,
                                       stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_ready(url, streak=4):
                raise RuntimeError("the server did not become ready:\n" + log.read_text()[-3000:])
            yield Server(url, process.pid, lambda: log.read_text(errors="replace"),
                         int(env.get("CONVSERVE_MEMORY_BUDGET_BYTES", "0")))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if not loopback:
        raise SystemExit(f"load goes to loopback addresses only, not {host!r}")


# --- requests --------------------------------------------------------------------------------

def outcome(response: httpx.Response) -> str:
    """``200``, ``503`` (with Retry-After) or ``<status> (...)`` for anything else."""
    if response.status_code == 503 and "retry-after" not in response.headers:
        return "503 without Retry-After"
    return str(response.status_code)


async def upload(client: httpx.AsyncClient, data: bytes, **fields: str) -> str:
    try:
        response = await client.post("/v1/convolve", files={"image": ("x.png", data)},
                                     data={"preset": "sobel", "format": "json", **fields})
    except httpx.TransportError as exc:
        return f"reset ({type(exc).__name__})"
    return outcome(response)


async def gather_counts(jobs: list[Awaitable[str]]) -> Counter[str]:
    return Counter(await asyncio.gather(*jobs))


def only(counts: Counter[str], allowed: set[str]) -> bool:
    return bool(counts) and set(counts) <= allowed


def show(counts: Counter[str]) -> str:
    return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items()))


async def sample(stop: asyncio.Event, every_s: float, probe: Callable[[], Awaitable[None]]) -> None:
    while not stop.is_set():
        await probe()
        with contextlib.suppress(TimeoutError):  # the next sample is due
            await asyncio.wait_for(stop.wait(), every_s)


# --- scenarios -------------------------------------------------------------------------------

async def burst(server: Server, plan: Plan) -> Row:
    big = noise_png(plan.upload_bytes)
    photos = photo(plan.photo_side, "JPEG")
    before = server.restarts()
    limits = httpx.Limits(max_connections=plan.upload_clients + plan.photo_clients)
    async with httpx.AsyncClient(base_url=server.url, timeout=300.0, limits=limits) as client:
        first = await gather_counts([upload(client, big) for _ in range(plan.upload_clients)])
        second = await gather_counts([upload(client, photos) for _ in range(plan.photo_clients)])
    restarts = server.restarts() - before
    counts = first + second
    ok = only(counts, {"200", "503"}) and counts["200"] > 0 and restarts == 0
    return Row("burst", f"{plan.upload_clients} x {len(big) / 1e6:.1f} MB uploads, then "
               f"{plan.photo_clients} x {plan.photo_side ** 2 / 1e6:.0f} MP photos: only 200 or "
               "503+Retry-After, no reset, no worker restart",
               f"{show(counts)}; {restarts} restarts", ok)


async def overload(server: Server, plan: Plan) -> Row:
    r1 = photo(512)
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as probe_client:
        text = (await probe_client.get("/metrics")).text
    threads = int(os.environ.get("CONVSERVE_WORKER_THREADS", "1") or 1)
    queue = int(plan.env.get("CONVSERVE_QUEUE_SIZE", "32"))
    clients = 4 * max(1, len(server.workers()) or 2) * (threads + queue)
    idle = server.worker_rss()
    peak = list(idle)
    ready: Counter[str] = Counter()
    stop = asyncio.Event()
    deadline = time.monotonic() + plan.overload_s

    async def client_loop(client: httpx.AsyncClient) -> Counter[str]:
        counts: Counter[str] = Counter()
        while time.monotonic() < deadline:
            counts[await upload(client, r1)] += 1
        return counts

    async def probe_ready() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as fresh:
            try:
                ready[str((await fresh.get("/readyz")).status_code)] += 1
            except httpx.TransportError as exc:
                ready[type(exc).__name__] += 1
        for i, rss in enumerate(server.worker_rss()[:len(peak)]):
            peak[i] = max(peak[i], rss)

    before = server.restarts()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, timeout=120.0, limits=limits) as client:
        sampler = asyncio.create_task(sample(stop, 0.25, probe_ready))
        results = await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        stop.set()
        await sampler
    counts = sum(results, Counter[str]())
    budget = server.budget or _budget_from_metrics(text)
    grown = max((p - i for p, i in zip(peak, idle, strict=False)), default=0)
    restarts = server.restarts() - before
    ok = (only(counts, {"200", "503"}) and set(ready) == {"200"} and grown <= budget
          and restarts == 0)
    return Row("overload", f"{clients} clients x {plan.overload_s:g} s of R1: only 200/503, "
               f"RSS growth <= budget ({budget / MiB:.0f} MiB), /readyz 200, no restart",
               f"{show(counts)}; RSS +{grown / MiB:.0f} MiB (peak {_mib(peak)} MiB); "
               f"readyz {show(ready)}; {restarts} restarts", ok)


def _budget_from_metrics(text: str) -> int:
    pools = re.findall(r'convserve_memory_budget_bytes\{pool="\w+"\} ([0-9.e+]+)', text)
    return int(sum(float(v) for v in pools))


async def soak(server: Server, plan: Plan) -> Row:
    small, gray = photo(256), photo(128, "JPEG")
    kernel = '{"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]], [[1, 0], [0, 1]]]]}'
    jobs: list[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]] = [
        lambda c: c.get("/v1/presets"), lambda c: c.get("/v1/presets/sobel"),
        lambda c: c.get("/v1/engines"), lambda c: c.get("/healthz"),
        lambda c: c.get("/readyz"), lambda c: c.get("/metrics"),
        lambda c: c.post("/v1/explain", files={"image": ("g.jpg", gray)},
                         data={"preset": "sobel", "at": '{"channel": 1, "y": 5, "x": 7}'}),
        lambda c: c.post("/v1/layers", json={
            "input": {"array": np.arange(48.0).reshape(3, 4, 4).tolist()},
            "layers": [{"type": "conv2d", "kernel": {"weight": np.ones((2, 3, 3, 3)).tolist()},
                        "padding": 1}, {"type": "maxpool2d", "kernel_size": 2}],
            "format": "json"}),
        lambda c: c.post("/v1/layers", files={"image": ("x.png", small)}, data={
            "layers": '[{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1, '
                      '"activation": "relu"}]', "format": "npy", "engine": "numpy"}),
        lambda c: c.post("/v1/convolve", json={"input": {"array": [[1, 2], [3, 4]]},
                                               "kernel": {"weight": [[[[1]]]]}, "format": "array"}),
    ]
    for fmt in ("json", "array", "npy", "png", "image", "grid", "zip"):
        for engine in ("numpy", "onnxruntime"):
            # format=image composes 1, 3 or 4 channels: a per-channel preset there
            data = {"preset": "gaussian_blur" if fmt == "image" else "sobel", "format": fmt,
                    "engine": engine}
            image = gray if fmt == "array" else small
            jobs.append(lambda c, d=data, i=image: c.post(  # type: ignore[misc]
                "/v1/convolve", files={"image": ("x.png", i)}, data=d))
    jobs.append(lambda c: c.post("/v1/convolve", files={"image": ("x.png", small)},
                                 data={"kernel": kernel, "format": "npy"}))
    counts: Counter[str] = Counter()
    before = server.restarts()
    warm_s = min(60.0, plan.soak_s / 5)
    start = time.monotonic()
    warm: list[int] = []

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while time.monotonic() - start < plan.soak_s:
            try:
                response = await jobs[i % len(jobs)](client)
                counts[str(response.status_code)] += 1
            except httpx.TransportError as exc:
                counts[f"reset ({type(exc).__name__})"] += 1
            i += 1
            if not warm and time.monotonic() - start > warm_s:
                warm.extend(server.worker_rss())

    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
        await asyncio.gather(*(client_loop(client, k * 7) for k in range(4)))
    end = server.worker_rss()
    drift = max((abs(e - w) / w for e, w in zip(end, warm, strict=False)), default=0.0)
    restarts = server.restarts() - before
    ok = only(counts, {"200"}) and drift <= 0.10 and bool(warm) and restarts == 0
    return Row("soak", f"{plan.soak_s / 60:g} min mixed traffic ({len(jobs)} kinds): all 200, "
               "worker RSS at the end within 10 % of after warm-up, no restart",
               f"{show(counts)}; worker RSS after warm-up {_mib(warm)}, at the end {_mib(end)} "
               f"MiB: drift {100 * drift:.1f} %; {restarts} restarts", ok)


def _mib(values: list[int]) -> str:
    return "/".join(f"{v / MiB:.0f}" for v in values)


def kill(server: Server, plan: Plan) -> Row:
    """SIGKILL the worker computing an SDK request; the SDK retries on the other one."""
    from convserve_client import Client

    # 8 x 3 x 9 x 9 over 4 MP: 8 G multiply-adds, seconds of one worker's CPU
    image = photo(plan.kill_side, "JPEG")
    kernel = np.full((8, 3, 9, 9), 1 / 243, dtype=np.float32)
    pids_before = {w.pid for w in server.workers()}
    before = server.restarts()
    result: dict[str, object] = {}

    def call() -> None:
        try:
            with Client(server.url, timeout=300.0, max_retries=3) as client:
                result["shape"] = client.convolve(image, kernel=kernel, format="png").shape
        except Exception as exc:  # reported in the row
            result["error"] = f"{type(exc).__name__}: {exc}"

    workers = {w.pid: w for w in server.workers()}
    cpu = {pid: sum(w.cpu_times()[:2]) for pid, w in workers.items()}
    thread = threading.Thread(target=call)
    thread.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
        for pid, worker in workers.items():  # the busy one has burnt 0.3 s of CPU since
            if sum(worker.cpu_times()[:2]) - cpu[pid] > 0.3:
                victim = pid
                os.kill(pid, signal.SIGKILL)
                break
    thread.join(timeout=300)
    replaced = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not replaced:
        pids = {w.pid for w in server.workers()}
        replaced = len(pids) == len(pids_before) and victim not in pids
        time.sleep(0.1)
    recovered = wait_ready(server.url, timeout=90, streak=6)
    restarts = server.restarts() - before
    ok = victim is not None and "shape" in result and replaced and restarts == 1 and recovered
    return Row("kill", "SIGKILL the busy worker mid-request: SDK retry succeeds, worker "
               "replaced, /readyz recovers",
               f"killed {victim}; SDK {result.get('shape') or result.get('error')}; "
               f"replaced {replaced} ({restarts} restart); readyz {recovered}", ok)


@dataclass
class StormResult:
    error_lines: list[str]
    """Server log lines of the storm with a 500, a traceback or a ClientDisconnect."""
    reserved_bytes: int
    """Bytes of the memory budget still reserved after it (over several /metrics scrapes)."""
    latencies_ms: list[float]
    """Every /healthz probe meanwhile (``FAILED_PROBE_MS`` for one that got no 200)."""


_ERROR_LINE = re.compile(r'"status": 500|Traceback|ClientDisconnect|Exception in ASGI')


async def abort_storm(server: Server, plan: Plan) -> StormResult:
    """Half the clients vanish mid-upload, half mid-response, all at once."""
    host, port = urlsplit(server.url).hostname or "", urlsplit(server.url).port or 80
    body = photo(512, "PNG")
    boundary = "loadtestboundary"
    form = (f'--{boundary}\r\nContent-Disposition: form-data; name="preset"\r\n\r\nsobel\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="format"\r\n\r\nnpy\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"'
            "\r\nContent-Type: image/png\r\n\r\n").encode() + body
    form += f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1/convolve HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(form)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()
    log_start = len(server.read_log())

    async def vanish(mid_upload: bool) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        try:
            # The server may answer or close first; either way the client vanishes below.
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(head + (form[: len(form) // 2] if mid_upload else form))
                await writer.drain()
                if mid_upload:
                    await asyncio.sleep(0.2)
                else:
                    await asyncio.wait_for(reader.read(1024), 30)
        finally:
            writer.transport.abort()  # RST, as a killed client would

    with HealthProbe(host, port) as probe:
        await asyncio.gather(*(vanish(i % 2 == 0) for i in range(plan.abort_clients)))
        await asyncio.sleep(1.0)
    reserved = await _reserved_bytes(server.url)
    lines = server.read_log()[log_start:].splitlines()
    return StormResult([line for line in lines if _ERROR_LINE.search(line)], reserved,
                       probe.latencies_ms)


async def abort(server: Server, plan: Plan) -> Row:
    result = await abort_storm(server, plan)
    worst = max(result.latencies_ms, default=FAILED_PROBE_MS)
    ok = not result.error_lines and result.reserved_bytes == 0 and worst < 100
    return Row("abort", f"{plan.abort_clients} clients vanish mid-upload/mid-response: no 500 "
               "or traceback logged, budget all free after, /healthz < 100 ms",
               f"{len(result.error_lines)} 500/traceback lines; {result.reserved_bytes} bytes "
               f"still reserved; /healthz max {worst:.0f} ms over {len(result.latencies_ms)} "
               "probes", ok)


FAILED_PROBE_MS = 1e9
_PROBE = """
import socket, sys, time
host, port, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
request = f"GET /healthz HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode()
print("ready", flush=True)
while sys.stdin.readline():  # one probe per line; EOF ends it
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    except OSError:
        reply = b""
    ok = reply.startswith(b"HTTP/1.1 200")
    print(1000 * (time.perf_counter() - started) if ok else 1e9, flush=True)  # FAILED_PROBE_MS
"""


class HealthProbe:
    """GET /healthz on a new connection every 20 ms from a process of its own, timing each.

    A separate process with plain blocking sockets, so that neither an HTTP client's set-up
    nor the load generator's own event loop (and its hold on the GIL) is counted as the
    server's latency. A failed probe counts as 1e9 ms.
    """

    def __init__(self, host: str, port: int, every_s: float = 0.02) -> None:
        self.every_s = every_s
        self.latencies_ms: list[float] = []
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, host, str(port), str(every_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, daemon=True)

    def __enter__(self) -> HealthProbe:
        assert self._process.stdout is not None
        self._process.stdout.readline()  # "ready": the interpreter has started
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _drive(self) -> None:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        while not self._stop.wait(self.every_s):
            stdin.write("probe\n")
            stdin.flush()
            self.latencies_ms.append(float(stdout.readline()))
        stdin.close()


async def _reserved_bytes(url: str, scrapes: int = 12) -> int:
    """Bytes reserved in either pool, over several scrapes (each may reach either worker)."""
    total = 0
    for _ in range(scrapes):
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as fresh:
            text = (await fresh.get("/metrics")).text
        total += int(sum(float(v) for v in re.findall(
            r'convserve_memory_reserved_bytes\{pool="\w+"\} ([0-9.e+]+)', text)))
    return total


# --- main ------------------------------------------------------------------------------------

SCENARIOS = ("burst", "overload", "soak", "kill", "abort")


def run(server: Server, plan: Plan, names: list[str]) -> list[Row]:
    rows = []
    for name in names:
        started = time.monotonic()
        if name == "kill":
            row = kill(server, plan)
        else:
            row = asyncio.run({"burst": burst, "overload": overload, "soak": soak,
                               "abort": abort}[name](server, plan))
        row.measured += f" [{time.monotonic() - started:.0f} s]"
        rows.append(row)
        print(f"{name}: {'PASS' if row.passed else 'FAIL'}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| scenario | pass criterion | measured | result |", "|---|---|---|---|"]
    lines += [f"| {r.scenario} | {r.criterion} | {r.measured} | "
              f"{'PASS' if r.passed else 'FAIL'} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the seconds-long form")
    parser.add_argument("--url", help="a running server on loopback instead of starting one")
    parser.add_argument("--container", help="with --url: its Docker container (for kill, RSS)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only these (repeatable); default all")
    parser.add_argument("--soak-s", type=float, help="soak duration (default 600, short 0)")
    parser.add_argument("--uploads", type=int, help="burst: concurrent uploads")
    parser.add_argument("--upload-bytes", type=int, help="burst: size of each upload")
    parser.add_argument("--photos", type=int, help="burst: concurrent photos")
    parser.add_argument("--photo-side", type=int, help="burst: photo width = height")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else LONG
    overrides = {"soak_s": args.soak_s, "upload_clients": args.uploads,
                 "upload_bytes": args.upload_bytes, "photo_clients": args.photos,
                 "photo_side": args.photo_side}
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    names = args.scenario or [n for n in SCENARIOS if n != "soak" or plan.soak_s > 0]
    if args.url:
        check_loopback(args.url)
        url = args.url.rstrip("/")
        server = (container_server(url, args.container) if args.container
                  else Server(url, None, lambda: ""))
        rows = run(server, plan, names)
    else:
        with start_server(plan.env) as server:
            rows = run(server, plan, names)
    print(table(rows))
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
