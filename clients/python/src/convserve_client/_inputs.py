"""Turning the caller's inputs, kernels and options into request bodies.

Arrays travel as ``.npy`` uploads in ``multipart/form-data`` (exact float32, a few bytes per
value) unless the caller picks ``transport="json"``, where they become nested lists.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from convserve_client._types import (
        ArrayInput,
        ImageInput,
        KernelFileInput,
        KernelInput,
        LayersOptions,
    )

__all__ = [
    "Transport",
    "Upload",
    "form_fields",
    "jsonable",
    "kernel_json",
    "read_kernel_file_once",
    "request_body",
    "to_array",
    "to_upload",
    "weight_upload",
]

Transport = Literal["multipart", "json"]

_JSON_FIELDS = frozenset({"kernel", "preset_params", "at", "layers"})

# Magic bytes of the formats the server decodes, to name an upload of raw bytes.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x93NUMPY", "input.npy", "application/octet-stream"),
    (b"\x89PNG\r\n\x1a\n", "image.png", "image/png"),
    (b"\xff\xd8\xff", "image.jpg", "image/jpeg"),
    (b"GIF8", "image.gif", "image/gif"),
    (b"BM", "image.bmp", "image/bmp"),
    (b"II*\x00", "image.tif", "image/tiff"),
    (b"MM\x00*", "image.tif", "image/tiff"),
)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part: name, bytes and media type."""

    filename: str
    content: bytes
    media_type: str

    @property
    def is_npy(self) -> bool:
        return self.content.startswith(b"\x93NUMPY")


def _is_pil_image(value: object) -> bool:
    # Pillow is optional: only an image Pillow made can be a Pillow image, so look only when
    # Pillow has been imported.
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def to_array(value: ArrayInput, name: str = "image") -> npt.NDArray[np.float32]:
    """``value`` as float32 ``(C, H, W)`` or ``(H, W)``; a leading batch axis of 1 is dropped.

    Raises
    ------
    TypeError
        For non-numeric data.
    ValueError
        For any other number of axes.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got an array of dtype {array.dtype}")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be shaped (C, H, W) or (H, W); got shape {array.shape}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _npy(array: npt.NDArray[np.float32]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def to_upload(image: ImageInput) -> Upload:
    """The file part for a path, file bytes, Pillow image or array.

    Raises
    ------
    OSError
        When a path cannot be read.
    TypeError, ValueError
        When ``image`` is none of the accepted kinds or an array of the wrong shape.
    """
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        content = path.read_bytes()
        if path.suffix.lower() == ".npy":
            return Upload(path.name, content, "application/octet-stream")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Upload(path.name, content, media_type)
    if isinstance(image, bytes | bytearray | memoryview):
        content = bytes(image)
        for magic, filename, media_type in _SIGNATURES:
            if content.startswith(magic):
                return Upload(filename, content, media_type)
        if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
            return Upload("image.webp", content, "image/webp")
        return Upload("image", content, "application/octet-stream")
    if _is_pil_image(image):
        return _pil_upload(image)
    return Upload("input.npy", _npy(to_array(image)), "application/octet-stream")  # type: ignore[arg-type]


def weight_upload(value: KernelFileInput) -> Upload:
    """The ``kernel_file`` part for a path, file bytes or a mapping of names to arrays.

    A mapping (a ``state_dict``) is sent as an uncompressed ``.npz``; bytes are named by their
    format (``.npy``, ``.npz``, else ``.safetensors``), which the server reads from the bytes.

    Raises
    ------
    OSError
        When a path cannot be read.
    TypeError
        When ``value`` is none of these, or a mapping holds something other than numbers.
    """
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        return Upload(path.name, path.read_bytes(), "application/octet-stream")
    if isinstance(value, bytes | bytearray | memoryview):
        content = bytes(value)
        name = ("weights.npy" if content.startswith(b"\x93NUMPY") else
                "weights.npz" if content.startswith(b"PK\x03\x04") else "weights.safetensors")
        return Upload(name, content, "application/octet-stream")
    if isinstance(value, Mapping):
        arrays = {}
        for key, array in value.items():
            numbers = np.asarray(array)
            if numbers.dtype.kind not in "biuf":
                raise TypeError(f"kernel_file[{key!r}] must hold numbers; got an array of "
                                f"dtype {numbers.dtype}")
            arrays[str(key)] = np.ascontiguousarray(numbers, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return Upload("weights.npz", buffer.getvalue(), "application/octet-stream")
    raise TypeError("kernel_file must be a path, the bytes of an .npz, .safetensors or .npy "
                    f"file, or a mapping of names to arrays; got {type(value).__name__}")


def read_kernel_file_once(options: LayersOptions) -> LayersOptions:
    """``layers_many``'s options with a ``kernel_file`` path read (once, for every call)."""
    kernel_file = options.get("kernel_file")
    if isinstance(kernel_file, str | os.PathLike):
        return {**options, "kernel_file": Path(kernel_file).read_bytes()}
    return options


def _pil_upload(image: Any) -> Upload:
    if image.mode in ("F", "I"):
        # 32-bit modes have no lossless PNG form; send the values themselves.
        values = np.asarray(image, dtype=np.float32)
        return Upload("input.npy", _npy(values), "application/octet-stream")
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return Upload("image.png", buffer.getvalue(), "image/png")


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tuples and mappings made JSON-ready."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if _is_tensor_like(value):
        return np.asarray(value).tolist()
    return value


def _is_tensor_like(value: object) -> bool:
    return hasattr(value, "__array__") and not isinstance(value, str | bytes)


def _numbers(value: ArrayInput, name: str) -> Any:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got an array of dtype {array.dtype}")
    return array.tolist()


def kernel_json(
    kernel: KernelInput, bias: ArrayInput | None, layout: Literal["OIHW", "HWIO"] | None
) -> dict[str, Any]:
    """The ``kernel`` object of a request: ``{"weight", "bias", "layout"}``."""
    if isinstance(kernel, Mapping):
        if "weight" not in kernel:
            raise ValueError("a kernel mapping needs 'weight' (and may have 'bias', 'layout')")
        spec = {str(k): jsonable(v) for k, v in kernel.items()}
        spec["weight"] = _numbers(kernel["weight"], "kernel['weight']")
    else:
        spec = {"weight": _numbers(kernel, "kernel")}
    if bias is not None:
        spec["bias"] = _numbers(bias, "bias")
    elif spec.get("bias") is not None:
        spec["bias"] = _numbers(spec["bias"], "kernel['bias']")
    if layout is not None:
        spec["layout"] = layout
    return spec


def _form_value(name: str, value: Any) -> str:
    if name in _JSON_FIELDS:
        return json.dumps(jsonable(value), separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence | np.ndarray):
        return ",".join(str(int(v)) for v in value)
    return str(jsonable(value))


def form_fields(options: Mapping[str, Any]) -> dict[str, str]:
    """Multipart text fields: ``2``, ``2,3``, ``true``; JSON for structured fields."""
    return {name: _form_value(name, v) for name, v in options.items() if v is not None}


def request_body(
    image: ImageInput, options: Mapping[str, Any], transport: Transport,
    files: Mapping[str, Upload] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client.build_request``: the ``content`` of a
    ``multipart/form-data`` body, or of a JSON one (serialised here so that a NaN in a kernel
    reaches the server, which names it, instead of failing in the encoder), and its
    ``headers``. ``files`` are file parts besides the image (multipart only)."""
    if transport == "multipart":
        upload = to_upload(image)
        parts = {"image": upload, **(files or {})}
        # Rendered once, whole: streamed by httpx, the parts go out as a dozen small writes
        # per request, each a system call and a wake-up of the server, which was most of a
        # batch's client-side time (bench/bench_batch.py).
        form = httpx.Request(
            "POST", "http://convserve", data=form_fields(options),
            files={name: (part.filename, part.content, part.media_type)
                   for name, part in parts.items()},
        )
        return {"content": form.read(),
                "headers": {"Content-Type": form.headers["Content-Type"]}}
    if transport != "json":
        raise ValueError(f"transport must be 'multipart' or 'json', not {transport!r}")
    if files:
        raise ValueError(f"{', '.join(files)} is a file, which only transport='multipart' "
                         "can send")
    body = {name: jsonable(v) for name, v in options.items() if v is not None}
    if isinstance(image, str | os.PathLike | bytes | bytearray | memoryview) or _is_pil_image(
        image
    ):
        upload = to_upload(image)
        body["input"] = {"image_base64": base64.b64encode(upload.content).decode("ascii")}
    else:
        body["input"] = {"array": to_array(image).tolist()}  # type: ignore[arg-type]
    return {
        "content": json.dumps(body, separators=(",", ":")).encode(),
        "headers": {"Content-Type": "application/json"},
    }
