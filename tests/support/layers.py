"""The app's own layers, found in a running TestClient's app: what tests count with."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from graph.graphql.schema import TrendmapSchema
from graph.http.middleware.fast_path import FastPathMiddleware
from graph.http.middleware.front_door import FrontDoor
from graph.http.prebuilt import PrebuiltResponses


def responses_of(client: TestClient) -> PrebuiltResponses:
    """The app's prebuilt responses (their hit counter counts every prebuilt answer)."""
    app: Any = client.app
    [responses] = [
        m.kwargs["responses"] for m in app.user_middleware if m.cls is FastPathMiddleware
    ]
    assert isinstance(responses, PrebuiltResponses)
    return responses


def front_door_of(client: TestClient) -> FrontDoor:
    """The running app's front door (built with its middleware stack, at the first request)."""
    layer: Any = getattr(client.app, "middleware_stack", None)
    while not isinstance(layer, FrontDoor):
        assert layer is not None, "no front door in the stack"
        layer = layer.app
    return layer


def graphql_schema_of(client: TestClient) -> TrendmapSchema:
    """The schema of the app's GraphQL endpoint (HTTP and WebSocket alike), with what it keeps
    per worker: persisted documents, kept answers, prepared operations."""
    app: Any = client.app
    [endpoint] = {r.endpoint for r in app.routes if getattr(r, "path", "") == "/graphql"}
    schema = endpoint.schema
    assert isinstance(schema, TrendmapSchema)
    return schema
