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


def test_model_answers_carry_real_examples_that_fit_their_schemas() -> None:
    """Each model endpoint's answer schema has an example, and the example validates."""
    from convserve.api.schemas import models as schemas
    from convserve.api.schemas.model_examples import MODEL_EXAMPLES

    def without_nulls(value: object) -> object:  # the document leaves null values out
        if isinstance(value, dict):
            return {k: without_nulls(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [without_nulls(v) for v in value]
        return value

    components = json.loads(openapi_document())["components"]["schemas"]
    for name, example in MODEL_EXAMPLES.items():
        assert components[name]["examples"] == [without_nulls(example)], name
        getattr(schemas, name).model_validate(example)
    # The layer table is the Keras reference CNN's (DESIGN.md's numbers), not made up.
    info = MODEL_EXAMPLES["ModelInfo"]
    params = [row["params"] for row in info["layers"] if row["op"] in ("Conv", "Gemm")]
    assert params == [448, 4640, 18496, 9470464, 513]
    assert info["total_params"] == 9494561
    assert MODEL_EXAMPLES["SampleModelStatus"]["id"] == info["id"]
