"""Retry delays: pure functions, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable

# A policy maps the number of the attempt that just failed (1-based) to seconds to wait.
BackoffPolicy = Callable[[int], float]

MAX_BACKOFF_SECONDS = 3600.0
JITTER = 0.2


def exponential_backoff(attempt: int, *, rng: random.Random | None = None) -> float:
    """SPEC default: 2**attempt seconds, ±20 % jitter, capped at one hour."""
    base = min(2.0 ** max(attempt, 1), MAX_BACKOFF_SECONDS)
    jitter = (rng or random).uniform(-JITTER, JITTER)
    return min(base * (1.0 + jitter), MAX_BACKOFF_SECONDS)
