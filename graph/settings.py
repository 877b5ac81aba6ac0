"""Settings from the environment and ``.env``: every knob of the service, with its default."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Read once per process, in the app's lifespan or the CLI, never at import time."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "sqlite:///./trendmap.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    auto_migrate: bool = True

    redis_url: str | None = None
    use_cache: bool = True
    flows_refresh_seconds: float = Field(default=30.0, gt=0)
    cache_timeout_seconds: float = Field(default=0.25, gt=0)
    subscriber_queue_size: int = Field(default=256, ge=1)
    shutdown_timeout_seconds: int = Field(default=10, ge=1)
    dry_run_apis: bool = False

    flow_threshold: float = Field(default=0.5, ge=0, le=1)
    heat_halflife_hours: float = Field(default=6.0, gt=0)
    max_flows: int = Field(default=10_000, ge=1)
    max_page_size: int = Field(default=1_000, ge=1)
    default_page_size: int = Field(default=100, ge=1)

    graphql_max_depth: int = Field(default=10, ge=1)
    graphql_max_aliases: int = Field(default=30, ge=0)
    graphql_max_tokens: int = Field(default=2_000, ge=10)
    graphql_max_computing_fields: int = Field(default=4, ge=1)
    graphql_max_batch: int = Field(default=0, ge=0)
    graphql_introspection: bool = True
    cors_origins: CommaList = ()

    ws_init_timeout_seconds: float = Field(default=5.0, gt=0)
    ws_max_subscriptions: int = Field(default=20, ge=1)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_max_connections: int = Field(default=10_000, ge=1)

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
    rate_limit_enabled: bool = True
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_writes_per_minute: int = Field(default=60, ge=1)
    trust_forwarded_for: bool = False

    log_level: str = "INFO"

    @field_validator("api_keys", "read_api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level
