"""Response bodies as standard JSON (RFC 8259), fast.

A convolution of finite float32 values can still overflow to infinity (``3e38 * 10``), and
``json.dumps`` would then write ``Infinity``, which is not JSON: browsers' ``JSON.parse`` and
most other parsers refuse the whole body. Here every NaN and infinity becomes ``null``; the
``npy`` format keeps them. pydantic-core's Rust serializer is also several times faster than
``json.dumps`` on the base64 PNGs of a response.

Base64 text, which needs no escaping, is not even handed to the serialiser: a
:class:`Base64` value is written as a placeholder, and the encoded bytes are joined into the
output in its place (one copy of the body instead of a ``str``, a scan and a copy). A flow
serialises its answer first and adds its ``timing_ms`` afterwards (:func:`with_member`), so
the time it reports includes the serialisation.
"""

from __future__ import annotations

import binascii
import secrets
from typing import Any

import numpy as np
import pydantic_core

__all__ = ["Base64", "dumps", "with_member"]


class Base64:
    """Bytes to be written as a base64 JSON string (standard alphabet, padded, no newline).

    A plain class, not a dataclass: pydantic-core would serialise a dataclass's fields itself.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Base64(<{len(self.data)} bytes>)"


def _fallback(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, indent: int | None = None) -> bytes:
    """``value`` (dicts, lists, str, int, float, bool, None, :class:`Base64`, NumPy scalars and
    arrays) as UTF-8 JSON bytes, compact unless ``indent`` is given; NaN and +/-infinity are
    written as null."""
    blobs: list[bytes] = []
    marker = secrets.token_hex(12)  # no text of the answer can hold it: it is made per call

    def fallback(item: Any) -> Any:
        if isinstance(item, Base64):
            blobs.append(item.data)
            return f"{marker}{len(blobs) - 1}"
        return _fallback(item)

    text: bytes = pydantic_core.to_json(value, indent=indent, inf_nan_mode="null",
                                        fallback=fallback)
    if not blobs:
        return text
    pieces = text.split(f'"{marker}'.encode())
    out = [pieces[0]]
    for piece in pieces[1:]:
        index, _, rest = piece.partition(b'"')
        out += [b'"', binascii.b2a_base64(blobs[int(index)], newline=False), b'"', rest]
    return b"".join(out)


def with_member(obj: bytes, name: str, value: Any) -> bytes:
    """The JSON object ``obj`` (as :func:`dumps` wrote it, with at least one member) with the
    member ``name``: ``value`` added last."""
    if not (obj.startswith(b"{") and obj.endswith(b"}")) or len(obj) <= 2:
        raise ValueError("with_member needs a JSON object with at least one member")
    return b"".join((obj[:-1], b",", dumps(name), b":", dumps(value), b"}"))
