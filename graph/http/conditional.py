"""Session consistency and conditional requests at the REST edge.

- A read may carry ``min_generation`` (query parameter) or ``X-Trendmap-Min-Generation``
  (header): the answer then holds every write answered with a generation up to it, on any
  worker (graph.cache.response_cache). Both given, the larger counts.
- Every cacheable answer carries a weak ``ETag`` derived from the generation it was computed
  under, when it was computed, the instant it describes, its warnings, the path and the query
  (sorted, ``min_generation`` left out); a read whose ``If-None-Match`` names it gets a 304
  with no body (RFC 9110 13.1.2, weak comparison). Weak, because the envelope around the same
  answer differs per request (``request_id``, ``cache_hit``).
- ``X-Trendmap-Generation`` names the generation an answer was computed under, or the one a
  write produced.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from graph.service.params import parse_min_generation

GENERATION_HEADER = "X-Trendmap-Generation"
MIN_GENERATION_HEADER = "X-Trendmap-Min-Generation"
MIN_GENERATION_PARAMETER = "min_generation"

# An entity tag in If-None-Match: optionally weak, then a quoted opaque tag.
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')


def min_generation(request: Request) -> int | None:
    """The generation the read must be at least as new as, or None; 400 when malformed."""
    asked = [
        *(
            parse_min_generation(value, field=MIN_GENERATION_PARAMETER)
            for value in request.query_params.getlist(MIN_GENERATION_PARAMETER)
        ),
        *(
            parse_min_generation(value, field=MIN_GENERATION_HEADER)
            for value in request.headers.getlist(MIN_GENERATION_HEADER)
        ),
    ]
    return max((g for g in asked if g is not None), default=None)


def entity_tag(request: Request, *parts: str | bytes | datetime) -> str:
    """A weak ETag for this path and query and what the answer was made from (``parts``)."""
    digest = hashlib.blake2b(digest_size=16)
    query = sorted(
        (name, value)
        for name, value in request.query_params.multi_items()
        if name != MIN_GENERATION_PARAMETER
    )
    for part in (request.url.path, repr(query), *parts):
        if isinstance(part, datetime):
            part = part.isoformat()
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return f'W/"{digest.hexdigest()}"'


def answer_tag(
    request: Request,
    generation: str,
    computed_at: datetime,
    as_of: datetime,
    warnings: Iterable[str],
) -> str:
    """The ETag of a cached answer: the same entry, asked the same way, has the same tag on
    every worker; anything computed anew (a sliding window refreshed, a generation raised)
    has another."""
    return entity_tag(request, generation, computed_at, as_of, *warnings)


def _matches(request: Request, tag: str) -> bool:
    """Whether If-None-Match names ``tag`` (weak comparison) or is ``*``."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    if header.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(f'"{found}"' == opaque for found in _ENTITY_TAG.findall(header))


def _stamp(response: Response, tag: str, generation: str | None) -> Response:
    response.headers["ETag"] = tag
    if generation is not None and generation.isdigit():
        response.headers[GENERATION_HEADER] = generation
    return response


def conditional(
    request: Request, tag: str, generation: str | None, render: Callable[[], Response]
) -> Response:
    """304 (no body, the ETag and generation headers) when If-None-Match names ``tag``; else
    the rendered answer, with those headers."""
    if _matches(request, tag):
        return _stamp(Response(status_code=304), tag, generation)
    return _stamp(render(), tag, generation)


def generation_headers(generation: int | None) -> dict[str, str]:
    """``X-Trendmap-Generation`` for a write's answer; none when the store could not count it."""
    return {} if generation is None else {GENERATION_HEADER: str(generation)}
