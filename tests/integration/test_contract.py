"""Generated requests against the published contracts: /openapi.json and the GraphQL schema.

schemathesis builds requests from each document (valid and invalid ones, bounded in number)
and checks that no answer is a 5xx and every answer keeps to the documented status codes,
content types and response schemas.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from graph.http.app import create_app
from tests.support.factories import WRITE_KEY, make_settings

_DB = Path(tempfile.mkdtemp(prefix="trendmap-contract-")) / "contract.db"
# Rate limiting would answer the generated flood with 429s: it has tests of its own.
APP = create_app(make_settings(f"sqlite:///{_DB}", rate_limit_enabled=False))
OPENAPI = schemathesis.openapi.from_asgi("/openapi.json", APP)
GRAPHQL = schemathesis.graphql.from_asgi("/graphql", APP)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
BOUNDED = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


@OPENAPI.parametrize()
@BOUNDED
def test_rest_keeps_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {WRITE_KEY}"}, checks=CHECKS)


@GRAPHQL.parametrize()
@BOUNDED
def test_graphql_never_answers_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {WRITE_KEY}"}, checks=CHECKS)
