"""Both stores against one contract, and the Redis store through outages of a real server.

Redis is ``TEST_REDIS_URL`` (default: the local server), shared with other tests: every test
works under keys and channels of its own random prefix and never flushes the database. The
outage tests start, kill and restart a throwaway ``redis-server`` of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from graph.stores import Store, StoreUnavailable, open_store
from graph.stores.memory import MemoryStore
from graph.stores.redis import MAX_CONNECTIONS, RedisStore
from tests.support.factories import TEST_REDIS_URL
from tests.support.servers import RedisServer

pytestmark = pytest.mark.anyio

REDIS_URL = TEST_REDIS_URL
WARM_UP = b"warm-up"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"trendmap-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    """A plain client, to look at what the Redis store left in Redis."""
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Store]:
    # A generous timeout: these tests are about what the store does, not how fast (the
    # short default is tested on its own, below); a loaded machine must not fail them.
    opened = open_store("memory://" if request.param == "memory" else REDIS_URL, socket_timeout=10)
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "redis":
            client = Redis.from_url(REDIS_URL)
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)
            await client.aclose()


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


async def eventually(check: Callable[[], bool], *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def collect(store: Store, channel: str, inbox: list[bytes]) -> None:
    async for message in store.subscribe(channel):
        inbox.append(message)


async def warm_up(store: Store, channel: str, *inboxes: list[bytes]) -> None:
    """Publish until every subscriber has received something: all are subscribed by then."""
    deadline = time.monotonic() + 5.0
    while not all(inboxes):
        assert time.monotonic() < deadline, "the subscribers never subscribed"
        await store.publish(channel, WARM_UP)
        await asyncio.sleep(0.01)


def after_warm_up(inbox: list[bytes]) -> list[bytes]:
    return [message for message in inbox if message != WARM_UP]


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# The contract, on both stores.


def test_open_store_chooses_the_backend_by_url() -> None:
    assert open_store(None).kind == "memory"
    assert open_store("memory://").kind == "memory"
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///tmp/r.sock"):
        assert open_store(url).kind == "redis"


def test_open_store_refuses_other_urls_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="'http'") as refused:
        open_store("http://user:s3cret@cache.example")
    assert "s3cret" not in str(refused.value)
    with pytest.raises(ValueError):
        open_store("memory")


async def test_read_answers_strings_and_hash_fields_in_one_call(store: Store, prefix: str) -> None:
    assert await store.set(f"{prefix}token", b"abc", 60)
    await store.write(
        [
            (f"{prefix}flows", "24h", b"F24"),
            (f"{prefix}flows", "1h", b"F1"),
            (f"{prefix}h", "x", b""),
        ],
        60,
    )
    values = await store.read(
        [
            (f"{prefix}flows", "1h"),
            (f"{prefix}token", None),
            (f"{prefix}flows", "7d"),
            (f"{prefix}missing", None),
            (f"{prefix}missing", "1h"),
            (f"{prefix}flows", "24h"),
            (f"{prefix}h", "x"),
        ]
    )
    assert values == [b"F1", b"abc", None, None, None, b"F24", b""]
    assert await store.read([]) == []


async def test_read_all_answers_every_field_of_a_hash(store: Store, prefix: str) -> None:
    key = f"{prefix}interest"
    assert await store.read_all(key) == {}
    await store.write([(key, "worker-a", b'{"w":1}'), (key, "worker-b", b"")], 60)
    assert await store.read_all(key) == {"worker-a": b'{"w":1}', "worker-b": b""}
    assert await store.set(f"{prefix}string", b"v", 60)
    with pytest.raises(StoreUnavailable):  # not a hash: the store's error, never a crash
        await store.read_all(f"{prefix}string")


async def test_write_replaces_fields_and_keeps_the_others(store: Store, prefix: str) -> None:
    key = f"{prefix}trends"
    await store.write([(key, "a", b"1"), (key, "b", b"2")], 60)
    await store.write([(key, "a", b"3")], 60)
    await store.write([], 60)
    assert await store.read([(key, "a"), (key, "b")]) == [b"3", b"2"]


async def test_write_gives_the_whole_key_its_ttl_in_redis(prefix: str, raw: Redis) -> None:
    store = open_store(REDIS_URL)
    try:
        await store.write([(f"{prefix}a", "f", b"1"), (f"{prefix}b", "f", b"2")], 30)
        for key in (f"{prefix}a", f"{prefix}b"):
            ttl = await raw.ttl(key)
            assert 0 < ttl <= 30
        await store.set(f"{prefix}s", b"v", 1.5)
        assert 0 < await raw.pttl(f"{prefix}s") <= 1500
    finally:
        await store.close()
        await raw.delete(f"{prefix}a", f"{prefix}b", f"{prefix}s")


async def test_hashes_expire_as_a_whole_key_in_memory() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.write([("k", "a", b"1")], 10)
    clock.now += 5
    # Renews the expiry of the whole key, field a included (EXPIRE semantics).
    await store.write([("k", "b", b"2")], 10)
    clock.now += 9
    assert await store.read([("k", "a"), ("k", "b")]) == [b"1", b"2"]
    clock.now += 1
    assert await store.read([("k", "a"), ("k", "b")]) == [None, None]
    # An expired hash is gone: writing to it starts a new one.
    await store.write([("k", "c", b"3")], 10)
    assert await store.read([("k", "a"), ("k", "c")]) == [None, b"3"]


async def test_strings_expire_in_memory_and_expired_keys_are_swept() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.set("short", b"1", 0.5)
    await store.set("long", b"2", 100)
    clock.now += 0.499
    assert await store.read([("short", None)]) == [b"1"]
    clock.now += 0.001
    assert await store.read([("short", None), ("long", None)]) == [None, b"2"]
    for n in range(100):
        await store.set(f"forgotten{n}", b"x", 1)
    clock.now += 60
    await store.set("trigger", b"x", 1)
    # Nobody read the forgotten keys again; the sweep still dropped them.
    assert len(store._keys) == 2


async def test_fractional_ttls_expire_on_time(store: Store, prefix: str) -> None:
    await store.set(f"{prefix}s", b"v", 0.05)
    assert await store.read([(f"{prefix}s", None)]) == [b"v"]
    await asyncio.sleep(0.15)
    assert await store.read([(f"{prefix}s", None)]) == [None]


async def test_set_only_if_absent(store: Store, prefix: str) -> None:
    key = f"{prefix}generation"
    assert await store.set(key, b"first", 60, only_if_absent=True)
    assert not await store.set(key, b"second", 60, only_if_absent=True)
    assert await store.read([(key, None)]) == [b"first"]
    assert await store.set(key, b"third", 60)
    assert await store.read([(key, None)]) == [b"third"]


async def test_a_lock_has_one_holder_until_released(store: Store, prefix: str) -> None:
    key = f"{prefix}lock"
    token = await store.acquire(key, 10)
    assert token is not None
    assert await store.acquire(key, 10) is None
    await store.release(key, "not-the-token")
    assert await store.acquire(key, 10) is None, "a wrong token released the lock"
    await store.release(key, token)
    again = await store.acquire(key, 10)
    assert again is not None and again != token


async def test_a_lock_expires_and_its_old_token_cannot_release_the_next_one(
    store: Store, prefix: str
) -> None:
    key = f"{prefix}lock"
    old = await store.acquire(key, 0.05)
    assert old is not None
    await asyncio.sleep(0.15)
    new = await store.acquire(key, 10)
    assert new is not None
    await store.release(key, old)
    assert await store.acquire(key, 10) is None


async def test_only_the_holder_extends_a_lock_and_an_expired_lock_cannot_be_extended(
    store: Store, prefix: str
) -> None:
    key = f"{prefix}lease"
    token = await store.acquire(key, 0.2)
    assert token is not None
    assert not await store.extend(key, "not-the-token", 10)
    assert await store.extend(key, token, 10)
    await asyncio.sleep(0.3)
    assert await store.acquire(key, 10) is None, "the extended lock expired at its old time"
    await store.release(key, token)
    short = await store.acquire(key, 0.05)
    assert short is not None
    await asyncio.sleep(0.15)
    assert not await store.extend(key, short, 10), "an expired lock was brought back"
    with pytest.raises(ValueError):
        await store.extend(key, short, 0)


async def test_hits_add_up_within_a_window(store: Store, prefix: str) -> None:
    key = f"{prefix}ratelimit"
    count, reset = await store.hit(key, 60, 1)
    assert count == 1
    assert 59 < reset <= 60
    count, reset = await store.hit(key, 60, 3)
    assert count == 4
    assert 0 < reset <= 60
    # A decimal string, as INCRBY keeps it, in both stores.
    assert await store.read([(key, None)]) == [b"4"]
    assert (await store.hit(f"{prefix}other", 60, 2))[0] == 2


async def test_a_hit_keeps_the_window_of_the_first(store: Store, prefix: str) -> None:
    """A later hit with a shorter window neither shortens nor restarts the current one."""
    key = f"{prefix}ratelimit"
    await store.hit(key, 60, 1)
    count, reset = await store.hit(key, 0.05, 1)
    assert count == 2
    assert reset > 59
    await asyncio.sleep(0.15)
    assert (await store.hit(key, 60, 1))[0] == 3


async def test_a_window_that_ends_starts_the_count_over(store: Store, prefix: str) -> None:
    key = f"{prefix}ratelimit"
    assert (await store.hit(key, 0.05, 5))[0] == 5
    await asyncio.sleep(0.15)
    count, reset = await store.hit(key, 10, 1)
    assert count == 1
    assert 9 < reset <= 10


async def test_concurrent_hits_are_each_counted_once(store: Store, prefix: str) -> None:
    key = f"{prefix}ratelimit"
    results = await asyncio.gather(*(store.hit(key, 60, 1) for _ in range(50)))
    assert sorted(count for count, _ in results) == list(range(1, 51))


async def test_a_hit_on_a_key_that_is_not_a_counter_is_a_store_error(
    store: Store, prefix: str
) -> None:
    await store.write([(f"{prefix}hash", "f", b"v")], 60)
    await store.set(f"{prefix}text", b"not a number", 60)
    for key in (f"{prefix}hash", f"{prefix}text"):
        with pytest.raises(StoreUnavailable):
            await store.hit(key, 60, 1)


@pytest.mark.parametrize(("window", "cost"), [(0, 1), (-1, 1), (float("inf"), 1), (60, 0)])
async def test_hits_need_a_positive_window_and_cost(
    store: Store, prefix: str, window: float, cost: int
) -> None:
    with pytest.raises(ValueError):
        await store.hit(f"{prefix}ratelimit", window, cost)
    assert await store.read([(f"{prefix}ratelimit", None)]) == [None]


async def test_two_subscribers_receive_every_message_in_order(store: Store, prefix: str) -> None:
    channel = f"{prefix}updates"
    first: list[bytes] = []
    second: list[bytes] = []
    other: list[bytes] = []
    tasks = [
        asyncio.create_task(collect(store, channel, first)),
        asyncio.create_task(collect(store, channel, second)),
        asyncio.create_task(collect(store, f"{prefix}elsewhere", other)),
    ]
    try:
        await warm_up(store, channel, first, second)
        sent = [f"message {n}".encode() for n in range(50)]
        for message in sent:
            await store.publish(channel, message)
        await eventually(lambda: min(len(after_warm_up(first)), len(after_warm_up(second))) >= 50)
        assert after_warm_up(first) == sent
        assert after_warm_up(second) == sent
        assert other == []
    finally:
        await stop(*tasks)


async def test_close_ends_subscriptions_and_refuses_later_calls(store: Store, prefix: str) -> None:
    channel = f"{prefix}updates"
    inbox: list[bytes] = []
    task = asyncio.create_task(collect(store, channel, inbox))
    await warm_up(store, channel, inbox)
    started = time.monotonic()
    await store.close()
    # Ends normally (the iterator is exhausted), not with an exception.
    await asyncio.wait_for(task, 3.0)
    assert time.monotonic() - started < 2.0
    for call in (
        store.ping(),
        store.read([(f"{prefix}k", None)]),
        store.set(f"{prefix}k", b"v", 1),
        store.publish(channel, b"late"),
        store.hit(f"{prefix}k", 60, 1),
    ):
        with pytest.raises(StoreUnavailable):
            await call
    assert [message async for message in store.subscribe(channel)] == []


async def test_a_key_of_the_wrong_type_is_a_store_error(store: Store, prefix: str) -> None:
    await store.set(f"{prefix}string", b"v", 60)
    await store.write([(f"{prefix}hash", "f", b"v")], 60)
    with pytest.raises(StoreUnavailable):
        await store.read([(f"{prefix}string", "f")])
    with pytest.raises(StoreUnavailable):
        await store.read([(f"{prefix}hash", None)])
    with pytest.raises(StoreUnavailable):
        await store.write([(f"{prefix}string", "f", b"v")], 60)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
async def test_ttls_must_be_positive(store: Store, prefix: str, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.set(f"{prefix}k", b"v", ttl)
    with pytest.raises(ValueError):
        await store.write([(f"{prefix}h", "f", b"v")], ttl)  # type: ignore[arg-type]
    assert await store.read([(f"{prefix}k", None), (f"{prefix}h", "f")]) == [None, None]


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_a_stopped_subscriber_leaves_redis(prefix: str, raw: Redis) -> None:
    """Cancelling the consumer closes its pub/sub connection: nothing leaks per subscriber."""
    store = open_store(REDIS_URL)
    channel = f"{prefix}updates"
    inbox: list[bytes] = []
    task = asyncio.create_task(collect(store, channel, inbox))
    try:
        await warm_up(store, channel, inbox)
        assert await raw.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await stop(task)
        assert await raw.pubsub_numsub(channel) == [(channel.encode(), 0)]
    finally:
        await store.close()


async def test_a_server_that_does_not_answer_times_out_quickly() -> None:
    """A hung server (it accepts, never replies) costs one socket timeout, not a hang."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = open_store(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        assert time.monotonic() - started < 1.0
    finally:
        await store.close()
        server.close()
        await server.wait_closed()


# Outages, on a redis-server of the tests' own.


@pytest.fixture
async def outage_store(throwaway_redis: RedisServer) -> AsyncIterator[Store]:
    opened = open_store(throwaway_redis.url)
    try:
        yield opened
    finally:
        await opened.close()


def calls(store: Store) -> dict[str, Callable[[], Awaitable[object]]]:
    """One of every call that talks to the server."""
    return {
        "read": lambda: store.read([("k", None), ("h", "f")]),
        "write": lambda: store.write([("h", "f", b"v")], 60),
        "set": lambda: store.set("k", b"v", 60),
        "acquire": lambda: store.acquire("lock", 10),
        "release": lambda: store.release("lock", "token"),
        "publish": lambda: store.publish("channel", b"m"),
        "hit": lambda: store.hit("counter", 60, 1),
        "ping": lambda: store.ping(),
    }


async def test_a_dead_server_is_store_unavailable_at_once(
    throwaway_redis: RedisServer, outage_store: Store
) -> None:
    await outage_store.write([("h", "f", b"v")], 60)
    throwaway_redis.stop()
    for name, call in calls(outage_store).items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await call()
        assert time.monotonic() - started < 0.5, f"{name} took too long to fail"


async def test_the_same_store_works_again_when_the_server_is_back(
    throwaway_redis: RedisServer, outage_store: Store
) -> None:
    await outage_store.ping()
    throwaway_redis.stop()
    with pytest.raises(StoreUnavailable):
        await outage_store.ping()
    throwaway_redis.start()
    for call in calls(outage_store).values():
        await call()
    assert await outage_store.read([("h", "f")]) == [b"v"]


async def test_a_restart_between_two_calls_does_not_fail_the_second(
    throwaway_redis: RedisServer, outage_store: Store
) -> None:
    """The pooled connection died with the server; the store replaces it within the call."""
    await outage_store.set("k", b"before", 60)
    throwaway_redis.stop()
    throwaway_redis.start()
    assert await outage_store.read([("k", None)]) == [None]


async def test_a_subscription_resubscribes_after_the_server_restarts(
    throwaway_redis: RedisServer, outage_store: Store
) -> None:
    inbox: list[bytes] = []
    task = asyncio.create_task(collect(outage_store, "updates", inbox))
    try:
        await warm_up(outage_store, "updates", inbox)
        throwaway_redis.stop()
        # Long enough for the subscriber to notice and back off a few times.
        await asyncio.sleep(0.5)
        assert not task.done()
        throwaway_redis.start()
        deadline = time.monotonic() + 10.0
        while b"after the restart" not in inbox:
            assert time.monotonic() < deadline, "the subscription never came back"
            assert not task.done(), "the subscription ended"
            # Only the subscription is on trial here: a publish may fail while Redis starts.
            with contextlib.suppress(StoreUnavailable):
                await outage_store.publish("updates", b"after the restart")
            await asyncio.sleep(0.05)
    finally:
        await stop(task)


async def test_a_new_counter_never_has_more_than_its_window_left_in_memory() -> None:
    """``(now + 60) - now`` is 60.000000000000004 for some clock readings; a rate limit's reset
    rounded up from it would say 61 s in a 60 s window."""
    clock = Clock()
    clock.now = 8174.326235239371  # one such reading
    store = MemoryStore(clock=clock)
    count, left = await store.hit("c", 60, 1)
    assert (count, left) == (1, 60.0)


async def test_a_burst_of_calls_beyond_the_pool_waits_for_a_connection(prefix: str) -> None:
    """More concurrent calls than the pool holds connections (a busy worker): each waits for
    a free connection instead of failing as if Redis were down."""
    store = open_store(REDIS_URL, socket_timeout=10)
    try:
        calls = 3 * MAX_CONNECTIONS
        written = await asyncio.gather(*(store.set(f"{prefix}{i}", b"v", 60) for i in range(calls)))
        assert written == [True] * calls
    finally:
        await store.close()
        client = Redis.from_url(REDIS_URL)
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


async def test_hits_made_together_share_one_round_trip(prefix: str, raw: Redis) -> None:
    """Every client's reservation in a burst of requests: one pipeline, each hit answered on
    its own (a key that is not a counter fails only its own)."""
    store = open_store(REDIS_URL, socket_timeout=10)
    assert isinstance(store, RedisStore)
    try:
        await raw.hset(f"{prefix}not-a-counter", "f", "v")
        before = store.hit_round_trips
        results = await asyncio.gather(
            *(store.hit(f"{prefix}client-{i}", 60, i + 1) for i in range(500)),
            store.hit(f"{prefix}not-a-counter", 60, 1),
            return_exceptions=True,
        )
        assert store.hit_round_trips - before == 1
        counts = [result[0] for result in results[:500] if isinstance(result, tuple)]
        assert counts == list(range(1, 501))
        assert isinstance(results[500], StoreUnavailable)
        assert await raw.get(f"{prefix}client-499") == b"500"
    finally:
        await store.close()
        async for key in raw.scan_iter(match=f"{prefix}*"):
            await raw.delete(key)
