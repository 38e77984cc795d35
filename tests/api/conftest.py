"""API fixtures: a live uvicorn server per test, on each store (store_url is parametrized)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.app import Conveyor
from conveyor.settings import Settings
from conveyor.stores import Store
from tests.api.servers import ServeProcess, ThreadedApi, api_settings, make_app


@pytest.fixture
def conveyor(store_url: str) -> Iterator[Conveyor]:
    app = make_app(store_url)
    yield app
    app.close()


@pytest.fixture
def settings() -> Settings:
    return api_settings()


@pytest.fixture
def live(conveyor: Conveyor, settings: Settings) -> Iterator[ThreadedApi]:
    with ThreadedApi(conveyor, settings) as server:
        yield server


@pytest.fixture
def client(live: ThreadedApi) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


@pytest.fixture
def count_jobs(store: Store) -> Callable[[], int]:
    """How many jobs the store holds, read directly (not through the API)."""
    return lambda: sum(sum(c.values()) for c in store.stats().values())


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(database_url: str, *args: str, env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(tmp_path, database_url, *args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()
