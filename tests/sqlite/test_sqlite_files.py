"""SQLite file trouble, one store, real files: a database that is briefly read-only (chattr
+i, which root cannot write through either), and a file deleted or replaced under the
store. See docs/architecture.md, "SQLite store" and stores/sqlite/connections.py."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from conveyor.errors import StoreFileReplaced, StoreUnavailable
from conveyor.stores.sqlite.store import SqliteStore
from conveyor.validation import new_job
from tests.sqlite.immutable import database_files, immutable, require_chattr
from tests.support.factories import add

T = TypeVar("T")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    require_chattr(tmp_path)
    return tmp_path / "jobs.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db)
    s.migrate()
    add(s)  # the -wal exists from here on
    yield s
    s.close()


@pytest.fixture
def other_thread() -> Iterator[Callable[..., object]]:
    """Runs calls on one other thread, which keeps its own connection between them."""
    with ThreadPoolExecutor(1, thread_name_prefix="other") as pool:

        def call(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
            return pool.submit(fn, *args, **kwargs).result()

        yield call


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def test_a_connection_opened_while_the_file_was_read_only_writes_once_it_is_writable(
    db, store, other_thread
):
    with immutable(*database_files(db)):
        # The other thread opens its first connection now: SQLite opens the file read-only.
        assert other_thread(store.get_job, 1) is not None  # reads still work
        with pytest.raises(StoreUnavailable) as caught:
            other_thread(add, store)
        assert str(db) in one_line(caught)
        assert "readonly" in str(caught.value) or "read-only" in str(caught.value)
        with pytest.raises(StoreUnavailable, match="cannot be written") as caught:
            store.ping()
        assert f"{db} is not writable" in one_line(caught)
    # Writable again: the first write on that thread succeeds (its connection is reopened
    # before it can fail), and so do the ping and this thread's writes.
    assert other_thread(add, store).id == 2
    store.ping()
    assert add(store).id == 3


def test_a_connection_is_reopened_after_a_read_only_error(db, store, other_thread, monkeypatch):
    # As if the file was writable when the connection was checked but not when SQLite
    # opened it (a race): nothing marks the connection, only its first write's error can.
    monkeypatch.setattr(store._db.file, "unwritable", lambda force=False: None)
    with immutable(*database_files(db)):
        other_thread(store.get_job, 1)
        first = other_thread(store._conn)
    with pytest.raises(StoreUnavailable, match="readonly database"):
        other_thread(add, store)  # the file is writable now, this connection is not
    assert other_thread(store._conn) is not first  # dropped after the error, reopened
    assert other_thread(add, store).id == 2


@pytest.mark.parametrize("opened", ["before the window", "during the window"])
def test_every_write_path_raises_store_unavailable_while_read_only(db, store, other_thread, opened):
    call: Callable[..., object] = other_thread
    if opened == "before the window":
        call(store.get_job, 1)  # the other thread's connection predates the window
    writes: dict[str, Callable[[], object]] = {
        "enqueue": lambda: add(store),
        "enqueue unique_key": lambda: add(store, unique_key="k"),
        "enqueue_many": lambda: store.enqueue_many([new_job("t", i) for i in range(3)]),
        "cancel": lambda: store.cancel(1),
    }
    with immutable(*database_files(db)):
        for name, write in writes.items():
            for _ in range(2):  # and again, on the connection opened after the error
                with pytest.raises(StoreUnavailable) as caught:
                    call(write)
                assert str(db) in one_line(caught), name
    assert call(add, store, unique_key="k").unique_key == "k"
    assert len(call(store.enqueue_many, [new_job("t", i) for i in range(3)])) == 3
    assert store.stats() == {"default": {"pending": 5}}


def test_a_failed_write_leaves_no_transaction_open_and_rollback_errors_are_not_raised(db, store):
    with immutable(*database_files(db)):
        with pytest.raises(StoreUnavailable) as caught:
            store.enqueue_many([new_job("t", i) for i in range(3)])
        assert "rollback" not in str(caught.value)
        assert not store._conn().in_transaction
    with pytest.raises(StoreUnavailable, match="boom"), store._write() as conn:
        conn.execute("SELECT 1")
        conn.execute("ROLLBACK")  # as SQLite does on its own after some errors
        raise sqlite3.OperationalError("boom")
    assert add(store).id == 2


def test_a_deleted_file_is_reported_for_good_and_never_recreated(db, store, other_thread):
    os.unlink(db)
    with pytest.raises(StoreFileReplaced) as caught:
        store.check_identity()
    message = one_line(caught)
    assert str(db) in message
    assert "was deleted or renamed" in message
    # every call from then on, on any thread, says so; none creates a new file
    for call in (lambda: add(store), store.ping, lambda: other_thread(store.get_job, 1)):
        with pytest.raises(StoreFileReplaced):
            call()
    assert not db.exists()


def test_a_replaced_file_is_reported(db, store, tmp_path):
    replacement = SqliteStore(tmp_path / "other.db")
    replacement.migrate()
    replacement.close()
    os.replace(tmp_path / "other.db", db)
    with pytest.raises(StoreFileReplaced, match="was replaced by another file"):
        store.ping()
    with pytest.raises(StoreFileReplaced):
        add(store)


def test_the_file_is_checked_on_the_call_path_without_being_asked(db, store, monkeypatch):
    monkeypatch.setattr("conveyor.stores.sqlite.connections.FILE_CHECK_INTERVAL_S", 0.0)
    os.rename(db, f"{db}.moved")
    with pytest.raises(StoreFileReplaced, match="deleted or renamed"):
        store.get_job(1)


def test_a_first_open_still_creates_the_file(tmp_path):
    store = SqliteStore(tmp_path / "new.db")
    try:
        assert store.schema_version() == 0
        assert not (tmp_path / "new.db").exists(), "asking for the schema creates nothing"
        store.migrate()
        assert (tmp_path / "new.db").exists()
        store.ping()
    finally:
        store.close()


def test_the_notifier_stops_polling_once_the_file_is_gone(db, store):
    async def scenario() -> None:
        notifier = store.notifier()
        await notifier.start()
        try:
            os.unlink(db)
            with pytest.raises(StoreFileReplaced):
                store.check_identity()
            thread = notifier._thread  # type: ignore[attr-defined]
            await asyncio.to_thread(thread.join, 5.0)
            assert not thread.is_alive()
        finally:
            await notifier.stop()

    asyncio.run(scenario())
