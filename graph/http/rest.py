"""The REST API (snake_case, for legacy clients): the ``/v1/...`` routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph.auth import credentials_for, require_read, require_write
from graph.core.records import validate_json_batch
from graph.http import geojson
from graph.http.conditional import (
    answer_tag,
    conditional,
    entity_tag,
    generation_headers,
    min_generation,
)
from graph.http.prebuilt import mark_reusable
from graph.http.responses import GeoJSONBody, JSONBody, spliced
from graph.http.unknown_parameters import unknown_parameter_warnings
from graph.observability.log import log_fields, request_id_of
from graph.service.answer import Answer
from graph.service.cursor import encode_cursor
from graph.service.payloads import trend_json
from graph.service.queries import FlowQuery, HotspotQuery, TrendQuery
from graph.wiring import AppState, app_state


def _countries_text(request: Request) -> str | None:
    # `countries=US,BR` and `countries=US&countries=BR` mean the same.
    values = request.query_params.getlist("countries")
    return ",".join(values) if values else None


def _warnings(request: Request, given: Iterable[str]) -> list[str]:
    """The answer's warnings, then one per unknown query parameter (ignored, never refused)."""
    return [*given, *unknown_parameter_warnings(request, app_state(request).settings)]


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


def _tag(request: Request, answer: Answer) -> str:
    return answer_tag(
        request, answer.generation, answer.computed_at, answer.span.as_of, answer.warnings
    )


def _answer_response(
    request: Request,
    name: str,
    answer: Answer,
    countries: tuple[str, ...] | None,
    *,
    sliding: bool,
    **extra: Any,
) -> Response:
    """The answer's cached payload bytes spliced into the envelope: only the small metadata
    object is serialised per request. 304 when the client holds it already (its ETag)."""

    def render() -> Response:
        mark_reusable(request.scope, name, answer, sliding=sliding)
        metadata = _metadata(request, answer, countries, **extra)
        return spliced(name, answer.payload, metadata, _warnings(request, answer.warnings))

    return conditional(request, _tag(request, answer), answer.generation, render)


async def _flows_answer(request: Request) -> tuple[FlowQuery, Answer]:
    """Flows for the request's parameters (authorised, parsed, logged): the JSON and the
    GeoJSON forms share it."""
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    query = FlowQuery.parse(
        time_window=q.get("time_window"),
        countries=_countries_text(request),
        threshold=q.get("threshold"),
        as_of=q.get("as_of"),
        limit=q.get("limit"),
        settings=state.settings,
    )
    answer = await state.service.flows(query, min_generation=min_generation(request))
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
    query = HotspotQuery.parse(
        time_window=q.get("time_window"),
        countries=_countries_text(request),
        as_of=q.get("as_of"),
        limit=q.get("limit"),
    )
    answer = await state.service.hotspots(query, min_generation=min_generation(request))
    log_fields(request.scope).update(cache_hit=answer.cache_hit, time_window=query.window.value)
    return query, answer


async def get_flows(request: Request) -> Response:
    query, answer = await _flows_answer(request)
    return _answer_response(
        request,
        "flows",
        answer,
        query.countries,
        sliding=query.as_of is None,
        threshold=query.threshold,
        flow_count=answer.count,
        **answer.metadata,  # max_heat and pairs: why the answer holds what it holds
    )


async def get_hotspots(request: Request) -> Response:
    query, answer = await _hotspots_answer(request)
    return _answer_response(
        request,
        "hotspots",
        answer,
        query.countries,
        sliding=query.as_of is None,
        hotspot_count=answer.count,
    )


async def get_flows_geojson(request: Request) -> Response:
    """The flows as LineString features (see graph.http.geojson)."""
    query, answer = await _flows_answer(request)

    def render() -> Response:
        mark_reusable(request.scope, "flows", answer, sliding=query.as_of is None)
        features, unplaced = geojson.flow_features(answer.items())
        metadata = _metadata(
            request,
            answer,
            query.countries,
            threshold=query.threshold,
            flow_count=len(features),
            **answer.metadata,
        )
        return GeoJSONBody(
            geojson.feature_collection(
                features, metadata, _warnings(request, [*answer.warnings, *unplaced])
            )
        )

    return conditional(request, _tag(request, answer), answer.generation, render)


async def get_hotspots_geojson(request: Request) -> Response:
    """The hotspots as Point features (see graph.http.geojson)."""
    query, answer = await _hotspots_answer(request)

    def render() -> Response:
        mark_reusable(request.scope, "hotspots", answer, sliding=query.as_of is None)
        features, unplaced = geojson.hotspot_features(answer.items())
        metadata = _metadata(request, answer, query.countries, hotspot_count=len(features))
        return GeoJSONBody(
            geojson.feature_collection(
                features, metadata, _warnings(request, [*answer.warnings, *unplaced])
            )
        )

    return conditional(request, _tag(request, answer), answer.generation, render)


async def get_trends(request: Request) -> Response:
    state = app_state(request)
    _authorise_read(request, state)
    q = request.query_params
    query = TrendQuery.parse(
        countries=_countries_text(request),
        topic=q.get("topic"),
        since=q.get("since"),
        until=q.get("until"),
        first=q.get("first"),
        after=q.get("after"),
        settings=state.settings,
    )
    # Pages are read from the database itself: always as new as any generation.
    min_generation(request)
    page = await state.service.trends(query)
    cursors = [encode_cursor(r.timestamp, r.id) for r in page.records]
    records = orjson.dumps(
        [trend_json(r) | {"cursor": c} for r, c in zip(page.records, cursors, strict=True)]
    )
    page_info = orjson.dumps(
        {"has_next_page": page.has_next, "end_cursor": cursors[-1] if cursors else None}
    )
    warnings = orjson.dumps(
        _warnings(request, await state.service.partial_warnings(query.where.countries))
    )
    total = str(page.total_count).encode()
    # Not cached, so the page's own bytes are what its ETag derives from.
    tag = entity_tag(request, records, page_info, total, warnings)

    def render() -> Response:
        metadata = orjson.dumps({"request_id": request_id_of(request.scope)})
        return Response(
            b"".join(
                [
                    b'{"trends":',
                    records,
                    b',"page_info":',
                    page_info,
                    b',"total_count":',
                    total,
                    b',"metadata":',
                    metadata,
                    b',"warnings":',
                    warnings,
                    b"}",
                ]
            ),
            media_type="application/json",
        )

    return conditional(request, tag, None, render)


async def post_trends(request: Request) -> Response:
    state = app_state(request)
    settings = state.settings
    require_write(request.headers.get("authorization"), credentials_for(settings))
    rows = validate_json_batch(await request.body(), bounds=settings.record_bounds())
    result = await state.service.ingest(rows)
    log_fields(request.scope).update(ingested=len(rows), generation=result.generation)
    return JSONBody(
        {
            "received": len(rows),
            "inserted": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            # What a read passes as min_generation to see this batch, on any worker.
            "generation": result.generation,
            "request_id": request_id_of(request.scope),
            "warnings": _warnings(request, ()),
        },
        headers=generation_headers(result.generation),
    )


routes = [
    Route("/v1/flows", get_flows, methods=["GET"]),
    Route("/v1/flows.geojson", get_flows_geojson, methods=["GET"]),
    Route("/v1/hotspots", get_hotspots, methods=["GET"]),
    Route("/v1/hotspots.geojson", get_hotspots_geojson, methods=["GET"]),
    Route("/v1/trends", get_trends, methods=["GET"]),
    Route("/v1/trends", post_trends, methods=["POST"]),
]
