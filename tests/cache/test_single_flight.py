"""SingleFlight: callers at once share one computation; leaving callers cancel only their wait."""

from __future__ import annotations

import asyncio

import pytest

from graph.cache.single_flight import SingleFlight


class Gated:
    """A computation that runs until its gate opens, counting its runs."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.runs = 0
        self.started = asyncio.Event()
        self.finished = False

    async def __call__(self) -> list[int]:
        self.runs += 1
        self.started.set()
        await self.gate.wait()
        self.finished = True
        return [self.runs]


def test_callers_at_once_share_one_computation_and_the_next_computes_anew() -> None:
    async def main() -> None:
        flight: SingleFlight[str, list[int]] = SingleFlight("test")
        compute = Gated()
        callers = [asyncio.create_task(flight.run("k", compute)) for _ in range(3)]
        await compute.started.wait()
        assert len(flight) == 1
        compute.gate.set()
        first, *others = await asyncio.gather(*callers)
        assert all(other is first for other in others) and compute.runs == 1
        assert len(flight) == 0
        assert await flight.run("k", compute) == [2]

    asyncio.run(main())


def test_a_caller_that_leaves_cancels_only_its_own_wait() -> None:
    async def main() -> None:
        flight: SingleFlight[str, list[int]] = SingleFlight("test")
        compute = Gated()
        leaving = asyncio.create_task(flight.run("k", compute))
        staying = asyncio.create_task(flight.run("k", compute))
        await compute.started.wait()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        compute.gate.set()
        assert await staying == [1] and compute.runs == 1

    asyncio.run(main())


def test_when_the_shared_computation_is_cancelled_a_caller_answers_alone() -> None:
    async def main() -> None:
        flight: SingleFlight[str, list[int]] = SingleFlight("test")
        compute = Gated()
        caller = asyncio.create_task(flight.run("k", compute, alone=lambda: _alone()))
        await compute.started.wait()
        for task in asyncio.all_tasks():
            if task is not caller and task is not asyncio.current_task():
                task.cancel()  # the shared computation, as a shutdown would
        assert await caller == [-1]

    async def _alone() -> list[int]:
        return [-1]

    asyncio.run(main())


def test_a_failure_reaches_every_caller() -> None:
    async def main() -> None:
        flight: SingleFlight[str, list[int]] = SingleFlight("test")
        started = asyncio.Event()

        async def failing() -> list[int]:
            started.set()
            await asyncio.sleep(0)
            raise LookupError("gone")

        callers = [asyncio.create_task(flight.run("k", failing)) for _ in range(2)]
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert [type(r) for r in results] == [LookupError, LookupError]
        assert len(flight) == 0

    asyncio.run(main())


def test_drain_lets_a_computation_finish_then_cancels_what_is_left() -> None:
    async def main() -> None:
        flight: SingleFlight[str, list[int]] = SingleFlight("test")
        quick, stuck = Gated(), Gated()
        for key, compute in (("quick", quick), ("stuck", stuck)):
            caller = asyncio.create_task(flight.run(key, compute))
            await compute.started.wait()
            caller.cancel()  # every caller left
            await asyncio.gather(caller, return_exceptions=True)
        assert len(flight) == 2
        asyncio.get_running_loop().call_later(0.05, quick.gate.set)
        await flight.drain(0.3)
        assert quick.finished and not stuck.finished
        assert len(flight) == 0
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, "a computation outlived the drain"

    asyncio.run(main())
