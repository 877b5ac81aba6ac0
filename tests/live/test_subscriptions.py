"""hotFlows over WebSockets in one process: the embedded default (in-process broadcaster)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from graph.graphql.transport import GraphQLApp
from graph.http.app import create_app
from tests.support.factories import READ_KEY, make_settings, spread, write_headers
from tests.support.servers import empty_archive, subscribed

QUERY = """subscription($current: Boolean, $countries: [String!], $window: String!) {
  hotFlows(timeWindow: $window, threshold: 0.5, includeCurrent: $current,
           countries: $countries) { fromCountry toCountry heat } }"""


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url))) as test_client:
        yield test_client


def ingest(client: TestClient, records: list[dict[str, Any]]) -> None:
    assert client.post("/v1/trends", json=records, headers=write_headers()).status_code == 200


def variables(**overrides: Any) -> dict[str, Any]:
    return {"current": False, "countries": None, "window": "24h", **overrides}


def test_graphql_transport_ws_gets_each_new_flow_once(client: TestClient) -> None:
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": variables()}}
        )
        subscribed(client)
        ingest(client, spread("FR", "BE", ["Alpha", "Beta"]))
        first = ws.receive_json()
        assert first["type"] == "next" and first["id"] == "1"
        assert first["payload"]["data"]["hotFlows"]["fromCountry"] == "FR"
        ingest(client, spread("FR", "BE", ["Alpha", "Beta"]))  # unchanged: nothing is sent
        ingest(client, spread("DE", "AT", ["Gamma"]))
        second = ws.receive_json()["payload"]["data"]["hotFlows"]
        assert (second["fromCountry"], second["toCountry"]) == ("DE", "AT")
        ws.send_json({"id": "1", "type": "complete"})


def test_legacy_graphql_ws_and_include_current(client: TestClient) -> None:
    ingest(client, spread("ES", "PT", ["Uno", "Dos"]))
    with client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "a",
                "type": "start",
                "payload": {"query": QUERY, "variables": variables(current=True)},
            }
        )
        current = ws.receive_json()
        assert current["type"] == "data"
        assert current["payload"]["data"]["hotFlows"]["toCountry"] == "PT"
        ingest(client, spread("JP", "KR", ["Anime"]))
        fresh = ws.receive_json()["payload"]["data"]["hotFlows"]
        assert (fresh["fromCountry"], fresh["toCountry"]) == ("JP", "KR")
        ws.send_json({"id": "a", "type": "stop"})


def test_filters_and_windows_select_what_a_subscriber_sees(client: TestClient) -> None:
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {
                    "query": QUERY,
                    "variables": variables(countries=["de", "at"], window="6h"),
                },
            }
        )
        subscribed(client)
        ingest(client, spread("FR", "BE", ["Alpha"]))  # outside the filter
        ingest(client, spread("DE", "AT", ["Gamma"]))
        flow = ws.receive_json()["payload"]["data"]["hotFlows"]
        assert (flow["fromCountry"], flow["toCountry"]) == ("DE", "AT")


def test_bad_arguments_are_errors_on_the_socket(client: TestClient) -> None:
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": QUERY, "variables": variables(window="2h")},
            }
        )
        message = ws.receive_json()
        assert message["type"] == "next"
        [error] = message["payload"]["errors"]
        assert error["extensions"]["code"] == "invalid_parameter"
        assert ws.receive_json()["type"] == "complete"


def test_read_keys_guard_subscriptions(database_url: str) -> None:
    """With READ_API_KEYS set, a socket without a credential is refused at init (4403)."""
    settings = make_settings(database_url, read_api_keys=(READ_KEY,))
    with (
        TestClient(create_app(settings)) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4403


def test_shutdown_ends_subscriptions_cleanly(database_url: str) -> None:
    """What the lifespan does at shutdown: every subscription gets a proper `complete`."""
    with (
        TestClient(create_app(make_settings(database_url))) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": variables()}}
        )
        subscribed(client)
        client.app_state["trendmap"].broadcaster.close()
        assert ws.receive_json() == {"id": "1", "type": "complete"}
        assert client.get("/health/ready").json()["checks"]["subscriptions"]["active"] == 0


def test_a_group_executes_and_encodes_each_flow_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three subscribers with one query: one execution and one encoding per new flow."""
    encoded: list[tuple[object, str]] = []  # (result, its JSON) for each live message

    class Spy(GraphQLApp):
        def encode_result(self, result: object) -> str:
            text = super().encode_result(result)
            encoded.append((result, text))
            return text

    monkeypatch.setattr("graph.http.app.GraphQLApp", Spy)
    with TestClient(create_app(make_settings(database_url))) as client:
        sockets = [
            client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"])
            for _ in range(3)
        ]
        opened = [s.__enter__() for s in sockets]
        try:
            for ws in opened:
                ws.send_json({"type": "connection_init"})
                ws.receive_json()
                ws.send_json(
                    {
                        "id": "s",
                        "type": "subscribe",
                        "payload": {"query": QUERY, "variables": variables()},
                    }
                )
            subscribed(client, 3)
            ingest(client, spread("FR", "BE", ["Alpha"]))
            texts = [ws.receive_text() for ws in opened]
            assert len(set(texts)) == 1  # the same bytes, id included (each chose "s")
            assert '"fromCountry":"FR"' in texts[0]
            [(result, text), *others] = encoded
            assert len(others) == 2
            # One execution: every member got the very same result object; one encoding: the
            # very same text.
            assert all(r is result and t is text for r, t in others)
        finally:
            for s in sockets:
                s.__exit__(None, None, None)


def test_unexpected_errors_are_masked_over_websockets(schemaless_postgres_url: str) -> None:
    """A database without the schema fails inside the resolver: masked on the socket too."""
    settings = make_settings(schemaless_postgres_url, auto_migrate=False)
    with (
        TestClient(create_app(settings)) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": variables()}}
        )
        message = ws.receive_json()
        [error] = message["payload"]["errors"]
        assert error["message"] == "Unexpected error."
        assert "trends_archive" not in json.dumps(message)


@contextlib.contextmanager
def archive_locked(url: str) -> Iterator[None]:
    """Every table of the archive locked by another PostgreSQL session, until the block ends:
    any read of them waits."""
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            async with conn.transaction():
                await conn.execute(
                    "LOCK TABLE trends_archive, trends_rollup_hourly, trends_series,"
                    " trends_labels IN ACCESS EXCLUSIVE MODE"
                )
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert locked.wait(10), "the archive could not be locked"
        yield
    finally:
        release.set()
        holder.join()


def test_a_subscription_is_active_once_it_knows_the_flows_hot_when_it_began(
    postgres_url: str,
) -> None:
    """A flow that crosses while a new subscription still looks up the flows hot now may count
    among those (not sent: they were hot when it began). Health counts it as active only once
    the look-up is done, so a client waiting for it (and these tests) never loses a flow."""
    asyncio.run(empty_archive(postgres_url))
    with TestClient(create_app(make_settings(postgres_url))) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init"})
            assert ws.receive_json()["type"] == "connection_ack"
            with archive_locked(postgres_url):
                ws.send_json(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": QUERY, "variables": variables()},
                    }
                )
                # The subscription is in its group, its look-up waiting for the lock.
                broadcaster = client.app_state["trendmap"].broadcaster
                while not broadcaster.groups:
                    time.sleep(0.01)
                active = client.get("/health/ready").json()["checks"]["subscriptions"]["active"]
                assert active == 0
            subscribed(client)
            ingest(client, spread("DE", "AT", ["Gamma"]))
            flow = ws.receive_json()["payload"]["data"]["hotFlows"]
            assert (flow["fromCountry"], flow["toCountry"]) == ("DE", "AT")
