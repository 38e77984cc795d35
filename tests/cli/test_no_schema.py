"""Commands on a store without a schema say to run `conveyor migrate`, in one line, exit
non-zero, and create nothing: no SQLite file, no PostgreSQL table (SPEC §3). `serve` and
`worker` still create the schema themselves (the README example test runs them on empty
stores)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.support import pg
from tests.support.procs import CONVEYOR

COMMANDS = [
    ["stats"],
    ["stats", "--json"],
    ["jobs", "list"],
    ["jobs", "show", "1"],
    ["jobs", "retry", "1"],
    ["jobs", "cancel", "1"],
    ["enqueue", "reverse", "--payload", '"hello"'],
    ["prune", "--older-than", "0"],
]
IDS = [" ".join(c[:2]) for c in COMMANDS]


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CONVEYOR_APP")}
    return subprocess.run(
        [CONVEYOR, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_says_migrate(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "run `conveyor migrate`" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_sqlite_path_that_does_not_exist_is_not_created(tmp_path, command):
    line = assert_says_migrate(cli(tmp_path, *command, "--database-url", "sqlite:///fresh.db"))
    assert f"does not exist ({tmp_path / 'fresh.db'})" in line
    assert os.listdir(tmp_path) == [], "nothing created: no database, no -wal, no -shm"


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_sqlite_default_and_environment_urls_are_not_created_either(tmp_path, command):
    assert_says_migrate(cli(tmp_path, *command))  # sqlite:///conveyor.db
    assert_says_migrate(cli(tmp_path, *command, env={"DATABASE_URL": "sqlite:///env.db"}))
    assert os.listdir(tmp_path) == []


def test_an_apps_own_sqlite_url_is_not_created(tmp_path):
    (tmp_path / "myapp.py").write_text(
        "from conveyor import Conveyor\n\napp = Conveyor('sqlite:///own.db')\n\n"
        "@app.task\ndef reverse(text: str) -> str:\n    return text[::-1]\n"
    )
    for command in COMMANDS:
        line = assert_says_migrate(cli(tmp_path, *command, "--app", "myapp:app"))
        assert "sqlite:///own.db does not exist" in line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["myapp.py"]


def test_sqlite_file_without_the_schema_is_left_without_it(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE mine (x)")
    conn.close()
    for command in COMMANDS:
        line = assert_says_migrate(cli(tmp_path, *command, "--database-url", f"sqlite:///{path}"))
        assert "has no Conveyor schema" in line
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == {"mine"}


def test_after_migrate_the_same_commands_work(tmp_path):
    url = "sqlite:///fresh.db"
    assert cli(tmp_path, "migrate", "--database-url", url).returncode == 0
    assert json.loads(cli(tmp_path, "stats", "--json", "--database-url", url).stdout) == {
        "queues": {}
    }
    made = cli(tmp_path, "enqueue", "reverse", "--payload", '"x"', "--database-url", url)
    assert made.returncode == 0, made.stderr


@pytest.fixture
def empty_pg_database():
    pg.require_postgres()
    url = pg.create_database("conveyor_noschema")
    yield url
    pg.drop_database(url)


def public_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_empty_postgresql_database_is_left_empty(tmp_path, empty_pg_database):
    for command in COMMANDS:
        line = assert_says_migrate(cli(tmp_path, *command, "--database-url", empty_pg_database))
        assert "has no Conveyor schema" in line, line
        assert public_tables(empty_pg_database) == [], command
    # DATABASE_URL from the environment: the same answer
    assert_says_migrate(cli(tmp_path, "stats", env={"DATABASE_URL": empty_pg_database}))
    assert os.listdir(tmp_path) == []
    assert cli(tmp_path, "migrate", "--database-url", empty_pg_database).returncode == 0
    assert "jobs" in public_tables(empty_pg_database)
    stats = cli(tmp_path, "stats", "--json", "--database-url", empty_pg_database)
    assert json.loads(stats.stdout) == {"queues": {}}
