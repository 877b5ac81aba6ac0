"""What every resolver gets: the connection, the app state and the connection's credential."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from graph.auth import connection_authorization, credentials_for, require_connection, require_read
from graph.wiring import AppState, app_state


@dataclass(slots=True)
class Context:
    """One per HTTP request, and one per WebSocket for all of its operations (Strawberry reuses
    it): nothing belonging to a single operation lives here."""

    connection: HTTPConnection
    state: AppState
    subscriptions: int = 0  # live on this connection

    # A WebSocket's connection_init payload; Strawberry sets it before on_ws_connect.
    connection_params: dict[str, object] | None = None

    @property
    def authorization(self) -> str | None:
        """The Authorization header, else (WebSocket) the connection_init payload's credential."""
        header = self.connection.headers.get("authorization")
        return header or connection_authorization(self.connection_params)

    def authorise_read(self) -> None:
        require_read(self.authorization, credentials_for(self.state.settings))

    def authorise_connection(self) -> None:
        """At connection_init: a present credential must be valid, and one is needed to read."""
        require_connection(self.authorization, credentials_for(self.state.settings))


def context_for(connection: HTTPConnection) -> Context:
    return Context(connection=connection, state=app_state(connection))
