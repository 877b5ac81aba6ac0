"""Both WebSocket protocols carry every operation: queries and mutations as well as
subscriptions. Python ``gql`` over the legacy graphql-ws protocol, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from starlette.testclient import TestClient

from graph.http.app import create_app
from tests.support.factories import as_input, make_settings, record, write_headers

INGEST = gql(
    """mutation Ingest($trends: [TrendInput!]!) {
      ingestTrends(trends: $trends) { received inserted } }"""
)
SPAN = gql("query Span { dataSpan { records countries } }")


@asynccontextmanager
async def served(database_url: str) -> AsyncIterator[str]:
    """The app under uvicorn on a free loopback port; its WebSocket URL."""
    config = uvicorn.Config(
        create_app(make_settings(database_url)),
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not running.done(), "the server did not start"
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await running


def legacy(url: str, **options: Any) -> Client:
    transport = WebsocketsTransport(
        url=url,
        subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL],  # "graphql-ws"
        init_payload={"Authorization": write_headers()["Authorization"]},
    )
    return Client(transport=transport, **options)


def test_gql_over_legacy_graphql_ws_runs_queries_and_mutations(tmp_path: Path) -> None:
    async def main() -> None:
        async with served(f"sqlite:///{tmp_path / 'ws.db'}") as url:
            # gql's default: fetch the schema (an introspection query) over the socket.
            async with legacy(url, fetch_schema_from_transport=True) as session:
                assert await session.execute(SPAN) == {"dataSpan": {"records": 0, "countries": 0}}
                trends = [as_input(record("US", "World Cup")), as_input(record("FR", "Vote"))]
                ingest = GraphQLRequest(INGEST, variable_values={"trends": trends})
                stored = await session.execute(ingest)
                assert stored == {"ingestTrends": {"received": 2, "inserted": 2}}
                assert (await session.execute(SPAN))["dataSpan"]["countries"] == 2
                with pytest.raises(TransportQueryError, match="Int cannot represent"):
                    limited = "query Q($n: Int) { hotspots(limit: $n) { country } }"
                    await session.execute(GraphQLRequest(limited, variable_values={"n": "abc"}))

    asyncio.run(main())


@pytest.mark.parametrize("protocol", ["graphql-ws", "graphql-transport-ws"])
def test_both_protocols_answer_a_query_then_complete(tmp_path: Path, protocol: str) -> None:
    start, result = ("start", "data") if protocol == "graphql-ws" else ("subscribe", "next")
    with (
        TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 'q.db'}"))) as client,
        client.websocket_connect("/graphql", subprotocols=[protocol]) as ws,
    ):
        ws.send_json({"type": "connection_init", "payload": write_headers()})
        assert ws.receive_json()["type"] == "connection_ack"
        payload = {"query": "{ dataSpan { records } }"}
        ws.send_json({"id": "q", "type": start, "payload": payload})
        assert ws.receive_json() == {
            "id": "q",
            "type": result,
            "payload": {"data": {"dataSpan": {"records": 0}}},
        }
        assert ws.receive_json() == {"id": "q", "type": "complete"}
        mutation = "mutation { ingestTrends(trends: []) { received } }"
        ws.send_json({"id": "m", "type": start, "payload": {"query": mutation}})
        answer = ws.receive_json()
        assert answer["payload"] == {"data": {"ingestTrends": {"received": 0}}}, answer
        assert ws.receive_json() == {"id": "m", "type": "complete"}
