"""The in-process store: the embedded default, for one process and no servers.

It keeps Redis's semantics where the app can tell the difference: one keyspace of strings and
hashes, expiry of a whole key, locks with tokens, and a type error for a string read as a hash
(or the other way round), which it raises as StoreUnavailable just as the Redis backend
translates Redis's WRONGTYPE. Everything runs on the event loop without awaiting inside an
operation, so concurrent tasks see each operation whole.

Hash fields written with a :class:`Budget` are kept in least-recently-used order (a write or a
read is a use) and trimmed to it after each such write, so the cache in a worker's memory
stays under its bounds however many distinct answers clients ask for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from graph.stores import Budget, StoreUnavailable, acquire_by_set, check_ttl

# Expired keys are dropped when read; keys nobody reads again are swept this often (by the
# clock of the store), so a long-running process does not keep every key it ever wrote.
_SWEEP_SECONDS = 10.0


@dataclass(slots=True)
class _Key:
    value: bytes | dict[str, bytes]
    expires_at: float


class _Counted:
    """The fields written with one budget, least recently used first, with the bytes each
    counts for. A field whose key expired stays counted until it is trimmed: the count errs
    high, never low."""

    def __init__(self) -> None:
        self.fields: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.bytes = 0

    def forget(self, key: str, field: str) -> None:
        self.bytes -= self.fields.pop((key, field), 0)

    def add(self, key: str, field: str, size: int) -> None:
        self.forget(key, field)
        self.fields[key, field] = size
        self.bytes += size

    def use(self, key: str, field: str) -> None:
        if (key, field) in self.fields:
            self.fields.move_to_end((key, field))

    def trim(self, budget: Budget) -> list[tuple[str, str]]:
        """Forget the least recently used fields until the budget holds; the forgotten ones."""
        dropped: list[tuple[str, str]] = []
        while self.fields and (len(self.fields) > budget.entries or self.bytes > budget.bytes):
            name, size = self.fields.popitem(last=False)
            self.bytes -= size
            dropped.append(name)
        return dropped


def _wrong_type(key: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"WRONGTYPE {key!r}: Operation against a key holding the wrong kind of value"
    )


class MemoryStore:
    """Strings, hashes, locks and pub/sub in this process's memory."""

    kind = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        # None in a queue ends its iterator: close() puts one in each.
        self._channels: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        self._closed = False
        self._next_sweep = clock() + _SWEEP_SECONDS
        # The fields written with each budget, by the budget's name.
        self._budgets: dict[str, _Counted] = {}
        # Fields trimmed to keep within a budget (graph.observability.metrics reads it).
        self.evictions = 0

    def counted(self, name: str) -> tuple[int, int]:
        """How many fields written with the budget ``name`` are counted, and their bytes."""
        counted = self._budgets.get(name)
        return (0, 0) if counted is None else (len(counted.fields), counted.bytes)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the in-process store is closed")

    def _live(self, key: str, now: float) -> _Key | None:
        entry = self._keys.get(key)
        if entry is not None and now >= entry.expires_at:
            del self._keys[key]
            return None
        return entry

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_SECONDS
        for key in [k for k, entry in self._keys.items() if now >= entry.expires_at]:
            del self._keys[key]

    async def read(self, items: Sequence[tuple[str, str | None]]) -> list[bytes | None]:
        """GET for ``(key, None)``, HGET for ``(key, field)``; None when absent or expired."""
        self._check_open()
        now = self._clock()
        values: list[bytes | None] = []
        for key, field in items:
            entry = self._live(key, now)
            if entry is None:
                values.append(None)
            elif field is None:
                if not isinstance(entry.value, bytes):
                    raise _wrong_type(key)
                values.append(entry.value)
            else:
                if not isinstance(entry.value, dict):
                    raise _wrong_type(key)
                value = entry.value.get(field)
                if value is not None:
                    for counted in self._budgets.values():
                        counted.use(key, field)
                values.append(value)
        return values

    async def read_all(self, key: str) -> dict[str, bytes]:
        """Every field of the hash at ``key``; empty when the key is absent or expired."""
        self._check_open()
        entry = self._live(key, self._clock())
        if entry is None:
            return {}
        if not isinstance(entry.value, dict):
            raise _wrong_type(key)
        return dict(entry.value)

    async def write(
        self,
        entries: Sequence[tuple[str, str, bytes]],
        ttl_seconds: int,
        *,
        budget: Budget | None = None,
    ) -> None:
        """Set each hash field and give its whole key ``ttl_seconds`` to live; with a budget,
        then trim the fields written with one to it, least recently used first."""
        self._check_open()
        check_ttl(ttl_seconds)
        now = self._clock()
        self._sweep(now)
        # Checked before anything is written, so a refused batch leaves no half of itself.
        for key, _, _ in entries:
            entry = self._live(key, now)
            if entry is not None and not isinstance(entry.value, dict):
                raise _wrong_type(key)
        expires_at = now + ttl_seconds
        for key, field, value in entries:
            if budget is not None:
                counted = self._budgets.setdefault(budget.name, _Counted())
                size = len(key.encode()) + len(field.encode()) + len(value)
                counted.forget(key, field)
                if size > budget.bytes:
                    # Larger than the whole budget: not kept, and it pushes nothing else out.
                    self._delete_field(key, field)
                    continue
                counted.add(key, field, size)
            entry = self._keys.get(key)
            if entry is None:
                entry = self._keys[key] = _Key({}, expires_at)
            assert isinstance(entry.value, dict)
            entry.value[field] = value
            entry.expires_at = expires_at
        if budget is not None:
            for key, field in self._budgets[budget.name].trim(budget):
                self.evictions += 1
                self._delete_field(key, field)

    def _delete_field(self, key: str, field: str) -> None:
        """HDEL: a hash left with no field is no key at all."""
        entry = self._keys.get(key)
        if entry is not None and isinstance(entry.value, dict):
            entry.value.pop(field, None)
            if not entry.value:
                del self._keys[key]

    async def set(
        self, key: str, value: bytes, ttl_seconds: float, *, only_if_absent: bool = False
    ) -> bool:
        """Store a string for ``ttl_seconds``; with only_if_absent, only where no key lives."""
        self._check_open()
        check_ttl(ttl_seconds)
        now = self._clock()
        self._sweep(now)
        if only_if_absent and self._live(key, now) is not None:
            return False
        # Like SET, this replaces a key of any type.
        self._keys[key] = _Key(value, now + ttl_seconds)
        return True

    async def hit(self, key: str, window_seconds: float, cost: int) -> tuple[int, float]:
        """Add ``cost`` to a counter kept as a decimal string, as Redis's INCRBY keeps it; a new
        counter lives ``window_seconds``. The count and the seconds left in its window."""
        self._check_open()
        check_ttl(window_seconds)
        if cost < 1:
            raise ValueError(f"cost must be at least 1, not {cost!r}")
        now = self._clock()
        self._sweep(now)
        entry = self._live(key, now)
        if entry is None:
            entry = _Key(b"0", now + window_seconds)
        if not isinstance(entry.value, bytes):
            raise _wrong_type(key)
        try:
            count = int(entry.value) + cost
        except ValueError:
            raise StoreUnavailable(f"{key!r}: value is not an integer or out of range") from None
        entry.value = str(count).encode()
        self._keys[key] = entry
        # Rounded to the nanosecond: (now + window) - now can exceed the window by an ulp.
        return count, round(entry.expires_at - now, 9)

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to a counter kept as a decimal string, as INCRBY does; a new counter
        starts at 0 and keeps no expiry. The count after adding."""
        self._check_open()
        if amount < 1:
            raise ValueError(f"amount must be at least 1, not {amount!r}")
        entry = self._live(key, self._clock())
        if entry is None:
            entry = self._keys[key] = _Key(b"0", math.inf)
        if not isinstance(entry.value, bytes):
            raise _wrong_type(key)
        try:
            count = int(entry.value) + amount
        except ValueError:
            raise StoreUnavailable(f"{key!r}: value is not an integer or out of range") from None
        entry.value = str(count).encode()
        return count

    async def acquire(self, key: str, ttl_seconds: float) -> str | None:
        """The lock's token, or None when someone else holds the lock."""
        return await acquire_by_set(self, key, ttl_seconds)

    async def extend(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Renew the lock for ``ttl_seconds`` if it still holds ``token``."""
        self._check_open()
        check_ttl(ttl_seconds)
        now = self._clock()
        entry = self._live(key, now)
        if entry is None or entry.value != token.encode():
            return False
        entry.expires_at = now + ttl_seconds
        return True

    async def release(self, key: str, token: str) -> None:
        """Delete the lock if it still holds ``token``."""
        self._check_open()
        entry = self._live(key, self._clock())
        if entry is not None and entry.value == token.encode():
            del self._keys[key]

    async def publish(self, channel: str, message: bytes) -> None:
        """Queue ``message`` for every iterator subscribed to ``channel``."""
        self._check_open()
        for queue in self._channels.get(channel, ()):
            queue.put_nowait(message)

    async def subscribe(
        self, channel: str, *, on_subscribed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[bytes]:
        """Messages published on ``channel`` from the first step of the iteration on."""
        if self._closed:
            return
        # Unbounded: the app bounds each subscriber's backlog where it fans messages out.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        subscribers = self._channels.setdefault(channel, set())
        subscribers.add(queue)
        try:
            if on_subscribed is not None:
                await on_subscribed()  # once: this store never loses a subscription
            while (message := await queue.get()) is not None:
                yield message
        finally:
            subscribers.discard(queue)
            if not subscribers and self._channels.get(channel) is subscribers:
                del self._channels[channel]

    async def ping(self) -> None:
        """Answers while the store is open."""
        self._check_open()

    async def close(self) -> None:
        """Drop every key and end every subscribe() iterator."""
        self._closed = True
        self._keys.clear()
        self._budgets.clear()
        for subscribers in self._channels.values():
            for queue in subscribers:
                queue.put_nowait(None)
