"""The committed OpenAPI document is current, and the spec documents what clients rely on."""

from __future__ import annotations

import json
from pathlib import Path

from convserve.openapi_export import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    current = openapi_document()
    assert COMMITTED.exists(), "openapi/openapi.json is missing: run `make openapi`"
    assert COMMITTED.read_text(encoding="utf-8") == current, (
        "openapi/openapi.json is out of date: run `make openapi` and commit the result"
    )


def test_spec_documents_both_body_types_and_problems() -> None:
    spec = json.loads(openapi_document())
    convolve = spec["paths"]["/v1/convolve"]["post"]
    content = convolve["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    assert "image" in content["multipart/form-data"]["schema"]["properties"]
    for status in ("413", "415", "422", "503"):
        assert "application/problem+json" in convolve["responses"][status]["content"]
    fields = spec["components"]["schemas"]["ConvolveRequest"]["properties"]
    assert fields["padding"]["description"].startswith("An int, [p_h, p_w]")
