from tests.support.procs import workers  # noqa: F401 - fixture
