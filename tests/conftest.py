"""Project-wide test hooks: ``@pytest.mark.cuda`` tests skip where CUDA cannot run."""

from __future__ import annotations

import pytest


def cuda_unavailable_reason() -> str | None:
    """Why ONNX Runtime cannot offer CUDA here, or None when its CUDA provider is available."""
    try:
        import onnxruntime
    except ImportError:
        return "needs onnxruntime-gpu (the 'cuda' extra); onnxruntime is not installed"
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return None
    return (
        "needs onnxruntime's CUDAExecutionProvider (onnxruntime-gpu and an NVIDIA GPU); "
        f"this onnxruntime offers {', '.join(available)}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    reason = cuda_unavailable_reason() if cuda_items else None
    if reason:
        for item in cuda_items:
            item.add_marker(pytest.mark.skip(reason=reason))
