"""Synthetic trend records for demos and dry runs: :func:`generate_demo_records`.

Lays topic series over the world of :mod:`graph.feeds.demo_world` for two days, so the 24 h
window shows hot flows along its corridors. Every series lies on a per-country hourly crawl
schedule anchored at `now` floored to five minutes: calls within the same five minutes return
the same records, so re-ingesting them after a restart changes nothing (the upsert is by natural
key: country, topic key, timestamp).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

from graph.core.records import topic_key
from graph.feeds.demo_world import Country, World, demo_world

__all__ = ["ANCHOR_MINUTES", "HISTORY_HOURS", "generate_demo_records"]

HISTORY_HOURS = 48
ANCHOR_MINUTES = 5
# Topics may have started before the history begins; only their later records are kept.
_EARLIEST_START_HOURS = 58.0
# A topic leaves a country's trending list once it falls below this share of its peak.
_DROP_OUT = 0.12

_SEARCH_PAGES = (
    "https://twitter.com/search?q={q}",
    "https://news.google.com/search?q={q}&gl={cc}",
    "https://trends.google.com/trends/explore?geo={cc}&q={q}",
)


@dataclass(slots=True)
class _Builder:
    """Lays topic series on the crawl schedule; one series per (country, topic key)."""

    anchor: datetime
    rng: random.Random
    crawl_offset: dict[str, int]  # seconds before each hour mark at which a country is crawled
    records: list[dict[str, object]] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def series(
        self,
        country: Country,
        label: str,
        start_ago: float,
        peak: float,
        confidence: float,
        *,
        rise: float,
        halflife: float,
    ) -> None:
        """Hourly records of one topic in one country, from `start_ago` hours before the anchor.

        Counts rise linearly for `rise` hours, then halve every `halflife` hours until the topic
        drops out of the trending list.
        """
        key = (country.code, topic_key(label))
        if key in self.seen or start_ago <= 0:
            return
        self.seen.add(key)
        rng, offset = self.rng, self.crawl_offset[country.code]
        for hour in range(HISTORY_HOURS - 1, -1, -1):
            age = start_ago - hour - offset / 3600
            if age < 0:
                continue
            shape = min(1.0, (age + 0.5) / rise) * 0.5 ** (max(0.0, age - rise) / halflife)
            if age > rise and shape < _DROP_OUT:
                break
            at = self.anchor - timedelta(hours=hour, seconds=offset)
            expected = peak * shape * _diurnal(at, country.utc_offset)
            at -= timedelta(seconds=rng.randrange(40))
            self.records.append(
                {
                    "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "country": country.code,
                    "topic_label": label,
                    "count": max(1, round(expected * rng.lognormvariate(0.0, 0.15))),
                    "confidence": round(min(1.0, max(0.0, rng.gauss(confidence, 0.03))), 3),
                    "sources": _sources(rng, country, label, at),
                }
            )


def generate_demo_records(now: datetime, *, seed: int = 7) -> list[dict[str, object]]:
    """A realistic synthetic dataset ending at `now` (aware UTC), deterministic for (now, seed)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    anchor = now.replace(minute=now.minute - now.minute % ANCHOR_MINUTES, second=0, microsecond=0)
    world = demo_world()
    rng = random.Random(seed)
    builder = _Builder(anchor, rng, {c.code: rng.randrange(120, 1200) for c in world.countries})
    _corridor_topics(builder, world)
    _regional_topics(builder, world)
    _global_topics(builder, world)
    _local_topics(builder, world)
    builder.records.sort(
        key=lambda r: (str(r["timestamp"]), str(r["country"]), str(r["topic_label"]))
    )
    return builder.records


def _corridor_topics(builder: _Builder, world: World) -> None:
    rng = builder.rng
    by_code = {c.code: c for c in world.countries}
    for (leader, follower), names in world.corridors.items():
        step = _EARLIEST_START_HOURS / len(names)
        for i, label in enumerate(names):
            start = _EARLIEST_START_HOURS - i * step - rng.uniform(0.0, step * 0.6)
            origin, other = (leader, follower) if rng.random() < 0.9 else (follower, leader)
            peak = rng.lognormvariate(math.log(60.0), 0.35)
            confidence = rng.uniform(0.72, 0.96)
            rise, halflife = rng.uniform(1.0, 3.0), rng.uniform(1.5, 3.0)
            for code, lag in ((origin, 0.0), (other, rng.uniform(1.0, 3.0))):
                country = by_code[code]
                builder.series(
                    country,
                    label,
                    start - lag,
                    peak * country.size,
                    confidence,
                    rise=rise,
                    halflife=halflife,
                )


def _regional_topics(builder: _Builder, world: World) -> None:
    rng = builder.rng
    for region, names in world.regional.items():
        members = [c for c in world.countries if c.region == region]
        step = _EARLIEST_START_HOURS / len(names)
        for i, label in enumerate(names):
            start = _EARLIEST_START_HOURS - i * step - rng.uniform(0.0, step * 0.6)
            origin = rng.choices(members, weights=[c.size for c in members])[0]
            lags = {c.code: rng.uniform(1.0, 6.0) for c in members if rng.random() < 0.7}
            lags[origin.code] = 0.0
            peak = rng.lognormvariate(math.log(40.0), 0.4)
            confidence = rng.uniform(0.65, 0.95)
            rise, halflife = rng.uniform(1.0, 3.0), rng.uniform(2.0, 4.0)
            for country in members:
                lag = _arrival(rng, world, country.code, lags)
                if lag is not None:
                    builder.series(
                        country,
                        label,
                        start - lag,
                        peak * country.size * rng.uniform(0.5, 1.0),
                        confidence,
                        rise=rise,
                        halflife=halflife,
                    )


def _global_topics(builder: _Builder, world: World) -> None:
    rng = builder.rng
    step = _EARLIEST_START_HOURS / len(world.global_topics)
    for i, (origin, variants) in enumerate(world.global_topics):
        start = _EARLIEST_START_HOURS - i * step - rng.uniform(0.0, step * 0.6)
        home = next(c.region for c in world.countries if c.code == origin)
        lags = {
            c.code: rng.uniform(1.0, 4.0) if c.region == home else rng.uniform(3.0, 12.0)
            for c in world.countries
            if rng.random() < 0.75
        }
        lags[origin] = 0.0
        peak = rng.lognormvariate(math.log(30.0), 0.4)
        confidence = rng.uniform(0.8, 0.98)
        rise, halflife = rng.uniform(2.0, 4.0), rng.uniform(2.5, 4.0)
        for country in world.countries:
            lag = _arrival(rng, world, country.code, lags)
            if lag is not None:
                builder.series(
                    country,
                    rng.choice(variants),
                    start - lag,
                    peak * country.size * rng.uniform(0.4, 1.0),
                    confidence,
                    rise=rise,
                    halflife=halflife,
                )


def _arrival(rng: random.Random, world: World, code: str, lags: dict[str, float]) -> float | None:
    """Hours after its origin a shared topic reaches `code`; None when it never does.

    A corridor follower mostly picks a topic up from its leader, a little later.
    """
    leader = world.leader_of.get(code)
    if leader is None or rng.random() < 0.1:
        return lags.get(code)
    if leader not in lags:
        return None
    return lags[leader] + rng.uniform(0.5, 2.5)


def _local_topics(builder: _Builder, world: World) -> None:
    rng = builder.rng
    for country in world.countries:
        clubs = country.clubs
        matches = [f"{a} vs {b}" for i, a in enumerate(clubs) for b in clubs[i + 1 :]]
        pool = [*country.local, *matches]
        rng.shuffle(pool)
        for label in pool[: country.local_series]:
            peak = rng.lognormvariate(math.log(35.0), 0.5) * country.local_scale * country.size
            builder.series(
                country,
                label,
                rng.uniform(0.5, _EARLIEST_START_HOURS),
                peak,
                rng.uniform(0.55, 0.95),
                rise=rng.uniform(0.5, 2.0),
                halflife=rng.uniform(2.0, 6.0),
            )
        # A breaking story in some countries makes their last hours busier (higher velocity).
        if rng.random() < 0.25:
            peak = rng.lognormvariate(math.log(120.0), 0.3) * country.local_scale * country.size
            builder.series(
                country,
                pool[country.local_series],
                rng.uniform(0.5, 3.0),
                peak,
                rng.uniform(0.7, 0.95),
                rise=1.0,
                halflife=4.0,
            )


def _diurnal(at: datetime, utc_offset: float) -> float:
    """Activity by local time of day: busiest mid-afternoon, quietest before dawn."""
    local_hour = (at.hour + at.minute / 60 + utc_offset) % 24
    return 1.0 + 0.4 * math.cos(2 * math.pi * (local_hour - 15.0) / 24)


def _sources(rng: random.Random, country: Country, label: str, at: datetime) -> list[str]:
    """Zero to three URLs where the topic was seen: the country's news sites and search pages."""
    wanted = rng.choices((0, 1, 2, 3), weights=(15, 35, 30, 20))[0]
    slug = quote("-".join(label.casefold().split()))
    candidates = [f"https://www.{site}/{at:%Y/%m/%d}/{slug}" for site in country.news]
    candidates += [page.format(q=quote_plus(label), cc=country.code) for page in _SEARCH_PAGES]
    return rng.sample(candidates, wanted)
