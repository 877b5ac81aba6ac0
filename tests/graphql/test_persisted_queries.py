"""Persisted queries: Apollo's APQ over POST and GET (PersistedQueryNotFound, then the document
with its hash, then the hash alone), refusals of bad hashes, versions and mismatches as GraphQL
errors, bounded storage, documents shared through Redis, and the safelist."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from graph.graphql.limits import CACHED_DOCUMENT_CHARS
from graph.graphql.persisted import Safelist
from tests.support.factories import TEST_REDIS_URL

SPAN = "query Span { dataSpan { records } }"
EMPTY_SPAN = {"data": {"dataSpan": {"records": 0}}}
HOTSPOTS = "query Hot($n: Int) { hotspots(limit: $n) { country } }"


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def extension(digest: str, version: object = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def post(client: TestClient, status: int = 200, **body: Any) -> dict[str, Any]:
    response = client.post("/graphql", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def get(client: TestClient, status: int = 200, **params: Any) -> dict[str, Any]:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    # What a browser-like client sends (Apollo Client's default): not GraphiQL's page.
    response = client.get("/graphql", params=encoded, headers={"Accept": "*/*"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = response.json()
    return answer


def error_of(answer: dict[str, Any]) -> tuple[str, str]:
    assert "data" not in answer
    [error] = answer["errors"]
    return error["message"], error["extensions"]["code"]


NOT_FOUND = ("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")


def test_apq_over_post_registers_then_runs_by_hash(app_with: Any) -> None:
    client = app_with()
    digest = sha(SPAN)
    response = client.post("/graphql", json={"extensions": extension(digest)})
    assert response.status_code == 200  # what Apollo's link retries on
    assert error_of(response.json()) == NOT_FOUND
    assert "no-cache" in response.headers["cache-control"]
    assert post(client, query=SPAN, extensions=extension(digest)) == EMPTY_SPAN
    assert post(client, extensions=extension(digest)) == EMPTY_SPAN
    # The hash's case does not matter; variables and operationName go with it as ever.
    digest = sha(HOTSPOTS)
    post(client, query=HOTSPOTS, extensions=extension(digest.upper()), variables={"n": 1})
    hot = post(client, extensions=extension(digest), variables={"n": 2}, operationName="Hot")
    assert hot == {"data": {"hotspots": []}}


def test_apq_over_get(app_with: Any) -> None:
    client = app_with()
    digest = sha(HOTSPOTS)
    assert error_of(get(client, extensions=extension(digest))) == NOT_FOUND
    registered = get(client, query=HOTSPOTS, extensions=extension(digest), variables={"n": 3})
    assert registered == {"data": {"hotspots": []}}
    assert get(client, extensions=extension(digest), variables={"n": 3}) == registered
    # In GraphQL over HTTP's own media type too.
    response = client.get(
        "/graphql",
        params={"extensions": json.dumps(extension(digest))},
        headers={"Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert response.json() == registered
    # A mutation is refused over GET, by hash as by text.
    mutation = "mutation M { ingestTrends(trends: []) { received } }"
    refused = client.get(
        "/graphql", params={"query": mutation, "extensions": json.dumps(extension(sha(mutation)))}
    )
    assert refused.status_code == 405


def test_a_browser_still_gets_graphiql(app_with: Any) -> None:
    client = app_with()
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert "json" not in page.headers["content-type"]


def test_a_hash_that_does_not_match_is_refused_and_not_kept(app_with: Any) -> None:
    client = app_with()
    other = sha(SPAN + " ")
    answer = post(client, 400, query=SPAN, extensions=extension(other))
    assert error_of(answer) == (
        "provided sha does not match query",
        "PERSISTED_QUERY_HASH_MISMATCH",
    )
    assert answer["errors"][0]["extensions"]["status"] == 400
    assert error_of(post(client, extensions=extension(other))) == NOT_FOUND
    assert error_of(post(client, extensions=extension(sha(SPAN)))) == NOT_FOUND


@pytest.mark.parametrize(
    "digest", ["abc", "g" * 64, sha(SPAN) + "0", "", 12, None, ["x"], sha(SPAN)[:-1] + " "]
)
def test_a_malformed_hash_is_a_400(app_with: Any, digest: object) -> None:
    client = app_with()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    for query in (None, SPAN):
        message, code = error_of(post(client, 400, query=query, extensions=persisted))
        assert code == "PERSISTED_QUERY_INVALID_HASH"
        assert "64 hexadecimal digits" in message
    assert error_of(get(client, 400, extensions=persisted))[1] == "PERSISTED_QUERY_INVALID_HASH"


@pytest.mark.parametrize("version", [2, 0, "1", True, None, 1.5])
def test_an_unknown_version_is_a_400(app_with: Any, version: object) -> None:
    client = app_with()
    message, code = error_of(post(client, 400, extensions=extension(sha(SPAN), version)))
    assert code == "PERSISTED_QUERY_VERSION_NOT_SUPPORTED"
    assert "version" in message


def test_a_persisted_query_extension_that_is_not_an_object_is_a_400(app_with: Any) -> None:
    client = app_with()
    answer = post(client, 400, query=SPAN, extensions={"persistedQuery": "yes"})
    assert error_of(answer)[1] == "PERSISTED_QUERY_INVALID"


def test_refusals_are_one_log_line_and_not_found_none(
    app_with: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = app_with(log_level="INFO")
    capsys.readouterr()
    post(client, extensions=extension(sha(SPAN)))
    post(client, 400, query=SPAN, extensions=extension(sha("x")))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    refusals = [line for line in lines if line.get("event") == "graphql client error"]
    assert len(refusals) == 1
    assert "provided sha does not match query" in json.dumps(refusals[0])
    assert not any("Traceback" in json.dumps(line) for line in lines)


def test_kept_documents_are_bounded(app_with: Any) -> None:
    client = app_with(graphql_apq_max_documents=2)
    documents = [f"query D{n} {{ dataSpan {{ records }} }}" for n in range(3)]
    for document in documents:
        post(client, query=document, extensions=extension(sha(document)))
    assert error_of(post(client, extensions=extension(sha(documents[0])))) == NOT_FOUND
    for document in documents[1:]:
        assert post(client, extensions=extension(sha(document))) == EMPTY_SPAN
    # A document longer than the parse cache keeps runs, and is not kept.
    long = f"# {'x' * CACHED_DOCUMENT_CHARS}\n{SPAN}"
    assert post(client, query=long, extensions=extension(sha(long))) == EMPTY_SPAN
    assert error_of(post(client, extensions=extension(sha(long)))) == NOT_FOUND
    assert post(client, extensions=extension(sha(documents[2]))) == EMPTY_SPAN


def test_apq_off_says_not_supported(app_with: Any) -> None:
    client = app_with(graphql_apq_max_documents=0)
    answer = post(client, extensions=extension(sha(SPAN)))
    assert error_of(answer) == ("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED")
    assert post(client, query=SPAN, extensions=extension(sha(SPAN))) == EMPTY_SPAN
    assert error_of(post(client, extensions=extension(sha(SPAN))))[0] == (
        "PersistedQueryNotSupported"
    )


def test_documents_are_shared_by_workers_through_redis(tmp_path: Path) -> None:
    from graph.http.app import create_app
    from tests.support.factories import make_settings

    # A document no other test sends: its key is this test's own in the shared Redis.
    document = f"query Shared {{ dataSpan {{ records }} }} # {uuid.uuid4()}"
    settings = make_settings(f"sqlite:///{tmp_path / 'a.db'}", redis_url=TEST_REDIS_URL)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        assert error_of(post(second, extensions=extension(sha(document)))) == NOT_FOUND
        post(first, query=document, extensions=extension(sha(document)))
        assert post(second, extensions=extension(sha(document))) == EMPTY_SPAN


# --- the safelist ---------------------------------------------------------------------------

LISTED = "query Listed { dataSpan { records } }"
UNLISTED = "query Unlisted { dataSpan { countries } }"
NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"


def _json_safelist(tmp_path: Path) -> Path:
    path = tmp_path / "safelist.json"
    path.write_text(json.dumps({sha(LISTED): LISTED}))
    return path


def test_a_safelist_runs_its_documents_only(app_with: Any, tmp_path: Path) -> None:
    client = app_with(graphql_safelist_file=_json_safelist(tmp_path))
    listed = {"data": {"dataSpan": {"records": 0}}}
    assert post(client, extensions=extension(sha(LISTED))) == listed
    assert post(client, query=LISTED) == listed
    assert post(client, query=LISTED, extensions=extension(sha(LISTED))) == listed
    assert get(client, query=LISTED) == listed
    message, code = error_of(post(client, 400, query=UNLISTED))
    assert code == NOT_ALLOWED and "safelist" in message
    assert error_of(post(client, 400, extensions=extension(sha(UNLISTED))))[1] == NOT_ALLOWED
    # Registration is refused: the hash stays unknown.
    answer = post(client, 400, query=UNLISTED, extensions=extension(sha(UNLISTED)))
    assert error_of(answer)[1] == NOT_ALLOWED
    assert error_of(post(client, 400, extensions=extension(sha(UNLISTED))))[1] == NOT_ALLOWED
    assert error_of(get(client, 400, query=UNLISTED))[1] == NOT_ALLOWED


def test_a_safelist_holds_over_websockets(app_with: Any, tmp_path: Path) -> None:
    client = app_with(graphql_safelist_file=_json_safelist(tmp_path))
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": UNLISTED}})
        refused = ws.receive_json()
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == NOT_ALLOWED
        ws.send_json({"id": "2", "type": "subscribe", "payload": {"query": LISTED}})
        assert ws.receive_json() == {
            "id": "2",
            "type": "next",
            "payload": {"data": {"dataSpan": {"records": 0}}},
        }


def test_a_safelist_directory_and_an_apollo_manifest(app_with: Any, tmp_path: Path) -> None:
    folder = tmp_path / "operations"
    folder.mkdir()
    (folder / "listed.graphql").write_text(LISTED + "\n")
    (folder / "notes.txt").write_text(UNLISTED)
    client = app_with(graphql_safelist_file=folder)
    assert post(client, query=LISTED + "\n") == EMPTY_SPAN
    assert error_of(post(client, 400, query=LISTED))[1] == NOT_ALLOWED  # the file's exact text
    assert error_of(post(client, 400, query=UNLISTED))[1] == NOT_ALLOWED

    manifest = tmp_path / "manifest.json"
    operation = {"id": sha(LISTED), "name": "Listed", "type": "query", "body": LISTED}
    manifest.write_bytes(
        orjson.dumps({"format": "apollo-persisted-query-manifest", "operations": [operation]})
    )
    assert set(Safelist.load(manifest).documents) == {sha(LISTED)}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "is not JSON"),
        ("[1]", "must hold a JSON object"),
        (json.dumps({"0" * 64: LISTED}), "is not the SHA-256 of its document"),
        (json.dumps({sha(LISTED): 1}), "every entry is a hash and a text"),
    ],
)
def test_an_unusable_safelist_fails_at_startup(tmp_path: Path, content: str, problem: str) -> None:
    from graph.http.app import create_app
    from tests.support.factories import make_settings

    path = tmp_path / "safelist.json"
    path.write_text(content)
    settings = make_settings(f"sqlite:///{tmp_path / 'a.db'}", graphql_safelist_file=path)
    with pytest.raises(ValueError, match=problem):
        create_app(settings)
    missing = make_settings("sqlite://", graphql_safelist_file=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="cannot read"):
        create_app(missing)
