"""The working memory a request will need, from its input's header, before anything is decoded.

The API reserves this many bytes in the process's memory budget
(:class:`convserve.admission.MemoryBudget`) once the body is parsed and before the request's
work is queued, so a burst of large images waits (or gets 503) instead of being decoded at
once. It runs on the event loop, so it only reads headers: the image's size and bands
(:func:`convserve.admission.probe_image`), the nesting of a JSON array, and the kernels'
shapes. Whatever it cannot tell (a header it cannot read, a kernel the flow will refuse) it
leaves to the flow, which refuses such requests before they use memory.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from convserve.admission import (
    BANDED_ABOVE_BYTES,
    answer_bytes_per_value,
    estimate_working_bytes,
    probe_image,
)
from convserve.errors import ConvServeError
from convserve.flows.inputs import Source
from convserve.flows.kernels import layer_kernel, uses_weight_file
from convserve.weightfiles import WeightArchive

__all__ = ["input_shape", "model_working_bytes", "weight_file_bytes", "working_bytes"]

_BASE64_PREFIX = 1 << 20
"""Characters of a base64 image decoded to read its header (768 KB of image: any PNG, JPEG,
WebP, BMP, TIFF or GIF header, EXIF included, fits)."""
_PYTHON_NUMBER_BYTES = 32
"""A JSON array's number once parsed: a float object (24 B) and its list slot (8 B)."""


def input_shape(source: Source) -> tuple[int, int, int] | None:
    """(C, H, W) of the input as it will be decoded, or None when the header cannot tell."""
    if source.array is not None:
        return _array_shape(source.array)
    data = _leading_bytes(source)
    if not data:
        return None
    return probe_image(data, source.color_mode)


def _leading_bytes(source: Source) -> bytes:
    """The uploaded file's bytes, or the first of a base64 image (enough for any header)."""
    if source.image_base64 is None:
        return source.data or b""
    text = source.image_base64.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    prefix = text[:_BASE64_PREFIX]
    try:
        return base64.b64decode(prefix[: len(prefix) // 4 * 4])
    except (binascii.Error, ValueError):
        return b""


def _array_shape(array: Sequence[Any]) -> tuple[int, int, int] | None:
    dims: list[int] = []
    level: Any = array
    while isinstance(level, list | tuple) and len(dims) < 4:
        dims.append(len(level))
        level = level[0] if level else None
    if len(dims) == 2:
        return 1, dims[0], dims[1]
    if len(dims) == 3:
        return dims[0], dims[1], dims[2]
    return None


def _layer_out(options: Mapping[str, Any], c_in: int,
               weights: WeightArchive | None = None) -> tuple[int, int]:
    """(C_out, largest kernel side) of one layer: from its kernel, preset, ``filters`` or the
    header of its weight file's tensor; ``c_in`` for a pooling layer or one the flow will
    refuse."""
    if uses_weight_file(options):
        try:
            shape = None if weights is None else weights.shape(
                weights.pick(options.get("kernel_key"), options.get("bias_key"))[0])
        except ConvServeError:  # the flow refuses this layer, and says why
            shape = None
        if shape is None or len(shape) != 4:
            return c_in, 1
        hwio = options.get("layout") == "HWIO"
        return int(shape[3] if hwio else shape[0]), int(max(shape[:2] if hwio else shape[2:]))
    if options.get("kernel") is None and options.get("preset") is None:
        side = int(max(_pair(options.get("kernel_size") or 1)))
        filters = options.get("filters")  # a conv2d layer with initialised weights
        return (filters if isinstance(filters, int) and filters > 0 else c_in), side
    try:
        weight = layer_kernel(options, c_in).weight
    except Exception:  # the flow refuses this layer, and says why
        return c_in, 1
    return int(weight.shape[0]), int(max(weight.shape[2:]))


def _pair(value: Any) -> Sequence[int]:
    return value if isinstance(value, list | tuple) else (value,)


def working_bytes(source: Source, layers: Sequence[Mapping[str, Any]], fmt: str, *,
                  engine: str = "numpy", weights: WeightArchive | None = None) -> int:
    """Bytes a request over ``source`` with ``layers`` will need at its peak, answer included.

    Parameters
    ----------
    source : Source
        The parsed input (bytes, base64 or array).
    layers : sequence of mapping
        The layer options as the flows take them: one for ``/v1/convolve`` and
        ``/v1/explain``, the stack for ``/v1/layers``.
    fmt : str
        The answer's format.
    engine : str
        The engine a ``/v1/convolve`` request runs on (``auto`` and ``onnxruntime`` convolve a
        large image in bands from its samples, :mod:`convserve.flows.bands`); ``numpy`` (the
        default, also right for explain and layers) never does.
    weights : WeightArchive, optional
        The request's weight file, whose headers give the output channels of the layers that
        name its tensors (:func:`weight_file_bytes` counts the tensors themselves).

    Returns
    -------
    int
        :func:`convserve.admission.estimate_working_bytes` for the input's (C, H, W), the
        output channels of every layer (a stack may keep every feature map), the largest kernel
        side as padding, and the body; 0 when the input's header cannot be read (the flow then
        refuses it before decoding).
    """
    shape = input_shape(source)
    if shape is None:
        return 0
    channels, height, width = shape
    c, out_channels, side = channels, 0, 1
    for options in layers:
        c, k = _layer_out(options, c, weights)
        out_channels += c
        side = max(side, k)
    if source.array is not None:
        body = _PYTHON_NUMBER_BYTES * channels * height * width
    else:
        body = len(source.data or b"") + len(source.image_base64 or "")
    banded = (engine != "numpy" and len(layers) == 1 and source.array is None
              and not _leading_bytes(source).startswith(b"\x93NUMPY")  # arrays are planar
              and 4 * channels * height * width > BANDED_ABOVE_BYTES)
    return estimate_working_bytes(height, width, channels, max(1, out_channels), fmt,
                                  body_bytes=body, padding=side, banded=banded,
                                  packed=engine == "auto" and len(layers) == 1)


def weight_file_bytes(weights: WeightArchive | None,
                      layers: Sequence[Mapping[str, Any]]) -> int:
    """Bytes the tensors that ``layers`` name in the weight file take as float32 once read,
    from the file's headers (0 for a name the flow will refuse)."""
    if weights is None:
        return 0
    values = 0
    for options in layers:
        if not uses_weight_file(options):
            continue
        try:
            keys = weights.pick(options.get("kernel_key"), options.get("bias_key"))
            shapes = [weights.shape(key) for key in (keys[:1] if keys[1] is None else keys)]
        except ConvServeError:  # the flow refuses this layer, and says why
            continue
        values += sum(0 if shape is None else _values(shape) for shape in shapes)
    return 4 * values


def model_working_bytes(meta: Mapping[str, Any], source: Source,
                        layers: Sequence[str | int], fmt: str) -> int:
    """Bytes a stored model's ``features`` or ``explain`` request will need at its peak.

    Conservative, from what is known before decoding: the body; the input as float32 three
    times (decoded, preprocessed, in the model's layout); every node output of the graph held
    at once (ONNX Runtime frees them as it goes, but not in any order this can know); the
    model's weights, as a new session holds them; and the maps asked for, with their answer.

    Parameters
    ----------
    meta : mapping
        The stored model's description (``GET /v1/models/{id}``): its ``layers`` rows with
        ``output_shape`` (batchless) and ``total_params``.
    layers : sequence of str or int
        The rows asked for, by name or index (unknown ones are the flow's 422 to give).
    """
    shape = input_shape(source)
    values_in = 0 if shape is None else shape[0] * shape[1] * shape[2]
    if source.array is not None:
        body = _PYTHON_NUMBER_BYTES * values_in
    else:
        body = len(source.data or b"") + len(source.image_base64 or "")
    rows = list(meta.get("layers", []))
    sizes = [_values(row.get("output_shape")) for row in rows]
    by_key: dict[str | int, int] = {}
    for index, (row, size) in enumerate(zip(rows, sizes, strict=True)):
        by_key[index] = by_key[str(index)] = by_key[str(row.get("name"))] = size
    wanted = sum(by_key.get(key, 0) for key in layers)
    answer = answer_bytes_per_value(fmt)
    return int(body + 12 * values_in + 4 * sum(sizes) + 4 * int(meta.get("total_params", 0))
               + (4 + answer) * wanted)


def _values(shape: Any) -> int:
    """Values of a batchless output shape (0 when a dimension is not a number)."""
    if not isinstance(shape, list | tuple):
        return 0
    total = 1
    for dim in shape:
        if not isinstance(dim, int) or dim < 0:
            return 0
        total *= dim
    return total
