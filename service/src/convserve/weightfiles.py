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

:func:`open_weight_file` lists a file's tensors from its headers (an .npz member's inflated size
and shape, a safetensors header) and reads each one when asked, so one file holding a whole
network's ``state_dict`` serves every layer of a ``/v1/layers`` stack;
:func:`load_kernel_file` is that plus one :meth:`WeightArchive.load`, for one layer.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve.errors import InvalidArgumentError, InvalidInputError, UnsupportedMediaTypeError
from convserve.imaging.arrays import read_npy_header

__all__ = [
    "PICKLE_SUFFIXES",
    "PickleRefusedError",
    "WeightArchive",
    "WeightFile",
    "load_kernel_file",
    "open_weight_file",
]

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
        """Where the kernel came from, as answers report it (``source``: ``kernel_file``)."""
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
    stream = io.BytesIO(data)
    header = _npy_header(stream)
    if header is not None and not header[1].hasobject:
        # numpy allocates what the header claims before it reads: hold the claim to the bytes.
        shape, dtype = header
        claimed = math.prod(shape) * dtype.itemsize
        held = len(data) - stream.tell()
        if claimed > held:
            raise InvalidInputError(
                f"{what}'s header claims shape {shape} of {dtype} ({claimed:,} bytes) and it "
                f"holds {held:,} bytes of data", field="kernel_file")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise PickleRefusedError(f"{what} holds an object array; {_SAVE_AS_SAFETENSORS}",
                                     field="kernel_file") from None
        raise InvalidInputError(f"{what} is not a valid .npy array: {exc}",
                                field="kernel_file") from None
    except (OSError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        # A mangled header: numpy parses its dictionary with Python's tokenizer.
        raise InvalidInputError(f"{what} is not a valid .npy array: {exc}",
                                field="kernel_file") from None
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy bytes
        raise InvalidInputError(f"{what} is not a .npy array", field="kernel_file")
    return _float32(array, what)


def _npz(data: bytes, max_bytes: int) -> dict[str, tuple[zipfile.ZipFile, zipfile.ZipInfo]]:
    """Member name (without .npy) -> its archive and entry, after size checks."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError) as exc:
        raise InvalidInputError(f"kernel_file is not a valid .npz (ZIP) file: {exc}",
                                field="kernel_file") from None
    names = archive.namelist()
    if any(n.endswith((".pkl", "data.pkl")) or "/data/" in n for n in names):
        raise PickleRefusedError(
            f"kernel_file is a PyTorch checkpoint (a ZIP holding a pickle); "
            f"{_SAVE_AS_SAFETENSORS}", field="kernel_file")
    members: dict[str, zipfile.ZipInfo] = {}
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


@contextlib.contextmanager
def _member_errors(key: str) -> Iterator[None]:
    """A member of an .npz that cannot be inflated (a corrupt stream, a CRC mismatch) as a 422."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError,
            ValueError) as exc:
        raise InvalidInputError(f"kernel_file member {key!r} cannot be read from the .npz "
                                f"(ZIP) file: {exc}", field="kernel_file") from None


def _npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """The shape and dtype in a .npy header (read from ``stream``), or None when it cannot be
    read (then the full read names what is wrong)."""
    try:  # NpyVersionError is a ValueError
        shape, _, dtype = read_npy_header(stream)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, tokenize.TokenError):
        return None
    return shape, dtype


def _npy_shape(stream: Any) -> tuple[int, ...] | None:
    """The shape in a .npy header (read from ``stream``), or None when it cannot be read."""
    header = _npy_header(stream)
    return None if header is None else header[0]


class WeightArchive:
    """The tensors of one weight file: listed from its headers, each read when asked for.

    Parameters
    ----------
    format : str
        ``npy``, ``npz`` or ``safetensors``.
    names : list of str
        The tensors' names; an .npy's one tensor is ``""``.
    shape_of : callable
        A tensor's shape as its header states it, by name (None where an .npz member's header
        is of a version only a full read understands); read only for the tensors asked for.
    reader : callable
        Reads one tensor by name as float32.
    """

    def __init__(self, format: str, names: list[str],
                 shape_of: Callable[[str], tuple[int, ...] | None],
                 reader: Callable[[str], np.ndarray]) -> None:
        self.format = format
        self._names = names
        self._known = frozenset(names)
        self._shape_of = shape_of
        self._reader = reader

    @property
    def keys(self) -> list[str]:
        """The tensors' names (none for an .npy, whose one tensor has no name)."""
        return [] if self.format == "npy" else list(self._names)

    def shape(self, key: str | None) -> tuple[int, ...] | None:
        """The shape of tensor ``key`` (None: the .npy's) from its header, before it is read;
        None for a name the file does not hold."""
        name = "" if key is None else key
        return self._shape_of(name) if name in self._known else None

    def pick(self, kernel_key: str | None = None,
             bias_key: str | None = None) -> tuple[str | None, str | None]:
        """The names of the weight and of its bias (None: no bias) that ``kernel_key`` and
        ``bias_key`` select, by the rules of the module docstring.

        Raises
        ------
        InvalidArgumentError
            An unknown key (listing the file's tensors), no key where the file holds several
            tensors, or a key for an .npy file (field ``kernel_key`` or ``bias_key``).
        """
        if self.format == "npy":
            if kernel_key is not None or bias_key is not None:
                raise InvalidArgumentError("a .npy file holds one tensor; drop kernel_key and "
                                           "bias_key, or send an .npz or .safetensors file",
                                           field="kernel_key")
            return None, None
        return _pick(self.keys, kernel_key, bias_key, f"the .{self.format} file")

    def read(self, key: str | None) -> np.ndarray:
        """Tensor ``key`` (None: the .npy's) as float32, as stored."""
        return self._reader("" if key is None else key)

    def load(self, kernel_key: str | None = None, bias_key: str | None = None) -> WeightFile:
        """The weight and bias that :meth:`pick` selects, read."""
        weight_key, found_bias = self.pick(kernel_key, bias_key)
        bias = None if found_bias is None else self.read(found_bias)
        return WeightFile(self.read(weight_key), bias, self.format, weight_key, found_bias)


def open_weight_file(data: bytes, filename: str | None, *, max_bytes: int) -> WeightArchive:
    """List the tensors of a weight file's bytes (reading none of an .npz's or .safetensors').

    Parameters
    ----------
    data : bytes
    filename : str, optional
        Its name; the suffix refuses pickles early and picks the format when the bytes alone
        do not.
    max_bytes : int
        Bound on any tensor as float32 (``CONVSERVE_MAX_OUTPUT_BYTES``).

    Returns
    -------
    WeightArchive

    Raises
    ------
    PickleRefusedError
        A pickle, a PyTorch checkpoint or an object array (415).
    InvalidInputError, InvalidArgumentError
        A malformed file, or a tensor over ``max_bytes`` (422).
    """
    name = (filename or "").lower()
    if name.endswith(PICKLE_SUFFIXES) or data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05":
        raise PickleRefusedError(f"kernel_file {filename or ''!r} is a pickle; "
                                 f"{_SAVE_AS_SAFETENSORS}", field="kernel_file")
    if data[:6] == b"\x93NUMPY":
        array = _load_npy(data, "kernel_file")
        if 4 * array.size > max_bytes:
            raise InvalidArgumentError(
                f"kernel_file holds {array.size:,} values, more than the limit of "
                f"{max_bytes:,} bytes as float32 (CONVSERVE_MAX_OUTPUT_BYTES)",
                field="kernel_file")
        return WeightArchive("npy", [""], lambda _key: array.shape, lambda _key: array)
    if data[:4] == b"PK\x03\x04":
        members = _npz(data, max_bytes)

        def shape_of(key: str) -> tuple[int, ...] | None:
            archive, info = members[key]
            with _member_errors(key), archive.open(info) as stream:  # inflates the header only
                return _npy_shape(stream)

        def read(key: str) -> np.ndarray:
            archive, info = members[key]
            with _member_errors(key):
                data = archive.read(info)
            return _load_npy(data, f"kernel_file member {key!r}")

        return WeightArchive("npz", sorted(members), shape_of, read)
    if name.endswith(".safetensors") or (len(data) > 9 and data[8:9] == b"{"):
        tensors = _safetensors(data, max_bytes)
        if not tensors:
            raise InvalidInputError("kernel_file's safetensors header lists no tensors",
                                    field="kernel_file")
        return WeightArchive("safetensors", list(tensors), lambda key: tensors[key].shape,
                             lambda key: _float32(tensors[key], key))
    raise InvalidInputError(
        f"kernel_file {filename or ''!r} is not a .npy, .npz or .safetensors file (it starts "
        f"with {data[:8].hex(' ') or 'nothing'})", field="kernel_file")


def load_kernel_file(data: bytes, filename: str | None, *, kernel_key: str | None = None,
                     bias_key: str | None = None, max_bytes: int) -> WeightFile:
    """Read a weight (and bias) from a weight file's bytes.

    Parameters
    ----------
    data : bytes
    filename : str, optional
        Its name (see :func:`open_weight_file`).
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
    return open_weight_file(data, filename, max_bytes=max_bytes).load(kernel_key, bias_key)
