"""Contract: migrations are versioned and idempotent."""

from __future__ import annotations

from conveyor.stores import open_store


def test_migrate_is_idempotent(store, store_url):
    version = store.schema_version()
    assert version >= 1
    assert store.migrate() == version
    other = open_store(store_url)
    try:
        assert other.migrate() == version
        assert other.schema_version() == version
    finally:
        other.close()


def test_fresh_sqlite_has_version_zero_until_migrated(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert store.schema_version() == 0
        assert store.migrate() >= 1
        assert store.schema_version() >= 1
    finally:
        store.close()
