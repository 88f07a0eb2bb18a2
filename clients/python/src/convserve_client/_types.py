"""Type aliases of the public signatures, and the NOT_GIVEN sentinel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, Required, TypeAlias, TypedDict, get_args

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence
    from typing import Any

    import httpx
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

    from convserve_client._inputs import Transport

__all__ = [
    "COLOR_MODES",
    "CONVOLVE_FORMATS",
    "DEVICES",
    "ENGINES",
    "LAYERS_FORMATS",
    "LAYOUTS",
    "NORMALIZE_MODES",
    "NOT_GIVEN",
    "PADDING_MODES",
    "RETURNS",
    "ArrayInput",
    "ColorMode",
    "ConvolveFormat",
    "ConvolveOptions",
    "Device",
    "Engine",
    "ImageInput",
    "IntOrPair",
    "KernelFileInput",
    "KernelInput",
    "LayersFormat",
    "LayersOptions",
    "Layout",
    "Normalize",
    "NotGiven",
    "PaddingInput",
    "PaddingMode",
    "Returns",
    "TimeoutTypes",
]


class NotGiven:
    """Marks an argument left out, where ``None`` means something (``timeout=None``: wait
    forever)."""

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

TimeoutTypes: TypeAlias = "float | httpx.Timeout | None"
"""Seconds for every phase, an ``httpx.Timeout`` per phase, or ``None`` for no limit."""

ArrayInput: TypeAlias = "npt.NDArray[np.generic] | Sequence[Any]"
"""A numpy array (or nested lists, or anything ``numpy.asarray`` takes: a CPU torch tensor)."""

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | ArrayInput"
"""What an endpoint takes as its input.

- a path (``str`` or ``pathlib.Path``) to an image file (PNG, JPEG, WebP, BMP, TIFF, GIF) or
  a ``.npy`` array;
- the ``bytes`` of such a file;
- a Pillow image (sent as a lossless PNG; mode ``F`` is sent as its float32 values);
- an array of shape ``(C, H, W)`` or ``(H, W)``, used as sent (no scaling to [0, 1]); sent
  as a ``.npy`` upload, or as JSON lists with ``transport="json"``.
"""

KernelInput: TypeAlias = "ArrayInput | Mapping[str, Any]"
"""A weight array ``(c_out, c_in/groups, k_h, k_w)`` (OIHW, or HWIO with ``layout="HWIO"``)
or a mapping ``{"weight": ..., "bias": ..., "layout": ...}`` (a ``kernel.json``)."""

KernelFileInput: TypeAlias = "str | os.PathLike[str] | bytes | Mapping[str, ArrayInput]"
"""A weight file for ``layers(kernel_file=...)``: a path to (or the ``bytes`` of) an ``.npz``,
``.safetensors`` or ``.npy`` file, or a mapping of names to arrays (a ``state_dict`` as numpy
arrays, or CPU torch tensors), sent as an ``.npz``."""

IntOrPair: TypeAlias = "int | tuple[int, int] | Sequence[int]"

PaddingInput: TypeAlias = "int | Sequence[int] | Literal['same', 'valid']"
"""``p``, ``(p_h, p_w)``, ``(top, bottom, left, right)``, ``"same"`` or ``"valid"``."""

# The server's vocabularies, each written once: the SDK's signatures and the command line's
# choices both come from these, and tests/client/test_contract.py holds them to the OpenAPI
# document's enums.
ConvolveFormat: TypeAlias = Literal["json", "array", "npy", "png", "image", "grid", "zip"]
LayersFormat: TypeAlias = Literal["json", "npy", "zip", "onnx"]
PaddingMode: TypeAlias = Literal[
    "zeros", "reflect", "replicate", "circular", "constant", "edge", "wrap",
    "BORDER_CONSTANT", "BORDER_REFLECT_101", "BORDER_REFLECT101", "BORDER_REPLICATE",
    "BORDER_WRAP",
]
"""PyTorch's names, then NumPy's and OpenCV's for the same four modes (``constant`` and
``BORDER_CONSTANT`` = zeros, ``BORDER_REFLECT_101`` = reflect, ``edge`` and
``BORDER_REPLICATE`` = replicate, ``wrap`` and ``BORDER_WRAP`` = circular), all accepted."""
Normalize: TypeAlias = Literal["auto", "clip", "minmax", "abs", "symmetric"]
ColorMode: TypeAlias = Literal["rgb", "gray", "rgba", "keep"]
Engine: TypeAlias = Literal["auto", "numpy", "onnxruntime"]
Device: TypeAlias = Literal["cpu", "cuda"]
Layout: TypeAlias = Literal["OIHW", "HWIO"]
Returns: TypeAlias = Literal["all", "last", "none"]

CONVOLVE_FORMATS: Final[tuple[str, ...]] = get_args(ConvolveFormat)
LAYERS_FORMATS: Final[tuple[str, ...]] = get_args(LayersFormat)
PADDING_MODES: Final[tuple[str, ...]] = get_args(PaddingMode)
NORMALIZE_MODES: Final[tuple[str, ...]] = get_args(Normalize)
COLOR_MODES: Final[tuple[str, ...]] = get_args(ColorMode)
ENGINES: Final[tuple[str, ...]] = get_args(Engine)
DEVICES: Final[tuple[str, ...]] = get_args(Device)
LAYOUTS: Final[tuple[str, ...]] = get_args(Layout)
RETURNS: Final[tuple[str, ...]] = get_args(Returns)


class ConvolveOptions(TypedDict, total=False):
    """The keyword arguments of ``convolve`` besides the image (``convolve_many`` takes them
    for every input); see :meth:`convserve_client.Client.convolve`."""

    kernel: KernelInput | None
    bias: ArrayInput | None
    layout: Layout | None
    preset: str | None
    preset_params: Mapping[str, float] | None
    stride: IntOrPair | None
    padding: PaddingInput | None
    dilation: IntOrPair | None
    groups: int | None
    padding_mode: PaddingMode | None
    engine: Engine | None
    device: Device | None
    color_mode: ColorMode | None
    format: ConvolveFormat
    normalize: Normalize | None
    channel: int | None
    dry_run: bool
    transport: Transport
    timeout: TimeoutTypes | NotGiven


class LayersOptions(TypedDict, total=False):
    """The keyword arguments of ``layers`` besides the image (``layers_many`` takes them for
    every input); see :meth:`convserve_client.Client.layers`."""

    layers: Required[Sequence[Mapping[str, Any]]]
    kernel_file: KernelFileInput | None
    return_: Returns | None
    format: LayersFormat
    normalize: Normalize | None
    color_mode: ColorMode | None
    engine: Engine | None
    device: Device | None
    dry_run: bool
    transport: Transport
    timeout: TimeoutTypes | NotGiven
