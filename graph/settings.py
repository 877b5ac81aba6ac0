"""Settings from the environment and ``.env``: every knob of the service, with its default."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from graph.core.records import DEFAULT_TIMESTAMP_BOUNDS, TimestampBounds, parse_timestamp
from graph.feeds.registry import SOURCE_NAMES

CommaList = Annotated[tuple[str, ...], NoDecode]

# Where Google Trends has a "trending now" feed, spread over the continents.
DEFAULT_POLL_COUNTRIES = (
    "US", "CA", "MX", "BR", "AR", "CO", "GB", "FR", "DE", "ES", "IT", "NL",
    "PL", "TR", "NG", "ZA", "EG", "IN", "ID", "JP", "KR", "AU",
)  # fmt: skip


def _installed(module: str) -> bool:
    """Whether a module can be imported, without importing it (nor, for a top-level one, its
    package)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Settings(BaseSettings):
    """Read once per process, in the app's lifespan or the CLI, never at import time."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "sqlite:///./trendmap.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # PostgreSQL cancels a statement past this (a lock wait included): 503. 0: no bound.
    db_statement_timeout_seconds: float = Field(default=10.0, ge=0)
    auto_migrate: bool = True
    # PostgreSQL: the rollup's six-hour blocks (db/blocks.py) are built by a server in the
    # background, every this many seconds, once no write has touched them for the quiet time.
    rollup_blocks_interval_seconds: float = Field(default=30.0, gt=0)
    rollup_blocks_quiet_seconds: float = Field(default=60.0, ge=0)

    redis_url: str | None = None
    use_cache: bool = True
    flows_refresh_seconds: float = Field(default=30.0, gt=0)
    cache_timeout_seconds: float = Field(default=0.25, gt=0)
    # > 0: a worker serves reads without min_generation from its memory, at most this long after
    # it last read the generation in Redis; other workers' writes reach it over pub/sub sooner
    # (DESIGN.md). 0 (strict): every cached read checks the generation in Redis.
    cache_local_seconds: float = Field(default=1.0, ge=0)
    # Bounds on what the cache holds, whatever clients ask (graph/cache/bounds.py): in Redis for
    # every worker together, in process per worker, and again per worker for the local copy.
    cache_max_entries: int = Field(default=20_000, ge=1)
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    cache_as_of_resolution_seconds: int = Field(default=60, ge=1)
    # Repeated cached REST GETs answered from prebuilt bytes (graph/http/middleware/fast_path.py),
    # per worker at most this many responses and bytes.
    fast_path_enabled: bool = True
    fast_path_max_entries: int = Field(default=1_000, ge=1)
    fast_path_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    subscriber_queue_size: int = Field(default=256, ge=1)
    shutdown_timeout_seconds: int = Field(default=10, ge=1)
    dry_run_apis: bool = False

    flow_threshold: float = Field(default=0.5, ge=0, le=1)
    heat_halflife_hours: float = Field(default=6.0, gt=0)
    # A median lag under this many minutes makes a flow simultaneous (no direction).
    flow_min_lag_minutes: float = Field(default=30.0, gt=0)
    max_flows: int = Field(default=10_000, ge=1)
    max_page_size: int = Field(default=1_000, ge=1)
    default_page_size: int = Field(default=100, ge=1)

    graphql_max_depth: int = Field(default=10, ge=1)
    graphql_max_aliases: int = Field(default=30, ge=0)
    graphql_max_tokens: int = Field(default=2_000, ge=10)
    graphql_max_computing_fields: int = Field(default=4, ge=1)
    graphql_max_batch: int = Field(default=0, ge=0)
    graphql_introspection: bool = True
    # Automatic persisted queries (graph.graphql.persisted): documents kept per worker (and in
    # Redis, under the cache's bounds); 0 turns APQ off. A safelist file: only its documents run.
    graphql_apq_max_documents: int = Field(default=1_000, ge=0)
    graphql_safelist_file: Path | None = None
    # Whole answers to repeated queries, per worker (graph.graphql.response_cache); 0 turns it off.
    graphql_response_cache_entries: int = Field(default=2_000, ge=0)
    graphql_response_cache_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # GraphiQL's npm packages (graph.http.graphiql); unset: beside the code, where
    # `npm ci --prefix graph/http/web/graphiql` installs them.
    graphiql_assets_dir: Path | None = None
    cors_origins: CommaList = ()

    ws_init_timeout_seconds: float = Field(default=5.0, gt=0)
    ws_max_subscriptions: int = Field(default=20, ge=1)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_max_connections: int = Field(default=10_000, ge=1)
    # A live subscriber whose socket holds more unsent bytes than this is dropped (1008).
    ws_max_buffer_bytes: int = Field(default=1024 * 1024, ge=1024)

    api_keys: CommaList = ()
    read_api_keys: CommaList = ()
    # JWTs for writes (and guarded reads): HS256 with the secret, RS256 with the public key
    # (PEM text, or the path of a PEM file); issuer and audience are required with either.
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(default=100_000, ge=1)
    # Record timestamps: none before the floor, none further ahead of the server's clock.
    min_record_timestamp: Annotated[datetime, BeforeValidator(parse_timestamp)] = (
        DEFAULT_TIMESTAMP_BOUNDS.earliest
    )
    max_record_future_seconds: int = Field(
        default=int(DEFAULT_TIMESTAMP_BOUNDS.max_future.total_seconds()), ge=0, le=3650 * 86_400
    )
    rate_limit_enabled: bool = True
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_writes_per_minute: int = Field(default=60, ge=1)
    # Workers (on every host) sharing the budgets through Redis: each reserves
    # max(1, quota // (4 * this)) units of a budget per round trip.
    rate_limit_workers: int = Field(default=4, ge=1)
    # Budgets a worker keeps in memory; past it the least recently used is forgotten.
    rate_limit_max_clients: int = Field(default=100_000, ge=1)
    trust_forwarded_for: bool = False
    # Proxies (addresses, networks or "*") whose X-Forwarded-For the server takes as the
    # client's address. Empty: the peer's address is the client's, whatever headers say.
    forwarded_allow_ips: CommaList = ()
    max_inflight_requests: int = Field(default=64, ge=1)
    admission_queue_seconds: float = Field(default=0.1, ge=0)
    # Connections (graph/http/protocol.py): a request's headers must be complete this long
    # after the connection opens or the previous response ends (else 408 and closed), its body
    # within this long of its headers (else 408); at most this many connections per worker,
    # WebSockets included (the excess gets a 503 and is closed).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=12_000, ge=1)
    metrics_enabled: bool = True

    # Feeds (graph/sources): which run, where they are, how they are polled and called.
    sources: CommaList = ()
    google_trends_rss_url: str = "https://trends.google.com/trending/rss?geo={country}"
    json_feed_url: str | None = None
    poll_countries: CommaList = DEFAULT_POLL_COUNTRIES
    poll_interval_seconds: float = Field(default=600.0, gt=0)
    poller_enabled: bool = True
    poll_lock_ttl_seconds: float = Field(default=60.0, gt=0)
    source_timeout_seconds: float = Field(default=10.0, gt=0)
    source_max_attempts: int = Field(default=3, ge=1, le=3)
    source_backoff_seconds: float = Field(default=1.0, gt=0)
    source_retry_after_max_seconds: float = Field(default=60.0, ge=0)
    source_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    source_concurrency: int = Field(default=4, ge=1, le=64)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    log_level: str = "INFO"

    # Error tracking and tracing (graph/observability/sentry.py, tracing.py): off when unset,
    # and then neither sentry_sdk nor opentelemetry is imported.
    sentry_dsn: str | None = None
    sentry_environment: str = "production"
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)
    sentry_profiles_sample_rate: float = Field(default=0.0, ge=0, le=1)
    otel_exporter_otlp_endpoint: str | None = None
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = None
    otel_service_name: str = "trendmap"

    @field_validator(
        "api_keys",
        "read_api_keys",
        "cors_origins",
        "sources",
        "poll_countries",
        "forwarded_allow_ips",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(name.lower() for name in value))
        unknown = [name for name in names if name not in SOURCE_NAMES]
        if unknown:
            raise ValueError(
                f"unknown source {', '.join(unknown)}: SOURCES takes {', '.join(SOURCE_NAMES)}"
            )
        return names

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"FORWARDED_ALLOW_IPS takes addresses, networks or *, not {entry!r}"
                    ) from None
        return value

    @field_validator("poll_countries")
    @classmethod
    def _assigned_countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from graph.core.records import normalise_country

        return tuple(dict.fromkeys(normalise_country(code) for code in value))

    @field_validator("google_trends_rss_url", "json_feed_url")
    @classmethod
    def _country_template(cls, value: str | None) -> str | None:
        if value is not None and "{country}" not in value:
            raise ValueError("a feed URL template needs a {country} placeholder")
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("a feed URL must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _json_feed_has_a_url(self) -> Settings:
        if "json_feed" in self.sources and self.json_feed_url is None:
            raise ValueError("SOURCES names json_feed: set JSON_FEED_URL too")
        return self

    def record_bounds(self) -> TimestampBounds:
        """The span record timestamps must fall in (graph.core.records.TimestampBounds)."""
        return TimestampBounds(
            self.min_record_timestamp, timedelta(seconds=self.max_record_future_seconds)
        )

    @field_validator("sentry_dsn", "otel_exporter_otlp_endpoint", "otel_traces_exporter")
    @classmethod
    def _extra_installed(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A DSN or an exporter needs its optional extra: a clear error at startup, not at the
        first event."""
        if not value or value == "none":
            return value or None
        sentry = info.field_name == "sentry_dsn"
        extra, module = ("sentry", "sentry_sdk") if sentry else ("otel", "opentelemetry.sdk")
        if not _installed(module):
            raise ValueError(f"needs the {extra} extra: pip install 'trendmap[{extra}]'")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level
