"""A bounded on-disk store of validated models, shared by every worker that opens the directory.

Layout of ``CONVSERVE_MODEL_DIR``::

    <id>.onnx   the validated model (batch 1, input size fixed, shapes inferred)
    <id>.json   its description (what GET /v1/models/{id} answers); written last, so a model
                exists once its .json does
    .lock       taken (``flock``) around writes, deletions and evictions
    .<name>.lock  taken around longer work that one process should do for all
                (:meth:`ModelStore.exclusive`: validating and storing the sample network)

Every file is written to a temporary name in the same directory and renamed into place, so a
reader in another process never sees half a file. The ``.json``'s modification time is the
model's last use: reads touch it, and when a new model would push the directory past
``CONVSERVE_MODEL_STORE_BYTES`` the least recently used models are removed first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from convserve.errors import ConvServeError, NotFoundError, PayloadTooLargeError

__all__ = ["MODEL_ID", "ModelStore", "StoreUnavailableError"]

MODEL_ID = re.compile(r"^[0-9a-f]{32}$")
"""A model id: 32 lower-case hex digits (the first 128 bits of a SHA-256)."""


class StoreUnavailableError(ConvServeError):
    """The store's directory cannot be created or written (full, read-only): 503."""

    status = 503
    slug = "model-store-unavailable"
    title = "Model store unavailable"


def _touch(path: Path) -> None:
    """Mark ``path`` used now, to the nanosecond: the kernel's own clock for ``utime`` ticks
    coarsely, and two uses within one tick would make the LRU order a tie."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


class ModelStore:
    """Models on disk, keyed by id, bounded in bytes, least recently used evicted first.

    Parameters
    ----------
    root : Path
        The directory (created if missing); several processes may share it.
    max_bytes : int
        Bound on the bytes of every stored file together (``CONVSERVE_MODEL_STORE_BYTES``).
    on_remove : callable, optional
        Called with the id of every model this process deletes or evicts (to drop sessions).
    """

    def __init__(self, root: Path, max_bytes: int,
                 on_remove: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.on_remove = on_remove
        self._thread_lock = threading.Lock()
        self._named_locks: dict[str, threading.Lock] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"the model store {self.root.name!r} (CONVSERVE_MODEL_DIR) cannot be written: "
            f"{exc.strerror or exc}; the operator must free or fix it")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock, open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock ``.<name>.lock`` of the directory: one thread of one process at a time,
        across every process that shares the directory, without holding up the store's own
        writes. On a file system without working locks the work may run twice, which the
        content-hash ids and atomic renames make harmless."""
        with self._named_locks.setdefault(name, threading.Lock()):
            try:
                handle = open(self.root / f".{name}.lock", "a+b")
            except OSError as exc:
                raise self._unavailable(exc) from None
            with handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def has(self, model_id: str) -> bool:
        """Whether the model is stored now (without marking it used)."""
        return self._paths(model_id)[1].exists()

    def _paths(self, model_id: str) -> tuple[Path, Path]:
        if not MODEL_ID.match(model_id):
            raise NotFoundError(f"no model has the id {model_id!r} (ids are 32 hex digits)",
                                field="id")
        return self.root / f"{model_id}.onnx", self.root / f"{model_id}.json"

    def _write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def used_bytes(self) -> int:
        """Bytes of every stored model and description together."""
        total = 0
        for entry in os.scandir(self.root):
            if entry.name.endswith((".onnx", ".json")):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
        return total

    def put(self, model_id: str, model: bytes, meta: dict[str, Any]) -> bool:
        """Store a model unless it is there already; True when it was added.

        Raises
        ------
        PayloadTooLargeError
            The model alone is larger than the whole store (413).
        """
        onnx_path, meta_path = self._paths(model_id)
        description = json.dumps(meta).encode()
        needed = len(model) + len(description)
        if needed > self.max_bytes:
            raise PayloadTooLargeError(
                f"the validated model takes {needed:,} bytes, more than the whole model store "
                f"of {self.max_bytes:,} bytes (CONVSERVE_MODEL_STORE_BYTES)", field="model")
        try:
            with self._locked():
                if meta_path.exists():
                    _touch(meta_path)
                    return False
                self._evict(needed)
                self._write(onnx_path, model)
                self._write(meta_path, description)
                _touch(meta_path)
        except OSError as exc:  # ENOSPC, EROFS, EACCES: the server's problem, not the caller's
            raise self._unavailable(exc) from None
        return True

    def _evict(self, needed: int) -> None:
        entries = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(".json") and MODEL_ID.match(entry.name[:-5]):
                with contextlib.suppress(FileNotFoundError):
                    entries.append((entry.stat().st_mtime_ns, entry.name[:-5]))
        entries.sort()
        used = self.used_bytes()
        for _, victim in entries:
            if used + needed <= self.max_bytes:
                break
            used -= self._remove(victim)

    def _remove(self, model_id: str) -> int:
        freed = 0
        onnx_path, meta_path = self._paths(model_id)
        for path in (meta_path, onnx_path):  # the .json first: the model is gone at once
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
        if self.on_remove is not None:
            self.on_remove(model_id)
        return freed

    def meta(self, model_id: str) -> dict[str, Any]:
        """The stored description of a model, marking it used.

        Raises
        ------
        NotFoundError
            No such model (never uploaded, deleted or evicted).
        """
        _, meta_path = self._paths(model_id)
        try:
            data = meta_path.read_bytes()
            _touch(meta_path)
        except FileNotFoundError:
            raise self._missing(model_id) from None
        description: dict[str, Any] = json.loads(data)
        return description

    def model_bytes(self, model_id: str) -> bytes:
        """The stored ONNX bytes of a model."""
        onnx_path, _ = self._paths(model_id)
        try:
            return onnx_path.read_bytes()
        except FileNotFoundError:
            raise self._missing(model_id) from None

    def list(self) -> list[dict[str, Any]]:
        """Every stored description, oldest upload first (without marking them used)."""
        found = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(".json") and MODEL_ID.match(entry.name[:-5]):
                with contextlib.suppress(FileNotFoundError):
                    found.append(json.loads(Path(entry.path).read_bytes()))
        found.sort(key=lambda m: (m.get("created", ""), m.get("id", "")))
        return found

    def delete(self, model_id: str) -> None:
        """Remove a model; NotFoundError when there is none."""
        _, meta_path = self._paths(model_id)
        with self._locked():
            if not meta_path.exists():
                raise self._missing(model_id)
            self._remove(model_id)

    @staticmethod
    def _missing(model_id: str) -> NotFoundError:
        return NotFoundError(
            f"no model has the id {model_id!r}: it was never uploaded, was deleted, or was "
            "evicted to keep the store under CONVSERVE_MODEL_STORE_BYTES; upload it again "
            "(POST /v1/models)", field="id")
