"""A circuit breaker: stop calling a dependency that keeps failing, and probe it to come back.

    CLOSED ──(failures in a row)──▶ OPEN ──(reset_seconds pass)──▶ HALF_OPEN
      ▲                              ▲                                 │
      │                              └────────(the probe fails)────────┤
      └──────────────────────────────────────(the probe succeeds)──────┘

Used around the response cache's store, and meant for any dependency a request can do
without. It makes no calls itself and holds no lock: callers ask :meth:`CircuitBreaker.allow`
before a call and report its outcome, all from one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a breaker stands; the value is what /health shows."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Closed: calls pass; ``failures`` consecutive failures open it. Open: no call passes until
    ``reset_seconds`` have passed, then half-open: one probe at a time passes; its success
    closes the breaker, its failure opens it again.

    A probe whose outcome is never reported (its task was cancelled) stops counting as in
    flight after another ``reset_seconds``, so a lost probe cannot hold the breaker open for
    good.
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures}")
        if reset_seconds <= 0:
            raise ValueError(f"reset_seconds must be positive, not {reset_seconds}")
        self.failures = failures
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.consecutive_failures = 0
        # Wall-clock time of the last success, for people reading /health; the clock above is
        # monotonic and means nothing outside this process.
        self.last_success_at: datetime | None = None
        self._opened_at: float | None = None
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        """Half-open once an open breaker has waited ``reset_seconds``."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at < self.reset_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """True when a call may go ahead; in half-open, it is then the probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self.clock()
        if self._probe_started is not None and now - self._probe_started < self.reset_seconds:
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        """The call worked: close the breaker and forget the failures."""
        self.consecutive_failures = 0
        self.last_success_at = datetime.now(UTC)
        self._opened_at = None
        self._probe_started = None

    def record_failure(self) -> None:
        """The call failed: count it, and open the breaker at the threshold or after a probe."""
        now = self.clock()
        was_probing = self.state is BreakerState.HALF_OPEN
        self.consecutive_failures += 1
        self._probe_started = None
        if was_probing or (self._opened_at is None and self.consecutive_failures >= self.failures):
            self._opened_at = now

    def snapshot(self) -> dict[str, object]:
        """What /health shows: state, consecutive failures, and the last success (ISO 8601)."""
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "last_success": (
                self.last_success_at.isoformat() if self.last_success_at is not None else None
            ),
        }
