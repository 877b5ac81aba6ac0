"""Usage: one budget after a request spent from it, and the RateLimit headers that report it."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

WINDOW_SECONDS = 60
READS = "default"
WRITES = "writes"


@dataclass(slots=True)
class Usage:
    """One budget after a request spent from it (or was refused by it).

    Not frozen: one is made for every request, and a frozen dataclass is built several times
    slower; nothing changes one after it is made."""

    policy: str
    quota: int
    remaining: int
    reset_seconds: float
    exceeded: bool

    @property
    def reset(self) -> int:
        """Whole seconds until the window starts over, at least 1 (as Retry-After needs)."""
        return max(1, math.ceil(self.reset_seconds))


def policy_header(usages: list[Usage]) -> bytes:
    """``RateLimit-Policy``: each budget's quota and window."""
    if len(usages) == 1:
        return _policies(((usages[0].policy, usages[0].quota),))
    return _policies(tuple((u.policy, u.quota) for u in usages))


@functools.lru_cache(maxsize=64)
def _policies(budgets: tuple[tuple[str, int], ...]) -> bytes:
    # The same few values on every request: formatted once.
    return ", ".join(
        f'"{policy}";q={quota};w={WINDOW_SECONDS}' for policy, quota in budgets
    ).encode()


def ratelimit_header(usages: list[Usage]) -> bytes:
    """``RateLimit``: what is left of each budget, and the seconds until it is whole again."""
    if len(usages) == 1:  # nearly every request: one budget, formatted without a join
        return _budget(usages[0]).encode()
    return ", ".join(map(_budget, usages)).encode()


def _budget(usage: Usage) -> str:
    return f'"{usage.policy}";r={usage.remaining};t={usage.reset}'


def ratelimit_headers(usages: list[Usage]) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit``, as sent with every limited answer."""
    return [(b"ratelimit-policy", policy_header(usages)), (b"ratelimit", ratelimit_header(usages))]
