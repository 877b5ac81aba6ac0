"""One pass over a window's pairs serves every threshold at or above the one it was made for.

Random records go in through REST; the flows of one window are asked for at several thresholds
in an order that is neither rising nor falling. Each answer equals the model (REST and GraphQL,
tests/support/answers.py), and the service passes over the pairs only for a threshold lower
than any it has computed under the current generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from graph.core.windows import Span, TimeWindow
from graph.http.app import create_app
from graph.service.answer import Answer
from graph.service.queries import FlowQuery
from graph.settings import Settings
from graph.wiring import AppState
from tests.service.test_service import T0, random_records
from tests.support.answers import check_window, rest_flows
from tests.support.factories import spread, write_headers
from tests.support.reference import assert_flows_match, naive_flows, naive_window
from tests.support.servers import RedisServer


def _passes(client: TestClient, as_of: datetime) -> int:
    """Passes for this instant (the live publisher makes its own for "now" meanwhile)."""
    state = client.app_state["trendmap"]
    assert isinstance(state, AppState)
    return state.service.flow_passes[as_of]


def _flows_at(
    client: TestClient, records: list[dict[str, Any]], as_of: datetime, thresholds: list[float]
) -> int:
    """REST's flows at each threshold equal the model's; how many passes over the pairs that
    took."""
    expected = naive_flows(naive_window(records, Span(TimeWindow.H24, as_of)), 6.0, None)
    before = _passes(client, as_of)
    for threshold in thresholds:
        params = {"time_window": "24h", "as_of": as_of.isoformat(), "threshold": threshold}
        body = client.get("/v1/flows", params=params).json()
        assert_flows_match(rest_flows(body), expected, threshold)
    assert any(f.heat >= max(thresholds) for f in expected.values()), "the data should give flows"
    return _passes(client, as_of) - before


def test_a_higher_threshold_filters_the_flows_of_a_lower_one(client: TestClient) -> None:
    records = random_records(29)
    assert client.post("/v1/trends", json=records, headers=write_headers()).status_code == 200
    as_of = T0 + timedelta(hours=36, minutes=17)
    # 0.4, then 0.1 and 0.0 (each lower than any before): 0.7, 0.3 and 0.05 are filtered.
    assert _flows_at(client, records, as_of, [0.4, 0.7, 0.1, 0.0, 0.3, 0.05]) == 3
    # The check above covers the whole window: a cross-check with the definitions at every
    # threshold, REST and GraphQL, once more after the filtering.
    check_window(client, records, TimeWindow.H24, as_of, None, thresholds=(0.2, 0.6))

    # A write is a new generation: the next threshold is a new pass, whatever it is.
    more = [{**r, "count": r["count"] + 1} for r in records[:20]]
    assert client.post("/v1/trends", json=more, headers=write_headers()).status_code == 200
    assert _flows_at(client, records[20:] + more, as_of, [0.5, 0.55]) == 1


def test_a_new_threshold_is_filtered_in_memory_while_the_local_copy_is_trusted(
    redis_settings: Callable[..., Settings], throwaway_redis: RedisServer
) -> None:
    """CACHE_LOCAL_SECONDS > 0: a threshold above one computed under the trusted generation is
    answered from this worker's flows without a store round trip (Redis paused: no wait for
    its timeout, and a cache hit); a min_generation ahead of it goes the usual way."""
    settings = redis_settings(cache_local_seconds=30)
    with TestClient(create_app(settings)) as client:
        records = spread("FR", "BE", ["Alpha", "Beta"]) + spread("DE", "AT", ["Gamma"])
        written = client.post("/v1/trends", json=records, headers=write_headers()).json()
        state = client.app_state["trendmap"]
        deadline = time.monotonic() + 5
        while (state.publisher.pending or state.publisher.unsent) and time.monotonic() < deadline:
            time.sleep(0.01)  # the ingest's live snapshots go out before Redis is paused
        low = client.get("/v1/flows", params={"threshold": 0.1}).json()
        assert len(low["flows"]) == 2
        throwaway_redis.pause()
        try:
            started = time.monotonic()
            high = client.get("/v1/flows", params={"threshold": 0.3}).json()
            assert time.monotonic() - started < settings.cache_timeout_seconds
            assert high["metadata"]["cache_hit"] is True
            assert high["flows"] == [f for f in low["flows"] if f["heat"] >= 0.3]
            assert high["metadata"]["max_heat"] == low["metadata"]["max_heat"]
        finally:
            throwaway_redis.resume()
        ahead = {"threshold": 0.4, "min_generation": written["generation"] + 1}
        refused = client.get("/v1/flows", params=ahead).json()
        assert refused["metadata"]["cache_hit"] is False


def test_thresholds_that_cut_the_same_flows_share_one_answer(client: TestClient) -> None:
    """Two thresholds between the same two heats cut the same flows: one entry, its payload
    the very same bytes (the GraphQL layer knows a payload's identified flows by identity);
    a threshold that cuts fewer, or a limit, is an entry of its own."""
    as_of = T0 + timedelta(hours=6)
    # BE also saw a topic of its own: FR → BE is cooler than DE → AT.
    records = spread("FR", "BE", ["Alpha", "Beta"], as_of) + spread("DE", "AT", ["Gamma"], as_of)
    records.append({**records[-1], "country": "BE", "topic_label": "Delta"})
    assert client.post("/v1/trends", json=records, headers=write_headers()).status_code == 200
    state = client.app_state["trendmap"]
    assert isinstance(state, AppState) and client.portal is not None

    def answer(threshold: float, limit: int | None = None) -> Answer:
        query = FlowQuery.parse(
            time_window="24h", countries=None, as_of=as_of, threshold=threshold, limit=limit,
            settings=state.settings,
        )  # fmt: skip
        assert client.portal is not None
        return client.portal.call(state.service.flows, query)

    low = answer(0.1)
    heats = sorted(flow["heat"] for flow in low.items())
    assert len(heats) == 2 and heats[0] > 0.2
    first, second = answer(0.15), answer(0.2)
    assert first.payload is second.payload and first.items() == low.items()
    fewer = answer(heats[0] + 1e-6)
    assert fewer.count == 1 and fewer.payload is not first.payload
    assert answer(0.15, limit=1).payload == fewer.payload
    # However many cuts are asked for, a computation keeps at most twice its flows in them.
    [computed] = list(state.service._computed.values())
    for limit in (1, 2, None):
        for threshold in (0.1, heats[0] + 1e-6, heats[1] + 1e-6):
            answer(threshold, limit)
    assert computed.cuts.bytes <= 2 * (len(computed.flows) + 1)
