"""Every limit a request is checked against, defined once.

:class:`Limits` is built from :class:`~convserve.settings.Settings` (or given directly, in tests
and library use). Each ``check_*`` method raises the error the API renders, with a message that
names the numbers, the limit and the environment variable that changes it; :meth:`Limits.published`
is what ``GET /v1/limits`` answers, so the demo page, the clients and the docs read the same
numbers the checks use.

Which status a limit gives:

- 413 (:class:`~convserve.errors.PayloadTooLargeError`): the body or the image is too large
  (body bytes, decoded pixels);
- 422 (:class:`~convserve.errors.LimitExceededError`): a field or what the request asks for is
  too large (numbers in a JSON array, kernel size, output channels, MACs, layers, output bytes).
  The products one explained element may read are checked by
  :func:`convserve.conv.explain.check_explainable` (a bound of the core, published here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from convserve.conv.explain import MAX_EXPLAIN_PRODUCTS
from convserve.conv.presets import MAX_PRESET_CHANNELS
from convserve.errors import LimitExceededError, PayloadTooLargeError

if TYPE_CHECKING:
    from convserve.settings import Settings

__all__ = ["ENV_PREFIX", "Limits", "env_name"]

ENV_PREFIX = "CONVSERVE_"

_FIXED = frozenset({"max_preset_channels", "max_explain_products"})
"""Limits of the core itself, not settings: they have no environment variable."""


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``max_pixels`` -> ``CONVSERVE_MAX_PIXELS``."""
    return ENV_PREFIX + setting.upper()


_env = env_name


@dataclass(frozen=True)
class Limits:
    """The effective limits of one app (one process).

    Every field but the fixed ones is the setting of the same name (``CONVSERVE_<NAME>``).
    """

    max_upload_bytes: int = 25_000_000
    """Largest request body in bytes."""
    max_pixels: int = 50_000_000
    """Largest decoded image or array, ``H * W``, checked before decoding."""
    max_kernel_size: int = 63
    """Largest kernel or pooling window side."""
    max_out_channels: int = 512
    """Largest ``C_out`` of one layer."""
    max_macs: int = 20_000_000_000
    """Multiply-accumulates (and pooling-window reads) of one request, all layers together."""
    max_layers: int = 32
    """Layers in one ``/v1/layers`` request."""
    max_array_values: int = 4_000_000
    """Numbers in a JSON input array or a ``format=array`` answer."""
    max_output_bytes: int = 536_870_912
    """float32 bytes of one output, feature map or weight tensor (and of all maps kept
    together by ``/v1/layers``)."""
    max_model_bytes: int = 100_000_000
    """Largest ONNX model upload (``POST /v1/models``), in bytes."""
    model_store_bytes: int = 1_000_000_000
    """Bytes the model store may hold; least recently used models are evicted past it."""
    memory_budget_bytes: int = 768 * 2**20
    """Bytes of requests in flight one process admits (bodies before they are read, then
    their working memory); more wait, then get 503. The effective value: with the setting at 0
    it is fitted to the memory limit (:func:`convserve.admission.memory_budget`)."""
    body_timeout_s: float = 60.0
    """Seconds a request body may take to arrive in full; a slower one gets 408."""
    max_preset_channels: int = MAX_PRESET_CHANNELS
    """Input channels a preset can be spread over (fixed)."""
    max_explain_products: int = MAX_EXPLAIN_PRODUCTS
    """Products one explained output element may read (fixed)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits ``settings`` configure."""
        from convserve.admission import memory_budget  # it reads Settings too

        names = [name for name in cls.__dataclass_fields__ if name not in _FIXED]
        values = {name: getattr(settings, name) for name in names}
        values["memory_budget_bytes"] = memory_budget(settings)  # 0 means "fitted"
        return cls(**values)

    def published(self) -> dict[str, Any]:
        """The effective values plus, per setting, its environment variable."""
        values: dict[str, Any] = asdict(self)
        values["env"] = {name: _env(name) for name in values if name not in _FIXED}
        return values

    # -- what the caller sent (413) -------------------------------------------------------------

    def check_upload_bytes(self, size: int) -> None:
        """``size`` bytes of request body (declared or received)."""
        if size > self.max_upload_bytes:
            raise PayloadTooLargeError(self.upload_too_large_detail())

    def upload_too_large_detail(self) -> str:
        """The detail of a body over ``max_upload_bytes`` (also used before any route runs)."""
        return (f"the request body is larger than {self.max_upload_bytes} bytes "
                f"({_env('max_upload_bytes')})")

    def check_model_bytes(self, size: int) -> None:
        """An ONNX model upload of ``size`` bytes."""
        if size > self.max_model_bytes:
            raise PayloadTooLargeError(
                f"the model file is {size:,} bytes, more than the limit of "
                f"{self.max_model_bytes:,} ({_env('max_model_bytes')})", field="model")

    def model_too_large_detail(self) -> str:
        """The detail of a model upload body over ``max_model_bytes`` (before the route runs)."""
        return (f"the request body is larger than {self.max_model_bytes} bytes "
                f"({_env('max_model_bytes')})")

    def check_pixels(self, height: int, width: int, *, what: str, field: str | None) -> None:
        """An image or array of ``height x width`` pixels, before its pixels are decoded."""
        pixels = height * width
        if pixels > self.max_pixels:
            raise PayloadTooLargeError(
                f"{what} is {width}x{height} = {pixels:,} pixels; the limit is "
                f"{self.max_pixels:,} pixels. Send a smaller image or raise "
                f"{_env('max_pixels')}.",
                field=field,
            )

    def check_array_values(self, values: int, *, field: str) -> None:
        """A JSON input array of ``values`` numbers (422, as any JSON field out of range)."""
        if values > self.max_array_values:
            raise LimitExceededError(
                f"{field} holds {values} numbers, more than the limit of {self.max_array_values} "
                f"({_env('max_array_values')}); upload a .npy file or an image instead",
                field=field,
            )

    # -- what the request asks for (422) --------------------------------------------------------

    def check_kernel_size(self, k_h: int, k_w: int, *, what: str = "kernel",
                          field: str = "kernel") -> None:
        """A kernel (or pooling window, ``what="pooling window"``) of ``k_h x k_w``."""
        if max(k_h, k_w) > self.max_kernel_size:
            raise LimitExceededError(
                f"{what} {k_h}x{k_w} is larger than the limit of {self.max_kernel_size} per "
                f"side ({_env('max_kernel_size')})",
                field=field,
            )

    def check_out_channels(self, c_out: int, *, field: str = "kernel") -> None:
        """A layer with ``c_out`` output channels."""
        if c_out > self.max_out_channels:
            raise LimitExceededError(
                f"c_out={c_out} is more than the limit of {self.max_out_channels} output "
                f"channels ({_env('max_out_channels')})",
                field=field,
            )

    def check_macs(self, macs: int, *, pooling: bool = False) -> None:
        """A request costing ``macs`` multiply-accumulates (plus pooling-window reads)."""
        if macs > self.max_macs:
            what, smaller = (("multiply-accumulates and pooling-window reads", "window") if pooling
                             else ("multiply-accumulates", "kernel, fewer channels"))
            raise LimitExceededError(
                f"this request would cost {macs:.3g} {what}, more than the limit of "
                f"{self.max_macs:.3g} ({_env('max_macs')}); use a smaller image, {smaller} or "
                "a larger stride",
            )

    def check_layers(self, count: int) -> None:
        """A ``/v1/layers`` stack of ``count`` layers."""
        if count > self.max_layers:
            raise LimitExceededError(
                f"{count} layers is more than the limit of {self.max_layers} "
                f"({_env('max_layers')})",
                field="layers",
            )

    def check_output_bytes(self, what: str, values: int, *, field: str | None) -> None:
        """``what`` (an output, feature maps, weights) holding ``values`` float32 numbers."""
        size = 4 * values
        if size > self.max_output_bytes:
            raise LimitExceededError(
                f"{what} would hold {values} float32 values ({size:,} bytes), more than the "
                f"limit of {self.max_output_bytes:,} bytes ({_env('max_output_bytes')}); use a "
                "smaller image, fewer channels or a larger stride",
                field=field,
            )

    def check_array_answer(self, values: int, *, what: str = "format=array",
                           advice: str = "use format=npy", field: str = "format") -> None:
        """A JSON answer of ``values`` numbers (``format=array``, a resolved preset)."""
        if values > self.max_array_values:
            raise LimitExceededError(
                f"{what} would return {values} numbers, more than the limit of "
                f"{self.max_array_values} ({_env('max_array_values')}); {advice}",
                field=field,
            )
