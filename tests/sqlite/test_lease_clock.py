"""SQLite lease deadlines on the host's boot-time clock (conveyor/stores/sqlite/clock.py):
written and compared on that clock, converted once from the wall clock after migration 0002,
and all expired after a reboot."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from conveyor.jobs import JobStatus
from conveyor.stores.sqlite import clock
from conveyor.stores.sqlite.store import SqliteStore
from tests.support.factories import add

pytestmark = pytest.mark.skipif(clock.BOOT_ID is None, reason="no boot-time clock on this host")

S = 1_000_000  # µs


@pytest.fixture
def path(tmp_path):
    store = SqliteStore(tmp_path / "jobs.db")
    store.migrate()
    store.close()
    return tmp_path / "jobs.db"


def lease_of(path, job_id: int) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT lease_expires_at FROM jobs WHERE id = ?", (job_id,)).fetchone()[
            0
        ]


def claim(store: SqliteStore, lease: float = 30):
    return store.claim(worker="w", queues=None, limit=1, lease=timedelta(seconds=lease))


def test_a_claim_writes_its_deadline_on_the_boot_time_clock(path):
    store = SqliteStore(path)
    add(store)
    before = clock.lease_us()
    [job] = claim(store)
    deadline = lease_of(path, job.id)
    assert before + 30 * S <= deadline <= clock.lease_us() + 30 * S
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT boot_id FROM lease_clock").fetchone()[0] == clock.BOOT_ID
    store.close()


def test_a_reboot_expires_every_lease_of_the_previous_boot(path):
    store = SqliteStore(path)
    add(store)
    [job] = claim(store, lease=3600)
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE lease_clock SET boot_id = 'a-previous-boot'")
    after_reboot = SqliteStore(path)
    assert after_reboot.recover_expired().requeued == [job.id]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT boot_id FROM lease_clock").fetchone()[0] == clock.BOOT_ID
    after_reboot.close()


def test_deadlines_written_before_the_migration_are_converted_once(path):
    store = SqliteStore(path)
    add(store)
    [job] = claim(store)
    store.close()
    # as a version before migration 0002 left it: a wall-clock deadline 30 s ahead, no boot
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM lease_clock")
        conn.execute(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ?", (clock.wall_us() + 30 * S, job.id)
        )
    upgraded = SqliteStore(path)
    assert upgraded.recover_expired().count == 0, "still 30 s to go"
    deadline = lease_of(path, job.id)
    assert abs(deadline - (clock.lease_us() + 30 * S)) < 2 * S
    assert upgraded.get_job(job.id).status == JobStatus.PROCESSING
    upgraded.close()
    # converted once: a second start leaves the deadline alone
    again = SqliteStore(path)
    again.recover_expired()
    assert lease_of(path, job.id) == deadline
    again.close()
