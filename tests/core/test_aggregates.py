"""A window's aggregates, column by column and row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graph.core.aggregates import AggregateRow, AggregateTable

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_the_aggregate_table_is_a_sequence_of_rows() -> None:
    rows = [
        AggregateRow("US", "a", "A", 3, 1.5, T0, T0 + timedelta(hours=1), 1),
        AggregateRow(
            "BR", "b", "B", 2, 2.0, T0 + timedelta(microseconds=7), T0 + timedelta(hours=2), 0
        ),
    ]
    table = AggregateTable.from_rows(rows)
    assert len(table) == 2
    assert table[1] == rows[1]
    assert table[-1] == rows[1]
    assert table[:1] == rows[:1]
    assert list(table) == rows
    assert table.first_seen_us[1] - table.first_seen_us[0] == 7
    assert table.window_first_seen_us[1] - table.window_first_seen_us[0] == 3_600_000_000
    assert table.previous_volumes == [1, 0]
    with pytest.raises(IndexError):
        table[2]
