"""Where countries are: one position per assigned ISO 3166-1 alpha-2 code, and land outlines.

The data comes from the ``countryinfo`` package (a dependency), which ships each country's
rough centre (``latlng``), its capital's position and a low-resolution outline. A position is,
in order of preference:

1. the country's centre (``latlng``);
2. its capital (``capital_latlng``; the first one where several are listed, as for Bonaire,
   Sint Eustatius and Saba);
3. one of the few positions written below, for the codes the package has neither for.

Every assigned code (``graph.core.records.assigned_country_codes``) has a position this way; a code
added to ISO 3166-1 later would have none until the package learns it, and the map and the
GeoJSON exports leave such a country out and say so.

Positions are ``(longitude, latitude)``: the order GeoJSON (RFC 7946) uses.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import countryinfo
import pycountry

from graph.core.records import assigned_country_codes

Position = tuple[float, float]

# The codes countryinfo has no centre and no capital for: (longitude, latitude).
_WRITTEN: dict[str, Position] = {
    "AQ": (0.0, -75.0),  # Antarctica: the polar plateau, on the prime meridian
    "BV": (3.36, -54.42),  # Bouvet Island
    "UM": (166.65, 19.28),  # US Minor Outlying Islands: Wake Island, the largest
}


def _pair(value: object) -> Position | None:
    """countryinfo's ``[latitude, longitude]`` as ``(longitude, latitude)``, if it is one."""
    if (
        isinstance(value, list)
        and value
        and isinstance(value[0], list)  # several places: the first
    ):
        value = value[0]
    if not isinstance(value, list) or len(value) != 2:
        return None
    lat, lon = value
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return (float(lon), float(lat))


@functools.cache
def _countries() -> dict[str, dict[str, Any]]:
    """countryinfo's records by alpha-2 code (assigned codes only)."""
    assigned = assigned_country_codes()
    found: dict[str, dict[str, Any]] = {}
    for country in countryinfo.all_countries():
        info: dict[str, Any] = dict(country.info())
        code = str((info.get("ISO") or {}).get("alpha2") or "").upper()
        if code in assigned and code not in found:
            found[code] = info
    return found


@functools.cache
def positions() -> dict[str, Position]:
    """Every country's position that is known, by code."""
    result: dict[str, Position] = {}
    countries = _countries()
    for code in sorted(assigned_country_codes()):
        info = countries.get(code, {})
        place = _pair(info.get("latlng")) or _pair(info.get("capital_latlng"))
        place = place or _WRITTEN.get(code)
        if place is not None:
            result[code] = place
    return result


def country_position(code: str) -> Position | None:
    """The ``(longitude, latitude)`` of an alpha-2 code (any case), or None when unknown."""
    return positions().get(code.strip().upper())


@functools.cache
def country_names() -> dict[str, str]:
    """Display names by code: pycountry's common name where it has one."""
    return {c.alpha_2: str(getattr(c, "common_name", None) or c.name) for c in pycountry.countries}


def _rings(geometry: dict[str, Any]) -> Iterable[Sequence[Sequence[float]]]:
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates") or []
    if kind == "Polygon":
        yield from coordinates
    elif kind == "MultiPolygon":
        for polygon in coordinates:
            yield from polygon


def _ring_path(ring: Sequence[Sequence[float]]) -> str:
    """One closed ring in the map plane (x = longitude + 180, y = 90 - latitude), to 0.1°.

    Points that round to the previous one are dropped: at this scale they draw nothing.
    """
    points: list[tuple[float, float]] = []
    for position in ring:
        x, y = round(position[0] + 180, 1), round(90 - position[1], 1)
        if not points or points[-1] != (x, y):
            points.append((x, y))
    if len(points) < 3:
        return ""
    body = "L".join(f"{x:g} {y:g}" for x, y in points)
    return f"M{body}Z"


@functools.cache
def land_path() -> str:
    """Every country outline countryinfo has, as one SVG path in the map plane.

    The plane is equirectangular in degrees: x = longitude + 180 (0..360), y = 90 - latitude
    (0..180). Antarctica is left out: the map stops well north of it.
    """
    parts: list[str] = []
    for code, info in sorted(_countries().items()):
        if code == "AQ":
            continue
        shapes = info.get("geoJSON") or {}
        for feature in shapes.get("features") or []:
            for ring in _rings(feature.get("geometry") or {}):
                parts.append(_ring_path(ring))
    return "".join(parts)
