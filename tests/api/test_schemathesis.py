"""Property-based requests generated from the OpenAPI spec never produce a 5xx."""

from __future__ import annotations

from typing import TYPE_CHECKING

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from convserve.main import create_app
from convserve.settings import Settings

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

app = create_app(Settings(warmup=False, compute_timeout_s=30))
app.state.runtime.ready.set()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_request_yields_a_server_error(case: OpenApiCase) -> None:
    case.call_and_validate(checks=[not_a_server_error])
