"""Live fan-out as bytes: each new flow executed and encoded once per cohort, written to every
member's socket in one loop.

Subscribers with the same protocol, document, variables, operation name and credential class
form a cohort (one per broadcaster group at most, see graph.live.broadcaster). For a new flow
the cohort runs the map step of the subscription once (graphql-core's per-event executor, with
the flow as root value, as Strawberry's stream does), encodes the protocol's message once around
a gap for the operation id, and then, in one plain loop, splices in each member's id and hands
the bytes to its socket: no task, execution, encoding nor ``await`` per subscriber.

The bytes go to the socket through the WebSocket library's own framing (``websockets``'
``Frame.serialize`` under uvicorn's sans-I/O protocol, uncompressed; or the older protocol's
``write_frame_sync``), straight to its asyncio transport, which never blocks: a write either
goes out or waits in the transport's buffer. A member whose buffer still holds more than
WS_MAX_BUFFER_BYTES when a new snapshot's flows come is too slow: it is dropped at once and its
socket closed with 1008 from a task of its own, so that it never delays the others. (A burst of
flows in one snapshot is written whole, however large: only a member that has not taken it by
the next snapshot is dropped.) These frames skip the ASGI middleware between uvicorn and the
app; ours only look at the handshake, never at a sent message.

Everything else is Strawberry's as before: the subscribe message is parsed, validated and
authorised, the resolver parses its arguments (errors are today's), ``includeCurrent`` flows
go to the new member alone through Strawberry's own sending, and ``complete``/``stop``, a
closed socket or shutdown end the operation's task, which takes the member out. That task
waits on a future between events: it costs memory, never time per event. A socket that cannot
be written directly (Starlette's test client, or a server other than uvicorn) keeps the
per-subscriber queue (graph.live.subscriber).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLSchema, parse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from graph.core.flows import Flow
from graph.graphql.errors import log_errors, should_mask
from graph.graphql.fast_path import SharedEventExecution
from graph.observability.log import logger

GRAPHQL_TRANSPORT_WS = "graphql-transport-ws"
GRAPHQL_WS = "graphql-ws"
# How deep to look through the ASGI send wrappers (middleware closures) for uvicorn's protocol.
_SEARCH_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Operation:
    """A subscribe (``start``) message as the WebSocket handler read it."""

    protocol: str
    id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


# Set by the WebSocket handlers around Strawberry's handling of a subscribe message, so that the
# operation's task (which copies the context when it is created) knows its id and document.
current_operation: ContextVar[Operation | None] = ContextVar("fanout_operation", default=None)


# --- the sockets --------------------------------------------------------------------------


class SocketWriter:
    """One socket, written synchronously: the library frames, the transport buffers."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._send_text: Callable[[bytes], bool] = (
            self._sansio if hasattr(protocol, "conn") else self._legacy
        )

    @property
    def buffered(self) -> int:
        """Bytes waiting in the transport's buffer (what the kernel has not taken yet)."""
        return int(self._protocol.transport.get_write_buffer_size())

    def write(self, data: bytes) -> bool:
        """Send one text message; False when the socket is closing or closed."""
        try:
            return self._send_text(data)
        except Exception:  # the library's "not open" (InvalidState, ConnectionClosed)
            return False

    def _sansio(self, data: bytes) -> bool:
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or protocol.transport.is_closing():
            return False
        conn = protocol.conn
        if conn.state is not State.OPEN:
            return False
        # What conn.send_text does, less permessage-deflate: RFC 7692 lets any message go
        # uncompressed (its RSV1 bit clear), and compressing would cost one deflate per member
        # per frame, most of the loop's time, for frames of a few hundred bytes.
        waiting = conn.data_to_send()  # anything the library has queued goes first
        frame = Frame(Opcode.TEXT, data).serialize(mask=False, extensions=())
        protocol.transport.write(b"".join([*waiting, frame]) if waiting else frame)
        return True

    def _legacy(self, data: bytes) -> bool:
        protocol = self._protocol
        if protocol.transport.is_closing():
            return False
        protocol.write_frame_sync(True, 0x1, data)  # a final text frame
        return True


def _is_protocol(candidate: object) -> bool:
    """uvicorn's WebSocket protocol object: sans-I/O (``conn``) or legacy
    (``write_frame_sync``), with its asyncio transport."""
    if not hasattr(candidate, "transport") or not hasattr(candidate, "scope"):
        return False
    if hasattr(candidate, "conn"):
        conn = candidate.conn
        return all(hasattr(conn, a) for a in ("send_text", "data_to_send")) and all(
            hasattr(candidate, a) for a in ("close_sent", "disconnected")
        )
    return callable(getattr(candidate, "write_frame_sync", None))


def socket_writer(connection: HTTPConnection) -> SocketWriter | None:
    """A synchronous writer for the WebSocket's own socket, or None when it has none to find.

    The ASGI ``send`` the app holds is uvicorn's protocol's bound method, wrapped by each
    middleware in a closure that calls the next: the protocol is found by following those
    calls (bound methods, closures, partials), never by guessing.
    """
    if not isinstance(connection, WebSocket):
        return None
    pending: list[object] = [getattr(connection, "_send", None)]
    seen: set[int] = set()
    while pending and len(seen) < _SEARCH_LIMIT:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        owner = getattr(item, "__self__", None)
        if owner is not None and _is_protocol(owner):
            if owner.scope.get("type") == "websocket":
                return SocketWriter(owner)
        if isinstance(item, functools.partial):
            pending.append(item.func)
        function = getattr(item, "__func__", item)
        for cell in getattr(function, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                if callable(cell.cell_contents):
                    pending.append(cell.cell_contents)
    return None


# --- members and cohorts ------------------------------------------------------------------


class Member:
    """One subscription in a cohort: its socket, its id as JSON, and, until it is live, the
    frames that came while its includeCurrent flows were being sent."""

    __slots__ = ("_on_drop", "ended", "id_json", "live", "pending", "pending_bytes", "writer")

    def __init__(
        self, writer: SocketWriter, operation_id: str, on_drop: Callable[[], None]
    ) -> None:
        self.writer = writer
        self.id_json = orjson.dumps(operation_id)
        self.live = False
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_drop = on_drop

    def end(self, *, slow: bool) -> None:
        """The subscription is over: its task returns (Strawberry sends ``complete``); a slow
        one's socket is closed with 1008 first."""
        if self.ended.done():
            return
        if slow:
            self._on_drop()
        self.ended.set_result(None)


class FanoutCohort:
    """Members sharing one protocol, document, variables and credential class."""

    def __init__(
        self,
        schema: GraphQLSchema,
        operation: Operation,
        context: object,
        max_buffer_bytes: int,
    ) -> None:
        built = SharedEventExecution.build(
            schema,
            parse(operation.query),
            context_value=context,
            raw_variable_values=operation.variables,
            operation_name=operation.operation_name,
        )
        if isinstance(built, list):  # Strawberry validated it already: not expected
            raise ValueError(f"the operation cannot be executed: {built[0].message}")
        self._executor = built
        self._max_buffer = max_buffer_bytes
        if operation.protocol == GRAPHQL_TRANSPORT_WS:
            self._head, self._kind = b'{"id":', b',"type":"next","payload":'
        else:
            self._head, self._kind = b'{"type":"data","id":', b',"payload":'
        self.members: dict[Member, None] = {}  # in the order they joined

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, member: object) -> bool:
        return member in self.members

    def add(self, member: Member) -> Callable[[], None]:
        self.members[member] = None
        return functools.partial(self.members.pop, member, None)

    def payload(self, flow: Flow) -> bytes:
        """The message's payload for one flow: executed and encoded once for all members."""
        result: Any = self._executor.build_per_event_executor(flow).execute_operation(False)
        if self._executor.is_awaitable(result):  # no field of ours resolves asynchronously
            getattr(result, "close", lambda: None)()  # a coroutine never to be awaited
            raise TypeError("a live flow's result must be complete at once")
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_masked(e).formatted for e in result.errors]
            log_errors(result.errors)
        return orjson.dumps(body)

    def offer(self, flows: list[Flow]) -> tuple[int, int]:
        """Every flow to every member, in order: (flows delivered, members dropped)."""
        tails = [self._kind + self.payload(flow) + b"}" for flow in flows]
        head, limit = self._head, self._max_buffer
        delivered = dropped = 0
        members = self.members
        for member in list(members):
            writer = member.writer
            if not member.live:
                for tail in tails:
                    frame = head + member.id_json + tail
                    member.pending.append(frame)
                    member.pending_bytes += len(frame)
                if member.pending_bytes > limit:
                    del members[member]
                    member.end(slow=True)
                    dropped += 1
                continue
            if writer.buffered > limit:
                del members[member]
                member.end(slow=True)
                dropped += 1
                continue
            for tail in tails:
                if not writer.write(head + member.id_json + tail):
                    # Its socket is closing: the handler's shutdown ends the operation.
                    del members[member]
                    break
            else:
                delivered += len(tails)
        return delivered, dropped

    def go_live(self, member: Member) -> bool:
        """Send what waited for ``member`` and serve it directly from now on; False when it
        was dropped meanwhile."""
        if member not in self.members:
            return False
        for frame in member.pending:
            if not member.writer.write(frame):
                del self.members[member]
                return False
        member.pending, member.pending_bytes, member.live = [], 0, True
        return True

    def close(self) -> None:
        for member in list(self.members):
            del self.members[member]
            member.end(slow=False)


def _masked(error: GraphQLError) -> GraphQLError:
    """As MaskErrors words an unexpected error (graph.graphql.errors)."""
    if not should_mask(error):
        return error
    return GraphQLError(
        "Unexpected error.",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
    )


def cohort_key(operation: Operation, credential: object) -> tuple[object, ...]:
    """Members whose results and frames are the same bytes: same protocol, document, variables
    (in any key order), operation name and credential class."""
    variables = orjson.dumps(operation.variables or {}, option=orjson.OPT_SORT_KEYS)
    return (operation.protocol, operation.query, variables, operation.operation_name, credential)


async def serve(cohort: FanoutCohort, member: Member) -> None:
    """Once the new member's includeCurrent flows are out: serve it live until it ends."""
    if not cohort.go_live(member):
        logger.debug("live subscriber dropped while joining")
    await member.ended
