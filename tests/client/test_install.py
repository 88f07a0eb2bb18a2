"""The client installs on its own: a fresh virtual environment, ``pip install clients/python``.

Slow (a venv and a download of httpx and numpy, cached by pip after the first run), but it is
the only test that catches the client importing the service, or packaging that misses a file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "python"

CHECK = """
import importlib.resources, importlib.util, sys
import convserve_client
from convserve_client import AsyncClient, Client, ConvolveResult, cli
assert importlib.util.find_spec("convserve") is None, "the service is importable"
assert "PIL" not in sys.modules, "Pillow was imported without being asked for"
assert importlib.util.find_spec("PIL") is None, "Pillow came without the images extra"
typed = importlib.resources.files("convserve_client") / "py.typed"
assert typed.is_file(), "py.typed is missing from the wheel"
print(convserve_client.__version__)
"""


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_client_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", CLIENT_DIR)
    check = run(python, "-c", CHECK)
    assert check.stdout.strip() == "0.1.0"
    version = run(venv / "bin" / "convserve", "--version")
    assert version.stdout == "convserve 0.1.0\n"
