"""Every setting and default in one place: command-line flags > environment > .env."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.errors import ConveyorError
from conveyor.jobs import DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_MAX, MAX_ATTEMPTS_MIN, JobStatus
from conveyor.validation import parse_retention

# SPEC §3's defaults, each defined here once: Settings, the worker's PoolConfig, the HTTP
# server and the CLI's help texts read them from these names.
DEFAULT_DATABASE_URL = "sqlite:///conveyor.db"
DEFAULT_APP = "conveyor.demo:app"
DEFAULT_WORKERS = 5
DEFAULT_FETCH_INTERVAL = 5.0  # seconds
# SPEC §10: the fetch interval's default when nothing can wake the fetchers (a URL declared
# `?pooler=transaction` without LISTEN_DATABASE_URL): they poll.
DEFAULT_POLL_INTERVAL = 0.5  # seconds
DEFAULT_FETCH_LIMIT = 10
DEFAULT_LEASE = 30.0  # seconds
DEFAULT_SHUTDOWN_TIMEOUT = 30.0  # seconds
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# SPEC §7 retention: how long finished jobs are kept, per status (validation.parse_retention)
DEFAULT_RETAIN_DONE = "1d"
DEFAULT_RETAIN_CANCELLED = "1d"
DEFAULT_RETAIN_FAILED = "7d"


def _env(name: str) -> AliasChoices:
    # the field name (for flags passed as keyword arguments) or the SPEC environment variable
    return AliasChoices(name.lower(), name)


class Settings(BaseSettings):
    """SPEC §3's option table. Construct with only the flags the user gave:
    `Settings(**given)`; pydantic-settings fills the rest from the environment and .env.
    `flags` remembers which settings were given that way (on the command line)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_env("DATABASE_URL"))
    # SPEC §10: a direct (or session-mode) connection for LISTEN when DATABASE_URL reaches a
    # transaction-mode pooler
    listen_database_url: str | None = Field(None, validation_alias=_env("LISTEN_DATABASE_URL"))
    app: str = Field(DEFAULT_APP, validation_alias=AliasChoices("app", "CONVEYOR_APP"))
    workers: int = Field(
        DEFAULT_WORKERS, ge=0, le=10_000, validation_alias=AliasChoices("workers", "WORKER_COUNT")
    )
    # SPEC §10 calls it the poll interval (--poll-interval, POLL_INTERVAL): one setting
    fetch_interval: float = Field(
        DEFAULT_FETCH_INTERVAL,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("fetch_interval", "FETCH_INTERVAL", "POLL_INTERVAL"),
    )
    fetch_limit: int = Field(
        DEFAULT_FETCH_LIMIT, ge=1, le=10_000, validation_alias=_env("FETCH_LIMIT")
    )
    queues: str = Field("", validation_alias=AliasChoices("queues", "CONVEYOR_QUEUES"))
    lease: float = Field(
        DEFAULT_LEASE, gt=0, le=86_400, validation_alias=AliasChoices("lease", "LEASE_SECONDS")
    )
    shutdown_timeout: float = Field(
        DEFAULT_SHUTDOWN_TIMEOUT, ge=0, le=86_400, validation_alias=_env("SHUTDOWN_TIMEOUT")
    )
    host: str = Field(DEFAULT_HOST, validation_alias=_env("HOST"))
    port: int = Field(DEFAULT_PORT, ge=0, le=65_535, validation_alias=_env("PORT"))
    api_token: str | None = Field(None, validation_alias=_env("API_TOKEN"))
    # None: unset (loopback names only on a loopback bind, any name otherwise); see
    # conveyor/api/security.py's HostPolicy.
    allowed_hosts: str | None = Field(None, validation_alias=_env("ALLOWED_HOSTS"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("LOG_FORMAT"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    max_attempts: int = Field(
        DEFAULT_MAX_ATTEMPTS,
        ge=MAX_ATTEMPTS_MIN,
        le=MAX_ATTEMPTS_MAX,
        validation_alias=_env("MAX_ATTEMPTS"),
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1024, validation_alias=_env("MAX_BODY_BYTES")
    )
    # SPEC §6 process isolation: `process` runs every sync task in a child process
    pool: Literal["thread", "process"] = Field("thread", validation_alias=_env("WORKER_POOL"))
    max_tasks_per_child: int | None = Field(  # None or 0: unlimited
        None, ge=0, validation_alias=_env("MAX_TASKS_PER_CHILD")
    )
    max_memory_per_child: float | None = Field(  # MiB; None or 0: unlimited
        None, ge=0, validation_alias=_env("MAX_MEMORY_PER_CHILD")
    )
    # SPEC §7 retention, as given ("1d", "forever", "0"); read through `retention`
    retain_done: str = Field(DEFAULT_RETAIN_DONE, validation_alias=_env("RETAIN_DONE"))
    retain_cancelled: str = Field(
        DEFAULT_RETAIN_CANCELLED, validation_alias=_env("RETAIN_CANCELLED")
    )
    retain_failed: str = Field(DEFAULT_RETAIN_FAILED, validation_alias=_env("RETAIN_FAILED"))

    _flags: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._flags = frozenset(
            name
            for name, value in values.items()
            if name in Settings.model_fields and value is not None
        )

    @property
    def flags(self) -> frozenset[str]:
        """The settings given as keyword arguments, i.e. on the command line; the others
        came from the environment, .env or the defaults. SPEC §3 "Which database": only a
        --database-url given on the command line overrides the URL an app was built with."""
        return self._flags

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("pool", mode="before")
    @classmethod
    def _pool(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def queue_list(self) -> list[str] | None:
        names = [q.strip() for q in self.queues.split(",") if q.strip()]
        return names or None

    @field_validator("retain_done", "retain_cancelled", "retain_failed")
    @classmethod
    def _retention(cls, value: str) -> str:
        try:
            parse_retention(value)
        except ConveyorError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def retention(self) -> dict[JobStatus, timedelta | None]:
        """How long finished jobs are kept, per status; None keeps them for ever."""
        return {
            JobStatus.DONE: parse_retention(self.retain_done),
            JobStatus.CANCELLED: parse_retention(self.retain_cancelled),
            JobStatus.FAILED: parse_retention(self.retain_failed),
        }


_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):[^?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with its password shown as ***, for logs and messages:
    postgresql://user:secret@host/db -> postgresql://user:***@host/db (also a
    `?password=` parameter). SQLite URLs come back unchanged."""
    url = _USERINFO_PASSWORD.sub(r"\1:***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\1***", url)
