"""Unknown query parameters are named in ``warnings`` (with the closest known one), never
refused, on every REST endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import AS_OF, record, write_headers

READS = [
    "/v1/flows",
    "/v1/flows.geojson",
    "/v1/hotspots",
    "/v1/hotspots.geojson",
    "/v1/trends",
    "/v1/span",
    "/v1/topics",
]


def test_a_typo_is_named_with_what_was_meant(app_with: Any) -> None:
    client = app_with()
    response = client.get("/v1/flows", params={"window": "6h", "asof": AS_OF.isoformat()})
    assert response.status_code == 200
    body = response.json()
    assert body["warnings"] == [
        "unknown parameter 'window' ignored; did you mean 'time_window'?",
        "unknown parameter 'asof' ignored; did you mean 'as_of'?",
    ]
    assert body["metadata"]["time_window"] == "24h"  # ignored, as the warning says


@pytest.mark.parametrize("path", READS)
def test_every_read_names_unknown_parameters_and_answers(app_with: Any, path: str) -> None:
    client = app_with()
    response = client.get(f"{path}?_=1700000000&_=again&limit=5")
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert warnings.count("unknown parameter '_' ignored") == 1
    known_limit = path not in ("/v1/span", "/v1/trends")
    assert any("'limit'" in w for w in warnings) is not known_limit


def test_known_parameters_give_no_warning(app_with: Any) -> None:
    client = app_with()
    params = {
        "time_window": "6h",
        "countries": "US",
        "threshold": "0.3",
        "as_of": AS_OF.isoformat(),
        "limit": "3",
    }
    assert client.get("/v1/flows", params=params).json()["warnings"] == []
    page = {"countries": "US", "topic": "x", "first": "2", "after": ""}
    assert client.get("/v1/trends", params=page).json()["warnings"] == []
    spread = client.get("/v1/topics/spread", params={"topic": "nothing", "sincee": "x"})
    assert spread.status_code == 404  # an unknown parameter does not change what is refused


def test_an_ingest_names_unknown_parameters_too(app_with: Any) -> None:
    client = app_with()
    response = client.post(
        "/v1/trends?dry_run=1", json=[record("US", "Alpha")], headers=write_headers()
    )
    assert response.status_code == 200
    assert response.json()["warnings"] == ["unknown parameter 'dry_run' ignored"]
