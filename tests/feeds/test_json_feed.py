"""The JSON feed: our own record shape, bare or wrapped as GET /v1/trends answers."""

from __future__ import annotations

import orjson
import pytest

from graph.feeds.json_feed import JSONFeed
from graph.feeds.sources import FeedMalformed
from tests.support.factories import record

SOURCE = JSONFeed("https://feeds.example/{country}/trends.json")


def test_the_url_template_takes_the_country() -> None:
    assert SOURCE.url("CO") == "https://feeds.example/CO/trends.json"


def test_an_array_of_records_is_read_as_is() -> None:
    records = [record("CO", "Copa"), record("co", "Festival", hours_ago=2)]
    found = SOURCE.parse(orjson.dumps(records), "CO")
    assert found.records == records and found.skipped == []


def test_a_trends_listing_is_read_too() -> None:
    listing = {"trends": [record("BR", "Carnaval") | {"id": 7, "cursor": "x"}], "total_count": 1}
    found = SOURCE.parse(orjson.dumps(listing), "BR")
    assert [r["topic_label"] for r in found.records] == ["Carnaval"]


def test_foreign_and_non_object_items_are_skipped_and_counted() -> None:
    body = orjson.dumps([record("US", "Here"), record("MX", "There"), 42, ["a"], record("US")])
    found = SOURCE.parse(body, "US")
    assert [r["topic_label"] for r in found.records] == ["Here", "World Cup"]
    assert found.skipped == [
        "item 2: country 'MX' in the feed for US",
        "item 3: not a JSON object",
        "item 4: not a JSON object",
    ]


@pytest.mark.parametrize(
    "body", [b"", b"[{", b"<rss/>", b'{"flows": []}', b'"text"', b"12"], ids=repr
)
def test_a_document_of_another_shape_is_refused_whole(body: bytes) -> None:
    with pytest.raises(FeedMalformed):
        SOURCE.parse(body, "US")


def test_render_writes_what_parse_reads() -> None:
    records = [record("DE", f"Thema {i}", hours_ago=i) for i in range(3)]
    found = SOURCE.parse(SOURCE.render(records, now=None), "DE")  # type: ignore[arg-type]
    assert found.records == records
