"""The layering, enforced: what each part of the code may import (read from the source)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service" / "src" / "convserve"
CLIENT = ROOT / "clients" / "python" / "src" / "convserve_client"

CORE_ALLOWED = {"numpy", "onnx", "onnxruntime", "cv2", "convserve.errors", "convserve.cores"}
"""What conv/ may import besides the standard library and itself (cores: stdlib-only CPU
counting, shared with the launcher; cv2: OpenCV's filters, paths of engine="auto")."""


def imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (``from x import y`` gives ``x`` and ``x.y``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def allowed_in_core(name: str) -> bool:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return True
    if name.startswith("convserve.conv"):
        return True
    return any(name == ok or name.startswith(ok + ".") for ok in CORE_ALLOWED)


@pytest.mark.parametrize("path", modules(SERVICE / "conv"), ids=lambda p: p.name)
def test_core_imports_only_stdlib_numpy_onnx_opencv_and_errors(path: Path) -> None:
    bad = sorted(name for name in imports(path) if not allowed_in_core(name))
    # `from convserve.conv.spec import X` also records `convserve.conv.spec.X`: fine
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", modules(SERVICE / "flows"), ids=lambda p: p.name)
def test_flows_import_no_http_framework(path: Path) -> None:
    bad = sorted(name for name in imports(path)
                 if name.split(".")[0] in {"fastapi", "starlette", "uvicorn"}
                 or name.startswith("convserve.api"))
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize(
    "path",
    [p for p in modules(SERVICE) if "api" not in p.relative_to(SERVICE).parts[:1]
     and p.name != "main.py"],
    ids=lambda p: str(p.relative_to(SERVICE)),
)
def test_nothing_below_the_api_imports_it(path: Path) -> None:
    bad = sorted(name for name in imports(path) if name.startswith("convserve.api"))
    assert bad == [], f"{path.relative_to(SERVICE)} imports {bad}"


@pytest.mark.parametrize("path", modules(CLIENT), ids=lambda p: p.name)
def test_client_never_imports_the_service(path: Path) -> None:
    bad = sorted(name for name in imports(path)
                 if name == "convserve" or name.startswith("convserve."))
    assert bad == [], f"{path.name} imports {bad}"


def test_the_checks_see_real_imports() -> None:
    """The parser finds what a module really imports (so the tests above can fail)."""
    assert "convserve.conv.spec" in imports(SERVICE / "conv" / "numpy_engine.py")
    assert "convserve.api.schemas" in imports(SERVICE / "api" / "parsing.py")
