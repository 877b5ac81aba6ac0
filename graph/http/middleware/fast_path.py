"""FastPathMiddleware: a repeated cacheable GET answered from the bytes of the first answer,
its own request id spliced in, without routing, parsing or building the envelope again.

Inside the rate limiter, so admission, rate limits, metrics, CORS and the request log still
apply to every request it answers. A response is recorded when the route marked it
(graph.http.prebuilt.mark_reusable) and sent again, for the same path, query string and
credential class, only while the route would have answered the same:

- the worker's generation is still the one it was computed under and nothing was invalidated
  since (the local copy's epoch: an ingest here, an announcement from another worker);
- the generation is known to be current: with the in-process store it always is; with Redis
  and ``CACHE_LOCAL_SECONDS`` > 0 for that long after it was last read from Redis (the local
  copy's rule: the answer was asked for, or the fast path read it once that time ran out); in
  strict mode (0) one read of the generation in Redis per request;
- a window ending "now" is younger than ``FLOWS_REFRESH_SECONDS``;
- ``X-Trendmap-Min-Generation``, when sent, asks for no newer generation;
- the same feeds are failing: an answer's partial-data warnings follow the feeds' health, which
  no generation does (read before the route and again once it answered; both must agree).

An ``If-None-Match`` naming the recorded ETag is answered 304 here as well.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.auth import Access, header_credential
from graph.cache.keys import GENERATION_KEY
from graph.core.errors import TrendmapError
from graph.http.body import peek_whole_first
from graph.http.conditional import MIN_GENERATION_HEADER
from graph.http.prebuilt import (
    GRAPHQL_PATH,
    REUSABLE_PREFIX,
    Key,
    Prebuilt,
    PrebuiltResponses,
    mark_of,
    prebuild,
)
from graph.http.ratelimit.cost import ONE_READ, request_cost
from graph.observability.log import log_fields, request_id_of
from graph.observability.metrics import OPERATION_KEY
from graph.service.params import MAX_GENERATION
from graph.stores import StoreUnavailable
from graph.wiring import AppState

MIN_GENERATION = MIN_GENERATION_HEADER.lower().encode()
# A GraphQL request longer than this is answered the usual way: its key would hold it whole.
GRAPHQL_KEY_BYTES = 8192
_ANONYMOUS = -1  # the credential class of a GraphQL request without one
_GENERATION_DIGITS = len(str(MAX_GENERATION))
# An entity tag in If-None-Match, as graph.http.conditional reads it.
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')


class FastPathMiddleware:
    """Answer a repeated cacheable GET from its prebuilt bytes; record the others."""

    def __init__(self, app: ASGIApp, responses: PrebuiltResponses) -> None:
        self.app = app
        self.responses = responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = (scope.get("state") or {}).get("trendmap")
        if scope["type"] != "http" or not isinstance(state, AppState) or not applies(state):
            await self.app(scope, receive, send)
            return
        timeout = state.settings.http_body_timeout_seconds
        request, body, receive = await request_of(scope, receive, timeout)
        key = (
            key_of(scope["path"], request, _header(scope, b"authorization"), state)
            if request is not None
            else None
        )
        if key is None:
            await self.app(scope, receive, send)
            return
        prebuilt = self.responses.get(key)
        if prebuilt is not None and not await _current(state, prebuilt):
            self.responses.drop(key)
        elif prebuilt is not None and await _answers(scope, state, prebuilt):
            request_id = request_id_of(scope)
            assert request_id is not None  # _answers saw it
            note_hit(scope, state, self.responses, prebuilt)
            status, headers, body = prebuilt.response(
                request_id, names(_header(scope, b"if-none-match"), prebuilt.etag)
            )
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if _one_read(scope, body):
            await self._record(scope, receive, send, state, key)
        else:
            await self.app(scope, receive, send)

    async def _record(
        self, scope: Scope, receive: Receive, send: Send, state: AppState, key: Key
    ) -> None:
        """The request the usual way; a marked 200 answer is kept for the next ones."""
        epoch = state.cache.local_copy.epoch
        started = time.monotonic()
        fields_before = dict(log_fields(scope))
        failing = await _failing(state)
        # The status line's headers as the route sent them: the layers outside add to them.
        headers: list[tuple[bytes, bytes]] | None = None

        async def recording(message: Message) -> None:
            nonlocal headers
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ())) if message["status"] == 200 else None
            elif headers is not None and message["type"] == "http.response.body":
                mark, request_id = mark_of(scope), request_id_of(scope)
                if (
                    mark is not None
                    and request_id is not None
                    and not message.get("more_body")
                    and await _failing(state) == failing
                ):
                    added = {
                        name: value
                        for name, value in log_fields(scope).items()
                        if name != "cache_hit" and fields_before.get(name, _ABSENT) is not value
                    }
                    prebuilt = prebuild(
                        mark,
                        headers,
                        bytes(message.get("body", b"")),
                        request_id,
                        log_fields=added,
                        failing=failing,
                        epoch=epoch,
                        trusted_since=_trusted_since(state, started),
                    )
                    if prebuilt is not None:
                        self.responses.put(key, prebuilt)
                headers = None
            await send(message)

        await self.app(scope, receive, recording)


_ABSENT = object()


def applies(state: AppState) -> bool:
    """Whether this server answers from prebuilt responses at all."""
    settings = state.settings
    return settings.fast_path_enabled and state.cache.enabled


async def request_of(
    scope: Scope, receive: Receive, body_timeout: float
) -> tuple[bytes | None, bytes, Receive]:
    """What of an HTTP request its answer depends on, besides its path and credential; its
    body; and the receive to hand on (a POST's body is read here, when it comes in one part
    within the request's ``body_timeout``). None when it is not one whose answer is kept: a
    REST read's query string; a GraphQL operation's method, query string, Accept,
    Content-Type and body (a short one)."""
    method, path = scope["method"], scope["path"]
    if method == "GET" and path.startswith(REUSABLE_PREFIX):
        return scope["query_string"], b"", receive
    if path != GRAPHQL_PATH or method not in ("GET", "POST"):
        return None, b"", receive
    body = b""
    if method == "POST":
        peeked, receive = await peek_whole_first(scope, receive, GRAPHQL_KEY_BYTES, body_timeout)
        if peeked is None:
            return None, b"", receive
        body = peeked
    parts = (
        method.encode(),
        scope["query_string"],
        (_header(scope, b"accept") or "").encode("latin-1"),
        (_header(scope, b"content-type") or "").encode("latin-1"),
        body,
    )
    return b"\0".join(parts), body, receive


def key_of(path: str, request: bytes, authorization: str | None, state: AppState) -> Key | None:
    """(path, request, credential class); None when the credential must be judged by the
    route (missing or not valid where reads need one: its 401 or 403)."""
    if path != GRAPHQL_PATH and not state.settings.read_api_keys:
        return path, request, int(Access.NONE)  # public reads: any credential reads the same
    try:
        found = header_credential(authorization, state.settings)
    except TrendmapError:
        return None
    if path == GRAPHQL_PATH:
        # Kept GraphQL answers are never shared across classes (graph.graphql.response_cache):
        # an anonymous request's class is apart from every credential's.
        return path, request, _ANONYMOUS if found is None else int(found[1])
    if found is None or found[1] < Access.READ:
        return None
    return path, request, int(found[1])


def _one_read(scope: Scope, body: bytes) -> bool:
    """Whether the rate limiter charges the request one read, as it does every request the
    front door answers: not a GraphQL document that also holds a mutation (a kept answer ran
    only a query of it, but the limiter counts a write). Decided once, when recording: the
    key holds the whole request."""
    if scope["path"] != GRAPHQL_PATH:
        return True
    return request_cost(scope["method"], GRAPHQL_PATH, scope["query_string"], body) == ONE_READ


def note_hit(scope: Scope, state: AppState, responses: PrebuiltResponses, hit: Prebuilt) -> None:
    """Count a request answered from ``hit``, and give its log line the route's fields."""
    fields = log_fields(scope)
    fields.update(hit.log_fields)
    fields["cache_hit"] = True
    fields["fast_path"] = True
    state.cache.lookups[hit.mark.kind, True] += 1
    responses.hits += 1
    if hit.mark.operation is not None:  # the request histogram's label (MetricsMiddleware)
        scope["state"][OPERATION_KEY] = hit.mark.operation


async def _failing(state: AppState) -> tuple[str, ...]:
    """The partial-data warnings of every country whose feed is failing now."""
    return await state.service.partial_warnings(None)


def _trusted_since(state: AppState, started: float) -> float:
    """When the generation an answer was computed under was last known current: when its
    request started, or earlier, when the route took it from the local copy (trusted since
    its last store read)."""
    read_at = state.cache.local_copy.read_at
    return started if read_at is None else min(started, read_at)


def current_now(state: AppState, prebuilt: Prebuilt) -> bool | None:
    """Whether the route would still answer what ``prebuilt`` holds; None when only the store
    can say (strict mode, or the local copy's trust has run out)."""
    cache, mark = state.cache, prebuilt.mark
    if cache.local_copy.epoch != prebuilt.epoch or cache.generation != mark.generation:
        return False
    if mark.sliding:
        age = (cache.clock() - mark.computed_at).total_seconds()
        if age >= state.settings.flows_refresh_seconds:
            return False
    if state.store.kind == "memory":
        return True  # every generation is raised in this process: cache.generation is exact
    local_seconds = state.settings.cache_local_seconds
    if local_seconds > 0 and time.monotonic() - prebuilt.trusted_since < local_seconds:
        return True
    return None


async def _current(state: AppState, prebuilt: Prebuilt) -> bool:
    """Whether the route would still answer what ``prebuilt`` holds, asking the store for the
    generation when :func:`current_now` cannot say."""
    known = current_now(state, prebuilt)
    if known is not None:
        return known
    cache, mark = state.cache, prebuilt.mark
    if cache.status() != "ok":
        return False
    asked = time.monotonic()
    try:
        [raw] = await state.store.read([(GENERATION_KEY, None)])
    except StoreUnavailable:
        return False
    if raw != str(mark.generation).encode() or cache.local_copy.epoch != prebuilt.epoch:
        return False  # (an announcement may have arrived during the read)
    prebuilt.trusted_since = asked
    return True


def asks_no_newer(tokens: Iterable[bytes], prebuilt: Prebuilt) -> bool:
    """Whether every ``X-Trendmap-Min-Generation`` sent is met by ``prebuilt`` (a malformed
    one is not: the route refuses it). Measured before converting, as the route does."""
    return all(
        len(value) <= _GENERATION_DIGITS
        and value.isdigit()
        and int(value) <= prebuilt.mark.generation
        for value in tokens
    )


async def _answers(scope: Scope, state: AppState, prebuilt: Prebuilt) -> bool:
    """Whether this request may have ``prebuilt`` (a current one): not when it asks for a
    newer generation, nor when other feeds are failing now (a record taken after the route
    answers replaces it)."""
    if request_id_of(scope) is None:
        return False
    tokens = (value for name, value in scope["headers"] if name == MIN_GENERATION)
    return asks_no_newer(tokens, prebuilt) and await _failing(state) == prebuilt.failing


def names(if_none_match: str | None, etag: str | None) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison) or is ``*``."""
    if if_none_match is None or etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(f'"{found}"' == opaque for found in _ENTITY_TAG.findall(if_none_match))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
