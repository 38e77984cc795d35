from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from tests.conftest import STORES, clean_store_url
from tests.support.procs import workers  # noqa: F401 - fixture


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """The process suite runs on every store, Redis included (SPEC §10)."""
    return clean_store_url(request)


@pytest.fixture
def producer(store_url: str) -> Iterator[Conveyor]:
    """The app a test enqueues and reads through, beside the worker processes."""
    app = Conveyor(store_url)
    yield app
    app.close()
