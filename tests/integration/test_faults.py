"""Database faults: PostgreSQL stopped and started under a running app, and pool exhaustion."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from graph.http.app import create_app
from tests.support.factories import AS_OF, make_settings, record, write_headers
from tests.support.servers import PostgresServer


def test_postgres_down_then_back(throwaway_postgres: PostgresServer) -> None:
    """Liveness stays up, cached reads still answer, the rest is a fast 503, writes store
    nothing, and everything recovers without a restart."""
    settings = make_settings(throwaway_postgres.url, db_connect_timeout_seconds=2)
    with TestClient(create_app(settings)) as client:
        batch = [record("US", "Storm", hours_ago=2), record("BR", "Storm", hours_ago=1)]
        assert client.post("/v1/trends", json=batch, headers=write_headers()).status_code == 200
        cached = {"as_of": AS_OF.isoformat(), "threshold": 0.1}
        before = client.get("/v1/flows", params=cached).json()
        assert before["flows"]

        throwaway_postgres.stop()
        assert client.get("/health").status_code == 200
        started = time.monotonic()
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"
        from_cache = client.get("/v1/flows", params=cached)
        assert from_cache.status_code == 200 and from_cache.json()["metadata"]["cache_hit"]
        assert from_cache.json()["flows"] == before["flows"]
        # Another threshold is answered from the cached window aggregates; another as_of is not.
        other_threshold = client.get("/v1/flows", params={**cached, "threshold": 0.2})
        assert other_threshold.status_code == 200
        uncached = client.get("/v1/flows", params={"as_of": "2026-11-19T00:00:00Z"})
        assert uncached.status_code == 503
        assert uncached.json()["error"] == "dependency_unavailable"
        write = client.post("/v1/trends", json=[record("JP", "Quake")], headers=write_headers())
        assert write.status_code == 503
        assert time.monotonic() - started < 10, "a fault must not hang requests"

        throwaway_postgres.start()
        deadline = time.monotonic() + 20
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.2)
        trends: dict[str, Any] = client.get("/v1/trends").json()
        assert trends["total_count"] == 2  # the refused write left nothing behind
        again = client.post("/v1/trends", json=[record("JP", "Quake")], headers=write_headers())
        assert again.status_code == 200 and again.json()["inserted"] == 1


def test_an_exhausted_pool_answers_503_fast(postgres_url: str) -> None:
    settings = make_settings(
        postgres_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.5
    )
    with TestClient(create_app(settings)) as client:
        engine = client.app_state["trendmap"].repository.engine
        held = engine.connect()
        client.portal.call(held.start)  # the pool's only connection, taken
        try:
            started = time.monotonic()
            response = client.get("/v1/flows", params={"as_of": AS_OF.isoformat()})
            assert response.status_code == 503
            assert response.json()["error"] == "dependency_unavailable"
            assert time.monotonic() - started < 3
        finally:
            client.portal.call(held.close)
        assert client.get("/v1/flows", params={"as_of": AS_OF.isoformat()}).status_code == 200
