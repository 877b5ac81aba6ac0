"""JSON responses: orjson-encoded JSON, GeoJSON with its own media type, and a cached answer's
bytes spliced into the REST envelope."""

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


def spliced(name: str, payload: bytes, metadata: dict[str, Any], warnings: list[str]) -> Response:
    """``{name: <payload>, "metadata": ..., "warnings": ...}`` with the cached payload bytes
    spliced in: only the small metadata object is serialised per request."""
    body = b"".join(
        [
            b'{"',
            name.encode(),
            b'":',
            payload,
            b',"metadata":',
            orjson.dumps(metadata),
            b',"warnings":',
            orjson.dumps(warnings),
            b"}",
        ]
    )
    return Response(body, media_type="application/json")
