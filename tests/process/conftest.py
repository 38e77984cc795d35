from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from tests.support.procs import workers  # noqa: F401 - fixture


@pytest.fixture
def producer(store_url: str) -> Iterator[Conveyor]:
    """The app a test enqueues and reads through, beside the worker processes."""
    app = Conveyor(store_url)
    yield app
    app.close()
