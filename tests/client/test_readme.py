"""The examples of clients/python/README.md run as written against a real server.

Python blocks run in order, each in a fresh namespace, in a directory holding ``cat.png``;
then every ``$ convserve ...`` line of the console blocks runs through the command line's
``main`` (the console script's entry point). Only the server URL is swapped for the test
server's.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from convserve_client.cli import main

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback

README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"
README_URL = "http://localhost:8000"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_and_console_examples() -> None:
    assert len(blocks("python")) >= 8
    assert any("$ convserve" in block for block in blocks("console"))


def test_readme_examples_run_as_written(server_url: str, workdir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("CONVSERVE_URL", server_url)
    monkeypatch.delenv("CONVSERVE_API_KEY", raising=False)
    for number, code in enumerate(blocks("python"), start=1):
        assert README_URL in code, f"python block {number} names no server"
        source = code.replace(README_URL, server_url)
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, f"README.md python block {number}", "exec"), {})
    assert (workdir / "sobel" / "channel_001.png").is_file()
    assert (workdir / "model" / "model.onnx").is_file()
    assert sorted(p.name for p in (workdir / "features").iterdir()) == [
        "cat_0", "cat_180", "cat_90"]
    assert (workdir / "features" / "cat_90" / "005" / "channel_001.png").is_file()

    commands = [line[2:] for block in blocks("console") for line in block.splitlines()
                if line.startswith("$ convserve ")]
    for command in commands:
        argv = shlex.split(command)[1:]
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()) as errors:
            status = main(argv)
        assert status == 0, f"{command!r} exited {status}: {errors.getvalue()}"
    assert (workdir / "out" / "channel_000.png").is_file()
    assert (workdir / "y.npy").is_file() and (workdir / "box.png").is_file()
    assert sorted(p.name for p in (workdir / "maps").iterdir()) == [
        "cat_0.npy", "cat_180.npy", "cat_90.npy"]
    assert (workdir / "edges" / "cat_90" / "channel_001.png").is_file()
