"""The contract suite runs on every store, Redis included (tests/conftest.py: STORES), and on
PostgreSQL declared pooled (`?pooler=transaction`: the statements a store sends through a
transaction-mode pooler, functions among them, without the pooler itself)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.stores import Store, open_store
from tests.conftest import STORES, store_url_over

store_url = store_url_over([*STORES, "postgres-pooled"])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store; declared pooled, with the direct URL as its LISTEN_DATABASE_URL, as such a
    store is deployed (SPEC §10)."""
    pooled = store_url.endswith("?pooler=transaction")
    s = open_store(store_url, listen_url=store_url.split("?")[0] if pooled else None)
    yield s
    s.close()
