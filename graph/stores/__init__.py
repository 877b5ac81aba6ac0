"""Key-value stores behind the cache, locks and pub/sub, chosen by URL.

``memory://`` (or no URL) is the embedded default: one process, no servers. ``redis://``,
``rediss://`` and ``unix://`` share entries, locks and messages between workers. Both
implement :class:`Store`, and both answer a store that cannot be reached with
:class:`StoreUnavailable`, never with an exception of the client library.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["Budget", "Store", "StoreUnavailable", "open_store"]

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


class StoreUnavailable(Exception):
    """The store did not answer (refused, timed out, reset).

    Callers degrade; they never crash on it.
    """


@dataclass(frozen=True, slots=True)
class Budget:
    """The most hash fields written through :meth:`Store.write` under one ``name`` a store keeps
    (``entries``), and the most bytes of their keys, fields and values (``bytes``). Past either,
    the fields written longest ago go first (the in-process store also counts a read as a
    use). Whatever clients ask, the cache's entries stay within it. Redis keeps the count under
    keys starting with ``name``."""

    entries: int
    bytes: int
    name: str = "trendmap:budget"

    def __post_init__(self) -> None:
        if self.entries < 1 or self.bytes < 1:
            raise ValueError(f"a budget keeps at least one entry and one byte, not {self!r}")


class Store(Protocol):
    """What the cache, the locks, the broadcaster and the rate limits need from a store."""

    kind: str
    """``"redis"`` or ``"memory"``."""

    evictions: int
    """Fields this process's writes dropped to keep within a :class:`Budget`."""

    async def read(self, items: Sequence[tuple[str, str | None]]) -> list[bytes | None]:
        """Values in one round trip: GET for ``(key, None)``, HGET for ``(key, field)``.

        None where the key or field is absent or expired. On Redis, a pipeline without a
        transaction.
        """

    async def read_all(self, key: str) -> dict[str, bytes]:
        """Every field of the hash at ``key`` (HGETALL); empty when the key is absent."""

    async def write(
        self,
        entries: Sequence[tuple[str, str, bytes]],
        ttl_seconds: int,
        *,
        budget: Budget | None = None,
    ) -> None:
        """In one round trip, HSET each ``(key, field, value)`` and EXPIRE its key in ttl_seconds.

        The expiry is the whole key's (Redis EXPIRE semantics): writing one field renews the
        others. With a ``budget``, the fields written with one (these included) are then
        trimmed to it, atomically: a field larger than the whole budget is not kept at all.
        ValueError for a ttl_seconds under 1.
        """

    async def set(
        self, key: str, value: bytes, ttl_seconds: float, *, only_if_absent: bool = False
    ) -> bool:
        """SET with an expiry to the millisecond (PX); NX with only_if_absent. True when written.

        ValueError for a ttl_seconds that is not positive.
        """

    async def hit(self, key: str, window_seconds: float, cost: int) -> tuple[int, float]:
        """Add ``cost`` to the counter at ``key`` (INCRBY), starting its fixed window of
        ``window_seconds`` if it has none, in one round trip.

        The count after adding and the seconds until the window ends and the count starts over.
        ValueError for a window that is not positive or a cost under 1.
        """

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the counter at ``key`` (INCRBY) and return the new value; a counter
        that does not exist starts at 0 and, unlike :meth:`hit`'s, never expires.

        ValueError for an amount under 1; StoreUnavailable when the key holds no integer.
        """

    async def acquire(self, key: str, ttl_seconds: float) -> str | None:
        """Take a lock (SET key <random token> NX PX): the token, or None when someone holds it."""

    async def extend(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Renew a lock still holding ``token`` to expire ``ttl_seconds`` from now; False when it
        expired or is someone else's (the caller has lost it).

        ValueError for a ttl_seconds that is not positive.
        """

    async def release(self, key: str, token: str) -> None:
        """Delete the lock only if it still holds ``token``: a lock that expired and was taken by
        someone else stays theirs."""

    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every current subscriber of ``channel``, in every process."""

    def subscribe(
        self, channel: str, *, on_subscribed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[bytes]:
        """Messages published on ``channel`` once iteration has begun, in publication order.

        Survives store outages: on a lost connection it waits (backoff from 0.1 s doubling to
        2 s, with jitter) and resubscribes by itself, forever. It never raises
        StoreUnavailable; it ends when the store is closed, and stops when the consuming task
        is cancelled. Any number of iterators may run at once, on one channel or several.
        Messages published while the connection is down are lost: ``on_subscribed`` (which
        must not raise) is awaited each time the subscription is made, the first time and
        after every outage, before any message published since, so that the consumer can
        catch up on what it missed from what the store keeps.
        """

    async def ping(self) -> None:
        """Return when the store answers; StoreUnavailable when it does not."""

    async def close(self) -> None:
        """Release connections and end every subscribe() iterator; later calls raise
        StoreUnavailable."""


def check_ttl(ttl_seconds: float) -> None:
    """ValueError unless ``ttl_seconds`` is positive and finite, in every backend alike."""
    # Redis deletes a key given a zero or negative EXPIRE and refuses such a PX: neither is a
    # cache entry or a lock anyone meant to write.
    if not (ttl_seconds > 0 and math.isfinite(ttl_seconds)):
        raise ValueError(f"ttl_seconds must be positive and finite, not {ttl_seconds!r}")


def open_store(url: str | None, *, socket_timeout: float = 0.25) -> Store:
    """Redis for redis://, rediss:// or unix://, the in-process store for None or memory://.

    ``socket_timeout`` bounds each Redis connect and reply, so a dead store costs a request
    a quarter of a second, not a hang. ValueError for any other URL. Nothing connects yet:
    the first call does.
    """
    # Imported here: each backend imports this module for StoreUnavailable, and an app on
    # the in-process store never needs to import the Redis client.
    if url is None or url == "memory://":
        from graph.stores.memory import MemoryStore

        return MemoryStore()
    scheme = urlsplit(url).scheme
    if scheme in _REDIS_SCHEMES:
        from graph.stores.redis import RedisStore

        return RedisStore(url, socket_timeout=socket_timeout)
    # The scheme only: the rest of a URL may hold a password.
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}: use memory://, redis://, rediss:// or unix://"
    )


async def acquire_by_set(store: Store, key: str, ttl_seconds: float) -> str | None:
    """A lock as both backends take it: a random token SET only if absent, with a TTL. The
    token, or None when someone else holds the lock."""
    token = secrets.token_hex(16)
    written = await store.set(key, token.encode(), ttl_seconds, only_if_absent=True)
    return token if written else None
