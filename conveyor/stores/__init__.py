"""Stores: durable job state. `open_store(url)` picks the implementation by URL scheme."""

from __future__ import annotations

from conveyor.errors import ConfigurationError
from conveyor.stores.base import Notifier, Store

__all__ = ["Notifier", "Store", "open_store"]


def open_store(url: str, *, listen_url: str | None = None) -> Store:
    """A store for `url` (sqlite:///path, postgresql://… or redis://…); connects lazily.
    `listen_url`: PostgreSQL's connection for LISTEN when `url` reaches a transaction-mode
    pooler (SPEC §10, LISTEN_DATABASE_URL); other stores need none."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from conveyor.stores.sqlite.store import SqliteStore

        return SqliteStore.from_url(url)
    if scheme in ("postgresql", "postgres"):
        from conveyor.stores.postgres.store import PostgresStore

        return PostgresStore(url, listen_url=listen_url)
    if scheme in ("redis", "rediss"):
        from conveyor.stores.redis.store import RedisStore

        return RedisStore(url)
    shown = url if len(url) < 80 else url[:77] + "..."
    raise ConfigurationError(
        f"unsupported DATABASE_URL {shown!r}: use sqlite:///path.db, "
        "postgresql://user@host/db or redis://host:6379/0"
    )
