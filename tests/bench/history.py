"""Benchmark g: a 500-point hotspotHistory against 500 single hotspot computations.

The history of one country (``Explorer.hotspot_history``, cache off) is one SQL query for the
country's records over ``since - 2W .. until`` and one vectorised pass (graph.core.history).
Without it, a client would ask ``hotspots`` at each of the 500 instants: each a window
aggregate over every country (``TrendRepository.aggregate_window``) and ``compute_hotspots``.
Both are timed cold on the same synthetic archive (compute.py's generator, one 24 h dataset
per day, back to back), and the last point is checked against the single answer. A
measurement, not a test: it prints both figures and their ratio.

    python tests/bench/history.py                 # 21 days x 50,000 records x 50 countries
    python tests/bench/history.py --quick         # 22 days x 5,000 records x 20 countries
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from db.engine import make_engine  # noqa: E402
from db.exploring import ExploringRepository  # noqa: E402
from db.repository import TrendRepository  # noqa: E402
from graph.cache.response_cache import ResponseCache  # noqa: E402
from graph.core.aggregates import AggregateTable  # noqa: E402
from graph.core.hotspots import compute_hotspots  # noqa: E402
from graph.core.windows import Span, TimeWindow  # noqa: E402
from graph.service.explorer import MAX_HISTORY_POINTS, Explorer, HistoryQuery  # noqa: E402
from tests.bench.common import (  # noqa: E402
    ADMIN_URL,
    BenchError,
    Row,
    print_table,
    throwaway_database,
)
from tests.bench.compute import EPOCH, Dataset, country_codes, load  # noqa: E402

WINDOW = TimeWindow.H1
POINTS = MAX_HISTORY_POINTS
FULL = Dataset(50_000, 50, 2_000)
QUICK = Dataset(5_000, 20, 500)


async def measure(url: str, data: Dataset, repeat: int) -> tuple[float, float, int]:
    """Median seconds of the history and of the 500 single computations; the records read."""
    country = country_codes(data.countries)[0]  # the busiest country of the generator
    since = EPOCH + 2 * WINDOW.length
    until = since + (POINTS - 1) * WINDOW.length
    query = HistoryQuery(country, WINDOW, since, until, None)
    engine = make_engine(url)
    try:
        explorer = Explorer(
            ExploringRepository(engine),
            cache=ResponseCache(None, refresh_seconds=30),  # no store: every answer computed
            clock=lambda: until,
        )
        repository = TrendRepository(engine)
        await repository.ping()
        history, singles = [], []
        for _ in range(repeat + 1):  # the first run warms the buffers and code paths
            started = time.perf_counter()
            answer = await explorer.hotspot_history(query)
            history.append(time.perf_counter() - started)
            started = time.perf_counter()
            for k in range(POINTS):
                span = Span(WINDOW, since + k * WINDOW.length)
                rows = AggregateTable(
                    *await repository.aggregate_window(span.previous_start, span.start, span.as_of)
                )
                last = [h for h in compute_hotspots(rows) if h.country == country]
            singles.append(time.perf_counter() - started)
        points = answer.item()
        if len(points) != POINTS or not last:
            raise BenchError(f"{len(points)} points, or {country} has no data at the end")
        if not math.isclose(points[-1]["score"], last[0].score, rel_tol=1e-9):
            raise BenchError(f"last point {points[-1]} != single answer {last[0]}")
        records = len(
            await ExploringRepository(engine).country_records(
                country, since - 2 * WINDOW.length, until
            )
        )
    finally:
        await engine.dispose()
    return statistics.median(history[1:]), statistics.median(singles[1:]), records


async def run(admin_url: str, data: Dataset, repeat: int) -> list[Row]:
    days = math.ceil((POINTS + 4) / 24) + 1
    placed = [(data, EPOCH + timedelta(days=d + 1)) for d in range(days)]
    async with throwaway_database(admin_url) as url:
        print(f"loading {days} days of {data.name} (not timed) ...", flush=True)
        total = await load(url, placed, seed=12)
        history, singles, records = await measure(url, data, repeat)
    print(
        f"  history {history * 1000:.1f} ms, {POINTS} single hotspots {singles * 1000:.0f} ms"
        f" ({singles / history:.0f}x), {records:,} of the country's records read",
        flush=True,
    )
    note = (
        f"{POINTS} points, window and step {WINDOW.value}, one country; archive {total:,}"
        f" records ({days} days x {data.records:,} x {data.countries} countries); median of"
        f" {repeat}; baseline: aggregate_window + compute_hotspots at each instant"
    )
    return [
        Row(
            scenario="g",
            measure=f"hotspotHistory, {POINTS} points, cold",
            value=f"{history * 1000:.1f} ms",
            baseline=f"{singles * 1000:.0f} ms",
            ratio=f"{singles / history:.0f}x faster",
            target="",
            met=None,
            note=note,
        )
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history-repeat", type=int, default=3, help="g: runs (median)")


def scenarios(args: argparse.Namespace) -> list[Row]:
    quick = getattr(args, "quick", False)
    repeat = 1 if quick else getattr(args, "history_repeat", 3)
    data = QUICK if quick else FULL
    return asyncio.run(run(getattr(args, "admin_url", ADMIN_URL), data, repeat))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--quick", action="store_true", help="a small archive, one run")
    add_arguments(parser)
    try:
        print_table(scenarios(parser.parse_args(argv)))
    except BenchError as exc:
        print(f"could not run: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
