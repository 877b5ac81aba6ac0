"""Admission control over real loopback connections: a bounded worker answers the excess fast."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from graph.http.app import create_app
from graph.http.middleware.admission import Admission, AdmissionMiddleware
from tests.support.factories import make_settings, record, write_headers
from tests.support.servers import free_port


class Gate:
    """A real endpoint that holds each request until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()

    async def slow(self, _request: Request) -> Response:
        while not self.open.is_set():
            await asyncio.sleep(0.005)
        return PlainTextResponse("done")


def gated_app(admission: Admission, gate: Gate) -> Any:
    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/slow", gate.slow), Route("/health", health)])
    return AdmissionMiddleware(app, admission)


@contextlib.contextmanager
def serving(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan=lifespan, log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "the server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_for(condition: Callable[[], bool], message: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.005)


async def await_for(condition: Callable[[], bool], message: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.005)


def assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["error"] == "overloaded"
    assert set(body) == {"error", "detail", "request_id", "timestamp"}


def test_the_excess_gets_a_fast_503_and_health_still_answers() -> None:
    admission, gate = Admission(max_inflight=2, queue_seconds=0), Gate()

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            held = [asyncio.create_task(http.get("/slow")) for _ in range(2)]
            await await_for(lambda: admission.inflight == 2, "two requests in flight")
            started = time.perf_counter()
            refused = await http.get("/slow")
            assert time.perf_counter() - started < 1
            assert_overloaded(refused)
            assert (await http.get("/health")).status_code == 200
            gate.open.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (admission.inflight, admission.rejected) == (0, 1)

    with serving(gated_app(admission, gate)) as base:
        asyncio.run(scenario(base))


def test_a_waiting_request_gets_the_next_free_slot() -> None:
    admission, gate = Admission(max_inflight=1, queue_seconds=30), Gate()

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            first = asyncio.create_task(http.get("/slow"))
            await await_for(lambda: admission.inflight == 1, "the first in flight")
            second = asyncio.create_task(http.get("/slow"))
            await await_for(lambda: admission.queued == 1, "the second waiting")
            # The queue holds at most as many as may be in flight: a third is refused at once.
            started = time.perf_counter()
            assert_overloaded(await http.get("/slow"))
            assert time.perf_counter() - started < 1
            gate.open.set()
            assert (await first).status_code == 200
            assert (await second).status_code == 200
        assert (admission.inflight, admission.queued, admission.rejected) == (0, 0, 1)

    with serving(gated_app(admission, gate)) as base:
        asyncio.run(scenario(base))


def test_the_wait_for_a_slot_is_short() -> None:
    admission, gate = Admission(max_inflight=1, queue_seconds=0.2), Gate()

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first = asyncio.create_task(http.get("/slow"))
            await await_for(lambda: admission.inflight == 1, "the first in flight")
            started = time.perf_counter()
            refused = await http.get("/slow")
            waited = time.perf_counter() - started
            assert_overloaded(refused)
            assert 0.15 <= waited < 2
            gate.open.set()
            assert (await first).status_code == 200
        assert (admission.inflight, admission.queued) == (0, 0)

    with serving(gated_app(admission, gate)) as base:
        asyncio.run(scenario(base))


def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    """A waiter cancelled after a slot was handed to it gives the slot back."""

    async def scenario() -> None:
        admission = Admission(max_inflight=1, queue_seconds=30)
        assert await admission.acquire()
        gone = asyncio.create_task(admission.acquire())
        await await_for(lambda: admission.queued == 1, "waiting")
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert admission.queued == 0
        handed = asyncio.create_task(admission.acquire())
        await await_for(lambda: admission.queued == 1, "waiting again")
        admission.release()  # the slot goes to `handed` ...
        handed.cancel()  # ... which is cancelled before it runs: it must give it back
        with contextlib.suppress(asyncio.CancelledError):
            assert await handed
            admission.release()
        assert (admission.inflight, admission.queued) == (0, 0)

    asyncio.run(scenario())


def test_the_service_refuses_for_load_but_not_health_or_metrics(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'a.db'}", max_inflight_requests=1, admission_queue_seconds=0
    )
    body_may_end = threading.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"["
        while not body_may_end.is_set():
            await asyncio.sleep(0.005)
        yield httpx.Request("POST", "/", json=record()).content + b"]"

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            # A POST whose body is still coming holds the one slot.
            posting = asyncio.create_task(
                http.post(
                    "/v1/trends",
                    content=slow_body(),
                    headers={**write_headers(), "content-type": "application/json"},
                )
            )

            async def refused() -> httpx.Response:
                while True:
                    response = await http.get("/v1/flows", headers={"x-request-id": "abc-1"})
                    if response.status_code == 503:
                        return response
                    assert not posting.done()
                    await asyncio.sleep(0.005)

            response = await asyncio.wait_for(refused(), 10)
            assert_overloaded(response)
            assert response.json()["request_id"] == "abc-1"
            assert response.headers["x-request-id"] == "abc-1"
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/health/ready")).status_code == 200
            scraped = await http.get("/metrics")
            assert scraped.status_code == 200
            values = {
                s.name: s.value
                for family in text_string_to_metric_families(scraped.text)
                for s in family.samples
            }
            assert values["trendmap_rejected_requests_total"] >= 1
            assert values["trendmap_inflight_requests"] == 1
            body_may_end.set()
            stored = await posting
            assert stored.status_code == 200, stored.text
            assert stored.json()["inserted"] == 1
            assert (await http.get("/v1/flows")).status_code == 200

    with serving(create_app(settings), lifespan="on") as base:
        asyncio.run(scenario(base))
