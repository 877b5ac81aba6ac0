"""GraphQL limits, each at its edge: at the limit accepted, one over refused."""

from __future__ import annotations

from typing import Any

from graphql.language import Lexer, Source, TokenKind
from starlette.testclient import TestClient

from graph.query_limits import count_computing_fields


def ask(client: TestClient, query: str) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(body: dict[str, Any], words: str) -> bool:
    return any(words in e["message"] for e in body.get("errors", []))


def tokens(query: str) -> int:
    lexer, count = Lexer(Source(query)), 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


def test_tokens_at_the_limit_and_one_over(app_with: Any) -> None:
    client = app_with()

    def document(codes: int) -> str:
        return "{ hotspots(countries: [" + '"US" ' * codes + "]) { country } }"

    at = document(1988)
    assert tokens(at) == 2000
    assert "errors" not in ask(client, at)
    over = document(1989)
    assert tokens(over) == 2001
    assert refused(ask(client, over), "more than 2000 tokens")


def test_depth_counts_through_fragments(app_with: Any) -> None:
    client = app_with(graphql_max_depth=2)
    assert "errors" not in ask(client, "{ hotspots { topTopics { label } } }")  # depth 2
    client = app_with(graphql_max_depth=1)
    assert refused(ask(client, "{ hotspots { topTopics { label } } }"), "maximum operation depth")
    via_fragment = (
        "{ ...F } fragment F on Query { hotspots { ...T } } "
        "fragment T on Hotspot { topTopics { label } }"
    )
    assert refused(ask(client, via_fragment), "maximum operation depth")


def test_circular_fragments_are_refused_without_recursion(app_with: Any) -> None:
    client = app_with()
    body = ask(
        client,
        "{ ...A } fragment A on Query { hotspots { country } ...B } fragment B on Query { ...A }",
    )
    assert body["errors"]
    assert any("cycle" in e["message"].lower() or "itself" in e["message"] for e in body["errors"])


def test_aliases_at_the_limit_and_one_over_counting_fragment_uses(app_with: Any) -> None:
    client = app_with()
    aliases = " ".join(f"c{i}: country" for i in range(30))
    assert "errors" not in ask(client, "{ hotspots { " + aliases + " } }")
    over = " ".join(f"c{i}: country" for i in range(31))
    assert refused(ask(client, "{ hotspots { " + over + " } }"), "aliases")
    fifteen = " ".join(f"c{i}: country" for i in range(15))
    used_twice = (
        "{ a: hotspots { ...F } b: hotspots { ...F } } fragment F on Hotspot { " + fifteen + " }"
    )
    assert refused(ask(client, used_twice), "aliases")  # 2 + 2 × 15 = 32


def test_computing_root_fields_at_the_limit_and_one_over(app_with: Any) -> None:
    client = app_with()
    four = "{ a: flows { heat } b: flows { heat } c: hotspots { country } d: hotspots { country } }"
    assert "errors" not in ask(client, four)
    five = four[:-1] + " e: flows { heat } }"
    assert refused(ask(client, five), "at most 4 of flows and hotspots")
    via_fragments = (
        "{ ...F ...F2 } fragment F on Query { a: flows { heat } b: flows { heat } } "
        "fragment F2 on Query { c: hotspots { country } ... on Query { d: hotspots { country } "
        "e: flows { heat } } }"
    )
    assert refused(ask(client, via_fragments), "this one asks for 5")


def test_counting_computing_fields_stops_at_cycles() -> None:
    from graphql import parse

    document = parse("{ ...A } fragment A on Query { flows { heat } ...A }", no_location=True)
    operation, fragment = document.definitions
    fragments = {fragment.name.value: fragment}  # type: ignore[attr-defined]
    assert count_computing_fields(operation.selection_set, fragments) == 1  # type: ignore[attr-defined]


def test_batching_is_off_unless_configured(app_with: Any) -> None:
    client = app_with()
    batch = [{"query": "{ hotspots { country } }"}] * 2
    response = client.post("/graphql", json=batch)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    client = app_with(graphql_max_batch=2)
    assert client.post("/graphql", json=batch).status_code == 200
    assert client.post("/graphql", json=batch * 2).status_code == 400


def test_introspection_off_takes_graphiql_and_suggestions_with_it(app_with: Any) -> None:
    on = app_with()
    assert "errors" not in ask(on, "{ __schema { queryType { name } } }")
    assert on.get("/graphql", headers={"accept": "text/html"}).status_code == 200
    assert "Did you mean" in str(ask(on, "{ hotspot { country } }"))
    off = app_with(graphql_introspection=False)
    assert refused(ask(off, "{ __schema { queryType { name } } }"), "introspection")
    assert "GraphiQL" not in off.get("/graphql", headers={"accept": "text/html"}).text
    body = ask(off, "{ hotspot { country } }")
    assert body["errors"] and "Did you mean" not in str(body)


def test_limits_and_first_are_capped(app_with: Any) -> None:
    client = app_with()
    assert "errors" not in ask(client, "{ hotspots(limit: 1000) { country } }")
    assert refused(ask(client, "{ hotspots(limit: 1001) { country } }"), "limit")
    assert "errors" not in ask(client, "{ flows(limit: 10000) { heat } }")
    assert refused(ask(client, "{ flows(limit: 10001) { heat } }"), "limit")
    assert "errors" not in ask(client, "{ trends(first: 1000) { totalCount } }")
    assert refused(ask(client, "{ trends(first: 1001) { totalCount } }"), "first")


def test_mutations_over_get_are_refused(app_with: Any) -> None:
    client = app_with()
    response = client.get(
        "/graphql", params={"query": "mutation { ingestTrends(trends: []) { received } }"}
    )
    assert response.status_code == 400
    assert "GET" in response.json()["detail"]


def test_graphql_bodies_over_the_limit_get_413_before_parsing(app_with: Any) -> None:
    client = app_with(max_body_bytes=2048)
    query = "{ hotspots { " + "country " * 400 + "} }"
    response = client.post("/graphql", json={"query": query})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
