"""RateLimiter: spends each request's cost from its client's budgets, and says who a client is.

On the in-process store the budgets are counted here, exactly (LocalCounts). On a shared store
each worker spends units it reserved from the store's counter in chunks (Reservations: never
over the quota across workers, and one store round trip per chunk rather than per request).
While the shared store cannot answer, a breaker stops asking it and each process counts for
itself, exactly, as on the in-process store.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable

from starlette.types import Scope

from graph.auth import header_credential
from graph.breaker import CircuitBreaker
from graph.core.errors import Unauthenticated
from graph.http.ratelimit.cost import Cost
from graph.http.ratelimit.local import LocalCounts
from graph.http.ratelimit.reservation import Reservations, Reserve, chunk_of
from graph.http.ratelimit.usage import READS, WINDOW_SECONDS, WRITES, Usage
from graph.observability.log import logger
from graph.settings import Settings
from graph.stores import Store, StoreUnavailable


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]


def client_of(scope: Scope, settings: Settings) -> str:
    """``key:<sha256 of the token>`` for a valid credential, else ``ip:<address>``."""
    authorization = _headers(scope, b"authorization")
    return client_for(authorization[0] if authorization else None, scope, settings)


def client_for(authorization: str | None, scope: Scope, settings: Settings) -> str:
    """:func:`client_of` for a request whose (first) ``Authorization`` header is known.

    The address is the peer's, as the server saw it: the server rewrites it from
    ``X-Forwarded-For`` only for the proxies in ``FORWARDED_ALLOW_IPS`` (none by default).
    ``TRUST_FORWARDED_FOR`` makes the limiter alone read the header's last entry instead.
    """
    try:
        found = header_credential(authorization, settings)
        if found is not None:
            return found[0]
    except Unauthenticated:
        pass
    if settings.trust_forwarded_for:
        forwarded = ",".join(_headers(scope, b"x-forwarded-for"))
        # The last entry is the one our proxy appended; the others are the client's to forge.
        try:
            return "ip:" + str(ipaddress.ip_address(forwarded.rsplit(",", 1)[-1].strip()))
        except ValueError:
            pass
    peer = scope.get("client")
    return "ip:" + (str(peer[0]) if peer else "unknown")


class RateLimiter:
    """Each client's budgets: counted here on the in-process store or while the shared store is
    down, reserved from the shared store in chunks otherwise."""

    def __init__(
        self, *, breaker: CircuitBreaker | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.breaker = breaker or CircuitBreaker(failures=3, reset_seconds=5.0)
        self.local = LocalCounts(clock=clock)
        self.reservations = Reservations(clock=clock)
        self._bound: tuple[Store, Reserve] | None = None

    async def _reserve(self, store: Store, key: str, units: int) -> tuple[int, float]:
        """``units`` more on the shared counter, behind the breaker."""
        if not self.breaker.allow():
            raise StoreUnavailable("the rate limits' breaker is open")
        try:
            counted = await store.hit(key, WINDOW_SECONDS, units)
        except StoreUnavailable as exc:
            # Read after the wait: of many reservations that fail together, the first to be
            # told says so, once.
            if self.breaker.consecutive_failures == 0:
                logger.warning("rate limits counted in-process", error=str(exc))
            self.breaker.record_failure()
            raise
        if self.breaker.consecutive_failures > 0:
            logger.info("rate limits counted in the store again")
        self.breaker.record_success()
        return counted

    def _reserver(self, store: Store) -> Reserve:
        """:meth:`_reserve` on ``store``, made once per store rather than once per request."""
        bound = self._bound
        if bound is None or bound[0] is not store:
            bound = self._bound = (store, functools.partial(self._reserve, store))
        return bound[1]

    def spend_now(
        self, store: Store, settings: Settings, client: str, cost: Cost
    ) -> list[Usage] | None:
        """:meth:`spend`, when it needs no store round trip and refuses nothing; else None
        and nothing spent (the caller then goes through :meth:`spend`)."""
        if cost.reads and cost.writes:
            return None  # two budgets: one could refuse after the other spent
        policy, quota, units = (
            (READS, settings.rate_limit_per_minute, cost.reads)
            if cost.reads
            else (WRITES, settings.rate_limit_writes_per_minute, cost.writes)
        )
        key = f"ratelimit:{policy}:{client}"
        if store.kind == "memory":
            usage = self.local.try_spend(key, policy, quota, units)
            return None if usage is None else [usage]
        usage = self.reservations.try_spend(
            self._reserver(store),
            key,
            policy,
            quota,
            units,
            chunk_of(quota, settings.rate_limit_workers),
        )
        return None if usage is None else [usage]

    async def spend(self, store: Store, settings: Settings, client: str, cost: Cost) -> list[Usage]:
        """Spend ``cost`` from the client's budgets: each budget it touched, after spending."""
        self.local.table.max_entries = settings.rate_limit_max_clients
        self.reservations.table.max_entries = settings.rate_limit_max_clients

        async def reserve(key: str, units: int) -> tuple[int, float]:
            return await self._reserve(store, key, units)

        usages: list[Usage] = []
        for policy, quota, units in (
            (READS, settings.rate_limit_per_minute, cost.reads),
            (WRITES, settings.rate_limit_writes_per_minute, cost.writes),
        ):
            if not units:
                continue
            key = f"ratelimit:{policy}:{client}"
            if store.kind == "memory":
                usages.append(self.local.spend(key, policy, quota, units))
                continue
            chunk = chunk_of(quota, settings.rate_limit_workers)
            try:
                usage = await self.reservations.spend(reserve, key, policy, quota, units, chunk)
            except StoreUnavailable:
                usage = self.local.spend(key, policy, quota, units)
            usages.append(usage)
        return usages
