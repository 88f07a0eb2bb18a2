"""The client held to the server's contract, ``openapi/openapi.json``, without a server.

- What the client sends: the JSON bodies it builds for convolve, explain and layers, with every
  option set, validate against the request schemas (names, types, enums, null where allowed),
  and the multipart field names are the form's; every vocabulary the client offers (its
  ``Literal`` types, the command line's choices) equals the schema's enum.
- What the client reads: each result type parses examples made from the response schema (only
  the required fields, nullable ones null; then every field), reads no field the schema lacks,
  and each of its typed fields agrees with the schema's type of the field of that name.

A server change that breaks the client fails here, in CI, before a user meets it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convserve_client import (
    Client,
    ConvolveResult,
    Cost,
    EnginesInfo,
    ExplainResult,
    LayersResult,
    Problem,
)
from convserve_client import _types as vocab
from convserve_client._base_client import conv_options
from convserve_client.cli._parser import build_parser

DOCUMENT = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]

Schema = Mapping[str, Any]

UNDOCUMENTED = {
    ("Cost", "feature_map_bytes"): "the client's Cost also reads StackCost, which has it",
    ("StackCost", "output_size"): "and reads Cost's per-axis formulas, which a stack lacks",
}
"""Fields the client reads that the schema does not list, each with why. The test fails when
the schema gains one, so that the exception is removed."""

ARRAY_LENGTHS = {"data": 1, "shape": 3, "output_shape": 3, "input_shape": 3, "padding": 4,
                 "stride": 2, "dilation": 2, "window_origin": 2}
"""Lengths the schema does not state (its arrays have no minItems): those of a real answer."""

CONVERTED = {
    ("ExplainResponse", "at"): "the object {channel, y, x} becomes the tuple (channel, y, x)",
    ("ExplainResponse", "window_origin"): "the object {y, x} becomes the tuple (y, x)",
}
"""Fields the client reads into another shape on purpose (their keys are still tracked)."""

OBJECT_KEYS = {"window_origin": ("y", "x")}
"""Keys of objects the schema leaves open (an object of integers) that the client reads."""


def resolve(schema: Schema) -> Schema:
    """Follow a ``$ref``; of a ``T | null`` union, ``T``."""
    while "$ref" in schema or "anyOf" in schema:
        if "$ref" in schema:
            schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
        else:
            branches = [s for s in schema["anyOf"] if s.get("type") != "null"]
            assert len(branches) == 1, f"an untagged union the client cannot read: {schema}"
            schema = branches[0]
    return schema


def nullable(schema: Schema) -> bool:
    return any(s.get("type") == "null" for s in schema.get("anyOf", ()))


def enum_of(schema: Schema) -> set[Any]:
    values = resolve(schema).get("enum")
    assert values is not None, f"no enum in {schema}"
    return set(values)


# --- what the client sends -------------------------------------------------------------------


def errors(value: Any, schema: Schema, where: str = "body") -> Iterator[str]:
    """The JSON Schema violations of ``value`` (the subset the OpenAPI document uses)."""
    if "anyOf" in schema:
        found = [list(errors(value, s, where)) for s in schema["anyOf"]]
        if all(found):
            yield f"{where}: {value!r} matches no branch of {schema['anyOf']}"
        return
    if "$ref" in schema:
        yield from errors(value, resolve(schema), where)
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r} is not one of {schema['enum']}"
    kind = schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if kind is not None and not checks[kind](value):
        yield f"{where}: {value!r} is not of type {kind}"
        return
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                yield f"{where}: required {name!r} missing"
        for name, item in value.items():
            if name in properties:
                yield from errors(item, properties[name], f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                yield f"{where}: {name!r} is not a field of the schema"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            yield from errors(item, schema["items"], f"{where}[{i}]")


def sent_json(call_name: str, **fields: Any) -> dict[str, Any]:
    with Client("http://127.0.0.1:9") as cs:
        call = getattr(cs, call_name)(**fields)
    body = json.loads(call.body["content"])
    assert isinstance(body, dict)
    return body


OPTIONS = conv_options(
    kernel={"weight": np.ones((2, 3, 3, 3), np.float32), "bias": [0.5, -1]}, bias=None,
    layout="OIHW", preset="gaussian_blur", preset_params={"sigma": 2.0}, stride=(2, 1),
    padding=(1, 1, 0, 2), dilation=2, groups=1, padding_mode="reflect", engine="numpy",
    device="cpu", color_mode="rgb",
)
IMAGE = np.zeros((3, 4, 5), np.float32)


@pytest.mark.parametrize("name, body", [
    pytest.param("ConvolveRequest", sent_json(
        "_convolve_call", image=IMAGE, options=OPTIONS, format="npy", normalize="minmax",
        channel=1, dry_run=True, transport="json", timeout=None), id="convolve"),
    pytest.param("ConvolveRequest", sent_json(
        "_convolve_call", image=b"\x89PNG\r\n\x1a\n", options={**OPTIONS, "padding": "same"},
        format="json", normalize=None, channel=None, dry_run=False, transport="json",
        timeout=None), id="convolve-file-same"),
    pytest.param("ExplainRequest", sent_json(
        "_explain_call", image=IMAGE, at=(1, 2, 3), options=OPTIONS, transport="json",
        timeout=None), id="explain"),
    pytest.param("LayersRequest", sent_json(
        "_layers_call", image=IMAGE, layers=[
            {"type": "conv2d", "kernel": {"weight": np.ones((2, 3, 3, 3))}, "padding": 1,
             "padding_mode": "zeros", "activation": "relu"},
            {"type": "maxpool2d", "kernel_size": 2}],
        return_="all", format="zip", normalize="abs", color_mode="gray", engine="onnxruntime",
        device="cpu", dry_run=True, transport="json", timeout=None), id="layers"),
])
def test_the_json_bodies_the_client_sends_validate(name: str, body: dict[str, Any]) -> None:
    assert list(errors(body, SCHEMAS[name])) == []


def test_every_option_of_convolve_reaches_the_body() -> None:
    body = sent_json("_convolve_call", image=IMAGE, options=OPTIONS, format="npy",
                     normalize="minmax", channel=1, dry_run=True, transport="json",
                     timeout=None)
    assert set(body) == set(SCHEMAS["ConvolveRequest"]["properties"])


def form_fields(path: str) -> set[str]:
    content = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]
    return set(resolve(content["multipart/form-data"]["schema"])["properties"])


@pytest.mark.parametrize("path, call_name, fields", [
    pytest.param("/v1/convolve", "_convolve_call",
                 {"options": OPTIONS, "format": "npy", "normalize": "clip", "channel": 0,
                  "dry_run": True}, id="convolve"),
    pytest.param("/v1/explain", "_explain_call", {"options": OPTIONS, "at": (0, 1, 1)},
                 id="explain"),
    pytest.param("/v1/layers", "_layers_call",
                 {"layers": [{"type": "relu"}], "return_": "last", "format": "json",
                  "normalize": "auto", "color_mode": "keep", "engine": "numpy",
                  "device": "cpu", "dry_run": True,
                  "kernel_file": {"conv.weight": np.ones((1, 1, 1, 1))}}, id="layers"),
])
def test_multipart_fields_are_the_forms(path: str, call_name: str,
                                        fields: dict[str, Any]) -> None:
    with Client("http://127.0.0.1:9") as cs:
        call = getattr(cs, call_name)(IMAGE, transport="multipart", timeout=None, **fields)
    sent = set(re.findall(rb'Content-Disposition: form-data; name="([^"]+)"',
                          call.body["content"]))
    sent = {name.decode() for name in sent}
    assert sent <= form_fields(path), sent - form_fields(path)


VOCABULARIES = [
    (vocab.PADDING_MODES, [("ConvolveRequest", "padding_mode"), ("ExplainRequest",
                           "padding_mode"), ("Conv2dLayerSpec", "padding_mode")]),
    (vocab.NORMALIZE_MODES, [("ConvolveRequest", "normalize"), ("LayersRequest", "normalize")]),
    (vocab.COLOR_MODES, [("ConvolveRequest", "color_mode"), ("ExplainRequest", "color_mode"),
                         ("LayersRequest", "color_mode")]),
    (vocab.ENGINES, [("ConvolveRequest", "engine"), ("ExplainRequest", "engine"),
                     ("LayersRequest", "engine")]),
    (vocab.DEVICES, [("ConvolveRequest", "device"), ("ExplainRequest", "device"),
                     ("LayersRequest", "device")]),
    (vocab.CONVOLVE_FORMATS, [("ConvolveRequest", "format")]),
    (vocab.LAYERS_FORMATS, [("LayersRequest", "format")]),
    (vocab.RETURNS, [("LayersRequest", "return")]),
    (vocab.LAYOUTS, [("KernelSpec", "layout")]),
]


@pytest.mark.parametrize("values, fields", [
    pytest.param(values, fields, id=fields[0][1]) for values, fields in VOCABULARIES])
def test_the_clients_vocabularies_are_the_schemas_enums(
        values: tuple[str, ...], fields: list[tuple[str, str]]) -> None:
    for schema, name in fields:
        assert set(values) == enum_of(SCHEMAS[schema]["properties"][name]), (schema, name)


def test_the_command_lines_choices_are_the_clients_vocabularies() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(commands, dict)
    choices = {(name, action.dest): tuple(action.choices)
               for name, sub in commands.items() for action in sub._actions
               if action.choices is not None}
    assert choices[("convolve", "padding_mode")] == vocab.PADDING_MODES
    assert choices[("explain", "padding_mode")] == vocab.PADDING_MODES
    assert choices[("convolve", "format")] == vocab.CONVOLVE_FORMATS
    assert choices[("layers", "format")] == vocab.LAYERS_FORMATS
    assert choices[("layers", "return_")] == vocab.RETURNS
    for command in ("convolve", "explain", "layers"):
        assert choices[(command, "engine")] == vocab.ENGINES
        assert choices[(command, "device")] == vocab.DEVICES
        assert choices[(command, "color_mode")] == vocab.COLOR_MODES


# --- what the client reads -------------------------------------------------------------------


def example(schema: Schema, full: bool, name: str = "") -> Any:
    """A value of ``schema``: every property (``full``), or only the required ones with
    null wherever null is allowed."""
    if nullable(schema) and not full:
        return None
    schema = resolve(schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        value = {key: example(sub, full, key) for key, sub in properties.items()
                 if full or key in required}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            keys = OBJECT_KEYS.get(name, ("extra",) if full else ())
            value.update({key: example(extra, full) for key in keys})
        return value
    if kind == "array":
        items = schema.get("items", {})
        inner = name if resolve(items).get("type") == "array" else ""  # nested: (C, H, W) data
        return [example(items, full, inner) for _ in range(ARRAY_LENGTHS.get(name, 2))]
    samples = {"string": "dGV4dA==", "integer": 1, "number": 0.5, "boolean": True}
    return samples.get(kind or "", {})


class Tracked(Mapping[str, Any]):
    """A JSON object that records which of its keys the client reads, for its schema."""

    def __init__(self, data: Mapping[str, Any], schema: str, reads: set[tuple[str, str]]):
        self._data = data
        self._schema = schema
        self._reads = reads

    def __getitem__(self, key: str) -> Any:
        self._reads.add((self._schema, key))
        value = self._data[key]
        sub = SCHEMAS[self._schema].get("properties", {}).get(key)
        return track(value, sub, self._reads) if sub is not None else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def schema_name(schema: Schema) -> str | None:
    for part in [schema, *schema.get("anyOf", ())]:
        if "$ref" in part:
            return str(part["$ref"].rsplit("/", 1)[1])
    return None


def track(value: Any, schema: Schema, reads: set[tuple[str, str]]) -> Any:
    name = schema_name(schema)
    if isinstance(value, dict) and name is not None:
        return Tracked(value, name, reads)
    items = resolve(schema).get("items")
    if isinstance(value, list) and items is not None:
        return [track(v, items, reads) for v in value]
    return value


PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "ConvolveResponse": lambda d: ConvolveResult.from_json("json", d),
    "ExplainResponse": lambda d: ExplainResult.from_dict(d, (0, 0, 0)),
    "LayersResponse": lambda d: LayersResult.from_json("json", d),
    "EnginesResponse": EnginesInfo.from_dict,
    "Cost": Cost.from_dict,
}

SCHEMA_TYPES: dict[type, set[str]] = {
    int: {"integer"}, float: {"number", "integer"}, str: {"string"}, bool: {"boolean"},
    tuple: {"array"}, np.ndarray: {"array"}, dict: {"object"}, Mapping: {"object"},
}


def python_types(hint: Any) -> tuple[set[type], bool]:
    """The classes a field's annotation allows, and whether it allows None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds: set[type] = set()
        optional = False
        for arg in typing.get_args(hint):
            sub, none = python_types(arg)
            kinds |= sub
            optional |= none
        return kinds, optional
    if hint is type(None):
        return set(), True
    origin = typing.get_origin(hint) or hint
    return ({origin} if isinstance(origin, type) else set()), False


def check_field_types(result: Any, schema: str) -> None:
    """Each field of ``result`` named like a schema property takes that property's type.

    (Nullability is checked by parsing the required-only example, which holds null wherever
    the schema allows it: the client must read it, as None or NaN, without failing.)
    """
    properties = SCHEMAS[schema]["properties"]
    hints = typing.get_type_hints(type(result))
    for field in dataclasses.fields(result):
        if field.name not in properties or (schema, field.name) in CONVERTED:
            continue
        kinds, _ = python_types(hints[field.name])
        prop = properties[field.name]
        wanted = resolve(prop).get("type", "object")
        if dataclasses.is_dataclass(next(iter(kinds), None)):
            assert wanted == "object", (schema, field.name)
            continue
        allowed = set().union(*(SCHEMA_TYPES.get(k, set()) for k in kinds))
        assert wanted in allowed, f"{schema}.{field.name}: schema {wanted}, client {kinds}"


@pytest.mark.parametrize("full", [False, True], ids=["required-only", "every-field"])
@pytest.mark.parametrize("schema", sorted(PARSERS))
def test_each_result_type_reads_what_the_schema_describes(schema: str, full: bool) -> None:
    reads: set[tuple[str, str]] = set()
    data = example({"$ref": f"#/components/schemas/{schema}"}, full)
    result = PARSERS[schema](Tracked(data, schema, reads))
    unknown = {(s, key) for s, key in reads
               if key not in SCHEMAS[s].get("properties", {}) and (s, key) not in UNDOCUMENTED}
    assert unknown == set()
    check_field_types(result, schema)


def test_the_documented_exceptions_are_still_undocumented() -> None:
    for schema, key in UNDOCUMENTED:
        assert key not in SCHEMAS[schema]["properties"], f"remove {(schema, key)} from UNDOCUMENTED"


@pytest.mark.parametrize("full", [False, True], ids=["required-only", "every-field"])
def test_problem_reads_the_problem_schema(full: bool) -> None:
    data = example({"$ref": "#/components/schemas/Problem"}, full)
    if full:
        data["errors"] = [{"field": "kernel.weight", "message": "has shape (2, 2)"}]
    problem = Problem.from_response_body(422, "Unprocessable Entity", json.dumps(data).encode())
    assert (problem.type, problem.title, problem.status, problem.detail) == (
        data["type"], data["title"], data["status"], data["detail"])
    assert [(e.field, e.message) for e in problem.errors] == [
        (e["field"], e["message"]) for e in data.get("errors") or ()]
    check_field_types(problem, "Problem")
