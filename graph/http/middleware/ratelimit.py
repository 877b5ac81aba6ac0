"""Rate limits: requests a minute per client, counted in the store every worker shares.

Each client has two budgets, in fixed one-minute windows: ``RATE_LIMIT_PER_MINUTE`` for reads
(policy ``"default"``) and ``RATE_LIMIT_WRITES_PER_MINUTE`` for writes (policy ``"writes"``:
``POST /v1/trends`` and GraphQL mutations). A write spends from the write budget only. Each REST
request, each GraphQL operation (each one of a batch) and each WebSocket upgrade costs one; the
health checks and the OpenAPI document cost nothing.

A client is its credential when it presents a valid one, known by the SHA-256 of the token (the
token itself is never stored nor logged), else its address: the peer's, or with
``TRUST_FORWARDED_FOR`` the last ``X-Forwarded-For`` entry, the one the proxy in front of us
appended. An invalid token counts as none: otherwise every made-up token would be a fresh budget.

Counts live in the store under ``ratelimit:{policy}:{client}``. A failing store never fails a
request: behind a circuit breaker, counting goes on in this process until the store answers.

Over a budget, HTTP gets a 429 in the error format with ``Retry-After``, and a WebSocket upgrade
is refused before it is accepted. Every counted response carries ``RateLimit-Policy`` and
``RateLimit`` (draft-ietf-httpapi-ratelimit-headers, structured-field syntax).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.auth import access_of, bearer_token, credentials_for
from graph.breaker import CircuitBreaker
from graph.core.errors import Unauthenticated
from graph.observability.log import error_document, log_fields, logger, request_id_of
from graph.settings import Settings
from graph.stores import Store, StoreUnavailable
from graph.stores.memory import MemoryStore
from graph.wiring import AppState

WINDOW_SECONDS = 60
READS = "default"
WRITES = "writes"
UNCOUNTED_PATHS = frozenset({"/health", "/health/ready", "/openapi.json"})

# What a GraphQL document is made of, as far as finding its operations' keywords goes: comments
# and strings (skipped whole, so a "mutation" inside them is not one), brackets, and names.
_TOKENS = re.compile(
    r'#[^\n\r]*|"""(?:\\"""|[^"]|"(?!""))*"""|"(?:\\.|[^"\\\n\r])*"|[{}()]|[_A-Za-z][_0-9A-Za-z]*'
)


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request spends from each budget."""

    reads: int = 0
    writes: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """One budget after a request spent from it."""

    policy: str
    quota: int
    count: int
    reset_seconds: float

    @property
    def exceeded(self) -> bool:
        return self.count > self.quota

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.count)

    @property
    def reset(self) -> int:
        """Whole seconds until the window starts over, at least 1 (as Retry-After needs)."""
        return max(1, math.ceil(self.reset_seconds))


def is_mutation(document: str) -> bool:
    """Whether a GraphQL document defines a mutation: a ``mutation`` keyword outside any
    braces, parentheses, string or comment.

    Usually the first keyword; looking past it keeps ``query A {...} mutation B {...}`` with
    ``operationName: "B"`` from passing a write off as a read.
    """
    if "mutation" not in document:
        return False
    depth = 0
    for match in _TOKENS.finditer(document):
        token = match.group()
        if token in ("{", "("):
            depth += 1
        elif token in ("}", ")"):
            depth = max(0, depth - 1)
        elif depth == 0 and token == "mutation":
            return True
    return False


def graphql_cost(payload: object) -> Cost:
    """One per operation of a GraphQL request (an object, or a batch: an array of them)."""
    operations = payload if isinstance(payload, list) else [payload]
    writes = sum(
        1
        for operation in operations
        if isinstance(operation, dict)
        and isinstance(operation.get("query"), str)
        and is_mutation(operation["query"])
    )
    reads = len(operations) - writes
    # An empty batch is still a request.
    return Cost(reads=reads if operations else 1, writes=writes)


def _body_cost(body: bytes | None) -> Cost:
    if body is None:
        return Cost(reads=1)
    batch = body.lstrip().startswith(b"[")
    # Only a batch or a body that may hold a mutation (spelled out or \u-escaped) is parsed.
    if not batch and b"mutation" not in body and b"\\u" not in body:
        return Cost(reads=1)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Cost(reads=1)
    return graphql_cost(payload)


def request_cost(method: str, path: str, query_string: bytes, body: bytes | None) -> Cost:
    """What an HTTP request spends; ``body`` is a POST /graphql's (None when not read)."""
    if path == "/graphql":
        if method == "POST":
            return _body_cost(body)
        query = parse_qs(query_string.decode("latin-1")).get("query", [""])[0]
        return Cost(writes=1) if is_mutation(query) else Cost(reads=1)
    if method == "POST" and path == "/v1/trends":
        return Cost(writes=1)
    return Cost(reads=1)


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]


def client_of(scope: Scope, settings: Settings) -> str:
    """``key:<sha256 of the token>`` for a valid credential, else ``ip:<address>``."""
    authorization = _headers(scope, b"authorization")
    try:
        token = bearer_token(authorization[0]) if authorization else None
        if token is not None:
            access_of(token, credentials_for(settings))
            return "key:" + hashlib.sha256(token.encode()).hexdigest()
    except Unauthenticated:
        pass
    if settings.trust_forwarded_for:
        forwarded = ",".join(_headers(scope, b"x-forwarded-for"))
        # The last entry is the one our proxy appended; the others are the client's to forge.
        try:
            return "ip:" + str(ipaddress.ip_address(forwarded.rsplit(",", 1)[-1].strip()))
        except ValueError:
            pass
    peer = scope.get("client")
    return "ip:" + (str(peer[0]) if peer else "unknown")


def policy_header(usages: list[Usage]) -> bytes:
    """``RateLimit-Policy``: each budget's quota and window."""
    items = (f'"{u.policy}";q={u.quota};w={WINDOW_SECONDS}' for u in usages)
    return ", ".join(items).encode()


def ratelimit_header(usages: list[Usage]) -> bytes:
    """``RateLimit``: what is left of each budget, and the seconds until it is whole again."""
    return ", ".join(f'"{u.policy}";r={u.remaining};t={u.reset}' for u in usages).encode()


class RateLimiter:
    """Counts hits in the app's store, or in this process while the store cannot answer."""

    def __init__(self, *, breaker: CircuitBreaker | None = None) -> None:
        self.breaker = breaker or CircuitBreaker(failures=3, reset_seconds=5.0)
        self.fallback = MemoryStore()

    async def hit(self, store: Store, key: str, cost: int) -> tuple[int, float]:
        """The count in the current window after adding ``cost``, and the seconds left in it."""
        if self.breaker.allow():
            failing = self.breaker.consecutive_failures > 0
            try:
                counted = await store.hit(key, WINDOW_SECONDS, cost)
            except StoreUnavailable as exc:
                if not failing:
                    logger.warning("rate limits counted in-process", error=str(exc))
                self.breaker.record_failure()
            else:
                if failing:
                    logger.info("rate limits counted in the store again")
                self.breaker.record_success()
                return counted
        return await self.fallback.hit(key, WINDOW_SECONDS, cost)

    async def spend(self, store: Store, settings: Settings, client: str, cost: Cost) -> list[Usage]:
        """Spend ``cost`` from the client's budgets: each budget it touched, after spending."""
        usages: list[Usage] = []
        for policy, quota, units in (
            (READS, settings.rate_limit_per_minute, cost.reads),
            (WRITES, settings.rate_limit_writes_per_minute, cost.writes),
        ):
            if units:
                count, reset = await self.hit(store, f"ratelimit:{policy}:{client}", units)
                usages.append(Usage(policy, quota, count, reset))
        return usages


async def _peek(scope: Scope, receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The body (None past ``limit`` bytes or on a disconnect), and a receive that gives the
    app every message read here before the rest."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None, receive
    read: list[Message] = []
    size = 0
    complete = False
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit:
            break
        if not message.get("more_body", False):
            complete = True
            break

    async def replay() -> Message:
        return read.pop(0) if read else await receive()

    body = b"".join(m.get("body", b"") for m in read) if complete else None
    return body, replay


class RateLimitMiddleware:
    """Spend each request's cost before the app sees it; refuse it over a budget."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter if limiter is not None else RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Built before the lifespan runs: the settings and store are the request's, not ours.
        state = (scope.get("state") or {}).get("trendmap")
        if (
            scope["type"] not in ("http", "websocket")
            or not isinstance(state, AppState)
            or not state.settings.rate_limit_enabled
            or scope["path"] in UNCOUNTED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        settings = state.settings
        if scope["type"] == "websocket":
            cost = Cost(reads=1)
        else:
            body = None
            if scope["method"] == "POST" and scope["path"] == "/graphql":
                body, receive = await _peek(scope, receive, settings.max_body_bytes)
            cost = request_cost(scope["method"], scope["path"], scope["query_string"], body)
        usages = await self.limiter.spend(state.store, settings, client_of(scope, settings), cost)
        headers = [
            (b"ratelimit-policy", policy_header(usages)),
            (b"ratelimit", ratelimit_header(usages)),
        ]
        exceeded = [usage for usage in usages if usage.exceeded]
        if exceeded:
            await self._refuse(scope, receive, send, exceeded, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exceeded: list[Usage],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        retry = max(usage.reset for usage in exceeded)
        over = exceeded[0]
        units = "writes" if over.policy == WRITES else "requests"
        detail = (
            f"this client is over its budget of {over.quota} {units} a minute;"
            f" retry after {retry} s"
        )
        log_fields(scope)["rate_limited"] = ",".join(usage.policy for usage in exceeded)
        body = error_document("rate_limited", detail, request_id_of(scope))
        headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(retry).encode()),
            *headers,
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            # Before the handshake completes, the server turns this into an HTTP 403.
            await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
