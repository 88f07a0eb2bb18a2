"""NumPy inputs: ``.npy`` uploads and arrays sent in JSON, checked and cast to float32 once."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from convserve.errors import InvalidInputError, PayloadTooLargeError
from convserve.imaging.formats import _PIXELS_ENV, _VALUES_ENV, DecodedInput, _reason

__all__ = ["array_input", "decode_npy"]


class NpyVersionError(ValueError):
    """A .npy file of a format version other than 1.0 and 2.0."""

    def __init__(self, version: tuple[int, int]) -> None:
        super().__init__(f".npy format version {version[0]}.{version[1]}")
        self.version = version


def read_npy_header(stream: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of the .npy header at ``stream``, which is left just
    after it: the one reader of .npy headers (uploads, the admission probe, weight files).

    Raises
    ------
    NpyVersionError
        A version other than 1.0 and 2.0 (what ``numpy.save`` writes for numeric arrays).
    Exception
        Whatever NumPy raises for a malformed header (ValueError, EOFError, SyntaxError...).
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise NpyVersionError(version)
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def decode_npy(
    data: bytes, *, max_values: int | None, max_pixels: int | None = None
) -> DecodedInput:
    """Decode a NumPy ``.npy`` file of shape (C, H, W) or (H, W), never unpickling anything.

    The header is parsed and checked (dtype, shape, limits) before the data is read.

    Parameters
    ----------
    data : bytes
        A ``.npy`` file, format version 1.0 or 2.0.
    max_values : int or None
        Largest ``C * H * W`` (``CONVSERVE_MAX_ARRAY_VALUES``); None for no such limit.
    max_pixels : int, optional
        Largest ``H * W`` (``CONVSERVE_MAX_PIXELS``).

    Returns
    -------
    DecodedInput
        ``array`` of float32, shape (C, H, W) ((H, W) becomes (1, H, W)), values as sent.
        dtype may be bool, int, uint or float; int64 values beyond 2**24 lose precision in
        float32.
    """
    stream = io.BytesIO(data)
    try:
        shape, fortran, dtype = read_npy_header(stream)
    except NpyVersionError as exc:
        raise InvalidInputError(
            f"The .npy file has format version {exc.version[0]}.{exc.version[1]}; versions 1.0 "
            "and 2.0 (what numpy.save writes for numeric arrays) are accepted."
        ) from None
    except Exception as exc:  # a malformed header, whatever numpy says about it
        raise InvalidInputError(
            f"The .npy header could not be read ({_reason(exc)}); send the output of "
            "numpy.save of a numeric array of shape (C, H, W) or (H, W)."
        ) from None
    _check_dtype(dtype, "The .npy array")
    shape = tuple(int(n) for n in shape)
    chw = _check_shape(shape, "The .npy array")
    _check_limits(chw, max_values=max_values, max_pixels=max_pixels, what="The .npy array")
    offset = stream.tell()
    count = math.prod(shape)
    needed = count * dtype.itemsize
    if len(data) - offset < needed:
        raise InvalidInputError(
            f"The .npy file is truncated: shape {shape} of {dtype} needs {needed:,} bytes of "
            f"data after the header, and {len(data) - offset:,} came."
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape, order="F" if fortran else "C").reshape(chw)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        out = np.ascontiguousarray(array, dtype=np.float32)
    _check_finite(out, "The .npy array")
    return DecodedInput(out, "NPY", "array", _index_names(chw[0]), 0)


def array_input(
    array: npt.ArrayLike, *, max_values: int | None = None, max_pixels: int | None = None
) -> DecodedInput:
    """Wrap an array sent in JSON (nested lists or an ndarray) as a ``DecodedInput``.

    Parameters
    ----------
    array : array_like of shape (C, H, W) or (H, W)
        Numbers (bool, int or float), all finite.
    max_values, max_pixels : int, optional
        Largest ``C * H * W`` and ``H * W``.

    Returns
    -------
    DecodedInput
        ``array`` of float32, shape (C, H, W), ``source_format="ARRAY"``.
    """
    try:
        raw = np.asarray(array)
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise InvalidInputError(
            f"The input array is not a regular (C, H, W) or (H, W) grid of numbers "
            f"({_reason(exc)})."
        ) from None
    _check_dtype(raw.dtype, "The input array")
    chw = _check_shape(raw.shape, "The input array")
    _check_limits(chw, max_values=max_values, max_pixels=max_pixels, what="The input array")
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        out = np.ascontiguousarray(raw.reshape(chw), dtype=np.float32)
    _check_finite(out, "The input array")
    return DecodedInput(out, "ARRAY", "array", _index_names(chw[0]), 0)


def _check_dtype(dtype: np.dtype[Any], what: str) -> None:
    if dtype.kind not in "biuf" or dtype.names is not None or dtype.subdtype is not None:
        kinds = {
            "O": "Python objects",
            "c": "complex numbers",
            "V": "structured records",
            "U": "strings",
            "S": "bytes",
            "M": "datetimes",
            "m": "timedeltas",
        }
        described = kinds.get(dtype.kind, "non-numeric values")
        raise InvalidInputError(
            f"{what} has dtype {dtype} ({described}); only bool, integer and real float "
            "dtypes are accepted."
        )


def _check_shape(shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(shape) not in (2, 3):
        raise InvalidInputError(
            f"{what} has shape {tuple(shape)} ({len(shape)}-D); it must be (C, H, W) or (H, W)."
        )
    chw = (1, *shape) if len(shape) == 2 else shape
    if min(chw) < 1:
        raise InvalidInputError(f"{what} has shape {tuple(shape)}; every size must be >= 1.")
    return (int(chw[0]), int(chw[1]), int(chw[2]))


def _check_limits(
    chw: tuple[int, int, int], *, max_values: int | None, max_pixels: int | None, what: str
) -> None:
    values = chw[0] * chw[1] * chw[2]
    if max_values is not None and values > max_values:
        raise PayloadTooLargeError(
            f"{what} of shape {chw} holds {values:,} values; the limit is {max_values:,}. "
            f"Send a smaller array or raise {_VALUES_ENV}."
        )
    pixels = chw[1] * chw[2]
    if max_pixels is not None and pixels > max_pixels:
        raise PayloadTooLargeError(
            f"{what} of shape {chw} is {chw[1]}x{chw[2]} = {pixels:,} pixels; the limit is "
            f"{max_pixels:,} pixels. Send a smaller array or raise {_PIXELS_ENV}."
        )


def _check_finite(array: np.ndarray, what: str) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    nan = int(np.isnan(array).sum())
    inf = int(array.size - finite.sum()) - nan
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise InvalidInputError(
        f"{what} holds {nan} NaN and {inf} infinite values in float32 (the first at index "
        f"{first}); every value must be a finite number within float32's range."
    )


def _index_names(channels: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(channels))
