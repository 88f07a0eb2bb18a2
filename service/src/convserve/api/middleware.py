"""ASGI middleware: request ids, one structured log line per request, metrics, and the body:
admitted against the memory budget before it is read, bounded in size and in time."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convserve.admission import CURRENT, MemoryBudget, Reservation
from convserve.api.metrics import Metrics
from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.errors import OverloadedError, PayloadTooLargeError, RequestTimeoutError
from convserve.limits import Limits

__all__ = ["JsonLogFormatter", "RequestContextMiddleware", "keep_uploads_in_memory",
           "reserve_work"]

log = logging.getLogger("convserve.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_CLIENT_CLOSED = 499
"""Status logged (never sent) for a request whose client went away before its answer."""


class _Replay:
    """A ``receive`` that hands out the body read already, then waits on the real one.

    The body's chunks wait in ``scope["state"]["body"]``, where a route may take them all at
    once (:func:`convserve.api.parsing.take_body`); otherwise they are handed out in order, each
    dropped as it goes, so the body's memory moves to the parser instead of being held twice.
    """

    def __init__(self, state: dict[str, Any], receive: Receive) -> None:
        self._state = state
        self._receive = receive
        self._chunks: list[bytes] | None = None
        self._ended = False

    async def __call__(self) -> Message:
        if self._ended:
            return await self._receive()  # after the body only http.disconnect can come
        if self._chunks is None:
            self._chunks = self._state.pop("body", [])[::-1]
        chunk = self._chunks.pop() if self._chunks else b""
        self._ended = not self._chunks
        return {"type": "http.request", "body": chunk, "more_body": not self._ended}


def _body_timeout(timeout_s: float, received: int) -> bytes:
    problem = RequestTimeoutError(
        f"the request body did not arrive within {timeout_s:g} s ({received} bytes came); "
        "send it faster or raise CONVSERVE_BODY_TIMEOUT_S"
    ).to_problem()
    return json.dumps(problem).encode()


def keep_uploads_in_memory(max_upload_bytes: int) -> None:
    """Let the multipart parser keep uploads up to ``max_upload_bytes`` in memory.

    Starlette spools a file part over 1 MB to a temporary file, so a burst of uploads could
    fill ``/tmp`` (ENOSPC, a 500) although each was admitted. Every body is admitted against
    the memory budget for itself and that one copy (``INTAKE_FACTOR``), so memory is the
    bounded place for it. It is a class attribute of the parser: the largest limit of every
    app in the process wins.
    """
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_upload_bytes)


async def reserve_work(request: Request, nbytes: int) -> None:
    """Reserve ``nbytes`` of working memory for ``request`` once its input's header is known.

    The route calls it with :func:`convserve.flows.memory.working_bytes` before queueing the
    work; the body's intake bytes are given back then. Nothing is reserved for 0 bytes (a
    header that could not be read: the flow refuses the input before decoding it) or outside
    the middleware (no reservation in the scope).

    Raises
    ------
    OverloadedError
        The budget had no room within its wait (503 + Retry-After).
    """
    reservation = request.scope.get("state", {}).get("admission")
    if isinstance(reservation, Reservation) and nbytes > 0:
        await reservation.reserve_work(nbytes)


def _too_large_body(detail: str) -> bytes:
    problem = PayloadTooLargeError(detail).to_problem()
    return json.dumps(problem).encode()


class RequestContextMiddleware:
    """Give each HTTP request an id, admit and read its body, log it and count it.

    The id comes from a well-formed incoming ``X-Request-ID`` or is made here; it is echoed in
    the response header and in the log line. Metrics are labelled by the route template
    (``/v1/presets/{name}``), never by the raw path.

    A request with a body is admitted against the process's memory budget *before* its body
    is read (:meth:`MemoryBudget.admit_body`, by ``Content-Length``), then its body is read
    here, whole, within ``body_timeout_s`` and ``max_body_bytes``, and handed to the app from
    memory: so the app never waits on a slow sender or sees a client vanish mid-upload, and
    the multipart parser never spools to disk (:func:`keep_uploads_in_memory`). The
    reservation travels in ``scope["state"]["admission"]`` for the header-stage estimate and
    is released when the request ends.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, limits: Limits,
                 budget: MemoryBudget | None = None,
                 body_limits: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.limits = limits
        self.max_body_bytes = limits.max_upload_bytes
        # Exact paths with their own bound and its 413 detail (model uploads, 100 MB default).
        self.body_limits = dict(body_limits or {})
        self.body_timeout_s = limits.body_timeout_s
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        method = scope["method"]

        max_body, too_large = self.body_limits.get(
            scope["path"], (self.max_body_bytes, self.limits.upload_too_large_detail()))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            status = 413
            await self._send_problem(send, 413, _too_large_body(too_large), request_id)
            self._finish(scope, method, status, started, request_id)
            return

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        has_body = chunked or (declared.isdigit() and int(declared) > 0)
        self.metrics.in_progress.inc()
        reservation: Reservation | None = None
        try:
            if has_body:
                if self.budget is not None:
                    expected = int(declared) if declared.isdigit() else max_body
                    admitted = await self._admit(self.budget, expected, receive, send,
                                                 request_id)
                    if isinstance(admitted, int):
                        status = admitted
                        return
                    reservation = admitted
                    scope["state"]["admission"] = reservation
                    CURRENT.set(reservation)  # this task's context: the compute pool reads it
                body = await self._read_body(receive, send, request_id, max_body, too_large)
                if isinstance(body, int):
                    status = body
                    return
                scope["state"]["body"] = body
                del body  # held in one place: the route takes it, or _Replay hands it out
                receive = _Replay(scope["state"], receive)
            await self.app(scope, receive, send_with_id)
        finally:
            if reservation is not None:
                reservation.release()
            self.metrics.in_progress.dec()
            self._finish(scope, method, status, started, request_id)

    async def _admit(self, budget: MemoryBudget, expected: int, receive: Receive, send: Send,
                     request_id: str) -> Reservation | int:
        """A reservation for a body of ``expected`` bytes, or the status already answered."""
        try:
            return await budget.admit_body(expected)
        except OverloadedError as exc:
            self.metrics.rejected_memory.inc()
            # Read the unadmitted body and drop it (no memory held) before answering, so the
            # client reads a 503 rather than a connection reset for the bytes it was sending.
            drained = await self._drain(receive)
            headers = [(b"retry-after", str(exc.retry_after).encode())]
            await self._send_problem(send, 503, json.dumps(exc.to_problem()).encode(),
                                     request_id, close=not drained, extra=headers)
            return 503

    async def _drain(self, receive: Receive) -> bool:
        """Read the body and drop it, for at most the body timeout; False if it did not end."""
        deadline = time.monotonic() + self.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            if not message.get("more_body", False):
                return True

    async def _read_body(self, receive: Receive, send: Send, request_id: str,
                         max_body: int, too_large: str) -> list[bytes] | int:
        """The body as its chunks, or the status already answered (408, 413; 499: gone)."""
        chunks: list[bytes] = []
        received = 0
        # One deadline for the whole body, not a wait_for (a task and a timer) per chunk; the
        # problems are sent outside it, so a slow send is never cut short by it.
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # http.disconnect: the client left
                        return _CLIENT_CLOSED
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > max_body:  # a chunked body, or more than it declared
                        break
                    if chunk:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        return chunks
        except TimeoutError:
            self.metrics.body_timeouts.inc()
            await self._send_problem(send, 408, _body_timeout(self.body_timeout_s, received),
                                     request_id)
            return 408
        await self._send_problem(send, 413, _too_large_body(too_large), request_id)
        return 413

    @staticmethod
    async def _send_problem(send: Send, status: int, body: bytes, request_id: str, *,
                            close: bool = True,
                            extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *(extra or []),
        ]
        if close:  # the rest of the body was not read: the connection cannot be reused
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, method: str, status: int, started: float,
                request_id: str) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.latency.labels(template, method).observe(elapsed)
        client = scope.get("client")
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "path": scope.get("path"),
                "route": template,
                "status": status,
                "duration_ms": round(1000 * elapsed, 2),
                "client": client[0] if client else None,
            },
        )
