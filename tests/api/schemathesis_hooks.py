"""A schemathesis check for convserve's one documented exception to positive data acceptance.

The OpenAPI document states every type, range, enum and "exactly one of" rule the server
enforces, so schema validation never refuses a schema-valid request (a ``validation-error``
problem for one is a failure here). What a JSON Schema cannot state is refused by content:
bytes that do not decode as an image, a kernel whose shape does not fit the input's channels, a
preset that needs a given number of channels, a cost over a limit. Those are 422 problems of
their own types (``invalid-input``, ``shape-mismatch``, ...), which this check accepts in place
of schemathesis' ``positive_data_acceptance`` (excluded in schemathesis.toml); so is, in a
multipart form, a JSON text field (``kernel``, ``layers``, ...) whose JSON does not fit its
model, which a form schema can only describe as a string. Loaded by schemathesis through the
``hooks`` setting.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.checks import CheckContext
from schemathesis.core.transport import Response

SCHEMA_VALIDATION_PROBLEM = "/problems/validation-error"
ACCEPTED = {401, 403, 404, 409, 429}
JSON_TEXT_FIELDS = ("kernel", "preset_params", "at", "layers")
"""Form fields holding JSON text: the form schema can only call them strings."""


def _problem(response: Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _inside_json_text(case: Case[Any], problem: dict[str, Any]) -> bool:
    """A multipart request refused only for what its JSON text fields hold."""
    if case.media_type != "multipart/form-data":
        return False
    fields = [str(error.get("field", "")) for error in problem.get("errors") or []]
    return bool(fields) and all(f.split(".")[0] in JSON_TEXT_FIELDS for f in fields)


@schemathesis.check
def schema_valid_requests_pass_validation(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """A schema-valid request gets 2xx, 3xx, 401, 403, 404, 409, 429 or 5xx, or a 422
    problem about its content, never a request-validation problem."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status >= 500 or status in ACCEPTED:
        return None
    problem = _problem(response)
    kind = problem.get("type")
    if status == 422 and kind is not None and (kind != SCHEMA_VALIDATION_PROBLEM
                                               or _inside_json_text(case, problem)):
        return None
    raise AssertionError(
        f"a schema-valid request was refused with {status} ({kind}): the OpenAPI document "
        "and the validation disagree"
    )
