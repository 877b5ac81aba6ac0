"""The GeoJSON exports: RFC 7946 FeatureCollections with the JSON forms' parameters and errors."""

from __future__ import annotations

from typing import Any

import pytest
from geojson_pydantic import FeatureCollection
from starlette.testclient import TestClient

from graph.http import geojson
from graph.http.app import create_app
from graph.http.geo import country_position
from tests.support.factories import AS_OF, READ_KEY, make_settings, record, write_headers

PARAMS = {"as_of": AS_OF.isoformat(), "threshold": "0.1"}


def spreading() -> list[dict[str, Any]]:
    """US starts three topics, BR picks them up an hour later, AU two hours later."""
    out = []
    for topic, n in [("World Cup", 50), ("Election", 30), ("Storm", 20)]:
        out.append(record("US", topic, hours_ago=5, count=n))
        out.append(record("BR", topic, hours_ago=4, count=n))
        out.append(record("AU", topic, hours_ago=3, count=n))
    out.append(record("JP", "Anime Expo", hours_ago=2, count=40))
    return out


@pytest.fixture
def loaded(client: TestClient) -> TestClient:
    response = client.post("/v1/trends", json=spreading(), headers=write_headers())
    assert response.status_code == 200, response.text
    return client


def valid_collection(body: dict[str, Any]) -> None:
    """A real validator, then the checks it does not make: position order and ranges."""
    FeatureCollection.model_validate(body)
    assert body["type"] == "FeatureCollection"
    for feature in body["features"]:
        geometry = feature["geometry"]
        points = (
            [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
        )
        for lon, lat in points:
            assert -180 <= lon <= 180 and -90 <= lat <= 90


def position(code: str) -> list[float]:
    found = country_position(code)
    assert found is not None
    return list(found)


def test_flows_are_line_strings_from_source_to_target(loaded: TestClient) -> None:
    response = loaded.get("/v1/flows.geojson", params=PARAMS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    valid_collection(body)
    plain = loaded.get("/v1/flows", params=PARAMS).json()
    assert len(plain["flows"]) >= 3
    assert [f["properties"] for f in body["features"]] == plain["flows"]
    for feature in body["features"]:
        props = feature["properties"]
        assert feature["id"] == f"{props['from_country']}-{props['to_country']}"
        assert feature["geometry"]["type"] == "LineString"
        assert feature["geometry"]["coordinates"] == [
            position(props["from_country"]),
            position(props["to_country"]),
        ]
    us_br = next(f for f in body["features"] if f["id"] == "US-BR")
    # Longitude first: the United States lie west of Brazil, and north of it.
    (us_lon, us_lat), (br_lon, br_lat) = us_br["geometry"]["coordinates"]
    assert us_lon < br_lon < 0 and br_lat < 0 < us_lat
    meta = body["metadata"]
    assert meta["flow_count"] == len(body["features"]) and meta["threshold"] == 0.1
    assert meta["as_of"] == AS_OF.isoformat() and meta["time_window"] == "24h"
    assert body["warnings"] == []


def test_hotspots_are_points_at_each_country(loaded: TestClient) -> None:
    response = loaded.get("/v1/hotspots.geojson", params={"as_of": AS_OF.isoformat()})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    valid_collection(body)
    plain = loaded.get("/v1/hotspots", params={"as_of": AS_OF.isoformat()}).json()
    assert [f["properties"] for f in body["features"]] == plain["hotspots"]
    assert {f["id"] for f in body["features"]} == {"US", "BR", "AU", "JP"}
    for feature in body["features"]:
        assert feature["geometry"] == {
            "type": "Point",
            "coordinates": position(feature["properties"]["country"]),
        }
    assert body["metadata"]["hotspot_count"] == 4


def test_same_parameters_as_the_json_forms(loaded: TestClient) -> None:
    params = {**PARAMS, "countries": "br,us", "limit": "1"}
    flows = loaded.get("/v1/flows.geojson", params=params).json()
    assert [f["id"] for f in flows["features"]] == ["US-BR"]
    assert flows["metadata"]["countries"] == ["BR", "US"]
    hotspots = loaded.get(
        "/v1/hotspots.geojson", params={"as_of": AS_OF.isoformat(), "countries": "JP"}
    ).json()
    assert [f["id"] for f in hotspots["features"]] == ["JP"]
    # A window that holds nothing: an empty collection, still valid.
    empty = loaded.get("/v1/flows.geojson", params={**PARAMS, "time_window": "1h"}).json()
    valid_collection(empty)
    assert empty["features"] == []


@pytest.mark.parametrize("path", ["/v1/flows.geojson", "/v1/hotspots.geojson"])
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("time_window", "2h"),
        ("countries", "ZZ"),
        ("as_of", "yesterday"),
        # Its window would start before year 1 (found by the contract test: once a 500).
        ("as_of", "0001-01-01T01:01:00Z"),
        ("limit", "0"),
    ],
)
def test_bad_parameters_get_the_json_forms_400(
    client: TestClient, path: str, param: str, value: str
) -> None:
    response = client.get(path, params={param: value})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["field"] == param
    assert set(body) >= {"error", "detail", "request_id", "timestamp"}


def test_read_keys_guard_the_exports(database_url: str) -> None:
    settings = make_settings(database_url, read_api_keys=(READ_KEY,))
    with TestClient(create_app(settings)) as client:
        for path in ("/v1/flows.geojson", "/v1/hotspots.geojson"):
            refused = client.get(path)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthenticated"
            read = client.get(path, headers={"Authorization": f"Bearer {READ_KEY}"})
            assert read.status_code == 200
            valid_collection(read.json())


def test_countries_without_a_position_are_left_out_and_named() -> None:
    """ISO 3166-1 may assign a code the position data does not know yet."""
    flow = {"from_country": "US", "to_country": "XX", "heat": 0.9}
    kept = {"from_country": "US", "to_country": "BR", "heat": 0.8}
    features, warnings = geojson.flow_features([flow, kept])
    assert [f["id"] for f in features] == ["US-BR"]
    assert warnings == ["no known position for XX: their features are left out"]
    points, warnings = geojson.hotspot_features([{"country": "XY"}, {"country": "XX"}])
    assert points == []
    assert warnings == ["no known position for XX, XY: their features are left out"]
    body = geojson.feature_collection(features, {}, warnings)
    FeatureCollection.model_validate(body)


def test_simultaneous_flows_say_so_and_keep_their_line(client: TestClient) -> None:
    """GB and FR see the same topics five minutes apart: too close to tell a direction."""
    together = [
        record(country, topic, hours_ago=hours, count=30)
        for topic in ("Eurovision", "Six Nations")
        for country, hours in (("GB", 3.0), ("FR", 3.0 - 5 / 60))
    ] + [
        record(country, "Tour de France", hours_ago=hours)
        for country, hours in (("FR", 5), ("ES", 3))
    ]
    response = client.post("/v1/trends", json=together, headers=write_headers())
    assert response.status_code == 200, response.text
    params = {"as_of": AS_OF.isoformat(), "threshold": "0"}
    body = client.get("/v1/flows.geojson", params=params).json()
    valid_collection(body)
    features = {f["id"]: f for f in body["features"]}
    same = features["FR-GB"]  # the alphabetically smaller country first
    assert same["properties"]["simultaneous"] is True
    assert same["geometry"]["coordinates"] == [position("FR"), position("GB")]
    assert features["FR-ES"]["properties"]["simultaneous"] is False


def test_the_simultaneous_property_is_always_there() -> None:
    """Items without the field (older callers) are marked directed, not left unmarked."""
    features, _ = geojson.flow_features([{"from_country": "US", "to_country": "BR", "heat": 0.8}])
    assert features[0]["properties"]["simultaneous"] is False
