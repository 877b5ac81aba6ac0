"""Coalesced: calls made in one turn of the event loop, answered by one call for all of them.

The Redis store sends the counter hits that a burst of requests makes (each client's
rate-limit reservation) in one pipeline: one connection and one round trip however many
clients there are, where one call each would hold as many connections as there are callers.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]
"""Answers every item, in order: a result, or the exception that item's caller gets."""


class Coalesced(Generic[T, R]):
    """``await coalesced(item)``: the item joins the batch of its turn of the event loop; the
    batch goes to ``send`` once the turn is over, while later items start the next batch.

    An exception ``send`` raises is every caller's in that batch. A caller cancelled while it
    waits gets nothing; its item was sent all the same. A batch whose sending is cancelled
    (the loop closing) cancels its callers' waits, and the next call starts a new batch.
    """

    def __init__(self, send: Send[T, R]) -> None:
        self._send = send
        self._waiting: list[tuple[T, asyncio.Future[R]]] | None = None  # not sent yet
        self._sending: set[asyncio.Task[None]] = set()  # (held until done)
        self.batches = 0

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        batch = self._waiting
        if batch is None:
            # Runs after the callbacks already due in this turn: their items join this batch.
            batch = self._waiting = []
            task = loop.create_task(self._flush(batch))
            self._sending.add(task)
            task.add_done_callback(functools.partial(self._finished, batch))
        batch.append((item, future))
        return await future

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._waiting is batch:
            self._waiting = None
        self.batches += 1
        try:
            answers = await self._send([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} items")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def _finished(self, batch: list[tuple[T, asyncio.Future[R]]], task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._waiting is batch:  # cancelled before it ran: no later call may join it
            self._waiting = None
        for _, future in batch:  # cancelled: nothing will answer them
            future.cancel()
