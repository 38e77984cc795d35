"""A store that cannot write, on either store: every enqueue — a single one, one with a
unique_key (insert and read of the holder in one transaction) and a batch — answers 503
with the store's reason, never 500, and answers 201 again once the store can write.

SQLite: the database file and its -wal are made immutable (chattr +i). PostgreSQL: a
throwaway database is set to default_transaction_read_only and its sessions are ended,
so the store's pool reconnects into read-only sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest

from conveyor.stores import open_store
from tests.api.servers import ThreadedApi, api_settings, make_app
from tests.sqlite.immutable import database_files, immutable, require_chattr
from tests.support import pg

Window = Callable[[], AbstractContextManager[None]]


def _sqlite(tmp_path: Path) -> Iterator[tuple[str, Window]]:
    require_chattr(tmp_path)
    db = tmp_path / "jobs.db"
    yield f"sqlite:///{db}", lambda: immutable(*database_files(db))


def _postgres() -> Iterator[tuple[str, Window]]:
    pg.require_postgres()
    url = pg.create_database("conveyor_readonly")
    name = url.rsplit("/", 1)[1]

    def read_only(on: bool) -> None:
        with psycopg.connect(pg.ADMIN_URL, autocommit=True) as conn:
            value = "on" if on else "off"
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

    @contextmanager
    def window() -> Iterator[None]:
        read_only(True)
        try:
            yield
        finally:
            read_only(False)

    try:
        yield url, window
    finally:
        pg.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def read_only_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Window]]:
    source = _sqlite(tmp_path) if request.param == "sqlite" else _postgres()
    url, window = next(source)
    store = open_store(url)
    store.migrate()
    store.close()
    yield url, window
    source.close()


BODIES = {
    "single": ("/jobs", {"type": "reverse", "payload": "a"}),
    "unique_key": ("/jobs", {"type": "reverse", "payload": "a", "unique_key": "k"}),
    "batch": ("/jobs/batch", {"jobs": [{"type": "reverse", "payload": f"{i}"} for i in range(3)]}),
}


def test_enqueues_answer_503_not_500_while_the_store_cannot_write(read_only_store):
    url, window = read_only_store
    app = make_app(url)
    try:
        with ThreadedApi(app, api_settings()) as live, live.client() as client:
            assert client.post("/jobs", json={"type": "reverse", "payload": "x"}).status_code == 201
            with window():
                for name, (path, body) in BODIES.items():
                    for _ in range(2):
                        response = client.post(path, json=body)
                        assert response.status_code == 503, (name, response.text)
                        detail = response.json()["detail"]
                        assert "\n" not in detail and detail, (name, detail)
                        assert "read-only" in detail or "readonly" in detail or "I/O" in detail
                        assert response.headers["Retry-After"]
            for name, (path, body) in BODIES.items():
                response = client.post(path, json=body)
                assert response.status_code == 201, (name, response.text)
    finally:
        app.close()
