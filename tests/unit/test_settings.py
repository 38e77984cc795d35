"""Settings precedence: flags > environment > .env > defaults."""

from __future__ import annotations

import pydantic
import pytest

from conveyor.cli.run import settings_from


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("DATABASE_URL", "WORKER_COUNT", "LEASE_SECONDS", "HOST", "PORT", "LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    s = settings_from()
    assert s.database_url == "sqlite:///conveyor.db"
    assert (s.workers, s.fetch_interval, s.fetch_limit, s.lease, s.shutdown_timeout) == (
        5,
        5.0,
        10,
        30.0,
        30.0,
    )
    assert (s.host, s.port, s.api_token, s.log_format, s.log_level, s.max_attempts) == (
        "127.0.0.1",
        8080,
        None,
        "text",
        "INFO",
        5,
    )
    assert s.queue_list is None


def test_flag_beats_env_beats_dotenv(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("WORKER_COUNT=3\nLEASE_SECONDS=11\nCONVEYOR_QUEUES=a, b\n")
    monkeypatch.delenv("WORKER_COUNT", raising=False)
    monkeypatch.delenv("LEASE_SECONDS", raising=False)
    monkeypatch.delenv("CONVEYOR_QUEUES", raising=False)
    assert settings_from().workers == 3
    assert settings_from().queue_list == ["a", "b"]
    monkeypatch.setenv("WORKER_COUNT", "7")
    assert settings_from().workers == 7
    assert settings_from(workers=9).workers == 9
    assert settings_from().lease == 11


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(pydantic.ValidationError):
        settings_from()
