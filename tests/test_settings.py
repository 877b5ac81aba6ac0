"""Settings come from the environment and .env, with documented defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from graph.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.database_url == "sqlite:///./trendmap.db"
    assert s.redis_url is None
    assert (s.flow_threshold, s.heat_halflife_hours) == (0.5, 6.0)
    assert s.use_cache is True and s.auto_migrate is True and s.dry_run_apis is False
    assert s.api_keys == () and s.read_api_keys == ()
    assert s.max_flows == 10_000


def test_environment_and_comma_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_KEYS", " one, two ,,")
    monkeypatch.setenv("FLOW_THRESHOLD", "0.25")
    monkeypatch.setenv("USE_CACHE", "false")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    s = Settings()
    assert s.api_keys == ("one", "two")
    assert s.flow_threshold == 0.25
    assert s.use_cache is False
    assert s.log_level == "DEBUG"


def test_dotenv_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("HEAT_HALFLIFE_HOURS=3\nREAD_API_KEYS=r1\n")
    s = Settings()
    assert s.heat_halflife_hours == 3
    assert s.read_api_keys == ("r1",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLOW_THRESHOLD", "1.5"),
        ("HEAT_HALFLIFE_HOURS", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("SOURCES", "google_trends_rss,twitter"),
        ("SOURCES", "json_feed"),  # without JSON_FEED_URL
        ("POLL_COUNTRIES", "US,XX"),
        ("GOOGLE_TRENDS_RSS_URL", "https://trends.google.com/trending/rss"),
        ("GOOGLE_TRENDS_RSS_URL", "ftp://example.com/{country}"),
        ("SOURCE_MAX_ATTEMPTS", "4"),
    ],
)
def test_bad_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_feed_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.sources == () and "US" in s.poll_countries and len(s.poll_countries) >= 10
    assert s.google_trends_rss_url == "https://trends.google.com/trending/rss?geo={country}"
    assert (s.breaker_failures, s.breaker_reset_seconds, s.source_max_attempts) == (5, 30.0, 3)
    monkeypatch.setenv("SOURCES", " JSON_feed, google_trends_rss,json_feed")
    monkeypatch.setenv("JSON_FEED_URL", "https://feeds.example/{country}.json")
    monkeypatch.setenv("POLL_COUNTRIES", "us, gb,US")
    s = Settings()
    assert s.sources == ("json_feed", "google_trends_rss")
    assert s.poll_countries == ("US", "GB")


def test_every_setting_is_documented_in_the_readme_with_its_default() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for name in Settings.model_fields:
        env = name.upper()
        documented = [row for row in rows if f"`{env}`" in row.split("|")[1]]
        assert documented, f"{env} has no row in a README settings table"


def test_record_bounds_and_forwarding_proxies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.forwarded_allow_ips == ()
    bounds = s.record_bounds()
    assert bounds.earliest.isoformat() == "1970-01-01T00:00:00+00:00"
    assert bounds.max_future.total_seconds() == 86_400
    monkeypatch.setenv("MIN_RECORD_TIMESTAMP", "2020-01-01T02:00:00+02:00")
    monkeypatch.setenv("MAX_RECORD_FUTURE_SECONDS", "3600")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 192.168.0.0/16,::1")
    s = Settings()
    assert s.record_bounds().earliest.isoformat() == "2020-01-01T00:00:00+00:00"
    assert s.record_bounds().max_future.total_seconds() == 3_600
    assert s.forwarded_allow_ips == ("10.0.0.1", "192.168.0.0/16", "::1")
    for name, bad in [
        ("MIN_RECORD_TIMESTAMP", "2020-01-01T00:00:00"),  # naive
        ("MIN_RECORD_TIMESTAMP", "0001-01-01T00:00:00+14:00"),  # year 0 in UTC
        ("MAX_RECORD_FUTURE_SECONDS", "-1"),
        ("FORWARDED_ALLOW_IPS", "proxy.internal"),
    ]:
        with monkeypatch.context() as patch:
            patch.setenv(name, bad)
            with pytest.raises(ValidationError, match=name.lower()):
                Settings()
