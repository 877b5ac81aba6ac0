"""Poll schedulers: exactly one polls, a standby takes over, a lost lease cancels a round."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import pytest

from graph.feeds.google_trends import GoogleTrendsRSS
from graph.feeds.lease import LEASE_KEY, StoreLease
from graph.feeds.poller import Poller
from graph.feeds.scheduler import PollScheduler
from graph.wiring import open_state
from tests.support.factories import make_settings
from tests.support.feedserver import FeedServer, Reply, feed, feed_settings
from tests.support.servers import RedisServer, running_server


def test_two_schedulers_share_one_lease_and_the_standby_takes_over(
    tmp_path: Any, feed_server: FeedServer, throwaway_redis: RedisServer
) -> None:
    feed_server.reply("US", feed("Ravens"))
    feed_server.reply("GB", feed("Derby"))
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}",
        feed_server,
        redis_url=throwaway_redis.url,
        poll_interval_seconds=0.3,
        poll_lock_ttl_seconds=0.6,
    )

    async def main() -> None:
        async with open_state(settings) as a, open_state(settings) as b:
            schedulers = [a.feeds.scheduler, b.feeds.scheduler]
            assert schedulers[0] is not None and schedulers[1] is not None
            tasks = [asyncio.create_task(s.run()) for s in schedulers]
            await asyncio.sleep(2.0)
            leaders = [s for s in schedulers if s.leader]
            assert len(leaders) == 1
            (leader,) = leaders
            (standby,) = [s for s in schedulers if s is not leader]
            assert standby.poller.last_round is None, "the standby polled too"
            # One poller at 0.3 s: about 6 rounds in 2 s; two would make about 12.
            assert 3 <= feed_server.count("US") <= 8
            # The standby reads what the leader publishes.
            failing = await standby.board.read()
            assert failing is not None and failing["leader"] == leader.identity
            tasks[schedulers.index(leader)].cancel()
            await asyncio.sleep(1.5)
            assert standby.leader and standby.poller.last_round is not None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


# --- exactly one poller among real worker processes ---------------------------------------


@pytest.mark.parametrize("lock", ["redis", "postgres"])
def test_two_workers_run_exactly_one_poller(
    postgres_url: str,
    throwaway_redis: RedisServer,
    feed_server: FeedServer,
    tmp_path: Any,
    lock: str,
) -> None:
    """`serve --workers 2`: with a one-hour interval, each feed is called exactly once."""
    from tests.support.servers import empty_archive

    asyncio.run(empty_archive(postgres_url))
    feed_server.reply("US", feed("Ravens"))
    feed_server.reply("GB", feed("Derby"))
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "LOG_LEVEL": "WARNING",
        "SOURCES": "google_trends_rss",
        "GOOGLE_TRENDS_RSS_URL": feed_server.url,
        "POLL_COUNTRIES": "US,GB",
        "POLL_INTERVAL_SECONDS": "3600",
        "POLL_LOCK_TTL_SECONDS": "1",
    }
    if lock == "redis":
        env["REDIS_URL"] = throwaway_redis.url
    else:
        env.pop("REDIS_URL", None)
    with running_server(tmp_path, env, "--workers", "2") as server:
        deadline = time.monotonic() + 30
        while feed_server.count("GB") == 0:
            assert time.monotonic() < deadline, "nobody polled"
            time.sleep(0.1)
        time.sleep(3)  # several lease periods: each worker has tried to lead many times
        assert (feed_server.count("US"), feed_server.count("GB")) == (1, 1)
        roles = set()
        for _ in range(20):  # requests land on either worker
            sources = httpx.get(f"{server.base}/health/ready").json()["checks"]["sources"]
            roles.add(sources["poller"]["this_worker"])
            assert sources["poller"]["lock"] == lock
        if lock == "redis":  # without Redis, only the leader knows how its feeds are doing
            assert roles == {"leader", "standby"}
            assert sources["poller"]["last_round"]["inserted"] == 2


def test_a_long_round_keeps_its_lease_and_a_lost_lease_cancels_the_round(
    tmp_path: Any, feed_server: FeedServer, throwaway_redis: RedisServer
) -> None:
    feed_server.reply("US", Reply(200, feed("Ravens").body, delay=1.0))
    feed_server.reply("GB", Reply(200, feed("Derby").body, delay=1.0))
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}",
        feed_server,
        redis_url=throwaway_redis.url,
        poll_interval_seconds=1.2,
        poll_lock_ttl_seconds=0.3,
        source_timeout_seconds=5,
    )

    async def main() -> None:
        import redis.asyncio as aioredis

        async with open_state(settings) as state:
            scheduler = state.feeds.scheduler
            assert scheduler is not None
            task = asyncio.create_task(scheduler.run())
            # A round of 1 s under a 0.3 s lease: renewed while it runs, so it completes.
            while scheduler.poller.last_round is None:
                await asyncio.sleep(0.05)
            assert scheduler.leader and scheduler.poller.last_round.inserted == 2
            # The next round starts; meanwhile someone else takes the lease.
            while feed_server.count("US") < 2:
                await asyncio.sleep(0.02)
            client = aioredis.Redis.from_url(throwaway_redis.url)
            await client.set(LEASE_KEY, b"someone-else", px=60_000)
            await client.aclose()
            while scheduler.leader:
                await asyncio.sleep(0.02)
            finished = scheduler.poller.last_round
            await asyncio.sleep(1.5)
            assert scheduler.poller.last_round is finished, "the round went on without the lease"
            assert not scheduler.leader
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_cancelling_the_scheduler_mid_round_stops_it(
    tmp_path: Any, feed_server: FeedServer
) -> None:
    """Shutdown cancels the scheduler while a round runs: it must end, not poll on."""
    feed_server.reply("US", Reply(200, feed("Ravens").body, delay=1.0))
    feed_server.reply("GB", Reply(200, feed("Derby").body, delay=1.0))
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}", feed_server, poll_interval_seconds=0.1
    )

    async def main() -> None:
        async with open_state(settings) as state:
            scheduler = state.feeds.scheduler
            assert scheduler is not None
            task = asyncio.create_task(scheduler.run())
            while feed_server.count("US") == 0:
                await asyncio.sleep(0.02)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            assert done, "the scheduler swallowed its cancellation"
            assert task.cancelled()
            assert not state.feeds.board.leading

    asyncio.run(main())


class SlowToLeave:
    """A fetcher whose request hangs until cancelled, then takes a moment to close its
    connection before the cancellation goes on (as httpcore's and SQLAlchemy's closes do)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.closed = False

    async def get(self, url: str, *, extensions: dict[str, object] | None = None) -> bytes:
        self.asked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            self.closed = True
            raise
        raise AssertionError("never answered")


def test_a_cancelled_scheduler_ends_after_its_round_has(tmp_path: Any) -> None:
    """At shutdown the feeds' client and the database close once the scheduler stops: its
    round, still closing a connection, must not outlive it and use them as they close."""
    settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}")

    async def main() -> None:
        async with open_state(settings) as state:
            fetcher = SlowToLeave()
            poller = Poller(
                state.service, [GoogleTrendsRSS("http://127.0.0.1:1/{country}")], fetcher, ["US"]
            )
            lease = StoreLease(state.store, ttl_seconds=5)
            scheduler = PollScheduler(
                poller, lease, state.feeds.board, interval_seconds=60, lease_ttl_seconds=5
            )
            task = asyncio.create_task(scheduler.run())
            await asyncio.wait_for(fetcher.asked.wait(), 5)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            assert done and task.cancelled()
            assert fetcher.closed, "the scheduler stopped while its round was still closing"

    asyncio.run(main())
