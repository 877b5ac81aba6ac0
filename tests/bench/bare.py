"""The baseline: a bare Starlette app answering with the very bytes the service answered.

``BENCH_BODIES`` names a directory holding ``flows.json`` (for ``GET /v1/flows``) and
``graphql.json`` (for ``POST /graphql``), captured from the service just before. The app reads
the request body as any real endpoint would, and nothing else: no middleware, no routing
beyond Starlette's, no serialisation. Served by the same uvicorn settings as the service
(common.uvicorn_command), it is what this machine can do for the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def create_app() -> Starlette:
    bodies = Path(os.environ["BENCH_BODIES"])
    flows = (bodies / "flows.json").read_bytes()
    graphql = (bodies / "graphql.json").read_bytes()

    async def get_flows(_request: Request) -> Response:
        return Response(flows, media_type="application/json")

    async def post_graphql(request: Request) -> Response:
        await request.body()
        return Response(graphql, media_type="application/json")

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/v1/flows", get_flows, methods=["GET"]),
            Route("/graphql", post_graphql, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
