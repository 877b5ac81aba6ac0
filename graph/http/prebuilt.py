"""Prebuilt responses: the bytes of cached answers the REST routes sent, kept to be sent again
by graph.http.middleware.fast_path with each request's own id spliced in.

A route marks a response it may be answered from again (:func:`mark_reusable`): an answer of
the response cache under a decimal generation. The fast path records such a response as a
:class:`Prebuilt` (the status line's headers, the body cut around the request id), kept in
:class:`PrebuiltResponses`, least recently used out first, within a count and a byte bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from starlette.types import Scope

from graph.cache.lru import BoundedLRU
from graph.http.conditional import GENERATION_HEADER
from graph.service.answer import Answer

# Where a route leaves its mark in the request's scope state.
MARK_KEY = "prebuilt"
# Only REST reads are marked: the fast path lets every other path by without recording it.
REUSABLE_PREFIX = "/v1/"

_REQUEST_ID = b'"request_id":'
_CACHE_HIT = b'"cache_hit":'
_CACHE_HITS = (_CACHE_HIT + b"false", _CACHE_HIT + b"true")

# The headers a 304 repeats from the 200 it stands for.
_NOT_MODIFIED = frozenset({b"etag", GENERATION_HEADER.lower().encode()})

Key = tuple[str, bytes, int]  # path, raw query string, credential class


@dataclass(frozen=True, slots=True)
class Mark:
    """What a route says of a response it may be answered from again."""

    kind: str  # "flows" or "hotspots": the response cache's lookup counter
    generation: int
    computed_at: datetime
    sliding: bool  # a window ending "now": recomputed every FLOWS_REFRESH_SECONDS


def mark_reusable(scope: Scope, kind: str, answer: Answer, *, sliding: bool) -> None:
    """Mark this request's response as one the fast path may send again, when ``answer``
    comes from the shared cache (computed without it, it has no decimal generation)."""
    if answer.generation.isdigit() and scope["path"].startswith(REUSABLE_PREFIX):
        scope.setdefault("state", {})[MARK_KEY] = Mark(
            kind, int(answer.generation), answer.computed_at, sliding
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

    def body(self, request_id: str) -> bytes:
        return b"".join((self.before_id, orjson.dumps(request_id), self.after_id))


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
    ``cache_hit`` exactly once each (then it is simply not reused)."""
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
        if self._entries.put(key, prebuilt, prebuilt.size):
            self.recorded += 1
