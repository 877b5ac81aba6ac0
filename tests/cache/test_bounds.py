"""The cache's bounds: whatever clients ask, what the store and each worker's local copy hold
stays under CACHE_MAX_ENTRIES and CACHE_MAX_BYTES, explicit instants off
CACHE_AS_OF_RESOLUTION_SECONDS are answered but never kept, and every answer equals the
uncached one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from graph.cache.bounds import CacheBounds
from graph.cache.entry import Entry
from graph.cache.local_copy import LocalCopy
from graph.cache.response_cache import ResponseCache
from graph.core.records import validate_batch
from graph.core.windows import TimeWindow
from graph.service.explorer import TopicsQuery
from graph.service.queries import FlowQuery, HotspotQuery
from graph.stores.memory import MemoryStore
from graph.wiring import Archive, open_archive
from tests.support.factories import make_settings
from tests.support.servers import RedisServer

AS_OF = datetime(2026, 11, 20, 12, tzinfo=UTC)
COUNTRIES = ["AR", "BR", "CO", "DE", "ES", "FR", "GB", "IN", "IT", "JP", "MX", "US"]
TOPICS = [f"Topic {n}" for n in range(10)]
MAX_ENTRIES = 300
MAX_BYTES = 200_000
# Distinct questions: the ones the cache keeps are asked three times (computed, then from the
# store, then from the local copy), the others once: about 1,200 requests in all.
QUESTIONS = 600


def test_only_instants_on_the_resolution_are_kept() -> None:
    bounds = CacheBounds(as_of_resolution_seconds=60)
    assert bounds.keeps(None)
    assert bounds.keeps(AS_OF, AS_OF + timedelta(minutes=7), None)
    assert not bounds.keeps(AS_OF + timedelta(seconds=1))
    assert not bounds.keeps(AS_OF + timedelta(microseconds=1))
    assert not bounds.keeps(AS_OF, AS_OF + timedelta(seconds=30))
    # The same instant written with another offset is the same instant.
    plus_five_thirty = timezone(timedelta(hours=5, minutes=30))
    assert bounds.keeps(AS_OF.astimezone(plus_five_thirty))
    assert CacheBounds(as_of_resolution_seconds=3600).keeps(AS_OF)
    assert not CacheBounds(as_of_resolution_seconds=3600).keeps(AS_OF + timedelta(minutes=1))
    assert CacheBounds(as_of_resolution_seconds=1).keeps(AS_OF + timedelta(seconds=1))
    # Before the epoch too.
    assert bounds.keeps(datetime(1960, 1, 1, 0, 1, tzinfo=UTC))
    assert not bounds.keeps(datetime(1960, 1, 1, 0, 0, 30, tzinfo=UTC))


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CacheBounds(max_entries=0)
    with pytest.raises(ValueError):
        CacheBounds(as_of_resolution_seconds=0)


def _entry(payload: bytes) -> Entry:
    return Entry("t", AS_OF, AS_OF, payload)


def test_the_local_copy_keeps_the_most_recently_used_within_its_entries() -> None:
    copy = LocalCopy(max_entries=3, max_bytes=10_000)
    with copy.live(60.0):
        for n in range(3):
            copy.keep(copy.epoch, "t", "k", str(n), _entry(b"[]"))
        assert copy.get("k", "0") is not None  # used: now the most recent
        copy.keep(copy.epoch, "t", "k", "3", _entry(b"[]"))
        assert len(copy) == 3
        assert copy.get("k", "1") is None
        assert all(copy.get("k", f) is not None for f in ("0", "2", "3"))


def test_the_local_copy_keeps_within_its_bytes() -> None:
    copy = LocalCopy(max_entries=100, max_bytes=1_000)
    with copy.live(60.0):
        for n in range(20):
            copy.keep(copy.epoch, "t", "k", str(n), _entry(b"x" * 300))
            assert copy.bytes <= 1_000
        assert len(copy) == 3
        assert copy.get("k", "19") is not None
        # One larger than the whole copy is not kept, and does not empty it for nothing.
        copy.keep(copy.epoch, "t", "k", "big", _entry(b"x" * 2_000))
        assert copy.get("k", "big") is None
        assert len(copy) == 3 and copy.bytes <= 1_000


def test_an_answer_the_cache_does_not_keep_is_computed_and_answered() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = ResponseCache(store, refresh_seconds=30, bounds=CacheBounds(max_bytes=10))
        calls = 0

        async def compute(token: str) -> Entry:
            nonlocal calls
            calls += 1
            return Entry(token, AS_OF, AS_OF, b"[" + b"1" * 100 + b"]")

        for _ in range(2):
            entry, hit = await cache.get_or_compute(
                "flows:24h:all", "f", sliding=False, compute=compute
            )
            assert (len(entry.payload), hit) == (102, False)
        assert calls == 2  # too large for the whole budget: never kept
        for _ in range(2):
            _, hit = await cache.get_or_compute(
                "flows:24h:all", "g", sliding=False, compute=compute, keep=False
            )
            assert not hit
        assert calls == 4
        assert store.counted("trendmap:budget") == (0, 0)
        await store.close()

    asyncio.run(main())


def _records() -> list[Any]:
    rng = random.Random(7)
    rows = []
    for country in COUNTRIES:
        for topic in rng.sample(TOPICS, 6):
            for _ in range(3):
                moment = AS_OF - timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
                rows.append(
                    {
                        "timestamp": moment.isoformat(),
                        "country": country,
                        "topic_label": topic,
                        "count": rng.randrange(1, 50),
                        "confidence": round(rng.random(), 2),
                    }
                )
    return validate_batch(rows)


def _questions(rng: random.Random) -> Iterator[FlowQuery | HotspotQuery | TopicsQuery]:
    """Distinct instants (half of them off the minute), windows, filters, thresholds, limits."""
    while True:
        as_of = AS_OF - timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        if rng.random() < 0.5:
            as_of += timedelta(seconds=rng.randrange(1, 60), microseconds=rng.randrange(10**6))
        window = rng.choice(list(TimeWindow))
        countries = None if rng.random() < 0.3 else tuple(sorted(rng.sample(COUNTRIES, 4)))
        limit = None if rng.random() < 0.5 else rng.randrange(1, 30)
        kind = rng.randrange(3)
        if kind == 0:
            threshold = rng.choice([0.0, 0.1, 0.5, round(rng.random(), 4)])
            yield FlowQuery(window, countries, threshold, as_of, limit)
        elif kind == 1:
            yield HotspotQuery(window, countries, as_of, limit)
        else:
            yield TopicsQuery(window, as_of, countries, None, limit or 20)


async def _ask(archive: Archive, question: FlowQuery | HotspotQuery | TopicsQuery) -> Any:
    if isinstance(question, FlowQuery):
        answer = await archive.service.flows(question)
        return answer.payload, answer.metadata, answer.warnings, answer.span
    if isinstance(question, HotspotQuery):
        answer = await archive.service.hotspots(question)
        return answer.payload, answer.span
    explored = await archive.explorer.topics(question)
    return explored.payload, explored.as_of


@asynccontextmanager
async def _archives(
    tmp_path: Path, redis_url: str | None
) -> AsyncIterator[tuple[Archive, Archive]]:
    """A bounded cached archive (its local copy live) and an uncached one, over one database."""
    database = f"sqlite:///{tmp_path / 'bounds.db'}"
    cached = make_settings(
        database,
        redis_url=redis_url,
        cache_max_entries=MAX_ENTRIES,
        cache_max_bytes=MAX_BYTES,
        cache_local_seconds=60,
    )
    async with (
        open_archive(cached) as archive,
        open_archive(make_settings(database, use_cache=False)) as reference,
    ):
        await archive.service.ingest(_records())
        listening = asyncio.create_task(archive.cache.listen(60.0))
        await asyncio.sleep(0)  # the task enters listen(): the local copy is live from then on
        try:
            yield archive, reference
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)


async def _ask_thousands(archive: Archive, reference: Archive) -> int:
    """Ask the questions; every answer must equal the first, and one in five the uncached
    answer (each costs a computation: a test of seconds, not minutes). How many answers came
    from the cache."""
    questions = _questions(random.Random(11))
    for n in range(QUESTIONS):
        question = next(questions)
        kept = archive.cache.bounds.keeps(question.as_of)
        first = await _ask(archive, question)
        for _ in range(2 if kept else 0):
            assert await _ask(archive, question) == first, question
        if n % 5 == 0:
            assert first == await _ask(reference, question), question
        copy = archive.cache.local_copy
        assert len(copy) <= MAX_ENTRIES and copy.bytes <= MAX_BYTES
    assert len(archive.cache.local_copy) > 0  # it was live, and filled
    return sum(n for (_, hit), n in archive.cache.lookups.items() if hit)


def _kept_instant(text: str) -> bool:
    return text == "now" or CacheBounds().keeps(datetime.fromisoformat(text))


def test_thousands_of_distinct_questions_stay_in_the_in_process_budget(tmp_path: Path) -> None:
    async def main() -> None:
        async with _archives(tmp_path, None) as (archive, reference):
            hits = await _ask_thousands(archive, reference)
            store = archive.store
            assert isinstance(store, MemoryStore)
            entries, size = store.counted("trendmap:budget")
            assert entries <= MAX_ENTRIES and size <= MAX_BYTES
            held = _held_in_memory(store)
            assert len(held) <= MAX_ENTRIES
            assert sum(len(k) + len(f) + len(v) for k, f, v in held) <= MAX_BYTES
            assert store.evictions > 0  # the questions asked for far more than the budget
            assert hits >= QUESTIONS // 2  # and what was kept was used
            for key, field, _ in held:
                assert _kept_instant(_instant_of(key, field)), (key, field)

    asyncio.run(main())


def test_thousands_of_distinct_questions_stay_in_the_redis_budget(tmp_path: Path) -> None:
    server = RedisServer()
    try:
        asyncio.run(_in_redis(tmp_path, server.url))
    finally:
        server.stop()


async def _in_redis(tmp_path: Path, url: str) -> None:
    raw = Redis.from_url(url)
    try:
        async with _archives(tmp_path, url) as (archive, reference):
            hits = await _ask_thousands(archive, reference)
            keys = [k async for k in raw.scan_iter(count=1_000)]
            # Entries, their bookkeeping (3 keys), the generation and the feeds' status.
            assert len(keys) <= MAX_ENTRIES + 5
            assert await raw.dbsize() == len(keys)
            used = 0
            for key in keys:
                used += await raw.memory_usage(key, samples=0) or 0
            # The entries' own bytes within the budget, and Redis's overhead per entry (the
            # key, the field, the bookkeeping's sorted set and hash) well under 1 kB each.
            assert used <= MAX_BYTES + 1_024 * MAX_ENTRIES
            fields = 0
            for key in keys:
                if await raw.type(key) == b"hash" and not key.startswith(b"trendmap:"):
                    for field in await raw.hkeys(key):
                        fields += 1
                        assert _kept_instant(_instant_of(key.decode(), field.decode()))
            assert fields <= MAX_ENTRIES
            assert archive.store.evictions > 0
            assert hits >= QUESTIONS // 2
    finally:
        await raw.aclose()


def _instant_of(key: str, field: str) -> str:
    """The explicit instant an entry was computed for (``now`` for a sliding window)."""
    if key.startswith("trends:"):
        return key.split(":", 2)[2]
    return field.split("|", 1)[0]


def _held_in_memory(store: MemoryStore) -> list[tuple[str, str, bytes]]:
    """Every hash field the in-process store holds (read inside: it has no SCAN)."""
    return [
        (key, field, value)
        for key, held in store._keys.items()
        if isinstance(held.value, dict)
        for field, value in held.value.items()
    ]


def test_evictions_are_counted_in_the_metrics(app_with: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client = app_with(cache_max_entries=2)

    def evictions() -> float:
        families = text_string_to_metric_families(client.get("/metrics").text)
        [family] = [f for f in families if f.name == "trendmap_cache_evictions"]
        return float(family.samples[0].value)

    assert evictions() == 0
    for minutes in range(4):
        as_of = (AS_OF - timedelta(minutes=minutes)).isoformat()
        assert client.get("/v1/hotspots", params={"as_of": as_of}).status_code == 200
    # Each answer is one entry (an empty archive has no per-country aggregates) and a roster.
    assert evictions() > 0
