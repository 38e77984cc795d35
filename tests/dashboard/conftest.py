"""Dashboard fixtures: one Debian Chromium per session (driven by Playwright), one live
server per store per session, a fresh browser context per test.

Tests share a server, so each one works in queues of its own (`names`), never in another
test's jobs. Under CI=true a browser that cannot start fails the tests; elsewhere they
skip with the reason."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from conveyor.app import Conveyor
from conveyor.jobs import Job, JobStatus
from conveyor.stores import Store, open_store
from tests.api.servers import ThreadedApi, api_settings, make_app
from tests.conftest import SUITE_STORES
from tests.support import pg
from tests.support.factories import LEASE

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dash-t0ken-Kp4"  # noqa: S105
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NARROW = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 800}
PAGES = ["/", "/dashboard/queues", "/dashboard/workers", "/dashboard/jobs", "/dashboard/periodic"]
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'


def _unavailable(reason: str) -> NoReturn:
    pg.unavailable(reason, tests="the dashboard tests")


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright is not installed ({exc}): pip install -e '.[dev]'")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    expect.set_options(timeout=10_000)
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    except Exception as exc:
        playwright.stop()
        _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
    yield chromium
    chromium.close()
    playwright.stop()


@dataclass
class Dashboard:
    """A live server on one store, with the store and the app it serves."""

    kind: str
    url: str
    store: Store
    conveyor: Conveyor
    server: ThreadedApi

    @property
    def base(self) -> str:
        return self.server.url


@pytest.fixture(scope="package", params=SUITE_STORES)
def dashboard(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Dashboard]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'jobs.db'}"
    elif request.param == "redis":
        url = request.getfixturevalue("redis_session_url")  # as PostgreSQL's, below
    else:
        # The session's database (dropping one costs a checkpoint: seconds on a busy server);
        # other tests may empty it between these, which take nothing from one another.
        url = request.getfixturevalue("pg_session_url")
    with served(request.param, url) as live:
        yield live


@contextmanager
def served(kind: str, url: str) -> Iterator[Dashboard]:
    """The API and dashboard on a migrated store at `url`, served on a free port."""
    store = open_store(url)
    store.migrate()
    app = make_app(url)
    app.periodic("*/5 * * * *", task="print", payload={"message": "hi"}, name="every-5-min")
    try:
        with ThreadedApi(app, api_settings()) as server:
            yield Dashboard(kind, url, store, app, server)
    finally:
        app.close()
        store.close()


@pytest.fixture(scope="package")
def secured(dashboard: Dashboard) -> Iterator[ThreadedApi]:
    """A second server on the same store, with API_TOKEN set."""
    app = make_app(dashboard.url)
    try:
        with ThreadedApi(app, api_settings(api_token=TOKEN)) as server:
            yield server
    finally:
        app.close()


_counter = itertools.count()


@pytest.fixture
def names() -> Any:
    """Names no other test uses: names("q") -> "q7-3fa2c1"."""
    return lambda prefix: f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="package")
def context(browser: Any) -> Iterator[Any]:
    """One browser profile for the session: a tab of its own per test is enough isolation
    (the API token lives in the tab's sessionStorage) and costs a tenth of a profile."""
    profile = browser.new_context(viewport=WIDE)
    profile.set_default_timeout(10_000)
    yield profile
    profile.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    tab = context.new_page()
    yield tab
    tab.close()


def claim(store: Store, queue: str, n: int) -> list[Job]:
    """Claim `n` jobs of `queue`, as a worker would (finish them through the store)."""
    jobs = store.claim(worker="dash-test", queues=[queue], limit=n, lease=LEASE)
    assert len(jobs) == n, jobs
    return jobs


def failed_jobs(dashboard: Dashboard, queue: str, n: int, error: str = "boom") -> list[Job]:
    for _ in range(n):
        dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    jobs = claim(dashboard.store, queue, n)
    for job in jobs:
        assert dashboard.store.fail(job.lease_ref(), error, retry_at=None) == JobStatus.FAILED
    return jobs


@pytest.fixture
def clocked_page(browser: Any) -> Iterator[Any]:
    """A tab in a profile of its own whose timers the test drives (page.clock): a clock is
    installed for a whole profile."""
    profile = browser.new_context(viewport=WIDE)
    profile.set_default_timeout(10_000)
    tab = profile.new_page()
    tab.clock.install()
    yield tab
    profile.close()
