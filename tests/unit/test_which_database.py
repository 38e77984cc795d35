"""SPEC §3 "Which database": the store a command uses, in-process. An app built with a URL
keeps it unless --database-url is given on the command line; DATABASE_URL and .env apply
to apps built without one and to the demo app. --max-attempts follows the same rule."""

from __future__ import annotations

import itertools
import sys

import pytest

from conveyor.cli.run import settings_from
from conveyor.process import configured_app, store_url
from conveyor.settings import Settings, redact_url

_names = itertools.count()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with no .env and no DATABASE_URL; `make(source)` writes a module
    there and returns its `module:app` spec (a fresh module name each time)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for var in ("DATABASE_URL", "CONVEYOR_APP", "MAX_ATTEMPTS"):
        monkeypatch.delenv(var, raising=False)

    def make(source: str) -> str:
        name = f"which_db_app_{next(_names)}"
        (tmp_path / f"{name}.py").write_text("from conveyor import Conveyor\n\n" + source)
        return f"{name}:app"

    return make


def test_an_apps_own_url_beats_database_url_from_the_environment(project, monkeypatch):
    spec = project('app = Conveyor("sqlite:///jobs.db")\n')
    monkeypatch.setenv("DATABASE_URL", "sqlite:///env.db")
    app = configured_app(settings_from(app=spec))
    assert app.database_url == "sqlite:///jobs.db"
    assert app.has_own_database_url
    assert store_url(settings_from(app=spec)) == "sqlite:///jobs.db"


def test_an_apps_own_url_beats_dotenv(project, tmp_path):
    spec = project('app = Conveyor("sqlite:///jobs.db")\n')
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///dotenv.db\n")
    assert configured_app(settings_from(app=spec)).database_url == "sqlite:///jobs.db"


def test_database_url_on_the_command_line_beats_the_apps_own(project, monkeypatch):
    spec = project('app = Conveyor("sqlite:///jobs.db")\n')
    monkeypatch.setenv("DATABASE_URL", "sqlite:///env.db")
    settings = settings_from(app=spec, database_url="sqlite:///flag.db")
    assert configured_app(settings).database_url == "sqlite:///flag.db"
    assert store_url(settings) == "sqlite:///flag.db"


def test_an_app_without_a_url_reads_the_environment_then_dotenv(project, monkeypatch, tmp_path):
    def url(**flags: str) -> str:
        # a fresh module each time: an app reads DATABASE_URL once, as a process would
        spec = project("app = Conveyor()\n")
        return configured_app(settings_from(app=spec, **flags)).database_url

    assert url() == "sqlite:///conveyor.db"
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///dotenv.db\n")
    assert url() == "sqlite:///dotenv.db"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///env.db")
    assert url() == "sqlite:///env.db"
    assert url(database_url="sqlite:///flag.db") == "sqlite:///flag.db"
    assert not configured_app(settings_from(app=project("app = Conveyor()\n"))).has_own_database_url


def test_the_demo_app_follows_database_url(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///env.db")
    assert store_url(settings_from()) == "sqlite:///env.db"
    assert store_url(settings_from(database_url="sqlite:///flag.db")) == "sqlite:///flag.db"


def test_max_attempts_follows_the_same_rule(project, monkeypatch):
    own = project('app = Conveyor("sqlite:///jobs.db", max_attempts=3)\n')
    monkeypatch.setenv("MAX_ATTEMPTS", "9")
    assert configured_app(settings_from(app=own)).default_max_attempts == 3
    assert configured_app(settings_from(app=own, max_attempts=7)).default_max_attempts == 7
    without = project('app = Conveyor("sqlite:///jobs.db")\n')
    assert configured_app(settings_from(app=without)).default_max_attempts == 9


def test_settings_know_which_values_were_given_as_flags(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("WORKER_COUNT", "3")
    settings = settings_from(lease=4.0, database_url=None)
    assert settings.flags == frozenset({"lease"})
    assert (settings.database_url, settings.workers) == ("sqlite:///env.db", 3)
    assert Settings(_env_file=None, port=1).flags == frozenset({"port"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        ("sqlite:////abs/a:b@c.db", "sqlite:////abs/a:b@c.db"),
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        (
            "postgres://user:pa/ss@word@host/db?sslmode=require",
            "postgres://user:***@host/db?sslmode=require",
        ),
        (
            "postgresql://host/db?user=u&password=secret&x=1",
            "postgresql://host/db?user=u&password=***&x=1",
        ),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
    ],
)
def test_redact_url_hides_passwords(url, shown):
    assert redact_url(url) == shown
    assert "secret" not in redact_url(url) and "pa/ss" not in redact_url(url)
