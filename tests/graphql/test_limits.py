"""GraphQL limits, each at its edge: at the limit accepted, one over refused."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLList, GraphQLOutputType
from graphql.execution.collect_fields import FieldDetailsList
from graphql.language import Lexer, Source, TokenKind
from starlette.testclient import TestClient

from graph.graphql.fast_path import SharedEventExecution
from graph.graphql.limits import DOCUMENT_CACHE_SIZE, count_computing_fields, limit_extensions
from tests.support.layers import graphql_schema_of


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
    names = "flowStats, flows, hotspotHistory, hotspots, topicSpread, topics"
    assert refused(ask(client, five), f"at most 4 of {names}")
    # Every root field that computes over a window counts, however it is aliased.
    stats = "{ " + " ".join(f"s{i}: flowStats {{ pairs }}" for i in range(5)) + " }"
    assert refused(ask(client, stats), "this one asks for 5")
    topics = '{ a: topics { key } b: topics { key } c: topicSpread(topic: "x") { key } }'
    assert refused(ask(client, four[:-1] + topics[1:]), "this one asks for 7")
    history = '{ h: hotspotHistory(country: "US") { score } }'
    assert refused(ask(client, four[:-1] + history[1:]), "this one asks for 5")
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
    assert response.json()["errors"][0]["extensions"]["code"] == "bad_request"
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
    assert response.status_code == 405  # GraphQL over HTTP, with Allow: POST
    assert "GET" in response.json()["errors"][0]["message"]


def test_graphql_bodies_over_the_limit_get_413_before_parsing(app_with: Any) -> None:
    client = app_with(max_body_bytes=2048)
    query = "{ hotspots { " + "country " * 400 + "} }"
    response = client.post("/graphql", json={"query": query})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def _document_caches() -> tuple[Any, Any]:
    """Strawberry's process-wide LRU caches of parsed and of validated documents."""
    from strawberry.extensions.parser_cache import _get_parse_cache
    from strawberry.extensions.validation_cache import _get_validate_cache

    return _get_parse_cache(DOCUMENT_CACHE_SIZE), _get_validate_cache(DOCUMENT_CACHE_SIZE)


def test_a_repeated_operation_is_parsed_and_validated_once(app_with: Any) -> None:
    """Through Strawberry's pipeline, a repeated document is found in the parser and validation
    caches; prepared (graph.graphql.prepared), it is not even looked up there."""
    client = app_with(graphql_response_cache_entries=0)  # else the answer itself is kept
    prepared = graphql_schema_of(client).prepared
    parsed, validated = _document_caches()
    query = "query Repeated { hotspots { country } }"
    for enabled in (False, True):
        prepared.enabled = enabled
        assert "errors" not in ask(client, query)
        parse_hits, validate_hits = parsed.cache_info().hits, validated.cache_info().hits
        runs = prepared.runs
        for _ in range(3):
            assert "errors" not in ask(client, query)
        looked_up = 0 if enabled else 3
        assert parsed.cache_info().hits == parse_hits + looked_up
        assert validated.cache_info().hits == validate_hits + looked_up
        assert prepared.runs == runs + 3 - looked_up


def test_every_request_gets_the_same_rule_classes() -> None:
    from strawberry.extensions import AddValidationRules

    from graph.settings import Settings

    factories = limit_extensions(Settings(graphql_introspection=True))
    made = [[factory() for factory in factories] for _ in range(2)]
    rules = [[e.validation_rules for e in ext if isinstance(e, AddValidationRules)] for ext in made]
    assert rules[0] == rules[1] and len(rules[0][0]) == 3


def test_cached_documents_keep_their_limits(app_with: Any) -> None:
    # Refusals come back on every repeat (cached validation errors), and a document parsed
    # under a high token limit is refused under a lower one: the limit is part of the key.
    deep = "{ hotspots { topTopics { label } } }"
    shallow = app_with(graphql_max_depth=1)
    for _ in range(3):
        assert refused(ask(shallow, deep), "maximum operation depth")
    query = "{ hotspots(countries: [" + '"US" ' * 40 + "]) { country } }"
    assert tokens(query) == 52
    assert "errors" not in ask(app_with(), query)
    strict = app_with(graphql_max_tokens=50)
    for _ in range(2):
        assert refused(ask(strict, query), "more than 50 tokens")


# --- lists completed in one pass (SharedEventExecution.complete_list_value) ---


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def test_plain_lists_are_completed_in_one_pass_with_graphql_semantics(
    app_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.factories import AS_OF, as_input, record, write_headers

    plain: list[int] = []  # the length of each list completed in one pass

    class Spy(SharedEventExecution):
        def plain_list(
            self,
            return_type: GraphQLList[GraphQLOutputType],
            field_details_list: FieldDetailsList,
            result: Any,
        ) -> list[dict[str, Any]] | None:
            shaped = super().plain_list(return_type, field_details_list, result)
            if shaped is not None:
                plain.append(len(shaped))
            return shaped

    monkeypatch.setattr("graph.graphql.schema.SharedEventExecution", Spy)
    client = app_with()
    records = []
    for topic in ("World Cup", "Election"):
        records.append(record("US", topic, hours_ago=4, count=50))
        records.append(record("CO", topic, hours_ago=2, count=50))
        records.append(record("MX", topic, hours_ago=1, count=40))
    ingest = "mutation($t: [TrendInput!]!) { ingestTrends(trends: $t) { inserted } }"
    stored = client.post(
        "/graphql",
        json={"query": ingest, "variables": {"t": [as_input(r) for r in records]}},
        headers=write_headers(),
    )
    assert stored.json()["data"]["ingestTrends"]["inserted"] == 6
    arguments = f'threshold: 0.1, asOf: "{AS_OF.isoformat()}"'
    rest = client.get("/v1/flows", params={"as_of": AS_OF.isoformat(), "threshold": 0.1}).json()
    expected = [{_camel(k): v for k, v in flow.items()} for flow in rest["flows"]]
    assert len(expected) >= 2

    plain.clear()
    every = " ".join(expected[0])
    assert ask(client, f"{{ flows({arguments}) {{ {every} }} }}")["data"]["flows"] == expected
    # Aliases, __typename, @include/@skip and fragments are GraphQL's, field order included.
    body = ask(
        client,
        f"""{{ flows({arguments}) {{
              __typename h: heat ...F fromCountry @include(if: false) toCountry @skip(if: false)
              heat }} }}
            fragment F on Flow {{ sharedTopics h: heat }}""",
    )
    assert list(body["data"]["flows"][0]) == [
        "__typename",
        "h",
        "sharedTopics",
        "toCountry",
        "heat",
    ]
    assert body["data"]["flows"] == [
        {
            "__typename": "Flow",
            "h": f["heat"],
            "sharedTopics": f["sharedTopics"],
            "toCountry": f["toCountry"],
            "heat": f["heat"],
        }
        for f in expected
    ]
    assert len(plain) == 2
    # A list of objects with objects inside goes the usual way; the lists inside (plain) do not.
    hotspots = ask(
        client, f'{{ hotspots(asOf: "{AS_OF.isoformat()}") {{ topTopics {{ label }} }} }}'
    )["data"]["hotspots"]
    assert len(hotspots) == 3 and all(h["topTopics"] for h in hotspots)
    assert len(plain) == 2 + 3


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("query { ...Missing }", "Missing"),
        ("query { trends { edges { node { ...Gone } } } }", "Gone"),
        ("query { ...Known } fragment Known on Query { ...Missing }", "Missing"),
    ],
)
def test_an_unknown_fragment_is_graphql_own_validation_error(
    app_with: Any, caplog: pytest.LogCaptureFixture, query: str, name: str
) -> None:
    """The depth rule looks spreads up; one naming no fragment is left to GraphQL's own rule,
    not raised as a KeyError (answered as the bare name and logged as a traceback)."""
    client = app_with(graphql_max_depth=3)
    body = ask(client, query)
    assert [e["message"] for e in body["errors"]] == [f"Unknown fragment '{name}'."]
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_the_depth_limit_still_holds_beside_known_fragments(app_with: Any) -> None:
    client = app_with(graphql_max_depth=2)
    deep = "query { ...T } fragment T on Query { trends { edges { node { id } } } }"
    assert refused(ask(client, deep), "exceeds maximum operation depth")
