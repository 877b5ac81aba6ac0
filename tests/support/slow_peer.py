"""A graphql-transport-ws subscriber on a raw socket that subscribes, then reads nothing.

A websockets client keeps draining the socket into its own memory even when the app does not
read; only a peer that really stops calling recv() makes the server's sends stall. Its receive
buffer is small, so the server's side fills up soon. Used by the slow-consumer tests.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri


class SlowPeer:
    def __init__(self, base: str, query: str, variables: dict[str, Any]) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.protocol = ClientProtocol(
            parse_uri(f"ws://{host}:{port}/graphql"),
            subprotocols=[Subprotocol("graphql-transport-ws")],
        )
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        while self.protocol.state is State.CONNECTING:
            self._read(10)
        self._send({"type": "connection_init", "payload": {}})
        while not any(isinstance(e, Frame) and b"connection_ack" in e.data for e in self._read(10)):
            pass
        payload = {"query": query, "variables": variables}
        self._send({"id": "slow", "type": "subscribe", "payload": payload})

    def _send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def _read(self, timeout: float) -> list[Any]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    def close_code(self, timeout: float) -> int | None:
        """Read the whole backlog; the code of the server's close frame, if one came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self._read(timeout):
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    return Close.parse(event.data).code
            if self.protocol.close_rcvd is not None or self.protocol.state is State.CLOSED:
                break
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd else None
