"""What every resolver gets: the connection, the app state and the connection's credential."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response

from graph.auth import connection_authorization, credentials_for, require_connection, require_read
from graph.service.params import parse_min_generation
from graph.wiring import AppState, app_state

MIN_GENERATION_HEADER = "X-Trendmap-Min-Generation"
GENERATION_HEADER = "X-Trendmap-Generation"


@dataclass(slots=True)
class Context:
    """One per HTTP request, and one per WebSocket for all of its operations (Strawberry reuses
    it): nothing belonging to a single operation lives here."""

    connection: HTTPConnection
    state: AppState
    subscriptions: int = 0  # live on this connection

    # A WebSocket's connection_init payload; Strawberry sets it before on_ws_connect.
    connection_params: dict[str, object] | None = None

    # Over HTTP, the response whose headers Strawberry adds to the answer's.
    response: Response | None = None

    @property
    def min_generation(self) -> int | None:
        """The X-Trendmap-Min-Generation header: reads hold every write answered with a
        generation up to it (graph.cache.response_cache). InvalidParameter when malformed."""
        asked = [
            parse_min_generation(value, field=MIN_GENERATION_HEADER)
            for value in self.connection.headers.getlist(MIN_GENERATION_HEADER)
        ]
        return max((g for g in asked if g is not None), default=None)

    def announce_generation(self, generation: int | None) -> None:
        """Over HTTP, the X-Trendmap-Generation header of a write's answer (none when the
        cache could not count it)."""
        if self.response is not None and generation is not None:
            self.response.headers[GENERATION_HEADER] = str(generation)

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


def context_for(connection: HTTPConnection, response: Response | None = None) -> Context:
    return Context(connection=connection, state=app_state(connection), response=response)
