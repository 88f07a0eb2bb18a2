"""The model methods of ``Client`` and ``AsyncClient`` (mixins over their ``_request``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from convserve_client._batch import DEFAULT_CONCURRENCY, map_tasks, map_threads
from convserve_client._model_calls import (
    ModelFile,
    delete_model_call,
    features_call,
    kernel_call,
    model_call,
    models_call,
    upload_model_call,
)
from convserve_client._types import NOT_GIVEN, Device, NotGiven

if TYPE_CHECKING:
    from convserve_client._base_client import Call
    from convserve_client._batch import ItemError
    from convserve_client._inputs import Transport
    from convserve_client._model_types import FeatureMaps, ModelInfo, ModelKernel
    from convserve_client._types import ImageInput, TimeoutTypes

__all__ = ["AsyncModelMethods", "ModelMethods"]

T = TypeVar("T")
FeaturesFormat = Literal["json", "npy", "zip", "grid"]
Normalize = Literal["auto", "clip", "minmax", "abs", "symmetric"]
ColorMode = Literal["rgb", "gray", "rgba", "keep"]


class ModelMethods:
    """``/v1/models`` for the blocking client."""

    if TYPE_CHECKING:
        def _request(self, call: Call[T]) -> T: ...

    def upload_model(self, model: ModelFile, *, input_size: Sequence[int] | None = None,
                     timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> ModelInfo:
        """Upload an ONNX file (a path or its bytes): ``POST /v1/models``.

        ``input_size`` ``(H, W)`` fixes a dynamic input size. The answer has the model's ``id``
        (a content hash), its input and its layer table; ``created_now`` is False when the
        server had the file already.
        """
        return self._request(upload_model_call(model, input_size, timeout))

    def models(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> list[ModelInfo]:
        """The stored models, without their layer tables: ``GET /v1/models``."""
        return self._request(models_call(timeout))

    def model(self, model_id: str, *,
              timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> ModelInfo:
        """A stored model with its layer table: ``GET /v1/models/{id}``."""
        return self._request(model_call(model_id, timeout))

    def delete_model(self, model_id: str, *,
                     timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> None:
        """Delete a stored model: ``DELETE /v1/models/{id}`` (NotFoundError when absent)."""
        self._request(delete_model_call(model_id, timeout))

    def features(self, model_id: str, image: ImageInput, layers: Sequence[str | int], *,
                 preprocess: str | Mapping[str, Any] | None = None,
                 format: FeaturesFormat = "json", normalize: Normalize | None = None,
                 color_mode: ColorMode | None = None, transport: Transport = "multipart",
                 device: Device | None = None,
                 timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> FeatureMaps:
        """Feature maps of ``layers`` (names or row indices) of a stored model for ``image``:
        ``POST /v1/models/{id}/features``.

        ``preprocess`` is ``"none"`` (default), ``"imagenet"`` or ``{"resize", "scale", "mean",
        "std", "channel_order"}``. ``format="npy"`` and ``"zip"`` give float32 arrays
        (``result[name].array``, (C, H, W)); ``"json"`` PNGs and statistics per channel.
        ``device`` is ``"cpu"`` or ``"cuda"`` (default: the server's ``CONVSERVE_DEVICE``);
        CUDA where the server has none is an ``UnprocessableEntityError``, and the answer's
        ``device`` and ``provider`` say where the model ran.
        """
        return self._request(features_call(
            model_id, image, layers=layers, preprocess=preprocess, format=format,
            normalize=normalize, color_mode=color_mode, transport=transport, timeout=timeout,
            device=device))

    def features_many(self, model_id: str, inputs: Iterable[ImageInput],
                      layers: Sequence[str | int], *, concurrency: int = DEFAULT_CONCURRENCY,
                      preprocess: str | Mapping[str, Any] | None = None,
                      format: FeaturesFormat = "json", normalize: Normalize | None = None,
                      color_mode: ColorMode | None = None, transport: Transport = "multipart",
                      device: Device | None = None,
                      timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
                      ) -> Iterator[tuple[ImageInput, FeatureMaps | ItemError]]:
        """:meth:`features` with the same model, layers and options over many inputs,
        ``concurrency`` calls at a time on threads sharing this client's connections.

        Yields ``(input, FeatureMaps or error)`` in the order the calls end, as
        :meth:`Client.convolve_many` does: each call has the client's retries, and one that
        still fails yields its error (an ``APIError`` with the server's ``problem``, or the
        ``OSError`` of an input that cannot be read) while the rest go on.
        """
        def one(image: ImageInput) -> FeatureMaps:
            return self.features(model_id, image, layers, preprocess=preprocess, format=format,
                                 normalize=normalize, color_mode=color_mode,
                                 transport=transport, device=device, timeout=timeout)

        return map_threads(one, inputs, concurrency)

    def model_kernel(self, model_id: str, layer: str | int, *,
                     timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> ModelKernel:
        """A Conv layer's weight, bias and geometry: ``GET /v1/models/{id}/layers/{name}/kernel``
        (``kernel.convolve_options()`` go to ``convolve``)."""
        return self._request(kernel_call(model_id, layer, timeout))


class AsyncModelMethods:
    """``/v1/models`` for the async client (the same methods, as coroutines)."""

    if TYPE_CHECKING:
        async def _request(self, call: Call[T]) -> T: ...

    async def upload_model(self, model: ModelFile, *, input_size: Sequence[int] | None = None,
                     timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> ModelInfo:
        """Upload an ONNX file (a path or its bytes): ``POST /v1/models``.

        ``input_size`` ``(H, W)`` fixes a dynamic input size. The answer has the model's ``id``
        (a content hash), its input and its layer table; ``created_now`` is False when the
        server had the file already.
        """
        return await self._request(upload_model_call(model, input_size, timeout))

    async def models(self, *, timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> list[ModelInfo]:
        """The stored models, without their layer tables: ``GET /v1/models``."""
        return await self._request(models_call(timeout))

    async def model(self, model_id: str, *,
              timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> ModelInfo:
        """A stored model with its layer table: ``GET /v1/models/{id}``."""
        return await self._request(model_call(model_id, timeout))

    async def delete_model(self, model_id: str, *,
                     timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> None:
        """Delete a stored model: ``DELETE /v1/models/{id}`` (NotFoundError when absent)."""
        await self._request(delete_model_call(model_id, timeout))

    async def features(self, model_id: str, image: ImageInput, layers: Sequence[str | int], *,
                 preprocess: str | Mapping[str, Any] | None = None,
                 format: FeaturesFormat = "json", normalize: Normalize | None = None,
                 color_mode: ColorMode | None = None, transport: Transport = "multipart",
                 device: Device | None = None,
                 timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> FeatureMaps:
        """Feature maps of ``layers`` (names or row indices) of a stored model for ``image``:
        ``POST /v1/models/{id}/features``.

        ``preprocess`` is ``"none"`` (default), ``"imagenet"`` or ``{"resize", "scale", "mean",
        "std", "channel_order"}``. ``format="npy"`` and ``"zip"`` give float32 arrays
        (``result[name].array``, (C, H, W)); ``"json"`` PNGs and statistics per channel.
        ``device`` is ``"cpu"`` or ``"cuda"`` (default: the server's ``CONVSERVE_DEVICE``);
        CUDA where the server has none is an ``UnprocessableEntityError``, and the answer's
        ``device`` and ``provider`` say where the model ran.
        """
        return await self._request(features_call(
            model_id, image, layers=layers, preprocess=preprocess, format=format,
            normalize=normalize, color_mode=color_mode, transport=transport, timeout=timeout,
            device=device))

    def features_many(self, model_id: str, inputs: Iterable[ImageInput],
                      layers: Sequence[str | int], *, concurrency: int = DEFAULT_CONCURRENCY,
                      preprocess: str | Mapping[str, Any] | None = None,
                      format: FeaturesFormat = "json", normalize: Normalize | None = None,
                      color_mode: ColorMode | None = None, transport: Transport = "multipart",
                      device: Device | None = None,
                      timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
                      ) -> AsyncIterator[tuple[ImageInput, FeatureMaps | ItemError]]:
        """:meth:`features` over many inputs, ``concurrency`` tasks at a time (see
        :meth:`Client.features_many`); iterate with ``async for``.

        Wrap it in ``contextlib.aclosing`` when you may leave the loop early: closing it
        cancels the calls in flight.
        """
        async def one(image: ImageInput) -> FeatureMaps:
            return await self.features(model_id, image, layers, preprocess=preprocess,
                                       format=format, normalize=normalize,
                                       color_mode=color_mode, transport=transport,
                                       device=device, timeout=timeout)

        return map_tasks(one, inputs, concurrency)

    async def model_kernel(self, model_id: str, layer: str | int, *,
                     timeout: TimeoutTypes | NotGiven = NOT_GIVEN) -> ModelKernel:
        """A Conv layer's weight, bias and geometry: ``GET /v1/models/{id}/layers/{name}/kernel``
        (``kernel.convolve_options()`` go to ``convolve``)."""
        return await self._request(kernel_call(model_id, layer, timeout))
