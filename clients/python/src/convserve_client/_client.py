"""``Client``: the blocking client, on ``httpx.Client``.

:class:`~convserve_client.AsyncClient` is its asynchronous twin, with the same arguments,
methods and result types. Requests, retries and parsing live in
:mod:`convserve_client._base_client`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

from convserve_client._base_client import BaseClient, Call, conv_options
from convserve_client._batch import DEFAULT_CONCURRENCY, ItemError, map_threads
from convserve_client._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from convserve_client._inputs import read_kernel_file_once
from convserve_client._model_methods import ModelMethods
from convserve_client._types import NOT_GIVEN, NotGiven

if TYPE_CHECKING:
    from typing import Unpack

    from convserve_client._inputs import Transport
    from convserve_client._models import (
        ConvolveResult,
        EnginesInfo,
        ExplainResult,
        Health,
        LayersResult,
        PresetInfo,
        Readiness,
        ResolvedPreset,
    )
    from convserve_client._types import (
        ArrayInput,
        ColorMode,
        ConvolveFormat,
        ConvolveOptions,
        Device,
        Engine,
        ImageInput,
        IntOrPair,
        KernelFileInput,
        KernelInput,
        LayersFormat,
        LayersOptions,
        Layout,
        Normalize,
        PaddingInput,
        PaddingMode,
        Returns,
        TimeoutTypes,
    )

__all__ = ["Client"]

T = TypeVar("T")


class Client(BaseClient[httpx.Client], ModelMethods):
    """A blocking client of one convserve server.

    Parameters
    ----------
    base_url : str, optional
        The server, e.g. ``"http://localhost:8000"``; default ``$CONVSERVE_URL`` or
        ``http://localhost:8000``.
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>``; default ``$CONVSERVE_API_KEY`` (none if unset).
    timeout : float, httpx.Timeout or None
        Per request (each retry gets it anew); ``None`` waits forever. Default 60 s, 5 s to
        connect. Any method takes ``timeout=`` for one call.
    max_retries : int
        Retries after a connection error, timeout, 408, 429, 502, 503 or 504 (default 2), with
        exponential backoff and jitter, or the server's ``Retry-After`` (capped at 60 s).
    headers : Mapping[str, str], optional
        Sent with every request.
    http_client : httpx.Client, optional
        Your own (proxies, TLS, a transport); it is not closed by :meth:`close`.
    sleep : callable, optional
        ``sleep(seconds)`` between retries; default ``time.sleep``.

    Examples
    --------
    >>> with Client("http://localhost:8000") as cs:  # doctest: +SKIP
    ...     res = cs.convolve("cat.png", preset="sobel")
    ...     res.shape, res.channels[0].stats
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout,
                         max_retries=max_retries, headers=headers)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout)
        self._sleep = sleep or time.sleep

    def with_options(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Client:
        """A copy with some options changed, sharing this client's connections.

        Close the original (or leave its ``with`` block) to release them; closing a copy does
        nothing.

        >>> slow = cs.with_options(timeout=300, max_retries=0)  # doctest: +SKIP
        """
        copy = Client.__new__(Client)
        self._copy_config(copy, base_url=base_url, api_key=api_key, timeout=timeout,
                          max_retries=max_retries, headers=headers)
        copy._sleep = self._sleep
        return copy

    def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, call: Call[T]) -> T:
        retries_done = 0
        while True:
            request = self._build_request(call)
            try:
                response = self._client.send(request)
                response.read()
            except httpx.HTTPError as exc:
                delay = self._retry_after_error(call, request, exc, retries_done)
            else:
                retry = self._retry_after_response(call, response, retries_done)
                if retry is None:
                    return self._process_response(call, response)
                response.close()
                delay = retry
            self._sleep(delay)
            retries_done += 1

    # --- endpoints -----------------------------------------------------------------------

    def convolve(
        self,
        image: ImageInput,
        *,
        kernel: KernelInput | None = None,
        bias: ArrayInput | None = None,
        layout: Layout | None = None,
        preset: str | None = None,
        preset_params: Mapping[str, float] | None = None,
        stride: IntOrPair | None = None,
        padding: PaddingInput | None = None,
        dilation: IntOrPair | None = None,
        groups: int | None = None,
        padding_mode: PaddingMode | None = None,
        engine: Engine | None = None,
        device: Device | None = None,
        color_mode: ColorMode | None = None,
        format: ConvolveFormat = "json",
        normalize: Normalize | None = None,
        channel: int | None = None,
        dry_run: bool = False,
        transport: Transport = "multipart",
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
    ) -> ConvolveResult:
        """Apply one convolution layer to ``image``: ``POST /v1/convolve``.

        Parameters
        ----------
        image : path, bytes, PIL.Image.Image or array of shape (C, H, W) or (H, W)
            An image file (decoded to float32 in [0, 1] with ``color_mode``) or an array (used
            as sent).
        kernel : array of shape (c_out, c_in // groups, k_h, k_w), or a mapping
            The weights (OIHW; HWIO ``(k_h, k_w, c_in // groups, c_out)`` with
            ``layout="HWIO"``), or ``{"weight", "bias", "layout"}`` as in a ``kernel.json``.
            Give exactly one of ``kernel`` and ``preset``.
        bias : array of shape (c_out,), optional
        preset, preset_params
            A name from :meth:`presets` and its parameters (``{"sigma": 2}``).
        stride, dilation : int or (h, w)
        padding : int, (p_h, p_w), (top, bottom, left, right), "same" or "valid"
            Default 0 with a kernel and ``"same"`` with a preset (``padding_mode`` ``zeros``
            and ``reflect`` likewise).
        groups, padding_mode, engine, device, color_mode, normalize, channel
            As in the API; ``None`` leaves the server's default.
        format : {"json", "array", "npy", "png", "image", "grid", "zip"}
            ``npy`` (or ``array`` for small outputs) to get :attr:`ConvolveResult.array`.
        dry_run : bool
            Validate and report shapes and cost without computing.
        transport : {"multipart", "json"}
            ``multipart`` sends the input as a file (arrays as ``.npy``); ``json`` sends it
            inline (arrays as nested lists, files in base64).
        timeout : float, httpx.Timeout or None, optional
            For this call only.

        Returns
        -------
        ConvolveResult
            ``shape`` ``(c_out, h_out, w_out)``, ``padding``, ``cost``, ``channels``, and
            ``array``, ``images()``, ``save(dir)``.
        """
        options = conv_options(
            kernel=kernel, bias=bias, layout=layout, preset=preset, preset_params=preset_params,
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, engine=engine, device=device, color_mode=color_mode,
        )
        return self._request(self._convolve_call(
            image, options=options, format=format, normalize=normalize, channel=channel,
            dry_run=dry_run, transport=transport, timeout=timeout,
        ))

    def explain(
        self,
        image: ImageInput,
        *,
        at: Sequence[int],
        kernel: KernelInput | None = None,
        bias: ArrayInput | None = None,
        layout: Layout | None = None,
        preset: str | None = None,
        preset_params: Mapping[str, float] | None = None,
        stride: IntOrPair | None = None,
        padding: PaddingInput | None = None,
        dilation: IntOrPair | None = None,
        groups: int | None = None,
        padding_mode: PaddingMode | None = None,
        engine: Engine | None = None,
        device: Device | None = None,
        color_mode: ColorMode | None = None,
        transport: Transport = "multipart",
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
    ) -> ExplainResult:
        """The arithmetic behind one output element: ``POST /v1/explain``.

        Takes what :meth:`convolve` takes, plus ``at`` = ``(channel, y, x)``, an output
        position. The result's ``value`` equals ``convolve(...).array[channel, y, x]``, its
        ``terms`` hold one window, kernel and product grid per input channel read, and
        ``expression`` writes the whole sum on one line.
        """
        options = conv_options(
            kernel=kernel, bias=bias, layout=layout, preset=preset, preset_params=preset_params,
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, engine=engine, device=device, color_mode=color_mode,
        )
        return self._request(self._explain_call(image, at=at, options=options,
                                                transport=transport, timeout=timeout))

    def layers(
        self,
        image: ImageInput,
        *,
        layers: Sequence[Mapping[str, Any]],
        kernel_file: KernelFileInput | None = None,
        return_: Returns | None = None,
        format: LayersFormat = "json",
        normalize: Normalize | None = None,
        color_mode: ColorMode | None = None,
        engine: Engine | None = None,
        device: Device | None = None,
        dry_run: bool = False,
        transport: Transport = "multipart",
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
    ) -> LayersResult:
        """Run a stack of layers over ``image``: ``POST /v1/layers``.

        Parameters
        ----------
        layers : list of dict
            Applied in order, e.g. ``[{"type": "conv2d", "filters": 8, "kernel_size": 3,
            "seed": 0, "activation": "relu"}, {"type": "maxpool2d", "kernel_size": 2}]``;
            a ``kernel`` inside may be a numpy array, and a conv2d entry may name a tensor of
            ``kernel_file`` with ``"kernel_key"`` (``"bias_key"``, ``"layout": "HWIO"``), or
            take a one-tensor file with ``"kernel_file": True``.
        kernel_file : path, bytes or mapping of str to array, optional
            A trained network's weights, sent once with the stack: an ``.npz`` or
            ``.safetensors`` file (``safetensors.torch.save_file(model.state_dict(), path)``),
            a ``.npy`` of one tensor, or a ``state_dict`` as a mapping of names to arrays
            (sent as an ``.npz``). Needs ``transport="multipart"``; pickles (``.pt``) are
            refused by the server.
        return_ : {"all", "last", "none"}, optional
            Which layers' feature maps come back (the API's ``return``).
        format : {"json", "npy", "zip", "onnx"}
            ``npy``: the last layer's float32 output; ``onnx``: the stack as an ONNX model.

        Returns
        -------
        LayersResult
            Per layer ``output_shape``, ``params``, ``macs`` and maps, plus totals.

        Examples
        --------
        >>> stack = [{"type": "conv2d", "kernel_key": "features.0.weight", "padding": 1,
        ...           "activation": "relu"}, {"type": "maxpool2d", "kernel_size": 2}]
        >>> res = cs.layers("cat.png", layers=stack,
        ...                 kernel_file="vgg.safetensors")  # doctest: +SKIP
        """
        return self._request(self._layers_call(
            image, layers=layers, return_=return_, format=format, normalize=normalize,
            color_mode=color_mode, engine=engine, device=device, dry_run=dry_run,
            transport=transport, timeout=timeout, kernel_file=kernel_file,
        ))

    def convolve_many(
        self,
        inputs: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[ConvolveOptions],
    ) -> Iterator[tuple[ImageInput, ConvolveResult | ItemError]]:
        """:meth:`convolve` with the same options over many inputs, ``concurrency`` at a time.

        Parameters
        ----------
        inputs : iterable of paths, bytes, Pillow images or arrays
            Drawn lazily, as calls end (a generator over a large folder is fine).
        concurrency : int
            Calls in flight at once (default 4), on threads sharing this client's connections.
        **options
            Anything :meth:`convolve` takes besides the image (``preset="sobel"``,
            ``format="npy"``, ...).

        Yields
        ------
        (input, ConvolveResult or error)
            In the order the calls end. Each call has the client's retries; a call that still
            fails yields its error (an ``APIError`` with the server's ``problem``, or the
            ``OSError``/``ValueError`` of an input that cannot be sent) and the rest go on.
            Leaving the loop early cancels the calls not yet started.

        Examples
        --------
        >>> for path, res in cs.convolve_many(Path("photos").glob("*.jpg"),
        ...                                   preset="sobel"):  # doctest: +SKIP
        ...     if isinstance(res, Exception):
        ...         print(path, "failed:", res)
        ...     else:
        ...         res.save(Path("edges") / Path(path).stem)
        """
        return map_threads(lambda image: self.convolve(image, **options), inputs, concurrency)

    def layers_many(
        self,
        inputs: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[LayersOptions],
    ) -> Iterator[tuple[ImageInput, LayersResult | ItemError]]:
        """:meth:`layers` with the same stack over many inputs (see :meth:`convolve_many`); a
        ``kernel_file`` path is read once."""
        options = read_kernel_file_once(options)
        return map_threads(lambda image: self.layers(image, **options), inputs, concurrency)

    def presets(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> list[PresetInfo]:
        """Every named kernel: ``GET /v1/presets``."""
        return self._request(self._presets_call(timeout))

    def preset(
        self,
        name: str,
        *,
        channels: int = 3,
        params: Mapping[str, float] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
    ) -> ResolvedPreset:
        """A preset resolved for ``channels`` inputs: ``GET /v1/presets/{name}``.

        Returns the exact ``weight`` ``(c_out, channels // groups, k_h, k_w)``, ``bias`` and
        ``groups`` the server applies for an input with that many channels.
        """
        return self._request(self._preset_call(name, channels, params, timeout))

    def engines(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> EnginesInfo:
        """Engines and devices available on the server: ``GET /v1/engines``."""
        return self._request(self._engines_call(timeout))

    def health(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> Health:
        """Liveness: ``GET /healthz``."""
        return self._request(self._health_call(timeout))

    def ready(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> Readiness:
        """Readiness: ``GET /readyz``; ``ready`` is False (not an error) while warming up."""
        return self._request(self._ready_call(timeout))

    def openapi(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> dict[str, Any]:
        """The server's OpenAPI document (what endpoints this server version has)."""
        return self._request(self._openapi_call(timeout))
