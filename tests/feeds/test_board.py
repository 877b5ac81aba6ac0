"""The source board: what workers read of the leader's feed status."""

from __future__ import annotations

import asyncio

from graph.feeds.board import SourceBoard
from graph.stores import open_store
from tests.support.servers import RedisServer


def test_the_board_reads_the_store_at_most_once_a_second(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        store = open_store(throwaway_redis.url)
        try:
            board = SourceBoard(store, ttl_seconds=60)
            await board.publish({"failing": ["US"]})
            assert await board.failing_countries() == {"US"}
            await board.publish({"failing": ["GB"]})
            assert await board.failing_countries() == {"US"}  # read less than a second ago
            await asyncio.sleep(1.05)
            assert await board.failing_countries() == {"GB"}
            idle = SourceBoard(store, ttl_seconds=60, polling=False)
            assert await idle.failing_countries() == frozenset()  # SOURCES empty: never partial
            throwaway_redis.stop()
            await asyncio.sleep(1.05)
            assert await board.failing_countries() == frozenset()  # unknown, not an error
        finally:
            await store.close()

    asyncio.run(main())
