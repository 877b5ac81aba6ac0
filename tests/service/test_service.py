"""Flows and hotspots through the whole stack equal DESIGN.md's definitions.

Random records that nobody tuned go in through REST; answers come out of REST and GraphQL,
for every window, several as_of points, with and without a country filter, on SQLite and
PostgreSQL. They are compared with a naive model computed straight from the raw records.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.core.windows import TimeWindow
from tests.support.answers import check_window
from tests.support.factories import write_headers

T0 = datetime(2026, 3, 1, tzinfo=UTC)
COUNTRIES = ["AR", "BR", "CO", "DE", "JP", "US"]
LABELS = [
    "World Cup",
    "world cup",
    "Storm",
    "Election",
    "Anime",
    "Bitcoin",
    "Oscars",
    "Strike",
    "Eclipse",
    "Marathon",
    "Budget",
    "Derby",
    "Festival",
    "Flu",
    "Heatwave",
]


def random_records(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(350):
        moment = T0 + timedelta(minutes=rng.randrange(0, 48 * 60), seconds=rng.randrange(60))
        out.append(
            {
                "timestamp": moment.isoformat(),
                "country": rng.choice(COUNTRIES).lower(),
                "topic_label": rng.choice(LABELS),
                "count": rng.randint(1, 1000),
                "confidence": round(rng.random(), 4),
                "sources": None,
            }
        )
    return out


@pytest.mark.parametrize("seed", [11, 29])
def test_answers_equal_the_definitions(client: TestClient, seed: int) -> None:
    records = random_records(seed)
    response = client.post("/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200
    checked_flows = simultaneous = 0
    for as_of in (
        T0 + timedelta(hours=20),
        T0 + timedelta(hours=36, minutes=17),
        T0 + timedelta(hours=48),
    ):
        for window in TimeWindow:
            for countries in (None, ["BR", "co", "US", "JP"]):
                flows, _ = check_window(client, records, window, as_of, countries)
                checked_flows += len(flows)
                simultaneous += sum(f.simultaneous for f in flows)
    assert checked_flows > 50, "the data should give flows to compare"
    assert 0 < simultaneous < checked_flows, "and both kinds of flow"
