"""The peer: the service as the seed would have it, built the stock way, to measure against.

FastAPI with pydantic response models for ``GET /v1/flows`` and strawberry's stock
``GraphQLRouter`` for ``POST /graphql`` (a ``flows`` query into Strawberry types), both
answering from one Redis read per request: the key ``BENCH_PEER_KEY`` on ``BENCH_PEER_REDIS``,
which the benchmark fills with the service's own ``GET /v1/flows`` answer. Nothing else: no
rate limits, no metrics, no document cache. Served by the same uvicorn settings as the service
(common.uvicorn_command). Needs the bench extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import strawberry
from fastapi import FastAPI, Header, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from redis.asyncio import Redis
from strawberry.fastapi import GraphQLRouter
from strawberry.types import Info


class FlowModel(BaseModel):
    from_country: str
    to_country: str
    heat: float
    shared_topics: list[str]
    time_delta_hours: float
    similarity_score: float
    simultaneous: bool


class MaxHeat(BaseModel):
    heat: float
    from_country: str
    to_country: str


class Metadata(BaseModel):
    request_id: str
    time_window: str
    countries: list[str] | None
    as_of: datetime
    threshold: float
    flow_count: int
    max_heat: MaxHeat | None
    pairs: int
    cache_hit: bool
    computed_at: datetime


class FlowsResponse(BaseModel):
    flows: list[FlowModel]
    metadata: Metadata
    warnings: list[str]


@strawberry.type
class Flow:
    from_country: str
    to_country: str
    heat: float
    shared_topics: list[str]
    time_delta_hours: float
    similarity_score: float
    simultaneous: bool


async def _cached(redis: Redis) -> bytes:
    value = await redis.get(os.environ.get("BENCH_PEER_KEY", "bench:peer:flows"))
    if value is None:
        raise LookupError("the benchmark did not fill the peer's Redis key")
    return bytes(value)


@strawberry.type
class Query:
    @strawberry.field
    async def flows(
        self,
        info: Info,
        time_window: str = "24h",
        countries: list[str] | None = None,
        threshold: float = 0.5,
        as_of: datetime | None = None,
        limit: int = 100,
    ) -> list[Flow]:
        answer = json.loads(await _cached(info.context["request"].app.state.redis))
        flows = [Flow(**flow) for flow in answer["flows"] if flow["heat"] >= threshold]
        return flows[:limit]


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(os.environ["BENCH_PEER_REDIS"])
        yield
        await app.state.redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/flows", response_model=FlowsResponse)
    async def get_flows(
        request: Request,
        time_window: str = "24h",
        countries: str | None = None,
        threshold: float = 0.5,
        limit: int = 100,
        x_request_id: str | None = Header(default=None),
    ) -> FlowsResponse:
        answer = FlowsResponse.model_validate_json(await _cached(request.app.state.redis))
        answer.flows = [f for f in answer.flows if f.heat >= threshold][:limit]
        answer.metadata.request_id = x_request_id or uuid.uuid4().hex
        answer.metadata.flow_count = len(answer.flows)
        answer.metadata.cache_hit = True
        return answer

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.include_router(GraphQLRouter(strawberry.Schema(query=Query)), prefix="/graphql")
    return app
