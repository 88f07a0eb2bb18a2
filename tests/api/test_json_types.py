"""The OpenAPI document and the validation are one truth: JSON types are held per type, and
"exactly one of" rules are in the schema as ``oneOf``.

A JSON body's numbers and booleans must be JSON numbers and booleans (a string or the other
kind is refused), while an integer may be written 8.0 as JSON Schema allows. Multipart fields
are text, turned into those types only when their text is exactly a number or true/false.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import png_bytes

D2L_X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
D2L_K = [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]


def body(**fields: Any) -> dict[str, Any]:
    return {"input": {"array": D2L_X}, "kernel": {"weight": D2L_K}, "format": "array", **fields}


REFUSED = [
    pytest.param(body(dry_run=0), "dry_run", "a boolean (true or false), not a JSON number",
                 id="dry_run-number"),
    pytest.param(body(dry_run="true"), "dry_run", "a boolean (true or false), not a JSON string",
                 id="dry_run-string"),
    pytest.param(body(kernel={"weight": D2L_K, "bias": [False]}), "kernel.bias.0",
                 "a number, not a JSON boolean", id="bias-boolean"),
    pytest.param(body(kernel={"weight": D2L_K, "bias": ["1.5"]}), "kernel.bias.0",
                 "a number, not a JSON string", id="bias-string"),
    pytest.param(body(groups="1"), "groups", "an integer, not a JSON string", id="groups-string"),
    pytest.param(body(groups=True), "groups", "an integer, not a JSON boolean",
                 id="groups-boolean"),
    pytest.param(body(channel="0"), "channel", "an integer, not a JSON string",
                 id="channel-string"),
]


@pytest.mark.parametrize(("payload", "field", "message"), REFUSED)
def test_json_numbers_and_booleans_of_another_json_type_are_refused(
    client: TestClient, payload: dict[str, Any], field: str, message: str
) -> None:
    response = client.post("/v1/convolve", json=payload)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["errors"][0]["message"] == f"Input should be {message}"


def test_json_integers_may_be_written_with_a_zero_fraction(client: TestClient) -> None:
    response = client.post("/v1/convolve", json=body(groups=1.0, stride=[1.0, 1], dry_run=True))
    assert response.status_code == 200, response.text
    assert (response.json()["groups"], response.json()["stride"]) == (1, [1, 1])
    refused = client.post("/v1/convolve", json=body(groups=1.5))
    assert refused.status_code == 422


@pytest.mark.parametrize("route", ["/v1/convolve", "/v1/explain", "/v1/layers"])
def test_empty_input_is_refused_and_the_schema_says_so(client: TestClient, route: str) -> None:
    response = client.post(route, json={"input": {}, "preset": "sobel", "at": {"y": 0, "x": 0},
                                        "layers": [{"type": "relu"}]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "input"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["InputSpec"]
    assert [branch["required"] for branch in schema["oneOf"]] == [["array"], ["image_base64"]]


def test_kernel_xor_preset_is_in_the_schema_of_json_and_multipart(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    json_schema = spec["components"]["schemas"]["ConvolveRequest"]
    assert [b["required"] for b in json_schema["oneOf"]] == [["kernel"], ["preset"]]
    form = spec["paths"]["/v1/convolve"]["post"]["requestBody"]["content"][
        "multipart/form-data"]["schema"]
    # A weight file (kernel_file) is the form's third way to give the kernel.
    assert form["oneOf"] == [{"required": ["kernel"]}, {"required": ["preset"]},
                             {"required": ["kernel_file"]}]
    assert form["additionalProperties"] is False
    assert form["properties"]["dry_run"]["enum"] == ["true", "false"]
    assert form["properties"]["channel"]["pattern"] == "^[0-9]+$"


def test_multipart_text_still_gives_numbers_and_booleans(client: TestClient) -> None:
    image = png_bytes(np.zeros((4, 5, 3), np.uint8))
    ok = client.post("/v1/convolve", files={"image": ("a.png", image, "image/png")},
                     data={"preset": "box_blur", "groups": "3", "stride": "1,1",
                           "dry_run": "true", "channel": "0"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["dry_run"] is True
    refused = client.post("/v1/convolve", files={"image": ("a.png", image, "image/png")},
                          data={"preset": "box_blur", "dry_run": "yes"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "dry_run"


def test_preset_names_are_an_enum_in_the_schema(client: TestClient) -> None:
    parameters = client.get("/openapi.json").json()["paths"]["/v1/presets/{name}"]["get"][
        "parameters"]
    names = next(p for p in parameters if p["name"] == "name")["schema"]["enum"]
    listed = [p["name"] for p in client.get("/v1/presets").json()["presets"]]
    assert names == listed
