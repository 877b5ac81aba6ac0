"""Country positions and land outlines for the map and the GeoJSON exports."""

from __future__ import annotations

import re

import pytest

from graph.core.records import assigned_country_codes
from graph.http import geo


def test_every_assigned_code_has_a_position_in_range() -> None:
    positions = geo.positions()
    assert set(positions) == assigned_country_codes()
    for code, (lon, lat) in positions.items():
        assert -180 <= lon <= 180, code
        assert -90 <= lat <= 90, code


@pytest.mark.parametrize(
    ("code", "west", "east", "south", "north"),
    [
        ("US", -125, -66, 24, 50),
        ("BR", -74, -34, -34, 6),
        ("FR", -5, 9, 41, 52),
        ("JP", 128, 146, 30, 46),
        ("AU", 113, 154, -44, -10),
        ("NZ", 166, 179, -47, -34),
        ("ZA", 16, 33, -35, -22),
    ],
)
def test_positions_are_longitude_then_latitude(
    code: str, west: float, east: float, south: float, north: float
) -> None:
    """Each country lands inside its own rough bounding box: the order is (lon, lat)."""
    position = geo.country_position(code)
    assert position is not None
    lon, lat = position
    assert west <= lon <= east and south <= lat <= north


def test_fallbacks_for_codes_without_a_centre() -> None:
    # countryinfo has neither a centre nor a capital for these: the written table answers.
    assert geo.country_position("AQ") == (0.0, -75.0)
    assert geo.country_position("BV") == (3.36, -54.42)
    assert geo.country_position("UM") == (166.65, 19.28)
    # Several capitals listed (Bonaire, Sint Eustatius, Saba): the first, Kralendijk.
    assert geo.country_position("BQ") == pytest.approx((-68.27, 12.14), abs=0.01)
    # No centre but a capital: the capital.
    assert geo.country_position("AX") == pytest.approx((19.9, 60.12), abs=0.01)


def test_lookup_ignores_case_and_refuses_unknown_codes() -> None:
    assert geo.country_position(" es ") == geo.country_position("ES")
    assert geo.country_position("XX") is None
    assert geo.country_position("") is None


@pytest.mark.parametrize(
    "value",
    [None, [], [1.0], [91.0, 0.0], [0.0, 181.0], ["1", "2"], [[]], {"lat": 1, "lng": 2}],
)
def test_unusable_source_values_are_not_positions(value: object) -> None:
    assert geo._pair(value) is None


def test_source_pairs_are_swapped_into_longitude_latitude() -> None:
    assert geo._pair([10, 20]) == (20.0, 10.0)
    assert geo._pair([[10.5, -20.5], [1, 2]]) == (-20.5, 10.5)


def test_names_for_display() -> None:
    names = geo.country_names()
    assert set(names) == assigned_country_codes()
    assert names["KR"] == "South Korea"
    assert names["FR"] == "France"


def test_land_path_is_one_svg_path_in_the_map_plane() -> None:
    path = geo.land_path()
    assert path.startswith("M") and path.endswith("Z")
    assert re.fullmatch(r"[MLZ0-9. -]+", path)
    numbers = [float(n) for n in re.findall(r"-?[0-9.]+", path)]
    xs, ys = numbers[0::2], numbers[1::2]
    assert min(xs) >= 0 and max(xs) <= 360
    assert min(ys) >= 0 and max(ys) <= 180
    # Antarctica (below latitude -60, y > 150) is left out; the other continents are there.
    assert max(ys) < 150
    assert path.count("M") > 150


def test_rings_shorter_than_a_triangle_draw_nothing() -> None:
    assert geo._ring_path([[0.0, 0.0], [0.01, 0.01], [0.0, 0.0]]) == ""
    assert geo._ring_path([[0, 0], [10, 0], [10, 10], [0, 0]]) == "M180 90L190 90L190 80L180 90Z"
    assert list(geo._rings({"type": "Point", "coordinates": [0, 0]})) == []
