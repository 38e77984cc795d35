"""The contract suite runs on every store, Redis included (tests/conftest.py: STORES)."""

from __future__ import annotations

import pytest

from tests.conftest import STORES, clean_store_url


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty store's URL, once per store kind."""
    return clean_store_url(request)
