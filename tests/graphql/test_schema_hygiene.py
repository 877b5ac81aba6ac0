"""Schema hygiene: every part of the schema is described, Flow and Hotspot have the ids
DESIGN.md gives them (one object per thing in a normalising client cache), and a trend's
sources mean one thing in REST and GraphQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from graphql import get_introspection_query
from starlette.testclient import TestClient

from tests.graphql.test_schema import gql, seed
from tests.support.factories import AS_OF, record, write_headers

EARLIER = AS_OF - timedelta(hours=1)
ANSWER = """query($asOf: DateTime) {
  flows(threshold: 0.1, asOf: $asOf) { id fromCountry toCountry heat }
  hotspots(asOf: $asOf) { id country intensity }
}"""


def _undescribed(schema: dict[str, Any]) -> list[str]:
    """Every type, field, argument and input value of ours without a description."""
    missing = []
    for kind in schema["types"]:
        name = kind["name"]
        if name.startswith("__") or kind["kind"] == "SCALAR":
            continue
        if not (kind["description"] or "").strip():
            missing.append(f"type {name}")
        for field in kind["fields"] or []:
            if not (field["description"] or "").strip():
                missing.append(f"field {name}.{field['name']}")
            missing += [
                f"argument {name}.{field['name']}({arg['name']})"
                for arg in field["args"]
                if not (arg["description"] or "").strip()
            ]
        missing += [
            f"input value {name}.{value['name']}"
            for value in kind["inputFields"] or []
            if not (value["description"] or "").strip()
        ]
    return missing


def test_every_type_field_argument_and_input_value_is_described(client: TestClient) -> None:
    schema = gql(client, get_introspection_query(descriptions=True))["data"]["__schema"]
    assert _undescribed(schema) == []


def test_flows_and_hotspots_are_named_by_window_as_of_and_thing(client: TestClient) -> None:
    seed(client)
    data = gql(client, ANSWER, {"asOf": AS_OF.isoformat()})["data"]
    prefix = f"24h@{AS_OF.isoformat()}"
    assert data["flows"], data
    for flow in data["flows"]:
        assert flow["id"] == f"{prefix}:{flow['fromCountry']}-{flow['toCountry']}"
    assert {h["id"] for h in data["hotspots"]} == {f"{prefix}:US", f"{prefix}:CO"}
    window = gql(client, '{ hotspots(timeWindow: "6h", asOf: "' + AS_OF.isoformat() + '") { id } }')
    assert {h["id"] for h in window["data"]["hotspots"]} == {
        f"6h@{AS_OF.isoformat()}:US",
        f"6h@{AS_OF.isoformat()}:CO",
    }


def test_a_normalising_cache_keeps_answers_apart_and_repeats_together(client: TestClient) -> None:
    """What Apollo's cache does with ids: one entry per id. The same answer twice is the same
    objects; answers for two instants are different objects, so neither overwrites the other."""
    seed(client)
    cache: dict[str, dict[str, Any]] = {}

    def ids(as_of: str) -> list[str]:
        data = gql(client, ANSWER, {"asOf": as_of})["data"]
        items = [*data["flows"], *data["hotspots"]]
        for item in items:
            cache[item["id"]] = item
        return [item["id"] for item in items]

    first = ids(AS_OF.isoformat())
    assert first == ids(AS_OF.isoformat())  # the same answer (now a cache hit): the same ids
    earlier = ids(EARLIER.isoformat())
    assert earlier and not set(first) & set(earlier)
    assert len(cache) == len(first) + len(earlier)  # nothing was overwritten


def test_sources_are_a_list_empty_when_none_in_rest_and_graphql(client: TestClient) -> None:
    records = [record("US", "Quiet"), record("BR", "Loud", sources=["https://x.test/a"])]
    assert client.post("/v1/trends", json=records, headers=write_headers()).status_code == 200
    rest = {t["country"]: t["sources"] for t in client.get("/v1/trends").json()["trends"]}
    assert rest == {"US": [], "BR": ["https://x.test/a"]}
    data = gql(client, "{ trends { edges { node { country sources } } } }")["data"]
    graphql = {e["node"]["country"]: e["node"]["sources"] for e in data["trends"]["edges"]}
    assert graphql == rest
    schema = gql(client, '{ __type(name: "Trend") { fields { name type { kind } } } }')
    kinds = {f["name"]: f["type"]["kind"] for f in schema["data"]["__type"]["fields"]}
    assert kinds["sources"] == "NON_NULL"
    openapi = client.get("/openapi.json").json()["components"]["schemas"]["Trend"]
    assert openapi["properties"]["sources"]["type"] == "array"
