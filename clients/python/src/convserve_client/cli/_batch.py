"""Many inputs through one command: ``convserve convolve photos/ -r --preset sobel -o edges/``.

The inputs (files, globs, directories, or ``-`` for a list of paths on stdin) become jobs, each
with the output it writes under ``-o DIR``: the input's name without its suffix (below the
subfolders it sits in, for a directory's files) plus the format's suffix, or a folder of that
name for formats that give several files. ``--jobs`` jobs run at once as tasks on one
``AsyncClient``, so on one HTTP/1.1 connection pool, each with the client's retries.

Every output is written under a temporary name and renamed into place, so a crash or Ctrl-C
never leaves a partial one and ``--resume`` may trust any output that exists. A failed input
is listed at the end with the server's problem detail; only a server that cannot be reached
or refuses the API key stops the batch, since every other input would fail the same way.

A command joins in by describing itself as a :class:`Batch`: how to send one input and which
files its answer becomes (``cmd_convolve`` and ``cmd_layers`` in ``_commands``).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

import httpx
import numpy as np
from tqdm import tqdm

from convserve_client._async_client import AsyncClient
from convserve_client._batch import DEFAULT_CONCURRENCY, ItemError, map_tasks
from convserve_client._constants import URL_ENV
from convserve_client._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
)
from convserve_client._models._shared import npy_bytes
from convserve_client.cli._args import (
    EXIT_API_ERROR,
    EXIT_CONNECTION,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    positive_int,
    read_stdin,
)
from convserve_client.cli._text import print_error, status_message

__all__ = ["IMAGE_SUFFIXES", "Batch", "Job", "add_batch_options", "add_inputs",
           "batch_sources", "run_batch"]

ResultT = TypeVar("ResultT")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif",
                            ".npy"})
"""The files a directory contributes to a batch (what the server decodes)."""

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Batch(Generic[ResultT]):
    """How one command runs over many inputs.

    Attributes
    ----------
    send : callable
        ``await send(client, image)``: the command's request for one loaded input.
    files : callable
        The answer's files, relative name -> content; with ``suffix`` exactly one.
    suffix : str or None
        Each input's output is the file ``DIR/<name><suffix>``; with ``None``, the folder
        ``DIR/<name>/`` holding ``files``.
    """

    send: Callable[[AsyncClient, Any], Awaitable[ResultT]]
    files: Callable[[ResultT], Mapping[str, bytes]]
    suffix: str | None


def single_file(result: Any) -> dict[str, bytes]:
    """A file answer's bytes, or its float32 array as a ``.npy`` (``format=array``)."""
    if result.content is not None:
        return {"": result.content}
    return {"": npy_bytes(result.array)}


@dataclass(frozen=True, slots=True)
class Job:
    """One input of a batch: the file to send and the output it becomes."""

    source: Path
    target: Path


# --- arguments -------------------------------------------------------------------------------


def add_inputs(parser: argparse.ArgumentParser) -> None:
    """The INPUT... of a command that takes a batch."""
    parser.add_argument("image", metavar="INPUT", nargs="+",
                        help="image file (PNG, JPEG, WebP, BMP, TIFF, GIF), .npy array (C, H, W) "
                             "or (H, W), .json nested lists, or - for stdin (a file, or a list "
                             "of paths one per line); several inputs, a directory or a glob "
                             "('photos/*.jpg') make a batch")


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """--recursive, --jobs, --resume and --quiet."""
    batch = parser.add_argument_group(
        "batch (several inputs, a directory or a glob; -o DIR receives one output per input, "
        "named after it)")
    batch.add_argument("-r", "--recursive", action="store_true",
                       help="take the images of directories' subdirectories too (and ** in "
                            "globs); outputs mirror the subdirectories")
    batch.add_argument("-j", "--jobs", type=positive_int, default=DEFAULT_CONCURRENCY,
                       metavar="N", help=f"requests in flight at once "
                                         f"(default {DEFAULT_CONCURRENCY})")
    batch.add_argument("--resume", action="store_true",
                       help="skip inputs whose output already exists")
    batch.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar or per-input lines (failures and the summary "
                            "still print)")


# --- inputs ----------------------------------------------------------------------------------


def _stdin_paths() -> list[str] | None:
    """The paths listed on stdin (one a line), or None when stdin holds a file itself.

    Every format the server decodes is binary (a NUL byte or bytes that are not UTF-8 within
    its first bytes), so UTF-8 text without NUL is taken for a list of paths.
    """
    data = read_stdin()
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _is_glob(spec: str) -> bool:
    return not Path(spec).exists() and any(c in _GLOB_CHARS for c in spec)


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix else path


def _expand(spec: str, recursive: bool) -> list[tuple[Path, Path]]:
    """(file, output name without suffix) for each file ``spec`` names."""
    if spec == "-":
        paths = _stdin_paths()
        if not paths:
            raise UsageError("- in a batch reads a list of paths from stdin, and it was empty")
        return [(Path(p), Path(_stem(Path(p)).name)) for p in paths]
    path = Path(spec)
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
        files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            more = "" if recursive else " (--recursive looks into its subdirectories)"
            raise UsageError(f"directory {spec!r} holds no images ("
                             f"{', '.join(sorted(IMAGE_SUFFIXES))}){more}")
        return [(p, _stem(p.relative_to(path))) for p in files]
    if _is_glob(spec):
        matches = sorted(Path(m) for m in glob.glob(spec, recursive=recursive))
        files = [m for m in matches if m.is_file()]
        if not files:
            raise UsageError(f"{spec!r} matches no file")
        return [(m, Path(_stem(m).name)) for m in files]
    return [(path, Path(_stem(path).name))]


def batch_sources(specs: Sequence[str], recursive: bool) -> list[tuple[Path, Path]] | None:
    """The inputs of a batch as (file, output name), or None when ``specs`` name one input.

    One input is a batch when it is a directory, a glob or a list of paths on stdin; two or
    more inputs always are.
    """
    if len(specs) == 1:
        spec = specs[0]
        single = _stdin_paths() is None if spec == "-" else not (
            Path(spec).is_dir() or _is_glob(spec))
        if single:
            return None
    return [source for spec in specs for source in _expand(spec, recursive)]


def _jobs(sources: list[tuple[Path, Path]], out: Path, suffix: str | None) -> list[Job]:
    jobs: dict[Path, Job] = {}
    for source, name in sources:
        target = out / (str(name) + (suffix or ""))
        other = jobs.get(target)
        if other is not None and other.source != source:
            raise UsageError(f"inputs {str(other.source)!r} and {str(source)!r} would both "
                             f"write {str(target)!r}; rename one, or give their directory "
                             "(outputs then mirror its subfolders)")
        jobs[target] = Job(source, target)
    return list(jobs.values())


def _load(path: Path) -> Any:
    """A batch input as the client sends it: the path, or a ``.json`` file's array."""
    if path.suffix.lower() != ".json":
        return path
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "array" in data:
        data = data["array"]
    return np.asarray(data, dtype=np.float32)


# --- outputs ---------------------------------------------------------------------------------


def _write_atomically(target: Path, files: Mapping[str, bytes], as_dir: bool) -> None:
    """Write ``files`` as ``target`` (a folder, or the one file), under a temporary name
    renamed into place; an existing ``target`` is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        if not as_dir:
            (content,) = files.values()
            temporary.write_bytes(content)
            os.replace(temporary, target)
            return
        for name, content in files.items():
            path = temporary / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        if target.is_dir():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            temporary.rename(target)
            shutil.rmtree(old)
        else:
            temporary.rename(target)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


# --- progress and the run --------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    if isinstance(error, APIStatusError):
        return f"{error.status_code} {status_message(error)}"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error) or type(error).__name__


class Progress:
    """A bar with count, rate and ETA on a terminal; one line per finished input otherwise."""

    def __init__(self, total: int, *, quiet: bool, stream: TextIO) -> None:
        self.total = total
        self.count = 0
        self.failed = 0
        self._stream = stream
        self._lines = not quiet and not stream.isatty()
        self._bar = None
        if not quiet and stream.isatty():
            self._bar = tqdm(total=total, unit="img", file=stream)

    def finished(self, job: Job, error: BaseException | None) -> None:
        self.count += 1
        self.failed += error is not None
        if self._bar is not None:
            self._bar.update(1)
            if error is not None:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        elif self._lines:
            what = f"-> {job.target}" if error is None else f"failed: {_reason(error)}"
            print(f"[{self.count}/{self.total}] {job.source} {what}", file=self._stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class Tally:
    """How a batch went."""

    total: int
    skipped: int
    done: int = 0
    failed: list[tuple[Job, BaseException]] = field(default_factory=list)
    fatal: BaseException | None = None
    interrupted: bool = False


def _stops_the_batch(error: ItemError) -> bool:
    """Errors every later input would meet too: no server, or a key it refuses."""
    return (isinstance(error, APIConnectionError) and not isinstance(error, APITimeoutError)
            or isinstance(error, AuthenticationError))


async def _run(args: argparse.Namespace, batch: Batch[Any], jobs: list[Job],
               tally: Tally) -> None:
    progress = Progress(len(jobs), quiet=args.quiet, stream=sys.stderr)
    limits = httpx.Limits(max_connections=args.jobs, max_keepalive_connections=args.jobs)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=args.timeout) as http:
            client = AsyncClient(args.url, api_key=args.api_key, timeout=args.timeout,
                                 max_retries=args.max_retries, http_client=http)

            async def one(job: Job) -> Mapping[str, bytes]:
                return batch.files(await batch.send(client, _load(job.source)))

            async with aclosing(map_tasks(one, jobs, args.jobs)) as results:
                async for job, outcome in results:
                    if not isinstance(outcome, BaseException):
                        try:
                            _write_atomically(job.target, outcome, batch.suffix is None)
                        except OSError as exc:
                            outcome = exc
                    if isinstance(outcome, BaseException):
                        tally.failed.append((job, outcome))
                        if _stops_the_batch(outcome):
                            tally.fatal = outcome
                            break
                    else:
                        tally.done += 1
                    progress.finished(job, outcome if isinstance(outcome, BaseException)
                                      else None)
    except asyncio.CancelledError:
        # Ctrl-C under asyncio.run cancels this task: the tasks in flight have been cancelled
        # and awaited by map_tasks, and no output was half-written (writes never await).
        tally.interrupted = True
    finally:
        progress.close()


def run_batch(args: argparse.Namespace, batch: Batch[Any],
              sources: list[tuple[Path, Path]]) -> int:
    """Run ``batch`` over ``sources``; print failures and a summary; return the exit status."""
    if args.output is None or args.output == "-":
        raise UsageError("several inputs need -o DIR: each input's output is written there, "
                         "named after it")
    if getattr(args, "dry_run", False) or getattr(args, "json", False):
        raise UsageError("--dry-run and --json take a single input, not a batch")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {args.output!r} is a file; a batch writes into a directory")
    jobs = _jobs(sources, out, batch.suffix)
    todo = [job for job in jobs if not (args.resume and job.target.exists())]
    tally = Tally(total=len(jobs), skipped=len(jobs) - len(todo))
    if tally.skipped and not args.quiet:
        print(f"skipping {tally.skipped} input(s) whose output exists (--resume)",
              file=sys.stderr)
    started = time.perf_counter()
    asyncio.run(_run(args, batch, todo, tally))
    seconds = time.perf_counter() - started
    return _report(tally, seconds)


def _report(tally: Tally, seconds: float) -> int:
    failed = [(job, error) for job, error in tally.failed if error is not tally.fatal]
    if failed:
        print(f"convserve: {len(failed)} of {tally.total} input(s) failed:", file=sys.stderr)
        for job, error in failed:
            print(f"  {job.source}: {_reason(error)}", file=sys.stderr)
    not_run = tally.total - tally.skipped - tally.done - len(tally.failed)
    rate = tally.done / seconds if seconds > 0 else 0.0
    print(("interrupted: " if tally.interrupted else "")
          + f"done {tally.done}, failed {len(tally.failed)}, skipped {tally.skipped}"
          + (f", not run {not_run}" if not_run else "")
          + f" in {seconds:.1f} s ({rate:.1f} images/s)", flush=True)
    if tally.interrupted:
        return EXIT_INTERRUPTED
    if isinstance(tally.fatal, AuthenticationError):
        print_error(status_message(tally.fatal))
        return EXIT_API_ERROR
    if isinstance(tally.fatal, APIConnectionError):
        print_error(f"{tally.fatal.message}; is the server running? (--url or ${URL_ENV} "
                    "sets where)")
        return EXIT_CONNECTION
    return EXIT_API_ERROR if tally.failed else EXIT_OK
