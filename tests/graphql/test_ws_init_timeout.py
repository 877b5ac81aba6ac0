"""WS_INIT_TIMEOUT_SECONDS on a real `trendmap serve`: hundreds of sockets that never send
connection_init, opened at once, are each closed with 4408 on time, over both protocols; a
socket that does initialise is left alone."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator

import pytest

from tests.support.servers import Served, running_server

TIMEOUT = 1.0
TOLERANCE = 0.5
# Enough that a deadline which starts late under a burst of handshakes shows: Strawberry's own
# (a task per socket) closed half of these 0.3 s late and the last ones 0.8 s late.
SOCKETS = 500
PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("wsinit")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp / 'w.db'}",
        LOG_LEVEL="WARNING",
        RATE_LIMIT_ENABLED="false",
        WS_INIT_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    with running_server(tmp, env) as served:
        yield served


class RawSocket:
    """A WebSocket client on a bare TCP stream: the handshake, masked text frames out,
    frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: Served, protocol: str) -> tuple[RawSocket, float]:
        """The socket, and when its handshake's answer (101) came."""
        host, port = server.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        accepted = time.monotonic()
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer), accepted

    def send(self, message: dict[str, object]) -> None:
        payload, mask = json.dumps(message).encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    async def receive(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (short frames: what these tests get)."""
        first, length = await self.reader.readexactly(2)
        assert length < 126
        return first & 0x0F, await self.reader.readexactly(length)

    async def closed_with(self) -> int:
        opcode, payload = await self.receive()
        assert opcode == 0x8, (opcode, payload)
        return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_never_initialised_sockets_are_all_closed_on_time(server: Served, protocol: str) -> None:
    async def one() -> tuple[int, float]:
        ws, accepted = await RawSocket.open(server, protocol)
        try:
            code = await asyncio.wait_for(ws.closed_with(), TIMEOUT * 10)
            return code, time.monotonic() - accepted
        finally:
            ws.close()

    async def burst() -> list[tuple[int, float]]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(SOCKETS))), 30)

    closes = asyncio.run(burst())
    assert {code for code, _ in closes} == {4408}
    waits = sorted(wait for _, wait in closes)
    # Measured from the client's side of the handshake, which it may read late under load.
    assert waits[0] >= TIMEOUT * 0.75, waits[:5]
    assert waits[len(waits) // 2] <= TIMEOUT + 0.15, waits[len(waits) // 2]
    assert waits[-1] <= TIMEOUT + TOLERANCE, waits[-5:]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_initialised_socket_outlives_the_deadline(server: Served, protocol: str) -> None:
    async def scenario() -> None:
        ws, _ = await RawSocket.open(server, protocol)
        try:
            ws.send({"type": "connection_init"})
            assert json.loads((await ws.receive())[1])["type"] == "connection_ack"
            await asyncio.sleep(TIMEOUT * 1.5)
            query = {"query": "{ __typename }"}
            kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
            ws.send({"id": "1", "type": kind, "payload": query})
            opcode, payload = await ws.receive()
            assert opcode == 0x1, payload
            assert json.loads(payload)["payload"] == {"data": {"__typename": "Query"}}
        finally:
            ws.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
