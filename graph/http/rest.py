"""The REST API (snake_case, for legacy clients): ``/v1/...`` and the health checks."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph.auth import credentials_for, require_read, require_write
from graph.core.errors import TrendmapError
from graph.core.records import validate_json_batch
from graph.http import geojson, web
from graph.http.openapi import openapi_document
from graph.observability.log import error_document, log_fields, request_id_of
from graph.service.params import (
    MAX_HOTSPOTS,
    parse_as_of,
    parse_count,
    parse_countries,
    parse_record_filter,
    parse_threshold,
    parse_time_window,
)
from graph.service.payloads import trend_json
from graph.service.trend_service import Answer, FlowQuery, HotspotQuery, TrendQuery, encode_cursor
from graph.stores import StoreUnavailable
from graph.wiring import AppState, app_state


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _countries_text(request: Request) -> str | None:
    # `countries=US,BR` and `countries=US&countries=BR` mean the same.
    values = request.query_params.getlist("countries")
    return ",".join(values) if values else None


def _authorise_read(request: Request, state: AppState) -> None:
    s = state.settings
    require_read(request.headers.get("authorization"), credentials_for(s))


def _metadata(
    request: Request, answer: Answer, countries: tuple[str, ...] | None, **extra: Any
) -> dict[str, Any]:
    return {
        "request_id": request_id_of(request.scope),
        "time_window": answer.span.window.value,
        "countries": list(countries) if countries else None,
        "as_of": answer.span.as_of.isoformat(),
        **extra,
        "cache_hit": answer.cache_hit,
        "computed_at": answer.computed_at.isoformat(),
    }


def _answer_response(
    request: Request, name: str, answer: Answer, countries: tuple[str, ...] | None, **extra: Any
) -> Response:
    """The answer's cached payload bytes spliced into the envelope: only the small metadata
    object is serialised per request."""
    metadata = _metadata(request, answer, countries, **extra)
    body = b"".join(
        [
            b'{"',
            name.encode(),
            b'":',
            answer.payload,
            b',"metadata":',
            orjson.dumps(metadata),
            b',"warnings":',
            orjson.dumps(list(answer.warnings)),
            b"}",
        ]
    )
    return Response(body, media_type="application/json")


async def _flows_answer(request: Request) -> tuple[FlowQuery, Answer]:
    """Flows for the request's parameters (authorised, parsed, logged): the JSON and the
    GeoJSON forms share it."""
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    query = FlowQuery(
        window=parse_time_window(q.get("time_window")),
        countries=parse_countries(_countries_text(request)),
        threshold=parse_threshold(q.get("threshold"), state.settings.flow_threshold),
        as_of=parse_as_of(q.get("as_of")),
        limit=parse_count(q.get("limit"), maximum=state.settings.max_flows, field="limit"),
    )
    answer = await state.service.flows(query)
    log_fields(request.scope).update(
        cache_hit=answer.cache_hit,
        countries=",".join(query.countries or ()) or None,
        time_window=query.window.value,
        flow_count=answer.count,
    )
    return query, answer


async def _hotspots_answer(request: Request) -> tuple[HotspotQuery, Answer]:
    """Hotspots for the request's parameters (authorised, parsed, logged)."""
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    query = HotspotQuery(
        window=parse_time_window(q.get("time_window")),
        countries=parse_countries(_countries_text(request)),
        as_of=parse_as_of(q.get("as_of")),
        limit=parse_count(q.get("limit"), maximum=MAX_HOTSPOTS, field="limit"),
    )
    answer = await state.service.hotspots(query)
    log_fields(request.scope).update(cache_hit=answer.cache_hit, time_window=query.window.value)
    return query, answer


async def get_flows(request: Request) -> Response:
    query, answer = await _flows_answer(request)
    return _answer_response(
        request,
        "flows",
        answer,
        query.countries,
        threshold=query.threshold,
        flow_count=answer.count,
    )


async def get_hotspots(request: Request) -> Response:
    query, answer = await _hotspots_answer(request)
    return _answer_response(
        request, "hotspots", answer, query.countries, hotspot_count=answer.count
    )


class GeoJSONBody(JSONBody):
    media_type = geojson.MEDIA_TYPE


async def get_flows_geojson(request: Request) -> Response:
    """The flows as LineString features (see graph.http.geojson)."""
    query, answer = await _flows_answer(request)
    features, unplaced = geojson.flow_features(answer.items())
    metadata = _metadata(
        request, answer, query.countries, threshold=query.threshold, flow_count=len(features)
    )
    return GeoJSONBody(
        geojson.feature_collection(features, metadata, [*answer.warnings, *unplaced])
    )


async def get_hotspots_geojson(request: Request) -> Response:
    """The hotspots as Point features (see graph.http.geojson)."""
    query, answer = await _hotspots_answer(request)
    features, unplaced = geojson.hotspot_features(answer.items())
    metadata = _metadata(request, answer, query.countries, hotspot_count=len(features))
    return GeoJSONBody(
        geojson.feature_collection(features, metadata, [*answer.warnings, *unplaced])
    )


async def get_trends(request: Request) -> Response:
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    settings = state.settings
    where = parse_record_filter(
        _countries_text(request), q.get("topic"), q.get("since"), q.get("until")
    )
    first = parse_count(
        q.get("first"),
        maximum=settings.max_page_size,
        field="first",
        default=settings.default_page_size,
    )
    assert first is not None
    page = await state.service.trends(TrendQuery(where, first, q.get("after")))
    cursors = [encode_cursor(r.timestamp, r.id) for r in page.records]
    return JSONBody(
        {
            "trends": [
                trend_json(r) | {"cursor": c} for r, c in zip(page.records, cursors, strict=True)
            ],
            "page_info": {
                "has_next_page": page.has_next,
                "end_cursor": cursors[-1] if cursors else None,
            },
            "total_count": page.total_count,
            "metadata": {"request_id": request_id_of(request.scope)},
            "warnings": list(await state.service.partial_warnings(where.countries)),
        }
    )


async def post_trends(request: Request) -> Response:
    state = app_state(request)
    settings = state.settings
    require_write(request.headers.get("authorization"), credentials_for(settings))
    rows = validate_json_batch(await request.body())
    result = await state.service.ingest(rows)
    log_fields(request.scope).update(ingested=len(rows))
    return JSONBody(
        {
            "received": len(rows),
            "inserted": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "request_id": request_id_of(request.scope),
        }
    )


async def health(_request: Request) -> Response:
    """Liveness: the process answers. No I/O."""
    return JSONBody({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 200 when the database answers (the cache may be degraded), 503 when not."""
    state = app_state(request)
    database_ok = await state.service.database_ready()
    store = state.store
    if store.kind == "memory":
        broker = "in-process"
    else:
        try:
            await store.ping()
            broker = "ok"
        except StoreUnavailable:
            broker = "unavailable"
    cache = state.cache.status()
    if cache == "ok" and broker == "unavailable":
        cache = "degraded"
    body = {
        "status": "ready" if database_ok else "unavailable",
        "checks": {
            "database": "ok" if database_ok else "unavailable",
            "cache": {"state": cache, "backend": store.kind},
            "broker": {"state": broker, "backend": store.kind},
            "subscriptions": {
                "active": state.broadcaster.subscriber_count,
                "delivered": state.broadcaster.delivered,
                "dropped": state.broadcaster.dropped,
            },
            "sources": await state.feeds.health(),
        },
    }
    return JSONBody(body, status_code=200 if database_ok else 503)


async def openapi(_request: Request) -> Response:
    return JSONBody(openapi_document())


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TrendmapError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return Response(
        error_document(exc.code, exc.detail, request_id_of(request.scope), **exc.extra()),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return Response(
        error_document(code, str(exc.detail), request_id_of(request.scope)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


routes = [
    Route("/", web.map_page, methods=["GET"]),
    Route("/v1/flows", get_flows, methods=["GET"]),
    Route("/v1/flows.geojson", get_flows_geojson, methods=["GET"]),
    Route("/v1/hotspots", get_hotspots, methods=["GET"]),
    Route("/v1/hotspots.geojson", get_hotspots_geojson, methods=["GET"]),
    Route("/v1/trends", get_trends, methods=["GET"]),
    Route("/v1/trends", post_trends, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
