"""The REST routes for exploring the archive: ``/v1/span``, ``/v1/topics``, ``/v1/topics/spread``
and ``/v1/hotspots/history``.

Each answer is ``{<name>: <the cached JSON>, "metadata": {...}, "warnings": [...]}``, the
cached bytes spliced in as REST does for flows.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph.auth import credentials_for, require_read
from graph.http.conditional import answer_tag, conditional, min_generation
from graph.http.responses import spliced
from graph.http.unknown_parameters import unknown_parameter_warnings
from graph.observability.log import log_fields, request_id_of
from graph.service.explorer import Explored, HistoryQuery, SpreadQuery, TopicsQuery
from graph.wiring import AppState, app_state


def _state(request: Request) -> AppState:
    """The app state, once the read is authorised."""
    state = app_state(request)
    require_read(request.headers.get("authorization"), credentials_for(state.settings))
    return state


def _unknown(request: Request) -> list[str]:
    """A warning per unknown query parameter (graph.http.unknown_parameters)."""
    return unknown_parameter_warnings(request, app_state(request).settings)


def _response(request: Request, name: str, explored: Explored, **metadata: Any) -> Response:
    """The envelope, or a 304 when the client holds this answer already (its ETag)."""
    log_fields(request.scope).update(cache_hit=explored.cache_hit)

    def render() -> Response:
        envelope = {
            "request_id": request_id_of(request.scope),
            **metadata,
            "cache_hit": explored.cache_hit,
            "computed_at": explored.computed_at.isoformat(),
        }
        return spliced(name, explored.payload, envelope, [*explored.warnings, *_unknown(request)])

    tag = answer_tag(
        request, explored.generation, explored.computed_at, explored.as_of, explored.warnings
    )
    return conditional(request, tag, explored.generation, render)


async def get_span(request: Request) -> Response:
    explored = await _state(request).explorer.data_span(min_generation=min_generation(request))
    return _response(request, "data_span", explored)


async def get_topics(request: Request) -> Response:
    state = _state(request)
    q = request.query_params
    countries = q.getlist("countries")
    query = TopicsQuery.parse(
        time_window=q.get("time_window"),
        as_of=q.get("as_of"),
        countries=",".join(countries) if countries else None,
        search=q.get("search"),
        limit=q.get("limit"),
    )
    explored = await state.explorer.topics(query, min_generation=min_generation(request))
    return _response(
        request,
        "topics",
        explored,
        time_window=query.window.value,
        countries=list(query.countries) if query.countries else None,
        search=query.search,
        limit=query.limit,
        as_of=explored.as_of.isoformat(),
        topic_count=explored.count,
    )


async def get_topic_spread(request: Request) -> Response:
    state = _state(request)
    q = request.query_params
    query = SpreadQuery.parse(topic=q.get("topic"), since=q.get("since"), until=q.get("until"))
    explored = await state.explorer.topic_spread(query, min_generation=min_generation(request))
    since, until = query.bounds(explored.as_of)
    return _response(
        request,
        "topic_spread",
        explored,
        topic=query.key,
        since=since.isoformat(),
        until=until.isoformat(),
        country_count=explored.count,
    )


async def get_hotspot_history(request: Request) -> Response:
    state = _state(request)
    q = request.query_params
    query = HistoryQuery.parse(
        country=q.get("country"),
        time_window=q.get("time_window"),
        since=q.get("since"),
        until=q.get("until"),
        step=q.get("step"),
    )
    explored = await state.explorer.hotspot_history(query, min_generation=min_generation(request))
    since, until = query.bounds(explored.as_of)
    return _response(
        request,
        "hotspot_history",
        explored,
        country=query.country,
        time_window=query.window.value,
        step=query.interval.value,
        since=since.isoformat(),
        until=until.isoformat(),
        point_count=explored.count,
    )


routes = [
    Route("/v1/span", get_span, methods=["GET"]),
    Route("/v1/topics", get_topics, methods=["GET"]),
    Route("/v1/topics/spread", get_topic_spread, methods=["GET"]),
    Route("/v1/hotspots/history", get_hotspot_history, methods=["GET"]),
]
