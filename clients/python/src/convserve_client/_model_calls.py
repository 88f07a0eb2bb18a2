"""The calls of the model endpoints, shared by ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from convserve_client._base_client import Call, _json_object
from convserve_client._inputs import Transport, jsonable, request_body
from convserve_client._model_types import FeatureMaps, ModelInfo, ModelKernel

if TYPE_CHECKING:
    from convserve_client._types import ImageInput, NotGiven, TimeoutTypes

__all__ = ["delete_model_call", "features_call", "kernel_call", "model_call", "models_call",
           "upload_model_call"]

ModelFile = str | os.PathLike[str] | bytes


def _model_path(model_id: str) -> str:
    return "/v1/models/" + urllib.parse.quote(model_id, safe="")


def upload_model_call(model: ModelFile, input_size: Sequence[int] | None,
                      timeout: TimeoutTypes | NotGiven) -> Call[ModelInfo]:
    if isinstance(model, bytes):
        name, content = "model.onnx", model
    else:
        path = Path(model)
        name, content = path.name, path.read_bytes()
    data = {} if input_size is None else {"input_size": ",".join(str(int(v))
                                                                 for v in input_size)}

    def parse(response: httpx.Response) -> ModelInfo:
        return ModelInfo.from_dict(_json_object(response), response.status_code == 201)

    return Call("POST", "/v1/models", parse, body={
        "files": {"model": (name, content, "application/octet-stream")}, "data": data},
        timeout=timeout)


def models_call(timeout: TimeoutTypes | NotGiven) -> Call[list[ModelInfo]]:
    def parse(response: httpx.Response) -> list[ModelInfo]:
        return [ModelInfo.from_dict(m) for m in _json_object(response)["models"]]

    return Call("GET", "/v1/models", parse, timeout=timeout)


def model_call(model_id: str, timeout: TimeoutTypes | NotGiven) -> Call[ModelInfo]:
    def parse(response: httpx.Response) -> ModelInfo:
        return ModelInfo.from_dict(_json_object(response))

    return Call("GET", _model_path(model_id), parse, timeout=timeout)


def delete_model_call(model_id: str, timeout: TimeoutTypes | NotGiven) -> Call[None]:
    def parse(_: httpx.Response) -> None:
        return None

    return Call("DELETE", _model_path(model_id), parse, timeout=timeout)


def features_call(model_id: str, image: ImageInput, *, layers: Sequence[str | int],
                  preprocess: str | Mapping[str, Any] | None, format: str,
                  normalize: str | None, color_mode: str | None, transport: Transport,
                  timeout: TimeoutTypes | NotGiven, device: str | None = None,
                  ) -> Call[FeatureMaps]:
    if isinstance(layers, str | int):
        layers = [layers]
    if not layers:
        raise ValueError("layers must name at least one layer (a name or a row index)")
    fields: dict[str, Any] = {"layers": list(layers), "format": format, "normalize": normalize,
                              "color_mode": color_mode, "device": device}
    if isinstance(preprocess, Mapping):
        spec = jsonable(dict(preprocess))
        # An object in a JSON body; in multipart, a text field holding its JSON.
        fields["preprocess"] = spec if transport == "json" else json.dumps(spec)
    elif preprocess is not None:
        fields["preprocess"] = preprocess
    body = request_body(image, fields, transport)

    def parse(response: httpx.Response) -> FeatureMaps:
        if format == "json":
            return FeatureMaps.from_json(_json_object(response))
        maps = FeatureMaps.from_file(format, response.content, model_id, layers[0])
        if maps.device is None:  # npy and grid: the device is in the engine header
            _, _, ran_on = response.headers.get("x-convserve-engine", "").partition("/")
            maps = dataclasses.replace(maps, device=ran_on or None)
        return maps

    return Call("POST", _model_path(model_id) + "/features", parse, body=body, timeout=timeout)


def kernel_call(model_id: str, layer: str | int,
                timeout: TimeoutTypes | NotGiven) -> Call[ModelKernel]:
    def parse(response: httpx.Response) -> ModelKernel:
        return ModelKernel.from_dict(_json_object(response))

    path = f"{_model_path(model_id)}/layers/{urllib.parse.quote(str(layer), safe='')}/kernel"
    return Call("GET", path, parse, timeout=timeout)
