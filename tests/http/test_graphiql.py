"""GraphiQL served from this origin only: the page, its files, and what happens without them.

Most tests serve a stand-in packages folder (tiny files at the npm packages' paths), so they
test the serving itself; one reads the packages `npm ci --prefix graph/http/web/graphiql`
installed (missing: skipped, except in CI, where it fails).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.http.graphiql import DEFAULT_ASSETS_DIR, FILES, INSTALL

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
# Any absolute or protocol-relative URL: the page must name none.
OUTSIDE = re.compile(r"(?:https?:|wss?:)?//[^\s\"'<>]+", re.IGNORECASE)


def stand_in_packages(root: Path) -> Path:
    for file in FILES:
        if not file.ours:
            path = root / file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"/* stand-in for {file.path} */\n" * 50)
    return root


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    return stand_in_packages(tmp_path / "node_modules")


class _References(HTMLParser):
    """Every src and href in a page, with the integrity beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.found.append((tag, str(values[name]), values.get("integrity")))


def references(page: str) -> list[tuple[str, str, str | None]]:
    parser = _References()
    parser.feed(page)
    return parser.found


def graphiql_page(client: TestClient) -> str:
    response = client.get("/graphql", headers=HTML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def test_the_page_names_only_files_of_its_own_origin(app_with: Any, packages: Path) -> None:
    client = app_with(graphiql_assets_dir=packages)
    page = graphiql_page(client)
    assert OUTSIDE.findall(page) == []
    found = references(page)
    files = [url for tag, url, _ in found if tag in ("script", "link") and url != "data:,"]
    assert [url.rsplit("/", 1)[1] for url in files] == [f.name for f in FILES]
    assert all(url.startswith("/graphql/ide/") for url in files)
    # Its policy lets the browser load nothing from elsewhere, even were the page to ask.
    policy = client.get("/graphql", headers=HTML).headers["content-security-policy"]
    for directive in policy.split(";"):
        name, *sources = directive.split()
        assert set(sources) <= {"'self'", "'none'", "'unsafe-inline'", "data:"}, directive
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy


def test_each_file_is_served_with_its_type_and_kept_for_good(app_with: Any, packages: Path) -> None:
    client = app_with(graphiql_assets_dir=packages)
    found = [(url, integrity) for tag, url, integrity in references(graphiql_page(client))]
    served = 0
    for url, integrity in found:
        if not url.startswith("/graphql/ide/"):
            continue
        plain = client.get(url, headers={"accept-encoding": "identity"})
        assert plain.status_code == 200, url
        kind = "text/css" if url.endswith(".css") else "text/javascript"
        assert plain.headers["content-type"] == f"{kind}; charset=utf-8"
        assert "content-encoding" not in plain.headers
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert plain.headers["x-content-type-options"] == "nosniff"
        digest = base64.b64encode(hashlib.sha384(plain.content).digest()).decode()
        assert integrity == f"sha384-{digest}"
        assert url.split("/")[3] == hashlib.sha256(plain.content).hexdigest()[:16]
        # Gzipped when asked (httpx decodes it), and 304 for the copy a browser holds.
        zipped = client.get(url, headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == plain.content
        for refused in ("gzip;q=0", "gzip;q=x", "br, identity"):
            as_is = client.get(url, headers={"accept-encoding": refused})
            assert "content-encoding" not in as_is.headers, refused
        unchanged = client.get(url, headers={"if-none-match": plain.headers["etag"]})
        assert unchanged.status_code == 304 and unchanged.content == b""
        served += 1
    assert served == len(FILES)


def test_only_the_known_files_under_their_digest(app_with: Any, packages: Path) -> None:
    client = app_with(graphiql_assets_dir=packages)
    url = next(u for _, u, _ in references(graphiql_page(client)) if u.endswith("/graphiql.js"))
    digest = url.split("/")[3]
    for path in (
        f"/graphql/ide/{digest}/settings.py",
        f"/graphql/ide/{digest}/..%2Fgraphiql.py",
        f"/graphql/ide/{digest}/..%2F..%2F..%2Fpyproject.toml",
        f"/graphql/ide/{digest}/graphiql.html",
        f"/graphql/ide/{digest}/graphiql.js/x",
        f"/graphql/ide/{'0' * 16}/graphiql.js",  # an earlier version's URL
        "/graphql/ide/graphiql.js",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found", path


def test_without_the_packages_the_page_says_how_to_install_them(
    app_with: Any, tmp_path: Path
) -> None:
    missing = tmp_path / "not-installed"
    client = app_with(graphiql_assets_dir=missing)
    response = client.get("/graphql", headers=HTML)
    assert response.status_code == 503
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "GraphiQL is not installed" in response.text and INSTALL in response.text
    assert OUTSIDE.findall(response.text) == []
    assert str(missing) not in response.text  # the server's folders are its own business
    # The endpoint itself still answers queries.
    assert client.post("/graphql", json={"query": "{ __typename }"}).json() == {
        "data": {"__typename": "Query"}
    }
    assert client.get(f"/graphql/ide/{'0' * 16}/graphiql.js").status_code == 404
    # Installed while the server runs: the next request finds them.
    stand_in_packages(missing)
    assert "/graphql/ide/" in graphiql_page(client)


def test_no_graphiql_without_introspection(app_with: Any, packages: Path) -> None:
    client = app_with(graphiql_assets_dir=packages, graphql_introspection=False)
    response = client.get("/graphql", headers=HTML)
    assert response.status_code == 404
    assert "<html" not in response.text
    name = FILES[0].name
    assert client.get(f"/graphql/ide/{'0' * 16}/{name}").status_code == 404


def test_the_installed_packages_serve_graphiql(app_with: Any) -> None:
    """What `npm ci` installed: the browser builds the page names, with subscriptions."""
    if not (DEFAULT_ASSETS_DIR / "graphiql").is_dir():
        message = f"GraphiQL's packages are not installed: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    client = app_with()
    urls = [u for _, u, _ in references(graphiql_page(client)) if u.startswith("/graphql/ide/")]
    bodies = {url.rsplit("/", 1)[1]: client.get(url).content for url in urls}
    assert len(bodies) == len(FILES)
    assert b"createFetcher" in bodies["graphiql.min.js"]
    # graphql-ws is bundled: GraphiQL subscribes over graphql-transport-ws.
    assert b"graphql-transport-ws" in bodies["graphiql.min.js"]
    assert b"explorerPlugin" in bodies["plugin-explorer.umd.js"]
    assert b"createRoot" in bodies["react-dom.production.min.js"]
