"""Kept GraphQL documents are bounded in size as well as in number: a long document (a body
may hold megabytes in one string) is parsed and validated every time, never kept."""

from __future__ import annotations

from typing import Any

from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from graph.graphql.limits import CACHED_DOCUMENT_CHARS, DOCUMENT_CACHE_SIZE


def _looked_up() -> tuple[int, int]:
    """How many lookups Strawberry's process-wide caches of parsed and of validated documents
    have answered (hits and misses: a miss is kept)."""
    caches = _get_parse_cache(DOCUMENT_CACHE_SIZE), _get_validate_cache(DOCUMENT_CACHE_SIZE)
    infos = [cache.cache_info() for cache in caches]
    return infos[0].hits + infos[0].misses, infos[1].hits + infos[1].misses


def _topics(client: Any, comment: str) -> dict[str, Any]:
    query = f"# {comment}\nquery Long {{ topics {{ key }} }}"
    response = client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_long_documents_are_answered_but_not_kept(app_with: Any) -> None:
    client = app_with()
    long = "x" * (CACHED_DOCUMENT_CHARS + 1)
    before = _looked_up()
    for n in range(3):
        assert _topics(client, f"{n}{long}") == {"data": {"topics": []}}
    assert _looked_up() == before
    assert _topics(client, "a short one") == {"data": {"topics": []}}
    assert _looked_up() == (before[0] + 1, before[1] + 1)


def test_long_documents_leave_nothing_in_the_fast_path_memo(app_with: Any) -> None:
    from graph.graphql import fast_path
    from tests.support.factories import record, write_headers

    client = app_with()
    stored = client.post("/v1/trends", json=[record("US"), record("CO")], headers=write_headers())
    assert stored.status_code == 200, stored.text
    query = 'query Hot {{ hotspots(asOf: "2026-11-20T12:00:00Z") {{ country }} }}'
    long = "# " + "x" * CACHED_DOCUMENT_CHARS + "\n" + query.format()
    before = set(fast_path._plain_memo)
    for _ in range(2):
        answer = client.post("/graphql", json={"query": long}).json()
        assert answer == {"data": {"hotspots": [{"country": "CO"}, {"country": "US"}]}}
    assert set(fast_path._plain_memo) == before  # its nodes (and its text) are not kept
    assert client.post("/graphql", json={"query": query.format()}).json() == answer
    assert set(fast_path._plain_memo) - before


def test_new_variables_find_the_memo_unless_a_directive_may_use_them(app_with: Any) -> None:
    """The plain fields of a document without directives do not depend on its variables:
    one memo entry serves every value. With @include, each value selects its own fields."""
    from graph.graphql import fast_path
    from tests.support.factories import record, write_headers

    client = app_with(graphql_response_cache_entries=0)  # executed every time
    stored = client.post("/v1/trends", json=[record("US"), record("CO")], headers=write_headers())
    assert stored.status_code == 200, stored.text
    at = 'asOf: "2026-11-20T12:00:00Z"'
    plain = "query Plain($n: Int) { hotspots(" + at + ", limit: $n) { country } }"
    before = set(fast_path._plain_memo)
    for n in (1, 2, 3):
        answer = client.post("/graphql", json={"query": plain, "variables": {"n": n}}).json()
        assert len(answer["data"]["hotspots"]) == min(n, 2)
    assert len(set(fast_path._plain_memo) - before) == 1
    chosen = (
        "query Chosen($v: Boolean!) { hotspots(" + at + ") { country volume @include(if: $v) } }"
    )
    before = set(fast_path._plain_memo)
    shown = {
        v: client.post("/graphql", json={"query": chosen, "variables": {"v": v}}).json()
        for v in (True, False)
    }
    assert all("volume" in h for h in shown[True]["data"]["hotspots"])
    assert all("volume" not in h for h in shown[False]["data"]["hotspots"])
    assert len(set(fast_path._plain_memo) - before) == 2
