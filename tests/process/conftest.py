from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from tests.conftest import STORES, store_url_over
from tests.support.procs import workers  # noqa: F401 - fixture

# The process suite runs on every store, Redis included (SPEC §10).
store_url = store_url_over(STORES)


@pytest.fixture
def producer(store_url: str) -> Iterator[Conveyor]:
    """The app a test enqueues and reads through, beside the worker processes."""
    app = Conveyor(store_url)
    yield app
    app.close()
