"""SPEC §10 settings: `?pooler=transaction`, LISTEN_DATABASE_URL, and the poll interval (the
fetch interval under SPEC §10's name), without a database."""

from __future__ import annotations

import pytest

from conveyor.app import Conveyor
from conveyor.cli.run import settings_from
from conveyor.errors import ConfigurationError
from conveyor.process import fetch_interval
from conveyor.stores.postgres.connections import split_pooler
from conveyor.stores.postgres.store import PostgresStore

PG = "postgresql://u:secret@db:5432/jobs"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (PG, (PG, False)),
        (f"{PG}?pooler=transaction", (PG, True)),
        (f"{PG}?pooler=transaction&sslmode=disable", (f"{PG}?sslmode=disable", True)),
        (f"{PG}?sslmode=disable&pooler=transaction", (f"{PG}?sslmode=disable", True)),
        (f"{PG}?a=1&pooler=transaction&b=2", (f"{PG}?a=1&b=2", True)),
    ],
)
def test_the_pooler_parameter_is_read_and_taken_out(url, expected):
    assert split_pooler(url) == expected


def test_only_transaction_mode_can_be_declared():
    with pytest.raises(ConfigurationError, match="pooler=transaction"):
        split_pooler(f"{PG}?pooler=statement")


def test_a_declared_or_listening_store_is_pooled_and_says_whether_it_listens():
    declared = PostgresStore(f"{PG}?pooler=transaction")
    listening = PostgresStore(PG, listen_url="postgresql://u:secret@direct:5432/jobs")
    direct = PostgresStore(PG)
    assert (declared.pooled, declared.listens) == (True, False)
    assert (listening.pooled, listening.listens) == (True, True)
    assert (direct.pooled, direct.listens) == (False, True)
    # libpq never sees Conveyor's parameter; the listener gets the direct connection
    assert "pooler" not in declared.conninfo("x")
    assert "host=direct" in listening.conninfo("x", listen=True)
    assert "host=db" in listening.conninfo("x")


def test_listen_url_cannot_be_a_transaction_pooler():
    with pytest.raises(ConfigurationError, match="LISTEN_DATABASE_URL"):
        PostgresStore(PG, listen_url=f"{PG}?pooler=transaction")


def test_poll_interval_is_the_fetch_interval_and_defaults_to_half_a_second_when_polling(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    for var in ("FETCH_INTERVAL", "POLL_INTERVAL", "LISTEN_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    assert fetch_interval(settings_from(), listens=False) == 0.5
    assert fetch_interval(settings_from(), listens=True) == 5.0
    assert fetch_interval(settings_from(fetch_interval=2.0), listens=False) == 2.0
    monkeypatch.setenv("POLL_INTERVAL", "0.25")
    assert settings_from().fetch_interval == 0.25
    assert fetch_interval(settings_from(), listens=False) == 0.25
    monkeypatch.setenv("LISTEN_DATABASE_URL", PG)
    assert Conveyor(f"{PG}?pooler=transaction").listen_database_url == PG
