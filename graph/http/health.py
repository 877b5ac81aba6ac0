"""The health checks: ``/health`` (liveness, no I/O) and ``/health/ready`` (readiness: the
database answers; also the cache, the broker, live subscriptions and the feeds)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph.http.responses import JSONBody
from graph.stores import StoreUnavailable
from graph.wiring import AppState, app_state


async def health(_request: Request) -> Response:
    """Liveness: the process answers. No I/O."""
    return JSONBody({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 200 when the database answers (the cache may be degraded), 503 when not."""
    state = app_state(request)
    database_ok = await state.service.database_ready()
    body = {
        "status": "ready" if database_ok else "unavailable",
        "checks": {
            "database": "ok" if database_ok else "unavailable",
            **await _store_checks(state),
            "subscriptions": {
                "active": state.broadcaster.subscriber_count,
                "delivered": state.broadcaster.delivered,
                "dropped": state.broadcaster.dropped,
            },
            "sources": await state.feeds.health(),
        },
    }
    return JSONBody(body, status_code=200 if database_ok else 503)


async def _store_checks(state: AppState) -> dict[str, object]:
    """The cache and the broker: both live in the store, so a store that is down degrades the
    cache (it still answers from this process) and takes the broker away."""
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
    return {
        "cache": {"state": cache, "backend": store.kind},
        "broker": {"state": broker, "backend": store.kind},
    }


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
]
