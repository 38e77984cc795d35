"""tests.support.apps's app, in a process whose wall clock is off by
$CONVEYOR_TEST_CLOCK_SKEW seconds: `time.time` and `time.time_ns`, which the SQLite store
and the tasks read, are shifted when the worker imports this module (`--app`)."""

from __future__ import annotations

import os
import time

_SKEW = float(os.environ["CONVEYOR_TEST_CLOCK_SKEW"])
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + _SKEW
time.time_ns = lambda: _time_ns() + int(_SKEW * 1_000_000_000)

from tests.support.apps import app  # noqa: E402 - after the clock is shifted

__all__ = ["app"]
