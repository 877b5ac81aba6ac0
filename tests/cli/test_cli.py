"""The trendmap command: ingest files, write demo data, migrate."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.sync.client import connect

from db import migrate
from db.blocks import BLOCKS_LOCK_ID
from graph.cli import main as cli
from graph.core.windows import TimeWindow
from graph.service.queries import FlowQuery, HotspotQuery
from graph.settings import Settings
from graph.wiring import open_state
from tests.support.factories import record, spread
from tests.support.servers import empty_archive, running_server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Path:
    """Run the command in an empty directory against the test database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return tmp_path


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_ingest_jsonl_in_batches(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(env / "r.jsonl", [record("US", f"T{i}") for i in range(7)] + [""])
    assert cli.main(["ingest", str(path), "--batch-size", "3"]) == 0
    assert "7 records read: 7 inserted, 0 updated, 0 unchanged" in capsys.readouterr().out
    assert cli.main(["ingest", str(path)]) == 0
    assert "0 inserted, 0 updated, 7 unchanged" in capsys.readouterr().out


def test_ingest_stops_at_the_first_bad_batch(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[Any] = [record("US", f"T{i}") for i in range(4)]
    lines[2] = dict(lines[2], count=0)
    lines.insert(3, "{broken")
    path = write_jsonl(env / "r.jsonl", lines)
    assert cli.main(["ingest", str(path), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "line 3: count" in err and "--skip-invalid" in err
    # The first batch (lines 1-2) was stored; nothing of the bad batch (lines 3-4) was.
    assert cli.main(["ingest", str(path), "--batch-size", "2", "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "5 records read: 1 inserted, 0 updated, 2 unchanged, 2 invalid lines" in captured.out
    assert "skipped line 3: count" in captured.err
    assert "skipped line 4: line: not valid JSON" in captured.err


def test_ingest_csv(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = env / "r.csv"
    path.write_text(
        "timestamp,country,topic_label,count,confidence,sources\n"
        "2026-11-20T10:00:00Z,us,World Cup,5,0.9,https://a.test|https://b.test\n"
        '2026-11-20T11:00:00Z,BR,World Cup,3,1,"[""https://c.test""]"\n'
        "2026-11-20T12:00:00Z,CO,Storm,2,0.5,\n"
        "2026-11-20T12:00:00Z,CO,Storm 2,two,0.5,\n"
    )
    assert cli.main(["ingest", str(path)]) == 1
    assert "line 5: count" in capsys.readouterr().err
    assert cli.main(["ingest", str(path), "--skip-invalid"]) == 0
    assert "3 inserted" in capsys.readouterr().out


def test_csv_without_the_header(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = env / "r.csv"
    path.write_text("time,where\n1,2\n")
    assert cli.main(["ingest", str(path)]) == 1
    assert "header lacks" in capsys.readouterr().err


def test_unknown_file_format(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = env / "r.txt"
    path.write_text("")
    assert cli.main(["ingest", str(path)]) == 2
    assert "--format" in capsys.readouterr().err
    assert cli.main(["ingest", str(env / "missing.jsonl")]) == 2


def test_demo_data_is_valid_input(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = env / "demo.jsonl"
    assert cli.main(["demo-data", "-o", str(out), "--now", "2026-11-20T12:00:00Z"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) > 1000
    assert cli.main(["ingest", str(out)]) == 0
    assert f"{len(lines)} inserted" in capsys.readouterr().out


def test_demo_data_to_stdout(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo-data", "--now", "2026-11-20T12:00:00Z"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert set(first) == {"timestamp", "country", "topic_label", "count", "confidence", "sources"}
    assert cli.main(["demo-data", "--now", "yesterday"]) == 2


def test_db_commands(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = migrate.head_revision()
    assert cli.main(["db", "upgrade"]) == 0
    assert f"revision {head} (head is {head})" in capsys.readouterr().out
    assert cli.main(["db", "downgrade", "0001"]) == 0
    assert "revision 0001" in capsys.readouterr().out
    assert cli.main(["db", "downgrade", "base"]) == 0
    assert "revision base" in capsys.readouterr().out
    assert cli.main(["db", "current"]) == 0
    assert f"revision base (head is {head})" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "head"]) == 0


def test_db_build_blocks(env: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every rollup block built at once (PostgreSQL); SQLite keeps no rollup."""
    records = [record("US", "Storm", hours_ago=7 * i) for i in range(3)]  # three blocks
    assert cli.main(["ingest", str(write_jsonl(env / "r.jsonl", records))]) == 0
    capsys.readouterr()
    assert cli.main(["db", "build-blocks"]) == 0
    out = capsys.readouterr().out
    if database_url.startswith("sqlite"):
        assert out == "nothing to build: only PostgreSQL keeps a rollup\n"
        return
    assert out.splitlines()[-1] == "rollup blocks: 3 built by this run, 0 unbuilt"
    assert cli.main(["db", "build-blocks"]) == 0
    assert capsys.readouterr().out == "rollup blocks: 0 built by this run, 0 unbuilt\n"


def test_db_build_blocks_while_another_process_builds(
    env: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another process holds the builders' lock: the command says so and exits 3 (busy)."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    asyncio.run(empty_archive(postgres_url))
    assert cli.main(["ingest", str(write_jsonl(env / "r.jsonl", [record("US", "Storm")]))]) == 0
    held, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(f"SELECT pg_advisory_lock({BLOCKS_LOCK_ID})")
            held.set()
            await asyncio.to_thread(release.wait)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert held.wait(10)
        capsys.readouterr()
        assert cli.main(["db", "build-blocks"]) == 3
        assert capsys.readouterr().out == "another process is building blocks: try again later\n"
    finally:
        release.set()
        holder.join()
    assert cli.main(["db", "build-blocks"]) == 0
    assert capsys.readouterr().out.endswith("rollup blocks: 1 built by this run, 0 unbuilt\n")


def test_bad_database_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    assert cli.main(["db", "current"]) == 2
    assert "unsupported database" in capsys.readouterr().err


def test_serve_demo_data_gives_a_newcomer_hot_flows(env: Path) -> None:
    """What `serve --demo` loads shows at least one flow at the default threshold, now."""

    async def main() -> tuple[int, int, int]:
        settings = Settings()
        count = await cli.load_demo(settings)
        async with open_state(settings) as state:
            flows = await state.service.flows(
                FlowQuery(TimeWindow.H24, None, settings.flow_threshold, None, None)
            )
            hotspots = await state.service.hotspots(HotspotQuery(TimeWindow.H24, None, None, None))
        return count, flows.count, hotspots.count

    count, flows, hotspots = asyncio.run(main())
    assert count > 1000
    assert flows >= 1
    assert hotspots >= 10


def test_serve_demo_answers_over_http(tmp_path: Path) -> None:
    """The Quickstart's command: a real server on loopback, on an empty embedded database."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}", "LOG_LEVEL": "INFO"}
    env.pop("API_KEYS", None)
    with running_server(tmp_path, env, "--demo") as server:
        flows = httpx.get(f"{server.base}/v1/flows", timeout=10).json()
        assert len(flows["flows"]) >= 1
        query = {"query": "{ hotspots { country } }"}
        graph = httpx.post(f"{server.base}/graphql", json=query).json()
        assert len(graph["data"]["hotspots"]) >= 10
    assert "demo data loaded" in server.output
    # Past the command's own two lines, everything is a JSON line, uvicorn's included.
    logged = [
        json.loads(line)
        for line in server.output.splitlines()
        if line and not line.startswith(("demo data", "trendmap on "))
    ]
    events = [entry["event"] for entry in logged]
    assert "Application shutdown complete." in events
    assert any(entry.get("logger") == "uvicorn.error" for entry in logged)


def test_poll_once_prints_each_feed_and_exits_by_outcome(
    env: Path, feed_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from graph.feeds.google_trends import confidence
    from tests.support.feedserver import Item, Reply, rss

    when = datetime.now(UTC) - timedelta(hours=1)
    feed_server.reply("US", Reply(200, rss([Item("Ravens", "5,000+", when), Item("", "1+", when)])))
    feed_server.reply("GB", Reply(404))
    monkeypatch.setenv("SOURCES", "google_trends_rss")
    monkeypatch.setenv("GOOGLE_TRENDS_RSS_URL", feed_server.url)
    monkeypatch.setenv("POLL_COUNTRIES", "US,GB")
    assert cli.main(["poll", "--once"]) == cli.POLL_PARTIAL
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "google_trends_rss US: 2 items, 1 valid, 1 skipped",
        "  skipped item 2: no title",
        "google_trends_rss GB: failed: HTTP 404",
        "round: 1 of 2 feeds answered, 1 records (1 inserted, 0 updated, 0 unchanged),"
        " 1 bad items skipped",
    ]
    monkeypatch.setenv("POLL_COUNTRIES", "US")
    assert cli.main(["poll", "--once"]) == cli.POLL_OK
    assert "(0 inserted, 0 updated, 1 unchanged)" in capsys.readouterr().out

    async def check() -> None:
        async with open_state(Settings()) as state:
            page = await state.service.trends(cli_trend_query())
            (stored,) = page.records
            assert (stored.topic_label, stored.count) == ("Ravens", 5000)
            assert stored.confidence == confidence(5000, 0)

    asyncio.run(check())


def cli_trend_query() -> Any:
    from graph.service.params import parse_record_filter
    from graph.service.queries import TrendQuery

    return TrendQuery(parse_record_filter(None, None, None, None), 10, None)


def test_poll_once_needs_sources_and_waits_for_no_one(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["poll", "--once"]) == 2
    assert "SOURCES is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["poll"])  # --once is the only mode: the servers poll on their own


def test_poll_once_does_nothing_while_another_poller_leads(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from graph.feeds.lease import LEASE_KEY
    from graph.stores import open_store
    from tests.support.factories import TEST_REDIS_URL

    monkeypatch.setenv("SOURCES", "google_trends_rss")
    monkeypatch.setenv("GOOGLE_TRENDS_RSS_URL", "http://127.0.0.1:1/{country}")
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)

    async def hold() -> str | None:
        store = open_store(TEST_REDIS_URL)
        try:
            return await store.acquire(LEASE_KEY, 30)
        finally:
            await store.close()

    async def release(token: str) -> None:
        store = open_store(TEST_REDIS_URL)
        try:
            await store.release(LEASE_KEY, token)
        finally:
            await store.close()

    token = asyncio.run(hold())
    assert token is not None
    try:
        assert cli.main(["poll", "--once"]) == cli.POLL_BUSY
        assert "another poller holds the lease" in capsys.readouterr().err
    finally:
        asyncio.run(release(token))


def test_poll_once_in_a_dry_run_touches_no_network(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOURCES", "google_trends_rss")
    monkeypatch.setenv("GOOGLE_TRENDS_RSS_URL", "https://trends.invalid/rss?geo={country}")
    monkeypatch.setenv("DRY_RUN_APIS", "true")
    monkeypatch.setenv("POLL_COUNTRIES", "US,BR,IS")
    assert cli.main(["poll", "--once"]) == cli.POLL_OK
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "google_trends_rss IS: 0 items, 0 valid, 0 skipped"  # not in the demo
    us, br = (int(line.split(": ")[1].split()[0]) for line in out[:2])
    assert us > 10 and br > 10


def test_a_cli_ingest_reaches_a_running_servers_subscribers(
    tmp_path: Path, postgres_url: str, throwaway_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL + Redis: a flow stored by `trendmap ingest` is announced as a POST's is."""
    asyncio.run(empty_archive(postgres_url))
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": throwaway_redis.url,
        "LOG_LEVEL": "WARNING",
    }
    query = "subscription { hotFlows(threshold: 0.5) { id fromCountry toCountry } }"
    with running_server(tmp_path, env) as server:
        url = server.base.replace("http", "ws") + "/graphql"
        with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(ws.recv(10))["type"] == "connection_ack"
            ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            deadline = time.monotonic() + 10
            while (
                httpx.get(f"{server.base}/health/ready").json()["checks"]["subscriptions"]["active"]
                != 1
            ):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            path = write_jsonl(tmp_path / "r.jsonl", spread("FR", "BE", ["Alpha", "Beta"]))
            for name in ("DATABASE_URL", "REDIS_URL", "LOG_LEVEL"):
                monkeypatch.setenv(name, env[name])
            assert cli.main(["ingest", str(path)]) == 0
            message = json.loads(ws.recv(10))
    assert message["type"] == "next", message
    flow = message["payload"]["data"]["hotFlows"]
    assert (flow["fromCountry"], flow["toCountry"]) == ("FR", "BE")
    assert flow["id"].startswith("24h@") and flow["id"].endswith(":FR-BE")


def test_a_bad_batch_after_a_stored_one_says_what_was_stored(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[Any] = [record("US", f"T{i}") for i in range(5)]
    lines[3] = dict(lines[3], count=0)
    path = write_jsonl(env / "r.jsonl", lines)
    assert cli.main(["ingest", str(path), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "nothing was stored" not in err
    assert (
        "lines 1 to 2 were stored (2 inserted, 0 updated, 0 unchanged);"
        " nothing from line 3 on was" in err
    )
    single = write_jsonl(env / "bad.jsonl", [dict(record("US", "X"), count=0)])
    assert cli.main(["ingest", str(single)]) == 1
    assert "; nothing was stored" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variables", "argv", "named"),
    [
        ({"FLOW_THRESHOLD": "abc"}, ["db", "current"], "setting FLOW_THRESHOLD:"),
        (
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/trendmap_no_such_db"},
            ["db", "current"],
            'database "trendmap_no_such_db" does not exist',
        ),
        (
            {"DATABASE_URL": "postgresql://trendmap_no_role:pw@127.0.0.1:5432/postgres"},
            ["db", "upgrade"],
            'role "trendmap_no_role" does not exist',
        ),
        ({}, ["db", "upgrade", "nosuchrevision"], "migration: Can't locate revision"),
    ],
)
def test_common_mistakes_are_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    argv: list[str],
    named: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "pydantic.dev" not in err and ":pw@" not in err


def test_db_current_does_not_create_a_missing_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing-here.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    assert cli.main(["db", "current"]) == 0
    assert "base" in capsys.readouterr().out
    assert not missing.exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("trendmap ")


def test_serve_demo_twice_loads_the_demo_once(env: Path) -> None:
    async def main() -> tuple[int, int, int]:
        settings = Settings()
        first = await cli.load_demo(settings, datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
        # Minutes later: other timestamps, which would have been a second copy.
        second = await cli.load_demo(settings, datetime(2026, 11, 20, 12, 10, tzinfo=UTC))
        async with open_state(settings) as state:
            _, _, held, _ = await state.explorer.repository.span()
        return first, second, held

    first, second, held = asyncio.run(main())
    assert first > 1000
    assert second == 0
    assert held == first


def test_the_project_has_its_mit_licence() -> None:
    text = (Path(__file__).parents[2] / "LICENSE").read_text()
    assert text.startswith("MIT License") and "2026" in text and "trendmap" in text
