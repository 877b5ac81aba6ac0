"""RateLimiter: spends each request's cost from its client's budgets, and says who a client is.

On the in-process store the budgets are counted here, exactly (LocalCounts). On a shared store
each worker spends units it reserved from the store's counter in chunks (Reservations: never
over the quota across workers, and one store round trip per chunk rather than per request).
While the shared store cannot answer, a breaker stops asking it and each process counts for
itself, exactly, as on the in-process store.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import Scope

from graph.auth import Access, Credentials, access_of, bearer_token, credentials_for
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


# Per configuration (the Credentials object credentials_for makes once for it): the access of
# each configured key that a request presented, by the sha256 of the token. Checking a token
# against every key in constant time, and the settings' secrets, cost more than a whole cached
# answer; a dict keyed by the digest leaks nothing about the keys themselves. Bounded by the
# number of configured keys: a token that is not one (a bad key, a JWT, which expires) is
# never kept.
@dataclass(slots=True)
class _Known:
    settings: Settings
    credentials: Credentials
    by_digest: dict[str, Access] = field(default_factory=dict)
    by_header: dict[str, tuple[str, Access]] = field(default_factory=dict)
    """``Bearer <key>`` headers of configured keys, spelled exactly so (at most one per key):
    the client they name and what it may do, without parsing or hashing the header again.
    A str key is found by its process-keyed SipHash before any comparison, so the look-up
    tells nothing about the keys either."""


_KNOWN: dict[int, _Known] = {}


def _known(settings: Settings) -> _Known:
    known = _KNOWN.get(id(settings))
    if known is None or known.settings is not settings:
        if len(_KNOWN) >= 16:
            _KNOWN.clear()
        known = _KNOWN[id(settings)] = _Known(settings, credentials_for(settings))
    return known


def credential_of(token: str, settings: Settings) -> tuple[str, Access]:
    """The sha256 hex of a bearer token and what it may do; Unauthenticated when it is not a
    valid credential (graph.auth.access_of)."""
    return _credential(token, _known(settings))


def _credential(token: str, known: _Known) -> tuple[str, Access]:
    digest = hashlib.sha256(token.encode()).hexdigest()
    access = known.by_digest.get(digest)
    if access is None:
        access = access_of(token, known.credentials)
        if known.credentials.tokens is None or token.count(".") != 2:
            known.by_digest[digest] = access  # a configured key: a JWT would have two dots
    return digest, access


def header_credential(authorization: str | None, settings: Settings) -> tuple[str, Access] | None:
    """The client (``key:<sha256 of the token>``) and access of an ``Authorization`` header;
    None when it holds no token, Unauthenticated when its token is not a valid credential."""
    if not authorization:
        return None
    known = _known(settings)
    found = known.by_header.get(authorization)
    if found is not None:
        return found
    token = bearer_token(authorization)
    if token is None:
        return None
    digest, access = _credential(token, known)
    found = "key:" + digest, access
    if authorization == "Bearer " + token and digest in known.by_digest:
        known.by_header[authorization] = found  # a configured key, in its one plain spelling
    return found


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
