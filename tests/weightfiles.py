"""Weight files written by the tests: .npz by numpy, .safetensors from its specification.

No torch or safetensors package is needed: the safetensors format is an 8-byte little-endian
header length, a JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` and
the raw little-endian tensor bytes.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np

__all__ = ["npy_file", "npz_bytes", "safetensors_bytes"]

_SAFETENSORS_DTYPES = {"<f4": "F32", "<f2": "F16", "<f8": "F64"}


def safetensors_bytes(tensors: dict[str, np.ndarray], dtype: str = "<f4") -> bytes:
    """``tensors`` as a .safetensors file, in ``dtype`` (``<f4``, ``<f2`` or ``<f8``)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    chunks, offset = [], 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """``arrays`` as a compressed .npz file (``numpy.savez_compressed``)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def npy_file(array: np.ndarray) -> bytes:
    """One array as a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
