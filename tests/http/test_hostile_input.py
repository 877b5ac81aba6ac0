"""Hostile input: every REST parameter and record field, given NUL bytes, overlong text, unicode
oddities, overflowing numbers and dates and forged cursors, gets a 4xx in the error format
naming the field, never a 500, and nothing is logged as a traceback.

The REST parameters are read from /openapi.json, so an endpoint added later is attacked too.
Every test runs on SQLite and on PostgreSQL (which refuses NUL in text)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from httpx import Response
from starlette.testclient import TestClient

from tests.support.factories import as_input, record, write_headers

NUL = "\x00"
OVERLONG = "9" * 5_000


def cursor(raw: object) -> str:
    """A cursor as the service writes them, around anything."""
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


DATES = [
    "2026-11-20T00:00:00Z" + NUL,
    "0001-01-01T00:00:00+14:00",  # year 0 in UTC
    "9999-12-31T23:59:59-12:00",  # year 10000 in UTC
    "0001-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-20T00:00:00",  # naive
    "２０２６-11-20T00:00:00Z",  # fullwidth digits
    "2026-11-20T00:00:00Z\u202e",
    OVERLONG,
    "1e309",
]
COUNTS = [
    "1" + NUL,
    OVERLONG,  # past int()'s digit limit
    str(2**64),
    "1e3",
    "-1",
    "0",
    "1.5",
    "NaN",
    "\u0661\u0662" + NUL,  # Arabic-Indic digits, then NUL
]
COUNTRIES = ["US" + NUL, "ＵＳ", "U\u0301S", "US\u200b", "\u202eSU", "XX", "US," * 2_000 + "XX"]
# Values each parameter must refuse (400 naming it). Free text (topic, search) may hold unicode:
# those answer, or refuse, as long as they never fail.
REFUSED: dict[str, list[str]] = {
    "time_window": ["24h" + NUL, "24h" * 2_000, "２４ｈ", "24h\u200b", "-24h", "1e309"],
    "step": ["24h" + NUL, "24h" * 2_000, "２４ｈ", "1e309"],
    "countries": COUNTRIES,
    "country": COUNTRIES,
    "threshold": ["0.5" + NUL, "1" * 5_000, "1e309", "NaN", "Infinity", "-1", "0x1p-1", "٠٫٥"],
    "as_of": DATES,
    "since": DATES,
    "until": DATES,
    "limit": COUNTS,
    "first": COUNTS,
    "min_generation": ["1" + NUL, "9" * 5_000, "-1", "1e3", "0x10", "١٢", " ", str(2**63)],
    "topic": ["world" + NUL + "cup", "x" * 5_000],
    "search": ["world" + NUL + "cup", "x" * 5_000],
    "after": [
        cursor(["2026-11-20T00:00:00+00:00", 2**70]),  # an id past BIGINT
        cursor(["2026-11-20T00:00:00+00:00", -(2**70)]),
        cursor(["2026-11-20T00:00:00+00:00", True]),
        cursor(["0001-01-01T00:00:00+14:00", 1]),
        cursor(["2026-11-20T00:00:00", 1]),  # naive
        cursor(["2026-11-20T00:00:00+00:00" + NUL, 1]),
        cursor("[" * 5_000),  # deeper than the JSON parser recurses
        cursor({"a": 1, "b": 2}),
        "not base64!" + NUL,
        OVERLONG,
    ],
}
ODD_TEXT = ["\u202eevil", "\ufeffbom", "e\u0301", "İstanbul", "\U0001f600", "a\u200db", "%00"]
# Valid values for the parameters an endpoint requires.
REQUIRED = {"topic": "world cup", "country": "US"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """Our JSON log lines (structlog) while the test runs; library records are in caplog."""
    caplog.set_level(logging.WARNING)
    with structlog.testing.capture_logs() as captured:
        yield captured
    assert not [e for e in captured if e["log_level"] in {"error", "critical"}], captured
    assert not [e for e in captured if "exc_info" in e or "exception" in e], captured
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records
    ]


def in_error_format(
    response: Response, field: str | None = None, sent: Any = None
) -> dict[str, Any]:
    """The response is a 4xx in the error format (naming ``field`` when given)."""
    assert 400 <= response.status_code < 500, (sent, response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    assert {"error", "detail", "request_id", "timestamp"} <= set(body), body
    assert "Traceback" not in body["detail"]
    if field is not None:
        assert body["detail"].startswith(f"{field}:"), body
    return body


def rest_parameters(client: TestClient) -> list[tuple[str, str, set[str]]]:
    """Every GET route's query parameters: (path, parameter, required ones)."""
    found = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        parameters = operations.get("get", {}).get("parameters", [])
        required = {p["name"] for p in parameters if p.get("required")}
        found += [(path, p["name"], required) for p in parameters if p["in"] == "query"]
    return found


def test_every_rest_parameter_refuses_hostile_values(client: TestClient, logs: Any) -> None:
    client.post("/v1/trends", json=[record()], headers=write_headers())
    parameters = rest_parameters(client)
    # The table covers what exists: a parameter nobody wrote values for is a failure here.
    assert {name for _, name, _ in parameters} <= set(REFUSED), parameters
    assert {"/v1/flows", "/v1/hotspots", "/v1/trends"} <= {path for path, _, _ in parameters}
    for path, name, required in parameters:
        base = {other: REQUIRED[other] for other in required if other != name}
        for value in REFUSED[name]:
            response = client.get(path, params={**base, name: value})
            in_error_format(response, name, (path, value))
        for value in ODD_TEXT if name in {"topic", "search"} else ():
            response = client.get(path, params={**base, name: value})
            assert response.status_code < 500, (path, name, value, response.text)
            if response.status_code >= 400:
                in_error_format(response)


def test_parameters_at_the_edges_of_time_answer(client: TestClient, logs: Any) -> None:
    """Instants the parser accepts but arithmetic near year 1 or 9999 could overflow."""
    for path, name, required in rest_parameters(client):
        if name not in {"as_of", "since", "until"}:
            continue
        base = {other: REQUIRED[other] for other in required if other != name}
        for value in [
            "0001-01-02T00:00:00Z",
            "0001-01-09T00:00:00Z",  # the earliest accepted
            "9999-12-23T23:59:59Z",  # the latest accepted
            "9999-12-31T23:59:59Z",
        ]:
            response = client.get(path, params={**base, name: value})
            assert response.status_code < 500, (path, name, value, response.text)
            if response.status_code >= 400:  # a 404 (nothing in the span) names no field
                in_error_format(response, name if response.status_code == 400 else None)


def future(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


RECORD_FIELDS: dict[str, list[Any]] = {
    "timestamp": [
        *DATES,
        "9999-12-31T23:59:59Z",  # would head every trends page
        "1969-12-31T23:59:59Z",  # before MIN_RECORD_TIMESTAMP
        future(25),  # more than MAX_RECORD_FUTURE_SECONDS ahead
        2**64,
        1e308,
    ],
    "country": [*COUNTRIES, 2**64, None],
    "topic_label": [
        "world" + NUL + "cup",
        NUL,
        "x" * 5_000,
        "\x1b[31mred",
        "\x7f",
        "a\ud800b",  # a lone surrogate: not UTF-8
        " \u3000 ",  # only (ideographic) whitespace
        None,
    ],
    "count": [2**64, -(2**64), 0, 1.5, "1", 1e308, True, None],
    "confidence": [1e308, -1e308, 1.0000001, "0.5", True, None],
    "sources": [
        ["https://a.test/" + NUL],
        [NUL],
        ["\x07bell"],
        ["a\ud800b"],
        ["x" * 5_000],
        ["s"] * 5_000,
        "https://one.test",
        [2**64],
    ],
}
RECORD_CASES = [(field, value) for field, values in RECORD_FIELDS.items() for value in values]


def test_every_record_field_refuses_hostile_values(client: TestClient, logs: Any) -> None:
    for field, value in RECORD_CASES:
        body = json.dumps([record(), {**record(), field: value}])
        response = client.post(
            "/v1/trends",
            content=body.encode("utf-8", "surrogatepass"),
            headers={**write_headers(), "Content-Type": "application/json"},
        )
        document = in_error_format(response, sent=(field, value))
        # A lone surrogate makes the JSON itself unreadable; everything else names the field.
        if "\ud800" not in json.dumps(value, ensure_ascii=False):
            assert f"record 1: {field}" in document["detail"], (field, value, document)
    assert client.get("/v1/trends").json()["total_count"] == 0  # nothing was stored


def test_json_oddities_in_the_body(client: TestClient, logs: Any) -> None:
    good = json.dumps(record())
    for body in [
        "[" + good.replace('"count": 10', '"count": 1e999') + "]",
        "[" + good.replace('"confidence": 0.9', '"confidence": NaN') + "]",
        "[" + good.replace('"count": 10', '"count": ' + "9" * 5_000) + "]",
        "[" * 5_000,
        "[" + good + "," + "]",
        '[{"\\u0000": 1}]',
        "\ufeff[" + good + "]",
    ]:
        response = client.post(
            "/v1/trends",
            content=body.encode(),
            headers={**write_headers(), "Content-Type": "application/json"},
        )
        in_error_format(response)


MUTATION = "mutation($t: [TrendInput!]!) { ingestTrends(trends: $t) { received } }"
TRENDS = (
    "query($topic: String, $after: String) { trends(topic: $topic, after: $after) { totalCount } }"
)
# Values GraphQL's own scalars accept, that our validation must refuse. (Values a scalar refuses,
# such as a count past Int, are variable coercion errors: GraphQL's, before any resolver runs.)
GRAPHQL_RECORD_CASES = [
    ("timestamp", "0001-01-01T00:00:00+14:00"),
    ("timestamp", "9999-12-31T23:59:59-12:00"),
    ("timestamp", "9999-12-31T23:59:59Z"),
    ("timestamp", "1969-12-31T23:59:59Z"),
    ("timestamp", future(25)),
    *[("country", value) for value in COUNTRIES],
    *[("topicLabel", value) for value in ["world\x00cup", NUL, "\x1b[31mred", "x" * 5_000]],
    ("count", 0),
    ("confidence", 1e308),
    *[("sources", value) for value in [[NUL], ["\x07bell"], ["x" * 5_000], ["s"] * 5_000]],
]


def test_graphql_refuses_the_same_values_as_domain_errors(client: TestClient, logs: Any) -> None:
    """ingestTrends and trends: a GraphQL error naming the field, never "Unexpected error"."""
    for field, value in GRAPHQL_RECORD_CASES:
        item = {**as_input(record()), field: value}
        answer = client.post(
            "/graphql",
            json={"query": MUTATION, "variables": {"t": [item]}},
            headers=write_headers(),
        )
        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "invalid_records", (field, value, error)
        snake = "topic_label" if field == "topicLabel" else field
        assert error["extensions"]["errors"][0]["field"].split(".")[0] == snake, error
    for variables in [
        {"topic": "world" + NUL + "cup"},
        {"topic": "x" * 5_000},
        {"after": cursor(["2026-11-20T00:00:00+00:00", 2**70])},
        {"after": cursor("[" * 5_000)},
    ]:
        answer = client.post("/graphql", json={"query": TRENDS, "variables": variables})
        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "invalid_parameter", (variables, error)
        assert error["extensions"]["field"] == next(iter(variables)), error


def test_an_unknown_fragment_is_graphql_validation_error(client: TestClient, logs: Any) -> None:
    answer = client.post("/graphql", json={"query": "query { ...Missing }"})
    [error] = answer.json()["errors"]
    assert error["message"] == "Unknown fragment 'Missing'."
    nested = "query { trends { edges { node { ...Gone } } } }"
    [error] = client.post("/graphql", json={"query": nested}).json()["errors"]
    assert error["message"] == "Unknown fragment 'Gone'."
