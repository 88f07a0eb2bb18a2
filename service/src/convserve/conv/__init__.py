"""The numerical core: convolution spec, engines and presets. Imports neither FastAPI nor Pillow."""

from convserve.conv.engine import DEVICES, ENGINES, Device, DeviceStatus, Engine, EngineName
from convserve.conv.functional import (
    ENGINE_CHOICES,
    EngineChoice,
    check_device,
    conv2d,
    get_auto,
    get_engine,
)
from convserve.conv.spec import (
    PADDING_MODES,
    ConvSpec,
    conv_spec,
    hwio_to_oihw,
    oihw_to_hwio,
    prepare_arrays,
    resolve_padding,
)

__all__ = [
    "DEVICES",
    "ENGINES",
    "ENGINE_CHOICES",
    "PADDING_MODES",
    "ConvSpec",
    "Device",
    "DeviceStatus",
    "Engine",
    "EngineChoice",
    "EngineName",
    "check_device",
    "conv2d",
    "conv_spec",
    "get_auto",
    "get_engine",
    "hwio_to_oihw",
    "oihw_to_hwio",
    "prepare_arrays",
    "resolve_padding",
]
