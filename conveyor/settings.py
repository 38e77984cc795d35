"""Every setting and default in one place: command-line flags > environment > .env."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///conveyor.db"
DEFAULT_APP = "conveyor.demo:app"


def _env(name: str) -> AliasChoices:
    # the field name (for flags passed as keyword arguments) or the SPEC environment variable
    return AliasChoices(name.lower(), name)


class Settings(BaseSettings):
    """SPEC §3's option table. Construct with only the flags the user gave:
    `Settings(**given)`; pydantic-settings fills the rest from the environment and .env."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_env("DATABASE_URL"))
    app: str = Field(DEFAULT_APP, validation_alias=AliasChoices("app", "CONVEYOR_APP"))
    workers: int = Field(
        5, ge=0, le=10_000, validation_alias=AliasChoices("workers", "WORKER_COUNT")
    )
    fetch_interval: float = Field(5.0, gt=0, le=3600, validation_alias=_env("FETCH_INTERVAL"))
    fetch_limit: int = Field(10, ge=1, le=10_000, validation_alias=_env("FETCH_LIMIT"))
    queues: str = Field("", validation_alias=AliasChoices("queues", "CONVEYOR_QUEUES"))
    lease: float = Field(
        30.0, gt=0, le=86_400, validation_alias=AliasChoices("lease", "LEASE_SECONDS")
    )
    shutdown_timeout: float = Field(
        30.0, ge=0, le=86_400, validation_alias=_env("SHUTDOWN_TIMEOUT")
    )
    host: str = Field("127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(8080, ge=0, le=65_535, validation_alias=_env("PORT"))
    api_token: str | None = Field(None, validation_alias=_env("API_TOKEN"))
    # None: unset (loopback names only on a loopback bind, any name otherwise); see
    # conveyor/api/security.py's HostPolicy.
    allowed_hosts: str | None = Field(None, validation_alias=_env("ALLOWED_HOSTS"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("LOG_FORMAT"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    max_attempts: int = Field(5, ge=1, le=1000, validation_alias=_env("MAX_ATTEMPTS"))
    max_body_bytes: int = Field(1024 * 1024, ge=1024, validation_alias=_env("MAX_BODY_BYTES"))

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def queue_list(self) -> list[str] | None:
        names = [q.strip() for q in self.queues.split(",") if q.strip()]
        return names or None
