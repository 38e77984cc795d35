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


def test_an_older_schema_is_brought_up_to_date_when_an_app_opens_it(tmp_path):
    # as a database left by the first release: migration 1 only
    import sqlite3

    from conveyor import Conveyor
    from conveyor.stores.sqlite.store import MIGRATIONS, Q, SqliteStore, _statements

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(Q["create_schema_version"])
        for statement in _statements(MIGRATIONS[0][2]):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, 'initial', 0)")
    assert SqliteStore(path).schema_version() == 1
    app = Conveyor(f"sqlite:///{path}")
    try:
        assert app.store.schema_version() == app.store.latest_version > 1
        job = app.enqueue("t", {"x": 1})
        assert app.get_job(job.id).progress is None  # a column of a later migration
    finally:
        app.close()
