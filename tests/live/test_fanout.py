"""Live fan-out as bytes (graph.graphql.fanout) on a real `trendmap serve`, over real sockets:
cohorts on both protocols, each member's own ids, one frame per crossing, slow consumers
dropped by their socket's buffer, unsubscribing, and includeCurrent for the joiner alone."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from graph.core.records import assigned_country_codes
from graph.http.app import create_app
from tests.support.factories import WRITE_KEY, make_settings, spread, write_headers
from tests.support.servers import Served, running_server
from tests.support.slow_peer import SlowPeer

QUERY = """subscription($current: Boolean, $countries: [String!]) {
  hotFlows(timeWindow: "24h", threshold: 0.5, includeCurrent: $current,
           countries: $countries) { fromCountry toCountry heat sharedTopics } }"""
# What the server may buffer for one socket before dropping it (WS_MAX_BUFFER_BYTES).
MAX_BUFFER = 64 * 1024
KINDS = {"graphql-transport-ws": ("subscribe", "next"), "graphql-ws": ("start", "data")}


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'fanout.db'}",
        API_KEYS=WRITE_KEY,
        LOG_LEVEL="WARNING",
        RATE_LIMIT_ENABLED="false",
        WS_MAX_BUFFER_BYTES=str(MAX_BUFFER),
    )
    with running_server(tmp_path, env) as served:
        yield served


def ingest(server: Served, records: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.base}/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200, response.text


def live(server: Served) -> dict[str, int]:
    checks = httpx.get(f"{server.base}/health/ready").json()["checks"]
    counts: dict[str, int] = checks["subscriptions"]
    return counts


async def until(server: Served, what: str, value: int, seconds: float = 20) -> None:
    """Until the server's live counter ``what`` reads ``value``."""
    deadline = time.monotonic() + seconds
    while (now := (await asyncio.to_thread(live, server))[what]) != value:
        assert time.monotonic() < deadline, f"{what} stayed {now}, not {value}"
        await asyncio.sleep(0.02)


class Client:
    """One socket, initialised, with subscriptions by id."""

    opened: list[Client] = []  # closed by run() whether the test passed or not

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws, self.protocol = ws, protocol

    @classmethod
    async def open(cls, server: Served, protocol: str) -> Client:
        url = server.base.replace("http://", "ws://") + "/graphql"
        ws = await connect(url, subprotocols=[Subprotocol(protocol)], ping_interval=None)
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        client = cls(ws, protocol)
        cls.opened.append(client)
        return client

    async def subscribe(self, operation_id: str, **variables: Any) -> None:
        kind = KINDS[self.protocol][0]
        payload = {"query": QUERY, "variables": {"current": False, **variables}}
        message = {"id": operation_id, "type": kind, "payload": payload}
        await self.ws.send(orjson.dumps(message).decode())

    async def stop(self, operation_id: str) -> None:
        kind = "complete" if self.protocol == "graphql-transport-ws" else "stop"
        await self.ws.send(orjson.dumps({"id": operation_id, "type": kind}).decode())

    async def flow(self, seconds: float = 10) -> tuple[str, tuple[str, str]]:
        """The next live message: (its id, the flow's pair)."""
        while True:
            message = orjson.loads(await asyncio.wait_for(self.ws.recv(), seconds))
            if message["type"] in ("ka", "ping", "pong"):
                continue
            assert message["type"] == KINDS[self.protocol][1], message
            assert "errors" not in message["payload"], message
            flow = message["payload"]["data"]["hotFlows"]
            return message["id"], (flow["fromCountry"], flow["toCountry"])

    async def nothing_more(self, seconds: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), seconds)


def run(main: Callable[[], Awaitable[None]]) -> None:
    """``asyncio.run(main())``, then close every client it opened, pass or fail (a socket left
    to the garbage collector warns in whichever test happens to be running)."""

    async def closing() -> None:
        try:
            await main()
        finally:
            while Client.opened:
                await Client.opened.pop().ws.close()

    asyncio.run(closing())


async def marker(server: Served, clients: list[Client], pair: tuple[str, str]) -> None:
    """A new crossing that every client's every subscription sees next: what came before it
    is all there was."""
    await asyncio.to_thread(ingest, server, spread(*pair, [f"Marker {pair}"]))


def test_a_cohort_on_both_protocols_gets_each_crossing_once_with_its_own_ids(
    server: Served,
) -> None:
    async def main() -> None:
        clients = [
            await Client.open(server, protocol)
            for protocol in KINDS
            for _ in range(6)  # 12 sockets, two cohorts (one per protocol)
        ]
        for i, client in enumerate(clients):
            await client.subscribe(f"op-{i}")
            await client.subscribe(f"second-{i}")  # a second member on the same socket
        await until(server, "active", 24)
        await asyncio.to_thread(ingest, server, spread("FR", "BE", ["Alpha", "Beta"]))
        for i, client in enumerate(clients):
            got = sorted([await client.flow(), await client.flow()])
            assert got == [(f"op-{i}", ("FR", "BE")), (f"second-{i}", ("FR", "BE"))]
        # The same data again crosses nothing; the next crossing is the next frame.
        await asyncio.to_thread(ingest, server, spread("FR", "BE", ["Alpha", "Beta"]))
        await marker(server, clients, ("DE", "AT"))
        for i, client in enumerate(clients):
            got = sorted([await client.flow(), await client.flow()])
            assert got == [(f"op-{i}", ("DE", "AT")), (f"second-{i}", ("DE", "AT"))]
            await client.nothing_more()
        assert (await asyncio.to_thread(live, server))["delivered"] == 48
        for client in clients:
            await client.ws.close()
        await until(server, "active", 0)

    run(main)


def test_different_variables_make_different_cohorts_each_served_its_own(server: Served) -> None:
    async def main() -> None:
        everything = await Client.open(server, "graphql-transport-ws")
        filtered = await Client.open(server, "graphql-transport-ws")
        await everything.subscribe("all")
        await filtered.subscribe("some", countries=["de", "at"])
        await until(server, "active", 2)
        await asyncio.to_thread(ingest, server, spread("FR", "BE", ["Alpha"]))
        await asyncio.to_thread(ingest, server, spread("DE", "AT", ["Gamma"]))
        # Two ingests in quick succession may be one snapshot: their flows in either order.
        both = {await everything.flow(), await everything.flow()}
        assert both == {("all", ("FR", "BE")), ("all", ("DE", "AT"))}
        assert await filtered.flow() == ("some", ("DE", "AT"))
        await filtered.nothing_more()

    run(main)


def test_unsubscribing_mid_stream_stops_that_subscription_only(server: Served) -> None:
    async def main() -> None:
        legacy = await Client.open(server, "graphql-ws")
        modern = await Client.open(server, "graphql-transport-ws")
        for client in (legacy, modern):
            await client.subscribe("a")
            await client.subscribe("b")
        await until(server, "active", 4)
        await asyncio.to_thread(ingest, server, spread("FR", "BE", ["Alpha"]))
        for client in (legacy, modern):
            assert sorted([await client.flow(), await client.flow()]) == [
                ("a", ("FR", "BE")),
                ("b", ("FR", "BE")),
            ]
            await client.stop("a")
        # graphql-ws answers a stop with `complete`; graphql-transport-ws sends nothing more.
        assert orjson.loads(await legacy.ws.recv()) == {"type": "complete", "id": "a"}
        await until(server, "active", 2)
        await asyncio.to_thread(ingest, server, spread("DE", "AT", ["Gamma"]))
        for client in (legacy, modern):
            assert await client.flow() == ("b", ("DE", "AT"))
            await client.nothing_more()

    run(main)


def test_include_current_goes_to_the_joiner_alone(server: Served) -> None:
    async def main() -> None:
        ingest(server, spread("ES", "PT", ["Uno", "Dos"]))
        first = await Client.open(server, "graphql-transport-ws")
        await first.subscribe("1", current=True)
        assert await first.flow() == ("1", ("ES", "PT"))
        await until(server, "active", 1)
        joiner = await Client.open(server, "graphql-transport-ws")
        await joiner.subscribe("2", current=True)  # the same cohort: same document, variables
        assert await joiner.flow() == ("2", ("ES", "PT"))
        await until(server, "active", 2)
        await asyncio.to_thread(ingest, server, spread("JP", "KR", ["Anime"]))
        assert await first.flow() == ("1", ("JP", "KR"))  # not ES-PT a second time
        assert await joiner.flow() == ("2", ("JP", "KR"))
        await first.nothing_more()

    run(main)


def test_a_slow_consumer_is_dropped_by_its_buffer_while_the_others_get_every_flow(
    server: Served,
) -> None:
    async def main() -> None:
        slow = await asyncio.to_thread(
            SlowPeer,
            server.base,
            QUERY,
            {"current": False},  # the fast one's cohort
        )
        fast = await Client.open(server, "graphql-transport-ws")
        await fast.subscribe("fast")
        await until(server, "active", 2)
        # 40 countries with one mix of long topics: 780 new flows of ~4 kB in one snapshot,
        # about what loopback's kernel buffers absorb (~4 MB)...
        topics = [f"{i} " + "long label " * 17 for i in range(20)]
        countries = sorted(assigned_country_codes())

        def records(group: list[str]) -> list[dict[str, Any]]:
            now = datetime.now(UTC)
            return [
                {
                    "timestamp": (now - timedelta(minutes=60 + countries.index(c))).isoformat(),
                    "country": c,
                    "topic_label": t,
                    "count": 50,
                    "confidence": 0.9,
                }
                for c in group
                for t in topics
            ]

        used = 40
        await asyncio.to_thread(ingest, server, records(countries[:used]))
        received: set[tuple[str, str]] = set()
        while len(received) < used * (used - 1) // 2:
            received.add((await fast.flow())[1])
        # ...then each new country is one more snapshot with new flows, until one finds the
        # slow peer's socket holding more than MAX_BUFFER: dropped.
        while (await asyncio.to_thread(live, server))["dropped"] == 0:
            assert used < 100, "the slow subscriber was never dropped"
            await asyncio.to_thread(ingest, server, records([countries[used]]))
            used += 1
            while len(received) < used * (used - 1) // 2:
                received.add((await fast.flow())[1])
        assert len(received) == used * (used - 1) // 2  # the fast one missed nothing
        await until(server, "active", 1)
        try:
            assert await asyncio.to_thread(slow.close_code, 30) == 1008
        finally:
            slow.sock.close()

    run(main)


# uvicorn's WebSocket implementations that fan-out writes to directly: the sans-I/O one (its
# default) and the older one on websockets' legacy protocol, while uvicorn still has it.
IMPLEMENTATIONS = [
    pytest.param(
        ws,
        # uvicorn and websockets both warn that the older one is deprecated.
        marks=[pytest.mark.filterwarnings("ignore::Warning")] if ws == "websockets" else [],
    )
    for ws in ("websockets-sansio", "websockets")
    if ws in uvicorn.config.WS_PROTOCOLS
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_cohorts_under_each_uvicorn_implementation_and_shutdown(
    tmp_path: Any, implementation: str
) -> None:
    """Served as a cohort (no per-subscriber queue) under uvicorn's implementation; then what
    the lifespan does at shutdown (Broadcaster.close): every member of every cohort gets its
    `complete`, and nothing is left. The app under uvicorn in this process, to look inside."""

    async def main() -> None:
        settings = make_settings(f"sqlite:///{tmp_path / 'shutdown.db'}")
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="on",
            ws=implementation,
        )
        uvicorn_server = uvicorn.Server(config)
        running = asyncio.create_task(uvicorn_server.serve())
        try:
            while not uvicorn_server.started:
                assert not running.done(), "the server did not start"
                await asyncio.sleep(0.01)
            port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
            served = Served(f"http://127.0.0.1:{port}", None)  # type: ignore[arg-type]
            clients = [await Client.open(served, protocol) for protocol in KINDS]
            for client in clients:
                await client.subscribe("x")
            broadcaster = uvicorn_server.lifespan.state["trendmap"].broadcaster
            while broadcaster.subscriber_count != 2:
                await asyncio.sleep(0.01)
            assert all(g.cohorts and not g.members for g in broadcaster.groups.values())
            async with httpx.AsyncClient(base_url=served.base) as http:
                records = spread("FR", "BE", ["Alpha"])
                answer = await http.post("/v1/trends", json=records, headers=write_headers())
                assert answer.status_code == 200
            for client in clients:
                assert await client.flow() == ("x", ("FR", "BE"))
            broadcaster.close()
            for client in clients:
                message = orjson.loads(await asyncio.wait_for(client.ws.recv(), 10))
                assert message == {"id": "x", "type": "complete"}
            assert broadcaster.subscriber_count == 0 and not broadcaster.groups
        finally:
            uvicorn_server.should_exit = True
            await running

    run(main)
