"""``POST /v1/convolve``: :class:`ConvolveResult`."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convserve_client._models._shared import (
    Channel,
    Cost,
    FloatArray,
    float32,
    float_map,
    ints,
    npy_bytes,
    open_png,
    pads,
    pair,
    parse_server_timing,
    write_files,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ConvolveResult"]

_IMAGE_FORMATS = ("png", "image", "grid")

@dataclass(frozen=True, slots=True, eq=False)
class ConvolveResult:
    """The answer of ``convolve``, whatever its ``format``.

    Every format fills ``shape`` ``(c_out, h_out, w_out)``, ``padding`` ``(top, bottom, left,
    right)``, ``engine`` and ``device``. The JSON formats (``json``, ``array``) and ``zip`` (from
    its manifest) also fill the options used, ``cost`` and per-channel ``channels``; the file
    formats (``npy``, ``png``, ``image``, ``grid``) carry their bytes in ``content`` and leave
    those ``None``.

    Use :attr:`array` for the float32 values (formats ``array`` and ``npy``), :meth:`images`
    for Pillow images (``json``, ``zip``, ``png``, ``image``, ``grid``) and :meth:`save` to
    write the result into a directory.
    """

    format: str
    shape: tuple[int, int, int]
    padding: tuple[int, int, int, int]
    engine: str
    device: str
    timing_ms: Mapping[str, float] = field(default_factory=dict)
    padding_mode: str | None = None
    stride: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int | None = None
    normalize: str | None = None
    input: Mapping[str, Any] | None = None
    kernel: Mapping[str, Any] | None = None
    cost: Cost | None = None
    channels: tuple[Channel, ...] = ()
    dry_run: bool = False
    channel: int | None = None
    """The channel a ``format="png"`` answer holds."""
    content: bytes | None = field(default=None, repr=False)
    data: FloatArray | None = field(default=None, repr=False)
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def array(self) -> FloatArray:
        """The output, float32 of shape ``(c_out, h_out, w_out)``.

        Only ``format="array"`` and ``format="npy"`` carry the values; the image formats carry
        8-bit renderings, from which the floats cannot be recovered.
        """
        if self.data is None:
            raise ValueError(
                f"a format={self.format!r} answer carries no array; ask for format='npy' "
                "(or 'array' for small outputs)"
            )
        return self.data

    def images(self) -> list[Image.Image]:
        """Pillow images: one per channel (``json``, ``zip``) or the one PNG sent (``png``,
        ``image``, ``grid``). Needs the ``images`` extra."""
        return [open_png(png) for png in self._pngs().values()]

    def save(self, directory: str | Path) -> list[Path]:
        """Write the result into ``directory`` (created if missing); returns the paths.

        One ``channel_000.png``, ``channel_001.png``, ... per channel for ``json`` and
        ``zip``; the single PNG for ``png`` (``channel_<k>.png``), ``image`` (``image.png``)
        and ``grid`` (``grid.png``); ``output.npy`` for ``npy`` and ``array``.
        """
        return write_files(directory, self.files())

    def files(self) -> dict[str, bytes]:
        """What :meth:`save` writes: file name -> content."""
        if self.data is not None:
            return {"output.npy": npy_bytes(self.data)}
        return self._pngs()

    def _pngs(self) -> dict[str, bytes]:
        if self.format in _IMAGE_FORMATS and self.content is not None:
            return {self._file_name(): self.content}
        pngs = {f"channel_{c.index:03d}.png": c.png for c in self.channels if c.png is not None}
        if not pngs:
            raise ValueError(
                f"a format={self.format!r} answer{' (dry run)' if self.dry_run else ''} "
                "carries no images; ask for format='json', 'zip', 'png', 'image' or 'grid'"
            )
        return pngs

    def _file_name(self) -> str:
        if self.format == "png":
            return f"channel_{self.channel or 0:03d}.png"
        return f"{self.format}.png"

    @classmethod
    def from_json(
        cls, fmt: str, data: Mapping[str, Any], request_id: str | None = None
    ) -> ConvolveResult:
        """Build from a ``json`` or ``array`` answer (or a dry run of any format)."""
        return cls._from_metadata(fmt, data, {}, request_id=request_id)

    @classmethod
    def _from_metadata(
        cls,
        fmt: str,
        data: Mapping[str, Any],
        pngs: Mapping[str, bytes],
        *,
        timing_ms: Mapping[str, float] | None = None,
        content: bytes | None = None,
        request_id: str | None = None,
    ) -> ConvolveResult:
        shape = ints(data["shape"])
        channels = tuple(
            Channel.from_dict(c, pngs.get(str(c.get("file"))) if pngs else None)
            for c in data.get("channels") or ()
        )
        array = None
        if "data" in data:
            array = float32(data["data"]).reshape(shape)
        return cls(
            format=fmt,
            shape=(shape[0], shape[1], shape[2]),
            padding=pads(data["padding"]),
            engine=str(data["engine"]),
            device=str(data["device"]),
            timing_ms=float_map(data.get("timing_ms") or timing_ms),
            padding_mode=data.get("padding_mode"),
            stride=pair(data.get("stride")),
            dilation=pair(data.get("dilation")),
            groups=None if data.get("groups") is None else int(data["groups"]),
            normalize=data.get("normalize"),
            input=data.get("input"),
            kernel=data.get("kernel"),
            cost=None if data.get("cost") is None else Cost.from_dict(data["cost"]),
            channels=channels,
            dry_run=bool(data.get("dry_run", False)),
            content=content,
            data=array,
            request_id=request_id,
            raw=data,
        )

    @classmethod
    def from_file(
        cls,
        fmt: str,
        content: bytes,
        headers: Mapping[str, str],
        *,
        channel: int | None = None,
        request_id: str | None = None,
    ) -> ConvolveResult:
        """Build from a file answer (``npy``, ``png``, ``image``, ``grid``, ``zip``) and its
        ``X-Convserve-*`` headers."""
        timing = parse_server_timing(headers.get("server-timing"))
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                pngs = {name: archive.read(name) for name in archive.namelist()
                        if name.endswith(".png")}
            return cls._from_metadata(fmt, manifest, pngs, timing_ms=timing, content=content,
                                      request_id=request_id)
        shape = ints(headers["x-convserve-shape"].split(","))
        engine, _, device = headers.get("x-convserve-engine", "/").partition("/")
        array = None
        if fmt == "npy":
            array = np.load(io.BytesIO(content), allow_pickle=False).astype(np.float32, copy=False)
        return cls(
            format=fmt,
            shape=(shape[0], shape[1], shape[2]),
            padding=pads(headers["x-convserve-padding"].split(",")),
            engine=engine,
            device=device,
            timing_ms=timing,
            content=content,
            data=array,
            channel=channel if fmt == "png" else None,
            request_id=request_id,
        )


