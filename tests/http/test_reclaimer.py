"""The Reclaimer reclaims once a burst of connections has closed, and not before."""

from __future__ import annotations

import asyncio
import gc

from graph.http.reclaimer import Reclaimer


def test_a_closed_burst_is_reclaimed_once() -> None:
    async def scenario() -> None:
        connections = set(range(300))
        reclaimer = Reclaimer(connections, min_burst=256, interval=0.01)
        reclaimer.opened()
        assert reclaimer.peak == 300
        await asyncio.sleep(0.05)
        assert reclaimer.reclaimed == 0  # still open: nothing to give back

        collections = gc.get_stats()[2]["collections"]
        for n in range(160):
            connections.discard(n)
        await asyncio.sleep(0.05)
        assert reclaimer.reclaimed == 1
        assert gc.get_stats()[2]["collections"] > collections  # a full pass ran
        assert reclaimer.peak == 140  # the next burst is measured from here
        await asyncio.sleep(0.05)
        assert reclaimer.reclaimed == 1

    asyncio.run(scenario())


def test_a_few_connections_are_no_burst() -> None:
    async def scenario() -> None:
        connections = set(range(100))
        reclaimer = Reclaimer(connections, min_burst=256, interval=0.01)
        reclaimer.opened()
        connections.clear()
        await asyncio.sleep(0.05)
        assert reclaimer.reclaimed == 0

    asyncio.run(scenario())
