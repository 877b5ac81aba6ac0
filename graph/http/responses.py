"""JSON response classes: orjson-encoded JSON, and GeoJSON with its own media type."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from graph.http import geojson


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class GeoJSONBody(JSONBody):
    media_type = geojson.MEDIA_TYPE
