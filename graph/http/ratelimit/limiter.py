"""RateLimiter: each client's budgets, counted in fixed one-minute windows in the shared store
(in this process while the store is down), and the RateLimit headers that report them."""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from starlette.types import Scope

from graph.auth import access_of, bearer_token, credentials_for
from graph.breaker import CircuitBreaker
from graph.core.errors import Unauthenticated
from graph.http.ratelimit.cost import Cost
from graph.observability.log import logger
from graph.settings import Settings
from graph.stores import Store, StoreUnavailable
from graph.stores.memory import MemoryStore

WINDOW_SECONDS = 60
READS = "default"
WRITES = "writes"


@dataclass(frozen=True, slots=True)
class Usage:
    """One budget after a request spent from it."""

    policy: str
    quota: int
    count: int
    reset_seconds: float

    @property
    def exceeded(self) -> bool:
        return self.count > self.quota

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.count)

    @property
    def reset(self) -> int:
        """Whole seconds until the window starts over, at least 1 (as Retry-After needs)."""
        return max(1, math.ceil(self.reset_seconds))


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]


def client_of(scope: Scope, settings: Settings) -> str:
    """``key:<sha256 of the token>`` for a valid credential, else ``ip:<address>``.

    The address is the peer's, as the server saw it: the server rewrites it from
    ``X-Forwarded-For`` only for the proxies in ``FORWARDED_ALLOW_IPS`` (none by default).
    ``TRUST_FORWARDED_FOR`` makes the limiter alone read the header's last entry instead.
    """
    authorization = _headers(scope, b"authorization")
    try:
        token = bearer_token(authorization[0]) if authorization else None
        if token is not None:
            access_of(token, credentials_for(settings))
            return "key:" + hashlib.sha256(token.encode()).hexdigest()
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


def policy_header(usages: list[Usage]) -> bytes:
    """``RateLimit-Policy``: each budget's quota and window."""
    items = (f'"{u.policy}";q={u.quota};w={WINDOW_SECONDS}' for u in usages)
    return ", ".join(items).encode()


def ratelimit_header(usages: list[Usage]) -> bytes:
    """``RateLimit``: what is left of each budget, and the seconds until it is whole again."""
    return ", ".join(f'"{u.policy}";r={u.remaining};t={u.reset}' for u in usages).encode()


class RateLimiter:
    """Counts hits in the app's store, or in this process while the store cannot answer."""

    def __init__(self, *, breaker: CircuitBreaker | None = None) -> None:
        self.breaker = breaker or CircuitBreaker(failures=3, reset_seconds=5.0)
        self.fallback = MemoryStore()

    async def hit(self, store: Store, key: str, cost: int) -> tuple[int, float]:
        """The count in the current window after adding ``cost``, and the seconds left in it."""
        if self.breaker.allow():
            failing = self.breaker.consecutive_failures > 0
            try:
                counted = await store.hit(key, WINDOW_SECONDS, cost)
            except StoreUnavailable as exc:
                if not failing:
                    logger.warning("rate limits counted in-process", error=str(exc))
                self.breaker.record_failure()
            else:
                if failing:
                    logger.info("rate limits counted in the store again")
                self.breaker.record_success()
                return counted
        return await self.fallback.hit(key, WINDOW_SECONDS, cost)

    async def spend(self, store: Store, settings: Settings, client: str, cost: Cost) -> list[Usage]:
        """Spend ``cost`` from the client's budgets: each budget it touched, after spending."""
        usages: list[Usage] = []
        for policy, quota, units in (
            (READS, settings.rate_limit_per_minute, cost.reads),
            (WRITES, settings.rate_limit_writes_per_minute, cost.writes),
        ):
            if units:
                count, reset = await self.hit(store, f"ratelimit:{policy}:{client}", units)
                usages.append(Usage(policy, quota, count, reset))
        return usages
