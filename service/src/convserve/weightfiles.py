"""Kernels from weight files: ``.npy``, ``.npz`` and ``.safetensors``; pickles are never loaded.

A file sent as ``kernel_file`` is read without executing anything it holds:

- ``.npy``: NumPy's format with ``allow_pickle=False`` (an object array is refused);
- ``.npz``: a ZIP of ``.npy`` members, each member's uncompressed size checked against the
  limit before it is inflated;
- ``.safetensors``: parsed here from its format (an 8-byte little-endian header length, a JSON
  header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the raw
  little-endian tensor bytes), so no extra dependency is needed;
- pickles (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, PyTorch's ZIP checkpoints, object arrays) are
  refused with a 415 that says how to save the weights with safetensors: unpickling runs code.

With several tensors in the file, ``kernel_key`` names the weight; when it ends in ``weight``,
the bias is read from the same prefix + ``bias`` if there is one (``features.0.weight`` ->
``features.0.bias``); ``bias_key`` names it explicitly.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve.errors import InvalidArgumentError, InvalidInputError, UnsupportedMediaTypeError

__all__ = ["PICKLE_SUFFIXES", "PickleRefusedError", "WeightFile", "load_kernel_file"]

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")

_SAVE_AS_SAFETENSORS = (
    "pickled files are never loaded (unpickling runs code): save the tensors with safetensors "
    "(safetensors.torch.save_file(model.state_dict(), 'weights.safetensors') or "
    "safetensors.numpy.save_file), or as .npy/.npz with numpy.save"
)

_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?",
}


class PickleRefusedError(UnsupportedMediaTypeError):
    """A pickled weight file (415): convserve never unpickles."""

    slug = "pickle-refused"
    title = "Pickled weight files are refused"


@dataclass(frozen=True)
class WeightFile:
    """The tensors read from a weight file."""

    weight: np.ndarray
    """float32, as stored (the layout is applied by the caller)."""
    bias: np.ndarray | None
    format: str
    """``npy``, ``npz`` or ``safetensors``."""
    weight_key: str | None
    bias_key: str | None

    def describe(self) -> dict[str, Any]:
        return {"source": "kernel_file", "format": self.format, "weight_key": self.weight_key,
                "bias_key": self.bias_key}


def _float32(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "biuf" or array.dtype.names is not None:
        if array.dtype.kind == "O":
            raise PickleRefusedError(f"{what} is an object array; {_SAVE_AS_SAFETENSORS}",
                                     field="kernel_file")
        raise InvalidInputError(f"{what} has dtype {array.dtype}; send real numbers",
                                field="kernel_file")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(array, dtype=np.float32)


def _load_npy(data: bytes, what: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise PickleRefusedError(f"{what} holds an object array; {_SAVE_AS_SAFETENSORS}",
                                     field="kernel_file") from None
        raise InvalidInputError(f"{what} is not a valid .npy array: {exc}",
                                field="kernel_file") from None
    except (OSError, EOFError) as exc:
        raise InvalidInputError(f"{what} is not a valid .npy array: {exc}",
                                field="kernel_file") from None
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy bytes
        raise InvalidInputError(f"{what} is not a .npy array", field="kernel_file")
    return _float32(array, what)


def _npz(data: bytes, max_bytes: int) -> dict[str, Any]:
    """Member name (without .npy) -> a callable reading it, after size checks."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(f"kernel_file is not a valid .npz (ZIP) file: {exc}",
                                field="kernel_file") from None
    names = archive.namelist()
    if any(n.endswith((".pkl", "data.pkl")) or "/data/" in n for n in names):
        raise PickleRefusedError(
            f"kernel_file is a PyTorch checkpoint (a ZIP holding a pickle); "
            f"{_SAVE_AS_SAFETENSORS}", field="kernel_file")
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        if info.file_size > max_bytes:
            raise InvalidArgumentError(
                f"kernel_file member {info.filename!r} inflates to {info.file_size:,} bytes, "
                f"more than the limit of {max_bytes:,} (CONVSERVE_MAX_OUTPUT_BYTES)",
                field="kernel_file")
        members[info.filename[:-4]] = info
    if not members:
        raise InvalidInputError("kernel_file is a ZIP without .npy members, not an .npz",
                                field="kernel_file")
    return {name: (archive, info) for name, info in members.items()}


def _safetensors(data: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    if len(data) < 8:
        raise InvalidInputError("kernel_file is too short to be .safetensors",
                                field="kernel_file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise InvalidInputError(
            f"kernel_file's safetensors header claims {size:,} bytes and the file has "
            f"{len(data) - 8:,} after its length", field="kernel_file")
    try:
        header = json.loads(data[8:8 + size])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"kernel_file's safetensors header is not JSON: {exc}",
                                field="kernel_file") from None
    if not isinstance(header, dict):
        raise InvalidInputError("kernel_file's safetensors header is not a JSON object",
                                field="kernel_file")
    body = memoryview(data)[8 + size:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]])
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            kinds = ", ".join(_SAFETENSORS_DTYPES)
            raise InvalidInputError(
                f"kernel_file tensor {name!r} has an unsupported or malformed entry {entry!r} "
                f"(dtypes: {kinds})", field="kernel_file") from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise InvalidInputError(
                f"kernel_file tensor {name!r}: data_offsets [{begin}, {end}] do not hold "
                f"shape {list(shape)} of {entry['dtype']} within the file", field="kernel_file")
        if 4 * count > max_bytes:
            raise InvalidArgumentError(
                f"kernel_file tensor {name!r} holds {count:,} values, more than the limit of "
                f"{max_bytes:,} bytes as float32 (CONVSERVE_MAX_OUTPUT_BYTES)",
                field="kernel_file")
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
    return tensors


def _pick(keys: list[str], kernel_key: str | None, bias_key: str | None,
          what: str) -> tuple[str, str | None]:
    listed = ", ".join(repr(k) for k in keys[:50]) + (" ..." if len(keys) > 50 else "")
    if kernel_key is None:
        if len(keys) != 1:
            raise InvalidArgumentError(
                f"{what} holds {len(keys)} tensors; name the weight with kernel_key: {listed}",
                field="kernel_key")
        kernel_key = keys[0]
    if kernel_key not in keys:
        raise InvalidArgumentError(f"{what} has no tensor {kernel_key!r}; it holds {listed}",
                                   field="kernel_key")
    if bias_key is not None:
        if bias_key not in keys:
            raise InvalidArgumentError(f"{what} has no tensor {bias_key!r}; it holds {listed}",
                                       field="bias_key")
        return kernel_key, bias_key
    if kernel_key.endswith("weight"):
        guess = kernel_key[: -len("weight")] + "bias"
        if guess in keys:
            return kernel_key, guess
    return kernel_key, None


def load_kernel_file(data: bytes, filename: str | None, *, kernel_key: str | None = None,
                     bias_key: str | None = None, max_bytes: int) -> WeightFile:
    """Read a weight (and bias) from a weight file's bytes.

    Parameters
    ----------
    data : bytes
    filename : str, optional
        Its name; the suffix refuses pickles early and picks the format when the bytes alone
        do not.
    kernel_key, bias_key : str, optional
        Tensor names in an .npz or .safetensors file (see the module docstring).
    max_bytes : int
        Bound on any tensor as float32 (``CONVSERVE_MAX_OUTPUT_BYTES``).

    Returns
    -------
    WeightFile

    Raises
    ------
    PickleRefusedError
        A pickle, a PyTorch checkpoint or an object array (415).
    InvalidInputError, InvalidArgumentError
        A malformed file or an unknown key (422).
    """
    name = (filename or "").lower()
    if name.endswith(PICKLE_SUFFIXES) or data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05":
        raise PickleRefusedError(f"kernel_file {filename or ''!r} is a pickle; "
                                 f"{_SAVE_AS_SAFETENSORS}", field="kernel_file")
    if data[:6] == b"\x93NUMPY":
        if kernel_key is not None or bias_key is not None:
            raise InvalidArgumentError("a .npy file holds one tensor; drop kernel_key and "
                                       "bias_key, or send an .npz or .safetensors file",
                                       field="kernel_key")
        return WeightFile(_load_npy(data, "kernel_file"), None, "npy", None, None)
    if data[:4] == b"PK\x03\x04":
        members = _npz(data, max_bytes)
        weight_key, found_bias = _pick(sorted(members), kernel_key, bias_key, "the .npz file")

        def read(key: str) -> np.ndarray:
            archive, info = members[key]
            return _load_npy(archive.read(info), f"kernel_file member {key!r}")

        return WeightFile(read(weight_key), None if found_bias is None else read(found_bias),
                          "npz", weight_key, found_bias)
    if name.endswith(".safetensors") or (len(data) > 9 and data[8:9] == b"{"):
        tensors = _safetensors(data, max_bytes)
        if not tensors:
            raise InvalidInputError("kernel_file's safetensors header lists no tensors",
                                    field="kernel_file")
        weight_key, found_bias = _pick(list(tensors), kernel_key, bias_key,
                                       "the .safetensors file")
        bias = None if found_bias is None else _float32(tensors[found_bias], found_bias)
        return WeightFile(_float32(tensors[weight_key], weight_key), bias, "safetensors",
                          weight_key, found_bias)
    raise InvalidInputError(
        f"kernel_file {filename or ''!r} is not a .npy, .npz or .safetensors file (it starts "
        f"with {data[:8].hex(' ') or 'nothing'})", field="kernel_file")
