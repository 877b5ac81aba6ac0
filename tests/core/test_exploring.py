"""Topic summaries and spreads from per (country, topic) cells: order, filters, labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from graph.core.exploring import TopicCell, TopicCountry, summarise_topics, topic_spread

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def cell(country: str, key: str, label: str, count: int, hour: int, last: int | None = None):
    first = T0 + timedelta(hours=hour)
    end = T0 + timedelta(hours=hour if last is None else last)
    return TopicCell(country, key, label, count, count * 0.5, first, end)


def test_topics_order_by_countries_then_count_then_label() -> None:
    cells = [
        cell("US", "b", "B", 1, 0),
        cell("BR", "b", "b", 1, 1),
        cell("US", "a", "A", 50, 0),
        cell("US", "c", "C", 50, 0),
        cell("US", "d", "D", 60, 0),
    ]
    summaries = summarise_topics(cells, None, 10)
    assert [s.key for s in summaries] == ["b", "d", "a", "c"]
    assert summaries[0].countries == ("BR", "US") and summaries[0].country_count == 2
    assert [s.key for s in summarise_topics(cells, None, 2)] == ["b", "d"]


def test_a_country_filter_covers_count_and_countries_not_the_label() -> None:
    """The label and first sighting stay the topic's; count and countries are the filter's."""
    cells = [
        cell("US", "k", "Early", 5, 0),
        cell("BR", "k", "late", 7, 3),
        cell("US", "x", "X", 9, 1),
    ]
    [only] = summarise_topics(cells, ("BR", "JP"), 10)
    assert (only.label, only.first_seen) == ("Early", T0)
    assert (only.count, only.country_count, only.countries) == (7, 1, ("BR",))
    assert summarise_topics(cells, ("JP",), 10) == []


def test_label_ties_between_countries_go_to_the_smallest_label() -> None:
    cells = [cell("US", "k", "b label", 1, 2), cell("BR", "k", "B label", 1, 2)]
    assert summarise_topics(cells, None, 1)[0].label == "B label"
    spread = topic_spread("k", cells)
    assert spread is not None and spread.label == "B label"


def test_spread_orders_countries_by_first_sighting_then_code() -> None:
    cells = [
        cell("US", "k", "K", 4, 2, last=5),
        cell("CO", "k", "K", 2, 1),
        cell("BR", "k", "k", 2, 2),
        cell("US", "other", "O", 1, 0),
    ]
    spread = topic_spread("k", cells)
    assert spread is not None
    assert (spread.key, spread.label) == ("k", "K")
    assert [c.country for c in spread.countries] == ["CO", "BR", "US"]
    assert spread.countries[2] == TopicCountry(
        "US", T0 + timedelta(hours=2), T0 + timedelta(hours=5), 4, 0.5
    )
    assert topic_spread("missing", cells) is None
