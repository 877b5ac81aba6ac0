"""The circuit breaker, on a clock the tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from graph.breaker import BreakerState, CircuitBreaker


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def opened(clock: Clock, *, failures: int = 3, reset_seconds: float = 10.0) -> CircuitBreaker:
    """A breaker that has just opened."""
    breaker = CircuitBreaker(failures=failures, reset_seconds=reset_seconds, clock=clock)
    for _ in range(failures):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_a_new_breaker_is_closed_and_lets_calls_through() -> None:
    breaker = CircuitBreaker(clock=Clock())
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(100))


def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_seconds=10.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.consecutive_failures == 3
    assert not breaker.allow()


def test_a_success_resets_the_count_so_only_consecutive_failures_open_it() -> None:
    breaker = CircuitBreaker(failures=3, clock=Clock())
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
        assert breaker.consecutive_failures == 0
    assert breaker.state is BreakerState.CLOSED


def test_no_call_passes_while_open() -> None:
    clock = Clock()
    breaker = opened(clock, reset_seconds=10.0)
    for _ in range(9):
        clock.advance(1.0)
        assert not breaker.allow()
        assert breaker.state is BreakerState.OPEN
    clock.advance(0.999)
    assert not breaker.allow()


def test_after_reset_seconds_it_is_half_open_and_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = opened(clock, reset_seconds=10.0)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow(), "a second call passed while the probe was in flight"
    assert not breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_successful_probe_closes_it() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.snapshot()["last_success"] is not None
    assert all(breaker.allow() for _ in range(10))


def test_a_failed_probe_opens_it_again_for_another_reset_period() -> None:
    clock = Clock()
    breaker = opened(clock, failures=3, reset_seconds=10.0)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure()
    # One failure reopens it: the threshold is for a closed breaker.
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(9.5)
    assert not breaker.allow()
    clock.advance(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_a_probe_that_never_reports_back_is_replaced_after_reset_seconds() -> None:
    """A cancelled probe must not keep the breaker from ever closing."""
    clock = Clock()
    breaker = opened(clock, reset_seconds=10.0)
    clock.advance(10.0)
    assert breaker.allow()
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()
    assert not breaker.allow()


def test_a_late_failure_of_a_call_made_before_it_opened_does_not_extend_the_wait() -> None:
    clock = Clock()
    breaker = opened(clock, reset_seconds=10.0)
    clock.advance(5.0)
    breaker.record_failure()
    clock.advance(5.0)
    assert breaker.state is BreakerState.HALF_OPEN


def test_snapshot_shows_state_failures_and_the_wall_clock_time_of_the_last_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, reset_seconds=10.0, clock=clock)
    assert breaker.snapshot() == {
        "state": "closed",
        "consecutive_failures": 0,
        "last_success": None,
    }
    before = datetime.now(UTC)
    breaker.record_success()
    after = datetime.now(UTC)
    breaker.record_failure()
    breaker.record_failure()
    snapshot = breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["consecutive_failures"] == 2
    assert isinstance(snapshot["last_success"], str)
    # The monotonic clock says 1000.0; the snapshot must show when that was in real time.
    assert before <= datetime.fromisoformat(snapshot["last_success"]) <= after
    clock.advance(10.0)
    assert breaker.snapshot()["state"] == "half-open"


@pytest.mark.parametrize(("failures", "reset_seconds"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -5.0)])
def test_nonsensical_settings_are_refused(failures: int, reset_seconds: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=failures, reset_seconds=reset_seconds)
