"""Cost: what one request spends from each budget. Each REST request, each GraphQL operation
(each one of a batch) and each WebSocket upgrade costs one; a write (POST /v1/trends, a GraphQL
mutation) spends from the write budget only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson

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


ONE_READ = Cost(reads=1)  # a REST read, a GraphQL query, a WebSocket upgrade


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
