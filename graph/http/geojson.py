"""Hotspots and flows as GeoJSON (RFC 7946) FeatureCollections, for GIS tools and web maps.

- A hotspot is a Point at its country's position (graph.http.geo), with the hotspot's fields as
  properties.
- A flow is a LineString from the source country's position to the target's, with the flow's
  fields as properties. It is the straight segment in longitude and latitude, so a flow between
  countries on either side of the antimeridian (say Japan and the United States) runs the long
  way round the map rather than across the date line.
- A simultaneous flow (its median lag under ``FLOW_MIN_LAG_MINUTES``: no direction can be told)
  keeps its line from ``from_country`` (the alphabetically smaller) to ``to_country``, and says
  so in its ``simultaneous`` property, always present, so a style can draw it without an
  arrowhead.
- Positions are ``[longitude, latitude]``, as RFC 7946 requires.
- A country without a known position cannot be placed: its features are left out, and the
  collection's ``warnings`` foreign member says which countries were left out.
- ``metadata`` and ``warnings`` are foreign members, as in the JSON forms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graph.http.geo import country_position

MEDIA_TYPE = "application/geo+json"


def _point(code: str) -> list[float] | None:
    place = country_position(code)
    return [place[0], place[1]] if place is not None else None


def _unplaced(codes: Iterable[str]) -> list[str]:
    missing = sorted(set(codes))
    if not missing:
        return []
    return ["no known position for " + ", ".join(missing) + ": their features are left out"]


def hotspot_features(items: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Point features for hotspots (REST-shaped items), and warnings for those left out."""
    features: list[dict[str, Any]] = []
    missing: list[str] = []
    for item in items:
        point = _point(item["country"])
        if point is None:
            missing.append(item["country"])
            continue
        features.append(
            {
                "type": "Feature",
                "id": item["country"],
                "geometry": {"type": "Point", "coordinates": point},
                "properties": dict(item),
            }
        )
    return features, _unplaced(missing)


def flow_features(items: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """LineString features for flows (REST-shaped items), and warnings for those left out."""
    features: list[dict[str, Any]] = []
    missing: list[str] = []
    for item in items:
        source, target = _point(item["from_country"]), _point(item["to_country"])
        if source is None or target is None:
            missing.extend(
                code
                for code, point in ((item["from_country"], source), (item["to_country"], target))
                if point is None
            )
            continue
        properties = dict(item)
        properties["simultaneous"] = bool(item.get("simultaneous", False))
        features.append(
            {
                "type": "Feature",
                "id": f"{item['from_country']}-{item['to_country']}",
                "geometry": {"type": "LineString", "coordinates": [source, target]},
                "properties": properties,
            }
        )
    return features, _unplaced(missing)


def feature_collection(
    features: list[dict[str, Any]], metadata: dict[str, Any], warnings: Iterable[str]
) -> dict[str, Any]:
    """The collection, with ``metadata`` and ``warnings`` as foreign members."""
    return {
        "type": "FeatureCollection",
        "features": features,
        "metadata": metadata,
        "warnings": list(warnings),
    }
