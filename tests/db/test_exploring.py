"""The exploring queries on SQLite and PostgreSQL: span, window cells, one topic's cells."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from db import migrate
from db.engine import make_engine
from db.exploring import ExploringRepository
from db.repository import TrendRepository
from graph.core.records import Record, topic_key

T = TypeVar("T")
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def run(url: str, records: list[Record], work: Callable[[ExploringRepository], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = make_engine(url)
        try:
            await migrate.upgrade(engine)
            await TrendRepository(engine).upsert(records)
            return await work(ExploringRepository(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def rec(country: str, label: str, minutes: int, count: int = 1, conf: float = 0.5) -> Record:
    moment = T0 + timedelta(minutes=minutes)
    return Record(moment, country, label, topic_key(label), count, conf, None)


RECORDS = [
    rec("US", "World Cup", 0, 10, 0.9),
    rec("US", "world  cup", 60, 5, 0.5),
    rec("BR", "WORLD CUP", 0, 3, 0.1),
    rec("BR", "100% _odd_", 30, 2),
    rec("JP", "Election", 120, 7),
]


def test_the_span_of_an_empty_and_a_full_archive(database_url: str) -> None:
    assert run(database_url, [], lambda repo: repo.span()) == (None, None, 0, 0)
    first, last, records, countries = run(database_url, RECORDS, lambda repo: repo.span())
    assert (first, last, records, countries) == (T0, T0 + timedelta(minutes=120), 5, 3)
    assert first is not None and first.tzinfo is not None


def test_window_cells_sum_each_country_and_topic(database_url: str) -> None:
    """Start exclusive, end inclusive; the label is the earliest record's in that country."""
    start, end = T0 - timedelta(minutes=1), T0 + timedelta(minutes=120)
    rows = run(database_url, RECORDS, lambda repo: repo.window_cells(start, end))
    by_cell = {(r[0], r[1]): r for r in rows}
    assert set(by_cell) == {
        ("US", "world cup"),
        ("BR", "world cup"),
        ("BR", "100% _odd_"),
        ("JP", "election"),
    }
    country, key, label, count, weighted, first, last = by_cell["US", "world cup"]
    assert (label, count, first, last) == ("World Cup", 15, T0, T0 + timedelta(minutes=60))
    assert weighted == 10 * 0.9 + 5 * 0.5
    later = run(database_url, RECORDS, lambda repo: repo.window_cells(T0, end))
    assert {(r[0], r[1]) for r in later} == {
        ("US", "world cup"),
        ("BR", "100% _odd_"),
        ("JP", "election"),
    }


def test_a_needle_matches_as_a_plain_substring(database_url: str) -> None:
    """No LIKE wildcards: % and _ are themselves."""
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=1)

    async def keys(repo: ExploringRepository) -> dict[str, set[str]]:
        found = {}
        for needle in ("cup", "%", "_odd", "d c", "x"):
            found[needle] = {r[1] for r in await repo.window_cells(start, end, needle)}
        return found

    assert run(database_url, RECORDS, keys) == {
        "cup": {"world cup"},
        "%": {"100% _odd_"},
        "_odd": {"100% _odd_"},
        "d c": {"world cup"},
        "x": set(),
    }


def test_topic_cells_include_both_bounds(database_url: str) -> None:
    async def cells(repo: ExploringRepository) -> tuple[list[str], list[str]]:
        both = await repo.topic_cells("world cup", T0, T0 + timedelta(minutes=60))
        inner = await repo.topic_cells(
            "world cup", T0 + timedelta(minutes=1), T0 + timedelta(hours=5)
        )
        return sorted(r[0] for r in both), sorted(f"{r[0]}:{r[3]}" for r in inner)

    assert run(database_url, RECORDS, cells) == (["BR", "US"], ["US:5"])


def test_country_records_cover_the_span_start_exclusive(database_url: str) -> None:
    start, end = T0, T0 + timedelta(minutes=60)
    rows = run(database_url, RECORDS, lambda repo: repo.country_records("US", start, end))
    assert rows == [(T0 + timedelta(minutes=60), "world cup", 5, 0.5)]
    every = run(
        database_url, RECORDS, lambda repo: repo.country_records("US", start - timedelta(1), end)
    )
    assert [(r[0], r[2]) for r in every] == [(T0, 10), (T0 + timedelta(minutes=60), 5)]
    assert every[0][0].tzinfo is not None
    assert run(database_url, RECORDS, lambda repo: repo.country_records("FR", start, end)) == []
