"""Hotspots and flows on real feeds (tests/support/data: Twitter trends, New Year 2020-21).

Snapshots of five countries come about 8 hours apart and seconds apart from each other. On
such data the old definitions gave every country intensity 0 at most instants of the shorter
windows, and a direction to nearly every flow from seconds of scraping order. DESIGN.md's
definitions must say something there: these tests hold them to it, on SQLite and PostgreSQL,
and hold REST and GraphQL to the naive model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.core.windows import Span, TimeWindow
from tests.support.answers import check_window, rest_flows, rest_hotspots
from tests.support.factories import write_headers
from tests.support.reference import naive_window

DATA = Path(__file__).parents[1] / "support" / "data" / "twitter-trends-2020-12-31_2021-01-01.jsonl"
FIRST = datetime(2020, 12, 31, tzinfo=UTC)
# Every 3 hours and 17 minutes over the slice and a little after it: instants between
# snapshots, just after them and long after the last.
INSTANTS = [FIRST + timedelta(hours=1) + k * timedelta(hours=3, minutes=17) for k in range(13)]


def real_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines()]


@pytest.fixture
def loaded(client: TestClient) -> tuple[TestClient, list[dict[str, Any]]]:
    records = real_records()
    response = client.post("/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == len(records)
    return client, records


def test_the_slice_is_small_and_real() -> None:
    records = real_records()
    assert DATA.stat().st_size <= 200 * 1024
    assert {r["country"] for r in records} == {"GB", "IN", "NZ", "SG", "US"}
    assert len({r["timestamp"][:13] for r in records}) >= 5  # snapshots hours apart


def test_no_instant_with_data_has_every_intensity_zero(
    loaded: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    client, records = loaded
    with_data = 0
    for as_of in INSTANTS:
        for window in TimeWindow:
            params = {"time_window": window.value, "as_of": as_of.isoformat()}
            hotspots = rest_hotspots(client.get("/v1/hotspots", params=params).json())
            if not naive_window(records, Span(window, as_of)):
                assert hotspots == []
                continue
            with_data += 1
            assert hotspots[0].intensity == 1.0, (as_of, window)
            assert all(h.velocity > 0 and h.intensity > 0 for h in hotspots), (as_of, window)
            assert all(h.score > 0 for h in hotspots)
    assert with_data >= 30


def test_flows_under_the_minimum_lag_are_simultaneous(
    loaded: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    """Snapshots of all countries come seconds apart: a lag of seconds names no source."""
    client, _ = loaded
    kinds = {True: 0, False: 0}
    for as_of in INSTANTS:
        for window in TimeWindow:
            params = {"time_window": window.value, "as_of": as_of.isoformat(), "threshold": 0}
            for flow in rest_flows(client.get("/v1/flows", params=params).json()):
                assert flow.simultaneous == (flow.time_delta_hours < 0.5), flow
                if flow.simultaneous:
                    assert flow.from_country < flow.to_country
                kinds[flow.simultaneous] += 1
    assert kinds[True] > 50
    # Topics first seen in the window before keep their onset: some lags are real hours.
    assert kinds[False] > 0


def test_answers_equal_the_definitions_on_real_data(
    loaded: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    client, records = loaded
    for as_of in INSTANTS[1::3]:
        for window in TimeWindow:
            for countries in (None, ["us", "GB", "IN"]):
                check_window(client, records, window, as_of, countries, thresholds=(0.0, 0.2))


def test_the_strongest_link_is_named_when_nothing_is_hot(
    loaded: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    """At the default threshold real windows often hold no flow; metadata says why."""
    client, _ = loaded
    explained = 0
    for as_of in INSTANTS:
        params = {"time_window": "24h", "as_of": as_of.isoformat()}
        body = client.get("/v1/flows", params=params).json()
        meta = body["metadata"]
        if meta["pairs"] == 0:
            assert meta["max_heat"] is None
            continue
        hottest = meta["max_heat"]
        at_zero = client.get("/v1/flows", params={**params, "threshold": 0, "limit": 1}).json()
        first = at_zero["flows"][0]
        assert (hottest["heat"], hottest["from_country"], hottest["to_country"]) == (
            first["heat"],
            first["from_country"],
            first["to_country"],
        )
        if not body["flows"]:
            assert hottest["heat"] < 0.5
            explained += 1
    assert explained > 0


def test_a_topic_in_several_countries_goes_round_them_in_first_seen_order(
    loaded: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    """topicSpread on the real slice: every country the topic reached, by its first sighting,
    with the raw records' first and last times and summed counts."""
    client, records = loaded
    label = "Happy New Year"
    mine = [r for r in records if r["topic_label"].casefold() == label.casefold()]
    countries = {r["country"] for r in mine}
    assert len(countries) >= 3  # the point: a topic that went round the world
    params = {"topic": label, "since": "2020-12-30T00:00:00Z", "until": "2021-01-02T00:00:00Z"}
    body = client.get("/v1/topics/spread", params=params).json()["topic_spread"]
    got = body["countries"]
    assert [c["country"] for c in got] == sorted(
        countries,
        key=lambda code: (min(r["timestamp"] for r in mine if r["country"] == code), code),
    )
    for entry in got:
        theirs = [r for r in mine if r["country"] == entry["country"]]
        first = min(datetime.fromisoformat(r["timestamp"]) for r in theirs)
        last = max(datetime.fromisoformat(r["timestamp"]) for r in theirs)
        assert datetime.fromisoformat(entry["first_seen"]) == first
        assert datetime.fromisoformat(entry["last_seen"]) == last
        assert entry["count"] == sum(r["count"] for r in theirs)


def test_a_countrys_history_is_its_hotspot_at_every_point(
    loaded: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    """hotspotHistory on the real slice equals the single as_of hotspot answer at each point."""
    client, _ = loaded
    since, until = INSTANTS[0], INSTANTS[0] + timedelta(hours=30)
    params = {
        "country": "GB",
        "time_window": "6h",
        "since": since.isoformat(),
        "until": until.isoformat(),
        "step": "1h",
    }
    points = client.get("/v1/hotspots/history", params=params).json()["hotspot_history"]
    assert len(points) == 31
    assert any(p["score"] > 0 for p in points)
    for point in points[::5]:
        single = client.get(
            "/v1/hotspots",
            params={"time_window": "6h", "as_of": point["as_of"], "countries": "GB"},
        ).json()["hotspots"]
        if not single:
            assert point["score"] == 0 and point["volume"] == 0
            continue
        for name in ("score", "volume", "velocity", "avg_confidence", "topic_count"):
            assert point[name] == pytest.approx(single[0][name]), name
