"""The Redis store, over redis.asyncio: entries, locks and messages shared by every worker.

Every call is short and fails fast: a quarter-second socket timeout, no retry on a timeout and
one immediate retry on a broken connection (a pooled connection that died with a restarted
server is replaced without failing the call). Longer waits are the caller's circuit breaker's
business. Every client error is translated here: callers see StoreUnavailable, not redis.

A worker holds at most ``MAX_CONNECTIONS`` connections; a call that finds them all busy waits
for one, as long as a reply may take, rather than failing (redis-py's own pool refuses at
once: a burst of concurrent requests must not read as an outage). Counter hits made in one
turn of the event loop (every client's rate-limit reservations as a burst of requests comes
in) share one pipeline: one connection and one round trip for any number of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError
from redis.typing import EncodableT, FieldT

from graph.observability.log import logger
from graph.stores import Budget, StoreUnavailable, acquire_by_set, check_ttl
from graph.stores.coalesce import Coalesced

# The builtin TimeoutError, which asyncio.TimeoutError is since Python 3.11, is an OSError.
_CLIENT_ERRORS = (RedisError, OSError)

# Deletes the lock only while it holds the caller's token, atomically: a GET and a DEL from
# the client could delete a lock that expired in between and was taken by someone else.
_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"""

# Renews the lock only while it holds the caller's token, for the same reason.
_EXTEND = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"""

# Counts into a fixed window: the first hit (or a counter someone left without an expiry)
# starts the window. A script rather than INCRBY + PEXPIRE NX, which needs Redis 7.
_HIT = """
local count = redis.call("INCRBY", KEYS[1], ARGV[1])
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
    ttl = tonumber(ARGV[2])
    redis.call("PEXPIRE", KEYS[1], ttl)
end
return {count, ttl}
"""

# Where the fields written with a budget are counted, after the budget's name: a sorted set of
# "key\nfield" by write order, a hash of the bytes each counts for, and the running total and
# write sequence.
BUDGET_KEYS = (":order", ":sizes", ":totals")

# Writes the fields (but none larger than the whole budget), then drops the ones written
# longest ago until the budget holds, all in one atomic step, so workers writing at once cannot
# overshoot it together. The bookkeeping lives as long as the newest entry (the same TTL,
# renewed on each write); a field that expired stays counted until it is trimmed, so the count
# errs high. The number of fields trimmed.
# KEYS: the three budget keys, then each entry's key; ARGV: ttl, max entries, max bytes, then
# each entry's field and value.
_WRITE_WITHIN_BUDGET = """
local order, sizes, totals = KEYS[1], KEYS[2], KEYS[3]
local ttl = ARGV[1]
local max_entries, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local total = tonumber(redis.call("HGET", totals, "bytes") or "0")
for i = 4, #KEYS do
    local key, field, value = KEYS[i], ARGV[2 * i - 4], ARGV[2 * i - 3]
    local member = key .. "\\n" .. field
    local size = #member - 1 + #value
    total = total - tonumber(redis.call("HGET", sizes, member) or "0")
    if size > max_bytes then
        -- Larger than the whole budget: not kept, and it pushes nothing else out.
        redis.call("HDEL", key, field)
        redis.call("HDEL", sizes, member)
        redis.call("ZREM", order, member)
    else
        total = total + size
        redis.call("HSET", key, field, value)
        redis.call("EXPIRE", key, ttl)
        redis.call("HSET", sizes, member, size)
        redis.call("ZADD", order, redis.call("HINCRBY", totals, "sequence", 1), member)
    end
end
local count = redis.call("ZCARD", order)
local trimmed = 0
while count > 0 and (count > max_entries or total > max_bytes) do
    local member = redis.call("ZPOPMIN", order)[1]
    local cut = string.find(member, "\\n", 1, true)
    redis.call("HDEL", string.sub(member, 1, cut - 1), string.sub(member, cut + 1))
    total = total - tonumber(redis.call("HGET", sizes, member) or "0")
    redis.call("HDEL", sizes, member)
    count = count - 1
    trimmed = trimmed + 1
end
redis.call("HSET", totals, "bytes", total)
for i = 1, 3 do
    redis.call("EXPIRE", KEYS[i], ttl)
end
return trimmed
"""

MAX_CONNECTIONS = 100
"""Per store (a worker has one): redis-py's default, now a ceiling calls wait under."""

_RESUBSCRIBE_FIRST_SECONDS = 0.1
_RESUBSCRIBE_MAX_SECONDS = 2.0
# How long one wait for a message lasts: the subscription checks between two waits whether the
# store was closed, and redis-py sends its health-check PING between them too.
_POLL_SECONDS = 1.0


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except _CLIENT_ERRORS as exc:
        raise StoreUnavailable(f"redis {action} failed: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _jittered(delay: float) -> float:
    # Between half and all of the delay, so subscribers cut off together do not come back
    # together.
    return delay / 2 + random.uniform(0, delay / 2)


class RedisStore:
    """Strings, hashes, locks and pub/sub in Redis."""

    kind = "redis"

    def __init__(self, url: str, *, socket_timeout: float = 0.25) -> None:
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            # Waiting for a free connection, as long as a reply may take.
            timeout=socket_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=10,
            retry_on_timeout=False,
            # Explicit, as redis-py's defaults differ between Redis() (three retries with
            # backoff, for seconds against a dead server) and from_url() (none, so the first
            # call after a server restart fails on the dead pooled connection).
            retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
        )
        # Its own pool: closing the client closes it too.
        self._client = Redis.from_pool(self._pool)
        self._hits: Coalesced[tuple[str, int, int], tuple[int, float]] = Coalesced(self._hit_all)
        self._release_script = self._client.register_script(_RELEASE)
        self._extend_script = self._client.register_script(_EXTEND)
        self._hit_script = self._client.register_script(_HIT)
        self._budget_script = self._client.register_script(_WRITE_WITHIN_BUDGET)
        # Fields this worker's writes trimmed to keep within a budget.
        self.evictions = 0
        self._closed = False
        self._closing = asyncio.Event()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the Redis store is closed")

    async def read(self, items: Sequence[tuple[str, str | None]]) -> list[bytes | None]:
        """GET for ``(key, None)``, HGET for ``(key, field)``, in one pipeline."""
        self._check_open()
        if not items:
            return []
        with _translated("read"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, field in items:
                    if field is None:
                        pipe.get(key)
                    else:
                        pipe.hget(key, field)
                values: list[bytes | None] = await pipe.execute()
        return values

    async def read_all(self, key: str) -> dict[str, bytes]:
        """HGETALL: every field of the hash at ``key`` (field names as text)."""
        self._check_open()
        with _translated("read"):
            fields = await self._client.hgetall(key)
        # The client answers bytes (no decode_responses): names are text to the callers.
        return {_text(name): _bytes(value) for name, value in fields.items()}

    async def write(
        self,
        entries: Sequence[tuple[str, str, bytes]],
        ttl_seconds: int,
        *,
        budget: Budget | None = None,
    ) -> None:
        """HSET the fields of each key and EXPIRE it, in one pipeline; with a budget, in one
        Lua script that then trims every field written with one to it, oldest write first."""
        self._check_open()
        check_ttl(ttl_seconds)
        if budget is not None:
            await self._write_within(entries, ttl_seconds, budget)
            return
        fields: dict[str, dict[FieldT, EncodableT]] = {}
        for key, field, value in entries:
            fields.setdefault(key, {})[field] = value
        if not fields:
            return
        with _translated("write"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, mapping in fields.items():
                    pipe.hset(key, mapping=mapping)
                    pipe.expire(key, ttl_seconds)
                await pipe.execute()

    async def _write_within(
        self, entries: Sequence[tuple[str, str, bytes]], ttl_seconds: int, budget: Budget
    ) -> None:
        if not entries:
            return
        args: list[EncodableT] = [math.ceil(ttl_seconds), budget.entries, budget.bytes]
        for _, field, value in entries:
            args += [field, value]
        keys = [*(budget.name + k for k in BUDGET_KEYS), *(key for key, _, _ in entries)]
        with _translated("write"):
            trimmed = await self._budget_script(keys=keys, args=args)
        self.evictions += int(trimmed)

    async def set(
        self, key: str, value: bytes, ttl_seconds: float, *, only_if_absent: bool = False
    ) -> bool:
        """SET key value PX ms (NX with only_if_absent); True when written."""
        self._check_open()
        check_ttl(ttl_seconds)
        # Rounded up, so a positive TTL never becomes PX 0, which Redis refuses.
        milliseconds = math.ceil(ttl_seconds * 1000)
        with _translated("set"):
            written = await self._client.set(key, value, px=milliseconds, nx=only_if_absent)
        return bool(written)

    async def hit(self, key: str, window_seconds: float, cost: int) -> tuple[int, float]:
        """INCRBY, and PEXPIRE when the counter has no expiry yet, in one Lua script."""
        self._check_open()
        check_ttl(window_seconds)
        if cost < 1:
            raise ValueError(f"cost must be at least 1, not {cost!r}")
        return await self._hits((key, cost, math.ceil(window_seconds * 1000)))

    @property
    def hit_round_trips(self) -> int:
        """How many pipelines the hits so far took."""
        return self._hits.batches

    async def _hit_all(
        self, hits: list[tuple[str, int, int]]
    ) -> list[tuple[int, float] | Exception]:
        self._check_open()  # closed while this batch waited for its turn
        with _translated("hit"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, cost, milliseconds in hits:
                    await self._hit_script(keys=[key], args=[cost, milliseconds], client=pipe)
                answers = await pipe.execute(raise_on_error=False)
        # A key that is not a counter fails its own hit, not the others'.
        return [
            StoreUnavailable(f"redis hit failed: {answer}")
            if isinstance(answer, Exception)
            else (int(answer[0]), int(answer[1]) / 1000)
            for answer in answers
        ]

    async def incr(self, key: str, amount: int = 1) -> int:
        """INCRBY: the count after adding (a new counter starts at 0, with no expiry)."""
        self._check_open()
        if amount < 1:
            raise ValueError(f"amount must be at least 1, not {amount!r}")
        with _translated("incr"):
            count = await self._client.incrby(key, amount)
        return int(count)

    async def acquire(self, key: str, ttl_seconds: float) -> str | None:
        """SET key <random token> NX PX: the token, or None when someone else holds the lock."""
        return await acquire_by_set(self, key, ttl_seconds)

    async def extend(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Compare-and-PEXPIRE in Lua: True when the lock still held ``token``."""
        self._check_open()
        check_ttl(ttl_seconds)
        with _translated("extend"):
            renewed = await self._extend_script(
                keys=[key], args=[token, max(1, math.ceil(ttl_seconds * 1000))]
            )
        return bool(renewed)

    async def release(self, key: str, token: str) -> None:
        """Compare-and-delete in Lua (EVALSHA; redis-py loads the script again after a restart)."""
        self._check_open()
        with _translated("release"):
            await self._release_script(keys=[key], args=[token])

    async def publish(self, channel: str, message: bytes) -> None:
        """PUBLISH; the message reaches the subscribers connected now, in any process."""
        self._check_open()
        with _translated("publish"):
            await self._client.publish(channel, message)

    async def subscribe(
        self, channel: str, *, on_subscribed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[bytes]:
        """Messages on ``channel``, over a connection of its own, resubscribing after outages."""
        delay = _RESUBSCRIBE_FIRST_SECONDS
        lost = False
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(channel)
                while not self._closed:
                    message = await pubsub.get_message(timeout=_POLL_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        yield message["data"]
                    elif message["type"] == "subscribe":
                        # The server's confirmation: from now on nothing published passes us
                        # by. It also follows the resubscription redis-py makes by itself when
                        # its connection broke and reconnected at once (a quick restart).
                        if lost:
                            logger.info("store subscription restored", channel=channel)
                        lost, delay = False, _RESUBSCRIBE_FIRST_SECONDS
                        if on_subscribed is not None:
                            await on_subscribed()
            except _CLIENT_ERRORS as exc:
                if not lost:
                    logger.warning("store subscription lost", channel=channel, error=str(exc))
                lost = True
            finally:
                await self._discard(pubsub)
            if self._closed:
                return
            # Woken early by close(), which must not wait out a backoff.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), _jittered(delay))
            delay = min(delay * 2, _RESUBSCRIBE_MAX_SECONDS)

    async def _discard(self, pubsub: PubSub) -> None:
        # Its connection may already be broken; there is nothing left to tell the server.
        with contextlib.suppress(*_CLIENT_ERRORS):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    async def ping(self) -> None:
        """PING; StoreUnavailable when Redis does not answer in time."""
        self._check_open()
        with _translated("ping"):
            await self._client.ping()

    async def close(self) -> None:
        """Close the connection pool; subscribe() iterators end at their next wait (within 1 s)."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        with contextlib.suppress(*_CLIENT_ERRORS):
            await self._client.aclose()
