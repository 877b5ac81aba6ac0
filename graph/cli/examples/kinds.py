"""The kinds of example (a REST call, a GraphQL operation, a subscription) and how each renders
its request and the answer as Markdown, with the deterministic rounding and pretty-printing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

CLOCK = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
AS_OF = "2026-11-20T12:00:00Z"
WRITE_KEY = "example-write-key"
HOST = "127.0.0.1:8000"  # shown in the documents; the generator's server takes a free port
DECIMALS = 10
SHOWN_HEADERS = ("content-type", "x-request-id", "www-authenticate", "retry-after", "allow")
COMMAND = "trendmap examples"
DEFAULT_OUTPUT = Path("docs/examples")
_WIDTH = 96
WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Service:
    """The running service: an HTTP client bound to it, and its WebSocket address."""

    http: httpx.AsyncClient
    ws_url: str

    async def store(self, records: list[dict[str, Any]], request_id: str) -> None:
        """Store records through POST /v1/trends, as any client would."""
        headers = {"X-Request-ID": request_id, "Authorization": f"Bearer {WRITE_KEY}"}
        response = await self.http.post("/v1/trends", json=records, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"storing the example's records failed: {response.text}")


class Example(Protocol):
    """One example document: where it goes, what it is called and how it is made."""

    @property
    def file(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def about(self) -> str: ...

    async def render(self, service: Service) -> str: ...


@dataclass(frozen=True, slots=True)
class Rest:
    """An HTTP request to a REST endpoint (or any non-GraphQL path)."""

    file: str
    title: str
    about: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: object = None
    write: bool = False

    async def render(self, service: Service) -> str:
        target = self.path + ("?" + urlencode(self.params, safe=",:") if self.params else "")
        headers = _request_headers(self.file, write=self.write)
        content = None
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            content = pretty(self.body)
        response = await service.http.request(self.method, target, headers=headers, content=content)
        shown = [f"{self.method} {target} HTTP/1.1", f"Host: {HOST}"]
        shown += [f"{name}: {value}" for name, value in headers.items()]
        if content is not None:
            shown += ["", content]
        return _page(self, ["## Request", _fence("http", "\n".join(shown)), *_response(response)])


@dataclass(frozen=True, slots=True)
class GraphQL:
    """A GraphQL query or mutation over HTTP (POST /graphql)."""

    file: str
    title: str
    about: str
    query: str
    variables: dict[str, Any] | None = None
    write: bool = False

    async def render(self, service: Service) -> str:
        headers = _request_headers(self.file, write=self.write)
        headers["Content-Type"] = "application/json"
        body = {"query": self.query, "variables": self.variables}
        response = await service.http.post("/graphql", headers=headers, content=json.dumps(body))
        shown = ["POST /graphql HTTP/1.1", f"Host: {HOST}"]
        shown += [f"{name}: {value}" for name, value in headers.items()]
        parts = [
            "## Request",
            _fence("http", "\n".join(shown)),
            'The body is `{"query": …, "variables": …}`, with this query:',
            _fence("graphql", self.query.strip()),
        ]
        if self.variables is not None:
            parts += ["and these variables:", _fence("json", pretty(self.variables))]
        return _page(self, [*parts, *_response(response)])


@dataclass(frozen=True, slots=True)
class Subscription:
    """A graphql-transport-ws exchange on a real WebSocket, with ``includeCurrent: true``.

    ``hot_already`` makes records stored before the client connects (their flow is sent first,
    as current); ``new`` makes the records another client stores once that flow has arrived,
    so the subscription is live and the next flow is a new crossing, whatever the timing. Both
    take a clock: the real one to store them, ``CLOCK`` to show them.
    """

    file: str
    title: str
    about: str
    query: str
    variables: dict[str, Any]
    hot_already: Callable[[datetime], list[dict[str, Any]]]
    new: Callable[[datetime], list[dict[str, Any]]]

    async def render(self, service: Service) -> str:
        now = datetime.now(UTC).replace(microsecond=0)
        if now < CLOCK + timedelta(days=1):
            # The demo data would then fall into the live window and change the flows.
            raise RuntimeError(f"the clock must be later than {CLOCK + timedelta(days=1)}")
        headers = _request_headers(self.file)
        name = headers["X-Request-ID"]
        store = "another client stores records (`POST /v1/trends` with the write key) that make"
        steps: list[tuple[str, object]] = [
            (f"Before the subscription, {store} a flow hot:", self.hot_already)
        ]
        await service.store(self.hot_already(now), f"{name}-hot-already")
        async with connect(
            service.ws_url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            additional_headers=headers,
            open_timeout=WAIT_SECONDS,
        ) as ws:

            async def send(message: dict[str, Any]) -> None:
                steps.append((f"→ client: `{message['type']}`", message))
                await ws.send(json.dumps(message))

            async def receive(note: str = "") -> None:
                async with asyncio.timeout(WAIT_SECONDS):
                    message = json.loads(await ws.recv())
                steps.append((f"← server: `{message['type']}`{note}", normalise(message)))

            await send({"type": "connection_init", "payload": {}})
            await receive()
            subscribe = {"query": _one_line(self.query), "variables": self.variables}
            await send({"id": "1", "type": "subscribe", "payload": subscribe})
            await receive(", the flow that is hot already (`includeCurrent: true`)")
            steps.append((f"Then {store} a new hot flow:", self.new))
            await service.store(self.new(now), f"{name}-new")
            await receive(", the new flow, as soon as it is stored")
            await send({"id": "1", "type": "complete"})
        parts = [
            "## Exchange",
            f"A WebSocket to `ws://{HOST}/graphql` with the subprotocol `graphql-transport-ws`"
            f" (upgrade request header `X-Request-ID: {name}`). The subscription, formatted:",
            _fence("graphql", self.query.strip()),
            "Records are shown as if the clock read"
            f" `{AS_OF}`; the generator stores them relative to the real clock, since live"
            " windows end now. Flows depend only on the lags between records.",
        ]
        for number, (what, payload) in enumerate(steps, start=1):
            shown = payload(CLOCK) if callable(payload) else payload
            parts += [f"{number}. {what}", _fence("json", pretty(shown))]
        return _page(self, parts)


def _request_headers(file: str, *, write: bool = False) -> dict[str, str]:
    name = file.removesuffix(".md").replace("/", "-")
    headers = {"X-Request-ID": f"example-{name}"}
    if write:
        headers["Authorization"] = f"Bearer {WRITE_KEY}"
    return headers


def _response(response: httpx.Response) -> list[str]:
    status = HTTPStatus(response.status_code)
    head = [f"HTTP/1.1 {status.value} {status.phrase}"]
    head += [f"{n}: {response.headers[n]}" for n in SHOWN_HEADERS if n in response.headers]
    parts = ["## Response", _fence("http", "\n".join(head))]
    if "json" in response.headers.get("content-type", ""):
        parts.append(_fence("json", pretty(normalise(response.json()))))
    elif response.text:
        parts.append(_fence("text", response.text.rstrip("\n")))
    return parts


def _page(example: Example, parts: list[str]) -> str:
    header = [
        f"# {example.title}",
        f"<!-- generated by `{COMMAND}`: edit graph/cli/examples/catalogue.py, not this file -->",
        example.about,
    ]
    return "\n\n".join([*header, *parts]) + "\n"


def _fence(language: str, text: str) -> str:
    return f"```{language}\n{text}\n```"


def _one_line(query: str) -> str:
    return " ".join(query.split())


def normalise(value: Any) -> Any:
    """Floats rounded; times taken from the service's clock when it answered shown as CLOCK."""
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, str) and _is_request_time(value):
        return CLOCK.isoformat()
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def _is_request_time(text: str) -> bool:
    if len(text) < 19 or text[4:5] != "-" or "T" not in text:
        return False
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    return moment.tzinfo is not None and moment > CLOCK + timedelta(days=1)


def pretty(value: Any, indent: int = 0, taken: int = 0) -> str:
    """JSON indented by two, with whatever fits in a line kept on one line.

    `taken` is how much of the line is used before the value (a key, say).
    """
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict | list) or not value or indent + taken + len(flat) <= _WIDTH:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            label = json.dumps(key, ensure_ascii=False) + ": "
            items.append(pad + label + pretty(item, indent + 2, len(label)))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + pretty(item, indent + 2) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
