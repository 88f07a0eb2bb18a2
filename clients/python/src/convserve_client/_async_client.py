"""``AsyncClient``: the asynchronous twin of :class:`~convserve_client.Client`, on
``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

from convserve_client._base_client import BaseClient, Call, conv_options
from convserve_client._batch import DEFAULT_CONCURRENCY, ItemError, map_tasks
from convserve_client._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from convserve_client._inputs import read_kernel_file_once
from convserve_client._model_methods import AsyncModelMethods
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

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(BaseClient[httpx.AsyncClient], AsyncModelMethods):
    """The asynchronous twin of :class:`Client`: same arguments, same methods (coroutines).

    ``sleep`` is an ``async`` function (default ``asyncio.sleep``); ``http_client`` an
    ``httpx.AsyncClient``. Use ``async with AsyncClient(...) as cs:`` or ``await cs.close()``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout,
                         max_retries=max_retries, headers=headers)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=timeout)
        self._sleep = sleep or asyncio.sleep

    def with_options(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncClient:
        """A copy with some options changed, sharing this client's connections."""
        copy = AsyncClient.__new__(AsyncClient)
        self._copy_config(copy, base_url=base_url, api_key=api_key, timeout=timeout,
                          max_retries=max_retries, headers=headers)
        copy._sleep = self._sleep
        return copy

    async def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _request(self, call: Call[T]) -> T:
        retries_done = 0
        while True:
            request = self._build_request(call)
            try:
                response = await self._client.send(request)
                await response.aread()
            except httpx.HTTPError as exc:
                delay = self._retry_after_error(call, request, exc, retries_done)
            else:
                retry = self._retry_after_response(call, response, retries_done)
                if retry is None:
                    return self._process_response(call, response)
                await response.aclose()
                delay = retry
            await self._sleep(delay)
            retries_done += 1

    # --- endpoints (see Client for the documentation of each) ----------------------------

    async def convolve(
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
        """Apply one convolution layer to ``image`` (see :meth:`Client.convolve`)."""
        options = conv_options(
            kernel=kernel, bias=bias, layout=layout, preset=preset, preset_params=preset_params,
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, engine=engine, device=device, color_mode=color_mode,
        )
        return await self._request(self._convolve_call(
            image, options=options, format=format, normalize=normalize, channel=channel,
            dry_run=dry_run, transport=transport, timeout=timeout,
        ))

    async def explain(
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
        """The arithmetic behind one output element (see :meth:`Client.explain`)."""
        options = conv_options(
            kernel=kernel, bias=bias, layout=layout, preset=preset, preset_params=preset_params,
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, engine=engine, device=device, color_mode=color_mode,
        )
        return await self._request(self._explain_call(image, at=at, options=options,
                                                      transport=transport, timeout=timeout))

    async def layers(
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
        """Run a stack of layers over ``image`` (see :meth:`Client.layers`)."""
        return await self._request(self._layers_call(
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
    ) -> AsyncIterator[tuple[ImageInput, ConvolveResult | ItemError]]:
        """:meth:`convolve` over many inputs, ``concurrency`` tasks at a time (see
        :meth:`Client.convolve_many`); iterate with ``async for``.

        Wrap it in ``contextlib.aclosing`` when you may leave the loop early: closing it
        cancels the calls in flight.
        """
        return map_tasks(lambda image: self.convolve(image, **options), inputs, concurrency)

    def layers_many(
        self,
        inputs: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[LayersOptions],
    ) -> AsyncIterator[tuple[ImageInput, LayersResult | ItemError]]:
        """:meth:`layers` over many inputs (see :meth:`convolve_many`); a ``kernel_file`` path
        is read once."""
        options = read_kernel_file_once(options)
        return map_tasks(lambda image: self.layers(image, **options), inputs, concurrency)

    async def presets(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> list[PresetInfo]:
        """Every named kernel: ``GET /v1/presets``."""
        return await self._request(self._presets_call(timeout))

    async def preset(
        self,
        name: str,
        *,
        channels: int = 3,
        params: Mapping[str, float] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
    ) -> ResolvedPreset:
        """A preset resolved for ``channels`` inputs: ``GET /v1/presets/{name}``."""
        return await self._request(self._preset_call(name, channels, params, timeout))

    async def engines(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> EnginesInfo:
        """Engines and devices available on the server: ``GET /v1/engines``."""
        return await self._request(self._engines_call(timeout))

    async def health(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> Health:
        """Liveness: ``GET /healthz``."""
        return await self._request(self._health_call(timeout))

    async def ready(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> Readiness:
        """Readiness: ``GET /readyz``; ``ready`` is False (not an error) while warming up."""
        return await self._request(self._ready_call(timeout))

    async def openapi(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> dict[str, Any]:
        """The server's OpenAPI document (what endpoints this server version has)."""
        return await self._request(self._openapi_call(timeout))
