"""Retention prunes one status at a time through the partial index jobs_finished (status,
finished_at), also under a generic plan (made without the status's value): a prune batch
must never scan the table, however large."""

from __future__ import annotations

import pytest

from tests.postgres.test_plans import generic_plan, table  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres


def test_prune_walks_the_finished_index_by_status(table):  # noqa: F811 - the fixture
    plan = generic_plan(table, "prune")
    assert "jobs_finished" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "Sort" not in plan, "oldest first comes from the index order: " + plan
    assert "Index Cond: (id = ANY ($" in plan, "each row deleted by primary key: " + plan
