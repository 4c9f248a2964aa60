"""Every knob of the server, each with a TASKMACHINE_* environment variable and a sane default.

The daemon's own configuration lives in ~/.taskmachine/config.json (see taskmachine.daemon.config);
this module is shared by both sides and imports nothing from either.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting has a wrong value; the message names the variable and says why."""


def _default_data_dir() -> Path:
    return Path.home() / ".taskmachine" / "server"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKMACHINE_", extra="ignore")

    # Where the embedded SQLite database and the generated secret live.
    data_dir: Path = Field(default_factory=_default_data_dir)
    # Empty means SQLite under data_dir. PostgreSQL: postgresql+asyncpg://user@host/db
    database_url: str = ""
    database_echo: bool = False
    # PostgreSQL: connections the pool keeps open, and how many more a burst may open (each of
    # those is closed when returned: a new backend, its handshake and its prepared statements).
    database_pool_size: int = Field(default=30, ge=1, le=500)
    database_pool_overflow: int = Field(default=10, ge=0, le=500)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # RabbitMQ's management HTTP API, used to create one broker user per machine.
    rabbitmq_management_url: str = "http://guest:guest@127.0.0.1:15672"
    # The broker address machines connect to (their own user replaces the credentials);
    # empty means the same host as amqp_url.
    public_amqp_url: str = ""
    # When false the server runs without a broker (subscriptions fan out in-process only).
    broker_enabled: bool = True

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8000"

    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "Task Machine <no-reply@localhost>"
    smtp_starttls: bool = True

    # Signs nothing by itself; tokens are random and stored hashed. Used as a pepper for hashes.
    # Empty means: generate one on first start into data_dir/secret (never into the repository).
    secret_key: str = ""

    session_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    magic_link_ttl_seconds: int = Field(default=15 * 60, gt=0)
    machine_access_token_ttl_seconds: int = Field(default=3600, gt=0)
    machine_refresh_token_ttl_seconds: int = Field(default=90 * 24 * 3600, gt=0)
    machine_approval_ttl_seconds: int = Field(default=600, gt=0)

    # Request limits: bad input gets a clear error and the server keeps serving.
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    max_query_depth: int = Field(default=12, gt=0)
    max_query_aliases: int = Field(default=30, gt=0)
    max_query_tokens: int = Field(default=3000, gt=0)
    max_page_size: int = Field(default=200, gt=0)

    # Machines and runs (defaults from the house plan).
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    machine_online_window_seconds: float = Field(default=30.0, gt=0)
    claim_deadline_seconds: float = Field(default=120.0, gt=0)
    lease_seconds: float = Field(default=45.0, gt=0)
    run_hard_timeout_seconds: float = Field(default=1800.0, gt=0)
    run_idle_timeout_seconds: float = Field(default=600.0, gt=0)
    cancel_grace_seconds: float = Field(default=10.0, gt=0)

    latest_cli_version: str = ""
    min_cli_version: str = "0.0.0"

    # How often the sweeper looks for stale machines, stale runtimes and outdated daemons.
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    # Heartbeat ingest: write a batch when it has this many messages or is this old. Few, full
    # batches: on SQLite each one holds the only connection, which the API's requests wait for.
    heartbeat_batch_size: int = Field(default=500, gt=0)
    heartbeat_batch_seconds: float = Field(default=0.25, gt=0)
    # On SQLite, machines per transaction within a batch (the API waits for the one connection).
    heartbeat_sqlite_transaction_size: int = Field(default=100, gt=0)

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("amqp_url", "public_amqp_url")
    @classmethod
    def _check_amqp_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("amqp", "amqps"):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @field_validator("public_url", "rabbitmq_management_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @model_validator(mode="after")
    def _check_versions(self) -> Settings:
        from packaging.version import InvalidVersion, Version

        for name in ("latest_cli_version", "min_cli_version"):
            value = getattr(self, name)
            if value:
                try:
                    Version(value)
                except InvalidVersion:
                    raise ValueError(f"{name}: {value!r} is not a version number") from None
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'taskmachine.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a wrong value raises SettingsError with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        variable = f"TASKMACHINE_{field.upper()}" if first["loc"] else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{variable}: {message}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
