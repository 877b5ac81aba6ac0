"""The per-country aggregate codec of the ``trends:`` cache entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from graph.core.aggregates import AggregateRow
from graph.service.snapshots import decode_rows, encode_rows

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_countrys_aggregates_round_trip() -> None:
    rows = [
        AggregateRow("US", "storm", "Storm", 3, 2.7, T0 - timedelta(hours=20), T0, 41),
        AggregateRow("US", "a\x01b", "A\x01B", 1, 0.5, T0, T0 + timedelta(microseconds=7), 41),
    ]
    assert decode_rows("US", encode_rows(rows)) == rows
