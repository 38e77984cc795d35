"""The contract suite runs on every store, Redis included (tests/conftest.py: STORES), and on
PostgreSQL declared pooled (`?pooler=transaction`: the statements a store sends through a
transaction-mode pooler, functions among them, without the pooler)."""

from __future__ import annotations

from tests.conftest import STORES, store_url_over

store_url = store_url_over([*STORES, "postgres-pooled"])
