"""Cache entries: what they carry, and that an entry of an older layout is never a hit."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from graph.cache.entry import FORMAT, Entry

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_an_entry_round_trips_with_its_metadata() -> None:
    metadata = {"max_heat": {"heat": 0.4, "from_country": "GB", "to_country": "US"}, "pairs": 3}
    entry = Entry("token", T0, T0, b"[]", ("w",), count=0, metadata=metadata)
    assert Entry.decode(entry.encode()) == entry


def test_an_entry_of_another_layout_has_no_generation() -> None:
    """Payloads changed shape (hotspot scores, simultaneous flows): an entry written by an
    older release under the same token must be recomputed, never decoded as a hit."""
    header = {"generation": "token", "as_of": T0.isoformat(), "computed_at": T0.isoformat()}
    old = orjson.dumps({**header, "warnings": [], "count": 1}) + b"\n[]"
    assert Entry.decode(old).generation == ""
    newer = orjson.dumps({**header, "warnings": [], "count": 1, "format": FORMAT + 1})
    assert Entry.decode(newer + b"\n[]").generation == ""
