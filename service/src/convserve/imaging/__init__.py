"""Bytes to float32 arrays and back: every pixel conversion the service does lives here.

- :mod:`~convserve.imaging.decode`: image uploads (PNG, JPEG, WebP, BMP, TIFF, GIF) to float32
  ``(C, H, W)``, with the header checked against the pixel limit before decoding, EXIF
  orientation and colour modes (its docstring has the full table);
- :mod:`~convserve.imaging.arrays`: ``.npy`` uploads and JSON arrays;
- :mod:`~convserve.imaging.tone`: float maps to 8-bit pixels (``to_pixels``, ``ChannelTone``);
- :mod:`~convserve.imaging.encode`: PNG (from pixels or straight from float maps), ZIP and
  ``.npy`` response bodies;
- :mod:`~convserve.imaging.formats`: what is accepted, ``DecodedInput``, and the messages that
  describe a bad upload.

The public names are re-exported here, so callers write ``imaging.decode_input(...)``.
"""

from convserve.imaging.arrays import array_input, decode_npy
from convserve.imaging.decode import decode_image, decode_input, probe_input
from convserve.imaging.encode import (
    channel_png_name,
    compose_png,
    default_pool,
    encode_npy,
    encode_png,
    encode_pngs,
    grid_png,
    maps_png,
    maps_pngs,
    zip_files,
    zip_pngs,
)
from convserve.imaging.formats import ACCEPTED_FORMATS, COLOR_MODES, ColorMode, DecodedInput
from convserve.imaging.tone import NORMALIZE_MODES, NormalizeMode, resolved_normalize, to_pixels

__all__ = [
    "ACCEPTED_FORMATS",
    "COLOR_MODES",
    "NORMALIZE_MODES",
    "ColorMode",
    "DecodedInput",
    "NormalizeMode",
    "array_input",
    "channel_png_name",
    "compose_png",
    "decode_image",
    "decode_input",
    "decode_npy",
    "default_pool",
    "encode_npy",
    "encode_png",
    "encode_pngs",
    "grid_png",
    "maps_png",
    "maps_pngs",
    "probe_input",
    "resolved_normalize",
    "to_pixels",
    "zip_files",
    "zip_pngs",
]
