"""The live map at ``GET /``: one HTML page with its style, script and geography inlined.

Nothing is fetched from elsewhere at run time. The page's HTML, CSS and JavaScript are files
beside this module (package data); the scripts (``SCRIPTS``, in order) share one namespace,
``window.trendmap``, and each is inlined in its own ``<script>`` element. The country
positions and land outlines (graph.http.geo) are embedded as JSON when the page is first
asked for, so the page makes no request but its GraphQL queries and its WebSocket.

The page itself holds no trend data, so it is public. With ``READ_API_KEYS`` set its query
and subscription need a key; the page takes it from the address's fragment
(``/#key=...``), which browsers never send to a server.
"""

from __future__ import annotations

import functools
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graph.http.geo import country_names, land_path, positions
from graph.wiring import app_state

# Each script leans on those before it.
SCRIPTS = (
    "map-core.js",
    "map-draw.js",
    "map-zoom.js",
    "map-timeline.js",
    "map-topics.js",
    "map.js",
)


def _asset(name: str) -> str:
    return resources.files("graph.http.web").joinpath(name).read_text(encoding="utf-8")


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element: no "</" can close it early."""
    return orjson.dumps(value).decode().replace("</", "<\\/")


@functools.cache
def render(threshold: float) -> str:
    """The page, for a server whose default flow threshold is ``threshold``."""
    data = {
        "threshold": threshold,
        "positions": {
            code: [round(lon, 3), round(lat, 3)] for code, (lon, lat) in positions().items()
        },
        "names": country_names(),
        "land": land_path(),
    }
    # Each placeholder is replaced once, in an order where no inserted text holds another.
    return (
        _asset("map.html")
        .replace("{{style}}", _asset("map.css"))
        .replace("{{data}}", _script_json(data))
        .replace("{{scripts}}", "\n".join(f"<script>{_asset(n)}</script>" for n in SCRIPTS))
    )


async def map_page(request: Request) -> Response:
    """The live map."""
    threshold = app_state(request).settings.flow_threshold
    return HTMLResponse(render(threshold), headers={"Cache-Control": "no-cache"})
