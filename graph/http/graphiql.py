"""GraphiQL at ``GET /graphql`` (a browser asking for HTML), with nothing fetched from elsewhere.

The page (web/graphiql.html), its style and its start-up script (web/graphiql.css,
web/graphiql.js) are ours. GraphiQL, React and GraphiQL's explorer plugin are npm packages,
pinned by web/graphiql/package-lock.json and installed beside it by
``npm ci --prefix graph/http/web/graphiql`` (or found in ``GRAPHIQL_ASSETS_DIR``). Their
browser builds are served from this origin only:

- at ``/graphql/ide/<digest>/<name>``, for the names in ``FILES`` and nothing else (no path
  is ever built from a request). ``<digest>`` is the start of the file's SHA-256, so a URL
  names one content for good: it is cached for a year (``immutable``), and another digest is
  a 404. The page names each file's full SHA-384 too (``integrity``).
- read once, when GraphiQL is first asked for, and kept gzipped as well.

Without those packages ``/graphql`` answers a page that says how to install them (503),
never a blank page. The page's Content-Security-Policy allows this origin only (and the
``data:`` fonts and images GraphiQL's stylesheet embeds).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from graph.core.errors import NotFound
from graph.observability.log import logger
from graph.settings import Settings
from graph.wiring import app_state

PREFIX = "/graphql/ide"
INSTALL = "npm ci --prefix graph/http/web/graphiql"
_WEB = Path(__file__).parent / "web"
# Where INSTALL puts the packages, unless GRAPHIQL_ASSETS_DIR says otherwise.
DEFAULT_ASSETS_DIR = _WEB / "graphiql" / "node_modules"

_CSS = "text/css; charset=utf-8"
_JS = "text/javascript; charset=utf-8"
_YEAR = 365 * 24 * 3600

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        # GraphiQL's components set inline styles (editor sizes, tooltips).
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        # 'self' covers ws:// and wss:// to this host (CSP Level 3).
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class File:
    """One file the page loads: its name in URLs, where it lies, and its media type."""

    name: str
    path: str  # under the packages' folder, or under web/ when ``ours``
    media_type: str
    ours: bool = False


# In the page's order: styles first, then scripts, each leaning on those before it.
FILES = (
    File("graphiql.min.css", "graphiql/graphiql.min.css", _CSS),
    File("plugin-explorer.css", "@graphiql/plugin-explorer/dist/style.css", _CSS),
    File("graphiql.css", "graphiql.css", _CSS, ours=True),
    File("react.production.min.js", "react/umd/react.production.min.js", _JS),
    File("react-dom.production.min.js", "react-dom/umd/react-dom.production.min.js", _JS),
    File("graphiql.min.js", "graphiql/graphiql.min.js", _JS),
    File("plugin-explorer.umd.js", "@graphiql/plugin-explorer/dist/index.umd.js", _JS),
    File("graphiql.js", "graphiql.js", _JS, ours=True),
)


@dataclass(frozen=True, slots=True)
class Asset:
    """A file's content, served as is or gzipped, under a URL that names its digest."""

    file: File
    body: bytes
    gzipped: bytes
    digest: str  # the first 16 hex digits of its SHA-256
    integrity: str  # for the page's integrity attribute

    @property
    def url(self) -> str:
        return f"{PREFIX}/{self.digest}/{self.file.name}"

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


@dataclass(frozen=True, slots=True)
class Bundle:
    """The GraphiQL page and every file it loads."""

    page: bytes
    assets: dict[str, Asset]


def assets_dir(settings: Settings) -> Path:
    """The folder GraphiQL's npm packages are read from."""
    return settings.graphiql_assets_dir or DEFAULT_ASSETS_DIR


def _read(file: File, packages: Path) -> Asset:
    body = ((_WEB if file.ours else packages) / file.path).read_bytes()
    sha384 = base64.b64encode(hashlib.sha384(body).digest()).decode()
    return Asset(
        file=file,
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        digest=hashlib.sha256(body).hexdigest()[:16],
        integrity=f"sha384-{sha384}",
    )


def _element(asset: Asset) -> str:
    url, integrity = html.escape(asset.url), html.escape(asset.integrity)
    if asset.file.media_type == _CSS:
        return f'<link rel="stylesheet" href="{url}" integrity="{integrity}">'
    return f'<script src="{url}" integrity="{integrity}"></script>'


def load(packages: Path) -> Bundle:
    """Read every file and render the page; OSError (FileNotFoundError) when one is missing."""
    assets = {file.name: _read(file, packages) for file in FILES}
    styles = [_element(a) for a in assets.values() if a.file.media_type == _CSS]
    scripts = [_element(a) for a in assets.values() if a.file.media_type == _JS]
    page = (
        (_WEB / "graphiql.html")
        .read_text(encoding="utf-8")
        .replace("{{styles}}", "\n".join(styles))
        .replace("{{scripts}}", "\n".join(scripts))
    )
    return Bundle(page=page.encode(), assets=assets)


# One bundle per folder, read on first use. A failure is not kept: installing the packages
# while the server runs makes the next request find them.
_bundles: dict[Path, Bundle] = {}


async def bundle_for(packages: Path) -> Bundle:
    bundle = _bundles.get(packages)
    if bundle is None:
        # About 4 MB read and compressed: off the event loop.
        bundle = _bundles[packages] = await run_in_threadpool(load, packages)
    return bundle


_MISSING_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>trendmap · GraphiQL is not installed</title></head>
<body style="font: 16px/1.5 system-ui, sans-serif; margin: 2rem; max-width: 44rem">
<h1>GraphiQL is not installed</h1>
<p>This server serves GraphiQL from its own files, never from another site, and they are not
installed. In trendmap's checkout run</p>
<pre>{install}</pre>
<p>(or set <code>GRAPHIQL_ASSETS_DIR</code> to a <code>node_modules</code> folder holding them),
then reload this page. The GraphQL endpoint itself works: POST queries to
<code>/graphql</code>.</p>
</body>
</html>
"""


async def page(request: Request) -> Response:
    """GraphiQL's page, or (503) how to install its files."""
    packages = assets_dir(app_state(request).settings)
    try:
        bundle = await bundle_for(packages)
    except OSError as exc:
        logger.warning(
            "graphiql files missing", folder=str(packages), missing=exc.filename, fix=INSTALL
        )
        body = _MISSING_PAGE.format(install=html.escape(INSTALL))
        return HTMLResponse(body, status_code=503, headers=_PAGE_HEADERS)
    return Response(bundle.page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether Accept-Encoding names gzip with a non-zero quality."""
    for part in accept_encoding.lower().split(","):
        coding, _, parameter = part.partition(";")
        if coding.strip() == "gzip":
            name, _, value = parameter.partition("=")
            try:
                return name.strip() != "q" or float(value) > 0
            except ValueError:
                return False
    return False


async def asset(request: Request) -> Response:
    """One of ``FILES``, under its current digest."""
    name, digest = request.path_params["name"], request.path_params["digest"]
    packages = assets_dir(app_state(request).settings)
    try:
        found = (await bundle_for(packages)).assets.get(name)
    except OSError:
        found = None
    if found is None or found.digest != digest:
        raise NotFound("No such GraphiQL file: the page names the current ones")
    headers = {
        "cache-control": f"public, max-age={_YEAR}, immutable",
        "etag": found.etag,
        "vary": "Accept-Encoding",
        "x-content-type-options": "nosniff",
    }
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = found.body
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        body, headers["content-encoding"] = found.gzipped, "gzip"
    return Response(body, media_type=found.file.media_type, headers=headers)


routes = [Route(f"{PREFIX}/{{digest}}/{{name}}", asset, methods=["GET"])]
