"""Prebuilt responses: the bytes of cached answers the REST routes and the GraphQL endpoint
sent, kept to be sent again by graph.http.middleware.fast_path (and its front door) with each
request's own id spliced in.

A route marks a response it may be answered from again: a REST answer of the response cache
under a decimal generation (:func:`mark_reusable`), a kept GraphQL answer
(:func:`mark_graphql`). The fast path records such a response as a :class:`Prebuilt` (the
status line's headers, the body cut around the request id, which a GraphQL body does not
hold), kept in :class:`PrebuiltResponses`, least recently used out first, within a count and
a byte bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import Scope

from graph.cache.lru import BoundedLRU
from graph.http.conditional import GENERATION_HEADER
from graph.service.answer import Answer

# Where a route leaves its mark in the request's scope state.
MARK_KEY = "prebuilt"
# REST reads and GraphQL operations are marked: the fast path lets every other path by.
REUSABLE_PREFIX = "/v1/"
GRAPHQL_PATH = "/graphql"

_REQUEST_ID = b'"request_id":'
_CACHE_HIT = b'"cache_hit":'
_CACHE_HITS = (_CACHE_HIT + b"false", _CACHE_HIT + b"true")

# The headers a 304 repeats from the 200 it stands for.
_NOT_MODIFIED = frozenset({b"etag", GENERATION_HEADER.lower().encode()})

# Path, the request's bytes that its answer depends on (a REST read's query string; for
# GraphQL also its Accept and Content-Type and body), credential class.
Key = tuple[str, bytes, int]


GRAPHQL_KIND = "graphql"
"""A kept GraphQL operation's kind, beside the REST answers' "flows" and "hotspots"."""


@dataclass(frozen=True, slots=True)
class Mark:
    """What a route says of a response it may be answered from again."""

    kind: str  # "flows", "hotspots" or "graphql": the response cache's lookup counter
    generation: int
    computed_at: datetime
    sliding: bool  # a window ending "now": recomputed every FLOWS_REFRESH_SECONDS
    operation: str | None = None  # the request histogram's label (GraphQL: the operation)


def mark_reusable(scope: Scope, kind: str, answer: Answer, *, sliding: bool) -> None:
    """Mark this request's response as one the fast path may send again, when ``answer``
    comes from the shared cache (computed without it, it has no decimal generation)."""
    if answer.generation.isdigit() and scope["path"].startswith(REUSABLE_PREFIX):
        scope.setdefault("state", {})[MARK_KEY] = Mark(
            kind, int(answer.generation), answer.computed_at, sliding
        )


def mark_graphql(
    scope: Scope, generation: str, oldest_sliding: datetime | None, operation: object
) -> None:
    """Mark a kept GraphQL answer (graph.graphql.response_cache) as one the fast path may send
    again: kept under ``generation``, holding windows ending "now" computed at
    ``oldest_sliding`` at the earliest (None: none)."""
    if generation.isdigit() and scope["path"] == GRAPHQL_PATH:
        computed_at = oldest_sliding or datetime.now(UTC)
        label = operation if isinstance(operation, str) else None
        scope.setdefault("state", {})[MARK_KEY] = Mark(
            GRAPHQL_KIND, int(generation), computed_at, oldest_sliding is not None, label
        )


def mark_of(scope: Scope) -> Mark | None:
    mark = (scope.get("state") or {}).get(MARK_KEY)
    return mark if isinstance(mark, Mark) else None


@dataclass(slots=True)
class Prebuilt:
    """A 200 answer's bytes, cut around the request id, with ``cache_hit`` already true."""

    mark: Mark
    headers: list[tuple[bytes, bytes]]  # without content-length: the body's length varies
    etag: str | None
    before_id: bytes
    after_id: bytes
    log_fields: dict[str, Any]
    # The feeds failing when it was asked for (their partial-data warnings are in the body).
    failing: tuple[str, ...]
    epoch: int  # the local copy's epoch when the answer was asked for
    # Monotonic time the generation was last known current: the answer was asked for then, or
    # the fast path read it from the store (graph.http.middleware.fast_path).
    trusted_since: float
    size: int = field(default=0)
    # What a 304 sends (the ETag and the generation), picked out once.
    not_modified: list[tuple[bytes, bytes]] = field(default_factory=list)

    spliced: bool = True  # False: the body holds no request id (a GraphQL answer)

    def body(self, request_id: str) -> bytes:
        if not self.spliced:
            return self.before_id
        return b"".join((self.before_id, orjson.dumps(request_id), self.after_id))

    def response(
        self, request_id: str, not_modified: bool
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body for one request: a 304 when its ``If-None-Match`` named
        the ETag, else the 200 with its own request id."""
        if not_modified:
            return 304, list(self.not_modified), b""
        body = self.body(request_id)
        return 200, [*self.headers, (b"content-length", str(len(body)).encode())], body


def prebuild(
    mark: Mark,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    request_id: str,
    *,
    log_fields: dict[str, Any],
    failing: tuple[str, ...],
    epoch: int,
    trusted_since: float,
) -> Prebuilt | None:
    """The response as a Prebuilt, or None when its body does not hold the request id and
    ``cache_hit`` exactly once each (then it is simply not reused). A GraphQL answer holds
    neither, and is kept as it is."""
    spliced = mark.kind != GRAPHQL_KIND
    if spliced:
        id_at = _request_id(request_id)
        hit = next((flag for flag in _CACHE_HITS if body.count(flag) == 1), None)
        if (
            hit is None
            or body.count(_CACHE_HIT) != 1
            or body.count(_REQUEST_ID) != 1
            or id_at not in body
        ):
            return None
        # Inside a JSON string a quote is escaped, so these byte runs are the metadata's keys.
        body = body.replace(hit, _CACHE_HITS[1])
        at = body.index(id_at)
        before, after = body[: at + len(_REQUEST_ID)], body[at + len(id_at) :]
    else:
        before, after = body, b""
    kept = [(name, value) for name, value in headers if name.lower() != b"content-length"]
    etag = next((v.decode("latin-1") for n, v in kept if n.lower() == b"etag"), None)
    size = len(before) + len(after) + sum(len(n) + len(v) for n, v in kept)
    not_modified = [(name, value) for name, value in kept if name.lower() in _NOT_MODIFIED]
    return Prebuilt(
        mark,
        kept,
        etag,
        before,
        after,
        log_fields,
        failing,
        epoch,
        trusted_since,
        size=size,
        not_modified=not_modified,
        spliced=spliced,
    )


def _request_id(request_id: str) -> bytes:
    return _REQUEST_ID + orjson.dumps(request_id)


class PrebuiltResponses:
    """Prebuilt responses by (path, query string, credential class): at most ``max_entries``
    of them and ``max_bytes`` of their bytes, the least recently used dropped first."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self._entries: BoundedLRU[Key, Prebuilt] = BoundedLRU(
            max_entries=max_entries, max_bytes=max_bytes
        )
        # Requests answered from here, and responses recorded: what the tests observe.
        self.hits = 0
        self.recorded = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def get(self, key: Key) -> Prebuilt | None:
        return self._entries.get(key)

    def drop(self, key: Key) -> None:
        self._entries.pop(key)

    def put(self, key: Key, prebuilt: Prebuilt) -> None:
        # One larger than the whole store is not kept, and pushes nothing else out.
        if self._entries.put(key, prebuilt, prebuilt.size + len(key[1])):
            self.recorded += 1
