"""The GraphQL endpoint over HTTP and WebSocket: Strawberry's ASGI view with our context,
connection_init check, JSON codec and error format."""

from __future__ import annotations

import json
from typing import Any

import orjson
from cross_web import HTTPException as GraphQLHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage
from strawberry.types.unset import UnsetType

from graph.core.errors import TrendmapError
from graph.graphql.context import Context, context_for
from graph.graphql.identity_memo import IdentityMemo
from graph.http.errors import error_for_status, error_response
from graph.observability.log import request_id_of

_MESSAGE_KEYS = {"id", "type", "payload"}


def _encode(value: object) -> str:
    return orjson.dumps(value).decode()


def _shared_payload(data: object) -> tuple[dict[str, Any], object] | None:
    """A live `next` (graphql-transport-ws) or `data` (graphql-ws) message without errors, and
    its result (the object shared by every member of a subscription group)."""
    if not isinstance(data, dict) or data.get("type") not in ("next", "data"):
        return None
    payload = data.get("payload")
    if not isinstance(payload, dict) or set(payload) != {"data"} or set(data) != _MESSAGE_KEYS:
        return None
    return data, payload["data"]


class _GraphQLWSHandler(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws, closing a refused connection with 4403 as graphql-transport-ws does.

    Strawberry's own handler sends ``connection_error`` and closes with 1011 (what
    subscriptions-transport-ws servers did); the error is kept, the close code is ours.
    """

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        if payload is None or isinstance(payload, dict):
            self.context.connection_params = payload
            try:
                await self.view.on_ws_connect(self.context)
            except ConnectionRejectionError as exc:
                await self.send_message({"type": "connection_error", "payload": exc.payload})
                await self.websocket.close(code=4403, reason="Forbidden")
                return
        # Admitted (Strawberry checks once more, cheaply) or a malformed payload it refuses.
        await super().handle_connection_init(message)


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry over Starlette, with our context on HTTP and WebSocket alike."""

    graphql_ws_handler_class = _GraphQLWSHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A live result shared by a group's members (see SharedEventExecution): encoded once.
        self._encodings = IdentityMemo(_encode, 512)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return context_for(request)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Check the socket's credential at connection_init; refused, the socket closes 4403."""
        try:
            context.authorise_connection()
        except TrendmapError as exc:
            raise ConnectionRejectionError({"message": exc.detail, "code": exc.code}) from exc
        return UnsetType()  # a plain connection_ack (UnsetType is a singleton: UNSET)

    async def run(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """Strawberry's own HTTP errors (unparseable body, batching off, ...) in our format."""
        try:
            return await super().run(request, *args, **kwargs)
        except GraphQLHTTPException as exc:
            error = error_for_status(exc.status_code, exc.reason)
            return error_response(error, request_id_of(request.scope))

    def encode_json(self, data: object) -> str:
        # orjson is several times faster than the stdlib; a str keeps WebSocket frames text.
        shared = _shared_payload(data)
        if shared is None:
            return orjson.dumps(data).decode()
        message, result = shared
        return '{"id":%s,"type":%s,"payload":{"data":%s}}' % (  # noqa: UP031
            orjson.dumps(message["id"]).decode(),
            orjson.dumps(message["type"]).decode(),
            self.encode_result(result),
        )

    def encode_result(self, result: object) -> str:
        """The JSON of a live result; the same text for the same (shared) result object."""
        return self._encodings(result)

    def decode_json(self, data: str | bytes) -> object:
        # Bodies, socket messages and `variables` are objects (arrays for batches); a bare
        # scalar would crash Strawberry further in, so it is refused here as unreadable.
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict | list):
            text = data if isinstance(data, str) else data.decode(errors="replace")
            raise json.JSONDecodeError("expected a JSON object", text, 0)
        return decoded
