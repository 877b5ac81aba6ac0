"""A hotFlows subscriber over a real socket (gql), for the multi-worker tests."""

from __future__ import annotations

import asyncio
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

SUBSCRIPTION = """
subscription($threshold: Float, $countries: [String!], $current: Boolean) {
  hotFlows(timeWindow: "24h", threshold: $threshold, countries: $countries,
           includeCurrent: $current) { fromCountry toCountry heat sharedTopics }
}"""


class Listener:
    """A gql client subscribed to hotFlows, collecting what it receives."""

    def __init__(self, base: str, protocol: str, **variables: Any) -> None:
        url = base.replace("http://", "ws://") + "/graphql"
        self.transport = WebsocketsTransport(url=url, subprotocols=[protocol])
        self.variables = {"threshold": 0.5, **variables}
        self.received: list[tuple[str, str]] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with Client(transport=self.transport, fetch_schema_from_transport=False) as session:
            request = GraphQLRequest(SUBSCRIPTION, variable_values=self.variables)
            async for result in session.subscribe(request):
                flow = result["hotFlows"]
                self.received.append((flow["fromCountry"], flow["toCountry"]))

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
