"""Coalesced: what one turn of the event loop asks for goes to the store in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from graph.stores.coalesce import Coalesced

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Doubler:
    """Answers each number with its double, each batch after ``release`` is set; a negative
    number is that item's error, ``fail`` every caller's."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"negative: {n}") if n < 0 else 2 * n for n in items]


async def test_calls_of_one_turn_go_in_one_batch_each_answered_in_order() -> None:
    send = Doubler()
    coalesced = Coalesced(send)
    assert await asyncio.gather(*(coalesced(n) for n in range(100))) == [2 * n for n in range(100)]
    assert send.batches == [list(range(100))] and coalesced.batches == 1


async def test_an_item_that_fails_fails_its_own_caller_only() -> None:
    coalesced = Coalesced(Doubler())
    results = await asyncio.gather(
        coalesced(1), coalesced(-1), coalesced(3), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)


async def test_a_batch_that_fails_fails_every_caller_in_it() -> None:
    send = Doubler()
    send.fail = ConnectionError("down")
    coalesced = Coalesced(send)
    results = await asyncio.gather(*(coalesced(n) for n in range(5)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    send.fail = None
    assert await coalesced(7) == 14  # the next batch is sent as usual


async def test_later_calls_start_the_next_batch_without_waiting_for_the_first() -> None:
    send = Doubler()
    send.release.clear()
    coalesced = Coalesced(send)
    first = [asyncio.ensure_future(coalesced(n)) for n in (1, 2)]
    while not send.batches:
        await asyncio.sleep(0)
    second = asyncio.ensure_future(coalesced(3))
    while len(send.batches) < 2:
        await asyncio.sleep(0)
    assert send.batches == [[1, 2], [3]]
    send.release.set()
    assert await asyncio.gather(*first, second) == [2, 4, 6]


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    send = Doubler()
    send.release.clear()
    coalesced = Coalesced(send)
    leaving = asyncio.ensure_future(coalesced(1))
    staying = asyncio.ensure_future(coalesced(2))
    while not send.batches:
        await asyncio.sleep(0)
    leaving.cancel()
    send.release.set()
    assert await staying == 4
    assert leaving.cancelled()
    assert send.batches == [[1, 2]]  # its item was sent all the same


async def test_a_batch_cancelled_before_it_is_sent_leaves_the_next_calls_answered() -> None:
    """The loop closing cancels every task, the batch's own among them, perhaps before it ran:
    its callers are told, and later calls start a batch of their own instead of joining it."""
    coalesced = Coalesced(Doubler())
    caller = asyncio.ensure_future(coalesced(1))
    await asyncio.sleep(0)  # the caller has joined a batch; the batch has not been sent
    for task in list(coalesced._sending):
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 5)
    assert await asyncio.wait_for(coalesced(2), 5) == 4
