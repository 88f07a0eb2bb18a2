"""The numerical core: convolution spec, engines and presets. Imports neither FastAPI nor Pillow."""

from convserve.conv.engine import (
    DEVICES,
    ENGINE_CHOICES,
    ENGINES,
    Device,
    DeviceStatus,
    Engine,
    EngineChoice,
    EngineName,
    check_device,
)
from convserve.conv.functional import conv2d, get_auto, get_engine
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
    "ENGINE_CHOICES",
    "ENGINES",
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
