"""Every record rule of DESIGN.md, checked at the boundary."""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from graph.core.errors import InvalidRecords, MalformedBody
from graph.core.records import (
    _BATCH,
    DEFAULT_TIMESTAMP_BOUNDS,
    Record,
    TimestampBounds,
    _plain_rows,
    assigned_country_codes,
    parse_timestamp,
    topic_key,
    validate_batch,
    validate_each,
    validate_json_batch,
)
from tests.support.factories import record

GOOD: dict[str, Any] = {
    "timestamp": "2026-11-20T10:00:00+02:00",
    "country": "co",
    "topic_label": "  Copa   América ",
    "count": 3,
    "confidence": 0.75,
    "sources": ["https://news.test/1", "El Tiempo"],
}


def test_a_good_record_is_normalised() -> None:
    [row] = validate_batch([GOOD])
    assert row.timestamp == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert row.country == "CO"
    assert row.topic_label == "Copa   América"
    assert row.topic_key == "copa américa"
    assert row.count == 3 and row.confidence == 0.75
    assert row.sources == ["https://news.test/1", "El Tiempo"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "2026-11-20T10:00:00"),  # naive
        ("timestamp", "2026-11-20"),  # a date is naive midnight
        ("timestamp", "20/11/2026 10:00"),
        ("timestamp", 1_763_632_800),  # epoch seconds are not ISO 8601
        ("timestamp", None),
        ("timestamp", "2026-11-20T10:00:00Z\x00"),  # fromisoformat stops reading at NUL
        ("timestamp", "0001-01-01T00:00:00+14:00"),  # year 0 in UTC
        ("timestamp", "9999-12-31T23:59:59-12:00"),  # year 10000 in UTC
        ("timestamp", "9999-12-31T23:59:59Z"),  # past the default bounds
        ("timestamp", "1969-12-31T23:59:59Z"),
        ("country", "XX"),  # not assigned
        ("country", "USA"),  # alpha-3
        ("country", "U"),
        ("country", 12),
        ("topic_label", "   "),
        ("topic_label", ""),
        ("topic_label", "x" * 201),
        ("topic_label", 42),
        ("topic_label", "Copa\x00América"),  # PostgreSQL refuses NUL in text
        ("topic_label", "\x1b[31mred"),
        ("topic_label", "del\x7f"),
        ("topic_label", "lone \ud800 surrogate"),
        ("count", 0),
        ("count", -1),
        ("count", 1.5),
        ("count", "3"),
        ("count", True),
        ("count", 2**31),
        ("confidence", -0.01),
        ("confidence", 1.01),
        ("confidence", math.nan),
        ("confidence", math.inf),
        ("confidence", "0.5"),
        ("confidence", True),
        ("sources", ["s"] * 21),
        ("sources", ["x" * 2049]),
        ("sources", "https://one.test"),
        ("sources", [1]),
        ("sources", ["https://a.test/\x00"]),
        ("sources", ["ok", "tab\tinside"]),
        ("sources", ["\ud800"]),
    ],
)
def test_every_rule_refuses_the_whole_batch(field: str, value: Any) -> None:
    batch = [GOOD, {**GOOD, field: value}]
    with pytest.raises(InvalidRecords) as caught:
        validate_batch(batch)
    [problem] = caught.value.problems
    assert (problem.index, problem.field.split(".")[0]) == (1, field)
    assert caught.value.status == 400
    assert f"record 1: {field}" in caught.value.detail


def test_control_characters_are_named_with_their_position() -> None:
    with pytest.raises(InvalidRecords) as caught:
        validate_batch([{**GOOD, "topic_label": "Copa\x00América"}])
    assert "U+0000 at position 4" in caught.value.problems[0].message
    # Tabs and line breaks inside a label are whitespace its topic key collapses.
    [row] = validate_batch([{**GOOD, "topic_label": "Copa\tAmérica\r\nfinal"}])
    assert row.topic_key == "copa américa final"


def test_timestamps_overflowing_utc_are_refused_not_raised() -> None:
    for text in ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"]:
        with pytest.raises(ValueError, match="outside years 1 to 9999"):
            parse_timestamp(text)
    with pytest.raises(ValueError, match="outside years"):
        parse_timestamp(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))


def test_bounds_are_inclusive_and_named_in_the_refusal() -> None:
    now = datetime.now(UTC)
    bounds = TimestampBounds(datetime(2020, 1, 1, tzinfo=UTC), timedelta(hours=1))
    edge = {**GOOD, "timestamp": "2020-01-01T00:00:00Z"}
    soon = {**GOOD, "timestamp": (now + timedelta(minutes=59)).isoformat()}
    assert len(validate_batch([edge, soon], bounds=bounds)) == 2
    for moment in [
        datetime(2019, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        now + timedelta(hours=2),
    ]:
        with pytest.raises(InvalidRecords) as caught:
            validate_batch([{**GOOD, "timestamp": moment.isoformat()}], bounds=bounds)
        [problem] = caught.value.problems
        assert problem.field == "timestamp"
        assert "records must be dated from 2020-01-01T00:00:00+00:00 to" in problem.message
        assert "(3600 s ahead of the server's clock)" in problem.message
    old = [{**GOOD, "timestamp": "2010-01-01T00:00:00Z"}]
    with pytest.raises(InvalidRecords):
        validate_json_batch(json.dumps(old).encode(), bounds=bounds)
    assert validate_each(old, bounds=bounds)[0] == []
    assert len(validate_batch(old)) == 1  # the default bounds reach back to 1970


def test_the_default_bounds() -> None:
    assert DEFAULT_TIMESTAMP_BOUNDS.earliest == datetime(1970, 1, 1, tzinfo=UTC)
    assert DEFAULT_TIMESTAMP_BOUNDS.max_future == timedelta(days=1)
    assert validate_batch([{**GOOD, "timestamp": "1970-01-01T00:00:00Z"}])
    assert validate_batch(
        [{**GOOD, "timestamp": (datetime.now(UTC) + timedelta(hours=23)).isoformat()}]
    )


@pytest.mark.parametrize("field", ["timestamp", "country", "topic_label", "count", "confidence"])
def test_required_fields(field: str) -> None:
    with pytest.raises(InvalidRecords) as caught:
        validate_batch([{k: v for k, v in GOOD.items() if k != field}])
    assert caught.value.problems[0].field == field


def test_edges_that_are_allowed() -> None:
    edge = {
        **GOOD,
        "topic_label": "x" * 200,
        "count": 1,
        "confidence": 0,
        "sources": ["y" * 2048] * 20,
    }
    assert validate_batch([edge, {**GOOD, "confidence": 1, "sources": None}])
    assert validate_batch([{k: v for k, v in GOOD.items() if k != "sources"}])[0].sources is None


def test_every_problem_is_reported_with_its_index() -> None:
    batch = [{**GOOD, "count": 0}, GOOD, {**GOOD, "country": "ZZ", "confidence": 2}]
    with pytest.raises(InvalidRecords) as caught:
        validate_batch(batch)
    found = {(p.index, p.field) for p in caught.value.problems}
    assert found == {(0, "count"), (2, "country"), (2, "confidence")}
    assert "and 2 more problems" in caught.value.detail


def test_positions_name_lines_instead_of_indexes() -> None:
    with pytest.raises(InvalidRecords) as caught:
        validate_batch([GOOD, {**GOOD, "count": 0}], positions=[10, 12], where="line")
    assert caught.value.problems[0].index == 12
    assert caught.value.detail.startswith("line 12: count")


@pytest.mark.parametrize("body", [b"", b"[", b"{", b"nul"])
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        validate_json_batch(body)


@pytest.mark.parametrize("body", [b"{}", b'"x"', b"3", b"null"])
def test_json_that_is_not_an_array(body: bytes) -> None:
    with pytest.raises(MalformedBody, match="array"):
        validate_json_batch(body)


def test_json_nan_is_refused() -> None:
    body = (
        b'[{"timestamp": "2026-11-20T00:00:00Z", "country": "US", "topic_label": "a",'
        b' "count": 1, "confidence": NaN}]'
    )
    with pytest.raises(InvalidRecords) as caught:
        validate_json_batch(body)
    assert caught.value.problems[0].field == "confidence"


def test_topic_key_collapses_and_casefolds() -> None:
    assert topic_key("  Straße\t  NEWS\n") == "strasse news"
    assert topic_key("World Cup") == topic_key("world   cup") == topic_key("WORLD CUP ")


def test_timestamps_keep_their_instant() -> None:
    plus_five = datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))
    assert parse_timestamp(plus_five) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp(datetime(2026, 1, 1))


def test_assigned_codes_are_iso_3166() -> None:
    codes = assigned_country_codes()
    assert {"US", "BR", "CO", "JP", "ZA"} <= codes
    assert not {"XX", "UK", "EU"} & codes
    assert len(codes) == 249


labels = st.text(alphabet=string.ascii_letters + " \t", min_size=1, max_size=60).filter(
    lambda s: 1 <= len(s.strip()) <= 200
)
records = st.fixed_dictionaries(
    {
        "timestamp": st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2026, 11, 1),  # within the default bounds
            timezones=st.just(UTC)
            | st.builds(lambda h: timezone(timedelta(hours=h)), st.integers(-12, 14)),
        ).map(lambda d: d.isoformat()),
        "country": st.sampled_from(sorted(assigned_country_codes())).map(str.lower),
        "topic_label": labels,
        "count": st.integers(1, 2**31 - 1),
        "confidence": st.floats(0, 1),
        "sources": st.none()
        | st.lists(
            st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10), max_size=4
        ),
    }
)


@given(st.lists(records, max_size=8))
@settings(max_examples=150)
def test_valid_records_are_accepted_as_they_are(batch: list[dict[str, Any]]) -> None:
    rows = validate_batch(batch)
    for raw, row in zip(batch, rows, strict=True):
        assert row.timestamp == datetime.fromisoformat(raw["timestamp"])
        assert row.timestamp.tzinfo is UTC
        assert row.country == raw["country"].upper()
        assert row.topic_label == raw["topic_label"].strip()
        assert row.topic_key == topic_key(row.topic_key)
        assert row.count == raw["count"]


@given(
    st.lists(records, min_size=1, max_size=10),
    st.sampled_from(
        [
            ("count", 0),
            ("confidence", 1.5),
            ("country", "XX"),
            ("topic_label", " "),
            ("timestamp", "2026-01-01T00:00:00"),
        ]
    ),
    st.data(),
)
@settings(max_examples=100)
def test_one_bad_record_refuses_any_batch(
    batch: list[dict[str, Any]], breakage: tuple[str, Any], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(batch) - 1))
    field, value = breakage
    batch[index] = {**batch[index], field: value}
    with pytest.raises(InvalidRecords) as caught:
        validate_batch(batch)
    assert (index, field) in {(p.index, p.field) for p in caught.value.problems}


def test_validate_each_keeps_the_good_records_and_names_the_bad() -> None:
    records = [record("US", "One"), dict(record("US", "Two"), count=0), record("GB", "Three"), 7]
    rows, problems = validate_each(records, positions=[10, 11, 12, 13], where="line")
    assert [r.topic_label for r in rows] == ["One", "Three"]
    assert [(p.index, p.field) for p in problems] == [(11, "count"), (13, "record")]
    assert validate_each([record()]) == (validate_batch([record()]), [])


# For each field: values that pass, then values refused, of the wrong type, or none at all.
MISSING = object()
FIELD_VALUES: dict[str, tuple[list[Any], list[Any]]] = {
    "timestamp": (
        [
            "2026-11-20T10:00:00+02:00",
            "2026-11-20T10:00:00Z",
            " 2026-11-20T10:00:00.123456+00:00 ",
            datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),
            datetime(2026, 1, 1, tzinfo=UTC),
        ],
        [
            "2026-11-20T10:00:00",
            "2026-11-20",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00+14:00",
            "2026-11-20T10:00:00Z\x00",
            (datetime.now(UTC) + timedelta(hours=25)).isoformat(),
            datetime(2026, 1, 1),
            1_763_632_800,
            None,
            MISSING,
        ],
    ),
    "country": (
        ["co", "CO", "Co", "cO", " us\t", "\u00df"],
        ["XX", "USA", "", 12, None, MISSING],
    ),
    "topic_label": (
        ["World Cup", "  Copa \t América ", "\x1ctrimmed\x1f", "x" * 200, "Stra\u00dfe"],
        ["x" * 201, " ", "", "a\x00b", "del\x7f", "lone \ud800", 42, None, MISSING],
    ),
    "count": ([1, 3, 2**31 - 1], [2**31, 0, -1, 1.0, 1.5, "3", True, None, MISSING]),
    "confidence": (
        [0, 1, 0.0, -0.0, 0.5, 1.0],
        [2, -0.01, 1.01, math.nan, math.inf, "0.5", True, None, MISSING],
    ),
    "sources": (
        [MISSING, None, [], ["https://a.test", "El Tiempo"], ["y" * 2048] * 20],
        [["s"] * 21, ["x" * 2049], "https://one.test", [1], ["tab\tinside"], ["\ud800"], ("a",)],
    ),
    "extra": ([MISSING, "ignored", None], []),
}


def _field(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value that passes, so that whole batches often do."""
    return st.integers(0, 9).flatmap(lambda n: st.sampled_from(bad if bad and n == 0 else good))


any_record = st.fixed_dictionaries(
    {name: _field(*values) for name, values in FIELD_VALUES.items()}
).map(lambda r: {k: v for k, v in r.items() if v is not MISSING}) | st.sampled_from(
    [None, 7, [], "record"]
)
Rows = list[tuple[Any, ...]] | None


def _rows(validate: Callable[[], list[Record]]) -> Rows:
    """The rows field by field (the timestamp's tzinfo too), or None when refused."""
    try:
        return [(*row, row.timestamp.tzinfo) for row in validate()]
    except (InvalidRecords, MalformedBody, ValidationError):
        return None


@given(st.lists(any_record, max_size=4))
@settings(max_examples=400)
def test_the_quick_path_answers_as_the_model_does(batch: list[Any]) -> None:
    """A batch every record of which plainly passes skips the pydantic model; whatever it
    accepts, the model accepts with the very same rows, and whatever the model refuses is
    left to the model (which words the refusal)."""
    context = (DEFAULT_TIMESTAMP_BOUNDS, datetime.now(UTC))
    model = _rows(lambda: [item.row() for item in _BATCH.validate_python(batch, context=context)])
    quick = _plain_rows(batch, *context)
    if quick is not None:
        assert _rows(lambda: quick) == model
    assert _rows(lambda: validate_batch(batch)) == model
    body = json.dumps(batch, default=str).encode("utf-8", "surrogatepass")
    model = _rows(lambda: [item.row() for item in _BATCH.validate_json(body, context=context)])
    assert _rows(lambda: validate_json_batch(body)) == model


def test_a_good_batch_builds_no_model() -> None:
    batch = [GOOD, {**GOOD, "confidence": 1, "sources": None}, record(), record("BR", "Copa")]
    context = (DEFAULT_TIMESTAMP_BOUNDS, datetime.now(UTC))
    quick = _plain_rows(batch, *context)
    assert quick is not None
    assert quick == [item.row() for item in _BATCH.validate_python(batch, context=context)]
    assert _plain_rows([*batch, {**GOOD, "count": 0}], *context) is None


def test_a_row_is_a_tuple_in_the_archive_column_order() -> None:
    """What the repository's COPY takes, with no conversion: the archive's columns in order."""
    [row] = validate_batch([GOOD])
    assert Record._fields == (
        "timestamp",
        "country",
        "topic_label",
        "topic_key",
        "count",
        "confidence",
        "sources",
    )
    assert tuple(row) == (
        datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        "CO",
        "Copa   América",
        "copa américa",
        3,
        0.75,
        ["https://news.test/1", "El Tiempo"],
    )


def test_labels_repeated_in_a_batch_are_each_checked_and_keyed() -> None:
    """The quick path checks each distinct label once: every row still gets its own."""
    labels = ["  Copa   América ", "World Cup", "  Copa   América ", "Copa América", "World Cup"]
    rows = validate_batch([{**GOOD, "topic_label": label} for label in labels])
    assert [r.topic_label for r in rows] == [label.strip() for label in labels]
    assert [r.topic_key for r in rows] == [topic_key(label) for label in labels]
    with pytest.raises(InvalidRecords) as caught:
        validate_batch([{**GOOD, "topic_label": label} for label in ["ok", "a\x00b", "a\x00b"]])
    assert [(p.index, p.field) for p in caught.value.problems] == [
        (1, "topic_label"),
        (2, "topic_label"),
    ]
