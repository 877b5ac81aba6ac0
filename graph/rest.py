"""The REST API (snake_case, for legacy clients): ``/v1/...`` and the health checks."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.repository import RecordFilter, StoredRecord
from graph.analytics import Flow, Hotspot
from graph.auth import require_read, require_write
from graph.errors import TrendmapError
from graph.log import error_document, log_fields, request_id_of
from graph.openapi import openapi_document
from graph.params import (
    parse_as_of,
    parse_count,
    parse_countries,
    parse_threshold,
    parse_time_window,
)
from graph.records import topic_key, validate_json_batch
from graph.service import FlowQuery, HotspotQuery, Report, TrendQuery, encode_cursor
from graph.state import AppState, app_state

MAX_HOTSPOTS = 1_000


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def flow_json(flow: Flow) -> dict[str, Any]:
    return {
        "from_country": flow.from_country,
        "to_country": flow.to_country,
        "heat": flow.heat,
        "shared_topics": list(flow.shared_topics),
        "time_delta_hours": flow.time_delta_hours,
        "similarity_score": flow.similarity_score,
    }


def hotspot_json(hotspot: Hotspot) -> dict[str, Any]:
    return {
        "country": hotspot.country,
        "intensity": hotspot.intensity,
        "topic_count": hotspot.topic_count,
        "volume": hotspot.volume,
        "velocity": hotspot.velocity,
        "avg_confidence": hotspot.avg_confidence,
        "top_topics": [
            {"label": t.label, "count": t.count, "confidence": t.confidence}
            for t in hotspot.top_topics
        ],
    }


def trend_json(record: StoredRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "timestamp": record.timestamp.isoformat(),
        "country": record.country,
        "topic_label": record.topic_label,
        "count": record.count,
        "confidence": record.confidence,
        "sources": record.sources,
    }


def _countries_param(request: Request) -> tuple[str, ...] | None:
    # `countries=US,BR` and `countries=US&countries=BR` mean the same.
    values = request.query_params.getlist("countries")
    return parse_countries(",".join(values)) if values else None


def _authorise_read(request: Request, state: AppState) -> None:
    s = state.settings
    require_read(request.headers.get("authorization"), s.read_api_keys, s.api_keys)


def _metadata(request: Request, report: Report[Any], **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id_of(request.scope),
        "time_window": report.span.window.value,
        "countries": None,
        "as_of": report.span.as_of.isoformat(),
        **extra,
        "cache_hit": report.cache_hit,
        "computed_at": report.computed_at.isoformat(),
    }


async def get_flows(request: Request) -> Response:
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    query = FlowQuery(
        window=parse_time_window(q.get("time_window")),
        countries=_countries_param(request),
        threshold=parse_threshold(q.get("threshold"), state.settings.flow_threshold),
        as_of=parse_as_of(q.get("as_of")),
        limit=parse_count(q.get("limit"), maximum=state.settings.max_flows, field="limit"),
    )
    report = await state.service.flows(query)
    log_fields(request.scope).update(
        cache_hit=report.cache_hit,
        countries=",".join(query.countries or ()) or None,
        time_window=query.window.value,
        flow_count=len(report.items),
    )
    return JSONBody(
        {
            "flows": [flow_json(f) for f in report.items],
            "metadata": _metadata(
                request,
                report,
                countries=list(query.countries) if query.countries else None,
                threshold=query.threshold,
                flow_count=len(report.items),
            ),
            "warnings": report.warnings,
        }
    )


async def get_hotspots(request: Request) -> Response:
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    query = HotspotQuery(
        window=parse_time_window(q.get("time_window")),
        countries=_countries_param(request),
        as_of=parse_as_of(q.get("as_of")),
        limit=parse_count(q.get("limit"), maximum=MAX_HOTSPOTS, field="limit"),
    )
    report = await state.service.hotspots(query)
    log_fields(request.scope).update(cache_hit=report.cache_hit, time_window=query.window.value)
    return JSONBody(
        {
            "hotspots": [hotspot_json(h) for h in report.items],
            "metadata": _metadata(
                request,
                report,
                countries=list(query.countries) if query.countries else None,
                hotspot_count=len(report.items),
            ),
            "warnings": report.warnings,
        }
    )


async def get_trends(request: Request) -> Response:
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    topic = q.get("topic")
    settings = state.settings
    where = RecordFilter(
        countries=_countries_param(request),
        topic_key=topic_key(topic) if topic and topic.strip() else None,
        since=parse_as_of(q.get("since"), field="since"),
        until=parse_as_of(q.get("until"), field="until"),
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
        }
    )


async def post_trends(request: Request) -> Response:
    state = app_state(request)
    settings = state.settings
    require_write(request.headers.get("authorization"), settings.api_keys, settings.read_api_keys)
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
    """Readiness: 200 when the database answers, 503 when it does not."""
    state = app_state(request)
    database_ok = await state.service.database_ready()
    body = {
        "status": "ready" if database_ok else "unavailable",
        "checks": {
            "database": "ok" if database_ok else "unavailable",
            "cache": "in-process",
            "broker": "in-process",
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
    Route("/v1/flows", get_flows, methods=["GET"]),
    Route("/v1/hotspots", get_hotspots, methods=["GET"]),
    Route("/v1/trends", get_trends, methods=["GET"]),
    Route("/v1/trends", post_trends, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
