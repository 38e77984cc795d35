"""The contract suite runs on every store, Redis included (tests/conftest.py: STORES)."""

from __future__ import annotations

from tests.conftest import STORES, store_url_over

store_url = store_url_over(STORES)
