"""Hash fields written with a budget: both stores keep at most its entries and bytes, dropping
the oldest first, atomically, and count what they dropped.

Redis is ``TEST_REDIS_URL``, shared with other tests: every test writes under keys and a
budget name of its own random prefix, and deletes them after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from graph.stores import Budget, Store, open_store
from graph.stores.memory import MemoryStore
from tests.support.factories import TEST_REDIS_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"trendmap-test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Store]:
    opened = open_store("memory://" if request.param == "memory" else TEST_REDIS_URL)
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "redis":
            client = Redis.from_url(TEST_REDIS_URL)
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)
            await client.aclose()


def budget(prefix: str, entries: int = 1_000, size: int = 1_000_000) -> Budget:
    return Budget(entries, size, name=f"{prefix}budget")


async def held(store: Store, prefix: str, fields: list[str]) -> list[str]:
    """Which of ``fields`` of the test's hash are still there."""
    values = await store.read([(f"{prefix}k", f) for f in fields])
    return [f for f, v in zip(fields, values, strict=True) if v is not None]


def test_a_budget_keeps_something() -> None:
    with pytest.raises(ValueError):
        Budget(0, 100)
    with pytest.raises(ValueError):
        Budget(10, 0)


async def test_the_oldest_writes_go_past_the_entries(store: Store, prefix: str) -> None:
    fields = [f"f{n}" for n in range(10)]
    for field in fields:
        await store.write([(f"{prefix}k", field, b"v")], 60, budget=budget(prefix, entries=4))
    assert await held(store, prefix, fields) == fields[-4:]
    assert store.evictions == 6


async def test_the_oldest_writes_go_past_the_bytes(store: Store, prefix: str) -> None:
    key = f"{prefix}k"
    # Each field counts for its key, its name (2 characters) and its value.
    each = len(key) + 2 + 100
    fields = [f"f{n}" for n in range(10)]
    for field in fields:
        await store.write([(key, field, b"x" * 100)], 60, budget=budget(prefix, size=3 * each))
    assert await held(store, prefix, fields) == fields[-3:]


async def test_one_batch_is_trimmed_whole_and_may_trim_itself(store: Store, prefix: str) -> None:
    fields = [f"f{n}" for n in range(10)]
    key = f"{prefix}k"
    await store.write([(key, f, b"v") for f in fields], 60, budget=budget(prefix, entries=3))
    assert await held(store, prefix, fields) == fields[-3:]
    # A value larger than the whole budget is not kept at all; what was there stays.
    await store.write([(key, "big", b"x" * 10_000)], 60, budget=budget(prefix, size=5_000))
    assert await held(store, prefix, ["big", *fields]) == fields[-3:]


async def test_rewriting_a_field_counts_it_once(store: Store, prefix: str) -> None:
    key = f"{prefix}k"
    for _ in range(10):
        await store.write([(key, "same", b"v")], 60, budget=budget(prefix, entries=2))
    await store.write([(key, "other", b"v")], 60, budget=budget(prefix, entries=2))
    assert await held(store, prefix, ["same", "other"]) == ["same", "other"]
    assert store.evictions == 0


async def test_budgets_of_other_names_are_counted_apart(store: Store, prefix: str) -> None:
    key = f"{prefix}k"
    for n in range(5):
        await store.write([(key, f"a{n}", b"v")], 60, budget=budget(prefix, entries=5))
        await store.write([(key, f"b{n}", b"v")], 60, budget=budget(f"{prefix}other:", entries=5))
    assert len(await held(store, prefix, [f"{c}{n}" for c in "ab" for n in range(5)])) == 10


async def test_concurrent_writers_never_overshoot_together(store: Store, prefix: str) -> None:
    key = f"{prefix}k"

    async def writer(name: str) -> None:
        for n in range(25):
            await store.write([(key, f"{name}{n}", b"v")], 60, budget=budget(prefix, entries=20))

    await asyncio.gather(*(writer(name) for name in "abcdefgh"))
    everything = [f"{c}{n}" for c in "abcdefgh" for n in range(25)]
    assert len(await held(store, prefix, everything)) == 20
    assert store.evictions == 8 * 25 - 20


async def test_redis_keeps_the_bookkeeping_small_and_expiring(prefix: str) -> None:
    store = open_store(TEST_REDIS_URL)
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        for n in range(200):
            await store.write(
                [(f"{prefix}k{n % 7}", f"f{n}", b"v" * 50)], 60, budget=budget(prefix, entries=10)
            )
        order, sizes, totals = (f"{prefix}budget:{k}" for k in ("order", "sizes", "totals"))
        assert await client.zcard(order) == 10
        assert await client.hlen(sizes) == 10
        recorded = await client.hget(totals, "bytes")
        assert recorded is not None
        assert int(recorded) == sum(int(v) for v in await client.hvals(sizes))
        for name in (order, sizes, totals):
            assert 0 < await client.ttl(name) <= 60
        fields = 0
        for n in range(7):
            fields += await client.hlen(f"{prefix}k{n}")
        assert fields == 10
    finally:
        await store.close()
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


async def test_memory_counts_a_read_as_a_use() -> None:
    store = MemoryStore()
    limit = Budget(3, 1_000_000)
    for field in "abc":
        await store.write([("k", field, b"v")], 60, budget=limit)
    assert await store.read([("k", "a")]) == [b"v"]  # a is now the most recently used
    await store.write([("k", "d", b"v")], 60, budget=limit)
    assert await store.read([("k", f) for f in "abcd"]) == [b"v", None, b"v", b"v"]
    assert store.counted(limit.name) == (3, 3 * (1 + 1 + 1))


async def test_memory_drops_a_hash_whose_last_field_was_trimmed() -> None:
    store = MemoryStore()
    limit = Budget(1, 1_000_000)
    await store.write([("first", "f", b"v")], 60, budget=limit)
    await store.write([("second", "f", b"v")], 60, budget=limit)
    # The emptied key is gone: it can hold a string again, as in Redis.
    assert await store.set("first", b"s", 60)
    assert await store.read([("first", None)]) == [b"s"]
