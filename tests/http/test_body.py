"""Body reads by a deadline (graph.http.body.receive_by): one timer per event loop, not one per
read, with asyncio.timeout_at's answers: TimeoutError at the deadline, an outside
cancellation left a cancellation, and the task fit to go on either way."""

from __future__ import annotations

import asyncio
import gc

import pytest
from starlette.types import Message

from graph.http.body import _LOOPS, receive_by

MESSAGE: Message = {"type": "http.request", "body": b"{}", "more_body": False}


async def at_once() -> Message:
    return MESSAGE


def test_reads_that_do_not_wait_leave_nothing_behind_and_arm_one_timer() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        for n in range(1000):
            assert await receive_by(at_once, loop.time() + 30 + n / 1000) is MESSAGE
        deadlines = _LOOPS[loop]
        assert deadlines.waiting == {} and deadlines.expired == set()
        # Armed once, for the first deadline: the later ones never re-arm it.
        assert deadlines.timer_at == pytest.approx(loop.time() + 30, abs=1)
        assert len(loop._scheduled) == 1  # type: ignore[attr-defined]

    asyncio.run(run())


def test_a_read_that_never_comes_times_out_at_its_deadline_and_the_task_goes_on() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        never: asyncio.Future[Message] = loop.create_future()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await receive_by(lambda: never, started + 0.05)
        assert 0.05 <= loop.time() - started < 0.5
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # not cancelled: it goes on
        assert _LOOPS[loop].waiting == {} and _LOOPS[loop].expired == set()

    asyncio.run(run())


def test_each_read_keeps_its_own_deadline() -> None:
    """A later read does not delay an earlier deadline; an earlier one's expiry arms the timer
    for the next, which a read that comes in time never meets."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        slow: asyncio.Future[Message] = loop.create_future()
        never: asyncio.Future[Message] = loop.create_future()
        now = loop.time()
        late = asyncio.ensure_future(receive_by(lambda: slow, now + 0.4))
        early = asyncio.ensure_future(receive_by(lambda: never, now + 0.05))
        with pytest.raises(TimeoutError):
            await early
        assert loop.time() - now < 0.3
        assert not late.done() and _LOOPS[loop].timer_at == pytest.approx(now + 0.4)
        slow.set_result(MESSAGE)
        assert await late is MESSAGE
        late_too: asyncio.Future[Message] = loop.create_future()
        with pytest.raises(TimeoutError):
            await receive_by(lambda: late_too, loop.time() + 0.02)

    asyncio.run(run())


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        never: asyncio.Future[Message] = loop.create_future()
        reading = asyncio.ensure_future(receive_by(lambda: never, loop.time() + 30))
        await asyncio.sleep(0)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert _LOOPS[loop].waiting == {} and _LOOPS[loop].expired == set()

    asyncio.run(run())


def test_a_loop_gone_takes_its_deadlines_with_it() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        await receive_by(at_once, loop.time() + 30)

    before = len(_LOOPS)
    for _ in range(3):
        asyncio.run(run())
    gc.collect()
    assert len(_LOOPS) <= before
