"""Contract: leadership of a fleet-wide chore (Store.try_lead / resign), on both stores.

One holder at a time per role; a leader's time is counted on the store's clock; it hands
over once it has expired, renewing keeps it, resigning frees it at once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from conveyor.jobs import utcnow
from conveyor.stores import open_store

TTL = timedelta(seconds=10)


@pytest.fixture
def role() -> str:
    # The PostgreSQL session database is shared by the tests (only `jobs` is emptied
    # between them): a fresh role per test.
    return f"test-{uuid.uuid4().hex[:8]}"


def test_one_holder_leads_and_the_others_are_refused(store, role):
    assert store.try_lead(role, "a", ttl=TTL)
    assert not store.try_lead(role, "b", ttl=TTL)
    assert not store.try_lead(role, "c", ttl=TTL)
    assert store.try_lead(role, "a", ttl=TTL), "the leader renews"
    assert store.try_lead(f"{role}-other", "b", ttl=TTL), "roles are independent"


def test_an_expired_leader_is_replaced_and_stays_replaced(store, role):
    t0 = utcnow()
    assert store.try_lead(role, "a", ttl=TTL, now=t0)
    assert not store.try_lead(role, "b", ttl=TTL, now=t0 + timedelta(seconds=9))
    assert store.try_lead(role, "b", ttl=TTL, now=t0 + timedelta(seconds=11)), "expiry hands over"
    assert not store.try_lead(role, "a", ttl=TTL, now=t0 + timedelta(seconds=12)), (
        "the old leader cannot take it back while the new one's time runs"
    )
    assert store.try_lead(role, "b", ttl=TTL, now=t0 + timedelta(seconds=12))


def test_renewing_keeps_the_lead_past_the_first_deadline(store, role):
    t0 = utcnow()
    assert store.try_lead(role, "a", ttl=TTL, now=t0)
    assert store.try_lead(role, "a", ttl=TTL, now=t0 + timedelta(seconds=8))
    assert not store.try_lead(role, "b", ttl=TTL, now=t0 + timedelta(seconds=15))
    assert store.try_lead(role, "b", ttl=TTL, now=t0 + timedelta(seconds=19))


def test_a_leader_that_renews_late_but_before_anyone_else_keeps_it(store, role):
    t0 = utcnow()
    assert store.try_lead(role, "a", ttl=TTL, now=t0)
    assert store.try_lead(role, "a", ttl=TTL, now=t0 + timedelta(seconds=30))
    assert not store.try_lead(role, "b", ttl=TTL, now=t0 + timedelta(seconds=31))


def test_resigning_frees_the_role_at_once_and_only_for_its_holder(store, role):
    assert store.try_lead(role, "a", ttl=TTL)
    store.resign(role, "b")  # not b's: nothing happens
    assert not store.try_lead(role, "b", ttl=TTL)
    store.resign(role, "a")
    assert store.try_lead(role, "b", ttl=TTL)
    store.resign(role, "a")  # a no longer holds it: b keeps it
    assert not store.try_lead(role, "c", ttl=TTL)
    store.resign(f"{role}-never-led", "a")  # harmless


def test_two_holders_never_lead_at_once_when_they_ask_together(store_url, role):
    """Eight holders, each with its own store object (as separate processes have), ask at
    the same moment, round after round on fresh roles: exactly one leads each time."""
    holders = 8
    stores = [open_store(store_url) for _ in range(holders)]
    try:
        for round_ in range(15):
            current = f"{role}-{round_}"
            barrier = threading.Barrier(holders)
            won: list[str] = []
            lock = threading.Lock()

            def ask(n: int, current: str = current, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                if stores[n].try_lead(current, f"holder-{n}", ttl=TTL):
                    with lock:
                        won.append(f"holder-{n}")

            threads = [threading.Thread(target=ask, args=(n,)) for n in range(holders)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len(won) == 1, f"round {round_}: {won} lead at once"
            # and the same again once the leader's time has run out: one successor
            later = utcnow() + TTL + timedelta(seconds=1)
            successors = [
                n
                for n in range(holders)
                if stores[n].try_lead(current, f"next-{n}", ttl=TTL, now=later)
            ]
            assert len(successors) == 1, successors
    finally:
        for s in stores:
            s.close()


def test_sqlite_leadership_ignores_the_wall_clock(sqlite_url, role, monkeypatch):
    """SQLite counts a leader's time on the boot-time clock, like job leases: a process
    whose wall clock runs a day ahead does not see a live leader as expired."""
    from conveyor.stores.sqlite import clock

    if clock.BOOT_ID is None:
        pytest.skip("no boot-time clock on this host: deadlines follow the wall clock")
    store = open_store(sqlite_url)
    try:
        store.migrate()
        assert store.try_lead(role, "a", ttl=TTL)
        real = clock.wall_us
        monkeypatch.setattr(clock, "wall_us", lambda: real() + 86_400_000_000)
        assert not store.try_lead(role, "b", ttl=TTL)
    finally:
        store.close()


def test_sqlite_a_reboot_expires_every_leader_of_the_previous_boot(sqlite_url, role):
    """Boot-time deadlines mean nothing after a reboot (the clock restarts near zero, and
    a deadline of the previous boot could lie hours ahead): the first store of the new
    boot expires them with the job leases."""
    import sqlite3

    from conveyor.stores.sqlite import clock

    if clock.BOOT_ID is None:
        pytest.skip("no boot-time clock on this host: deadlines follow the wall clock")
    store = open_store(sqlite_url)
    store.migrate()
    assert store.try_lead(role, "a", ttl=timedelta(days=1))
    store.close()
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE lease_clock SET boot_id = 'a-previous-boot'")
    after_reboot = open_store(sqlite_url)
    try:
        assert after_reboot.try_lead(role, "b", ttl=TTL)
    finally:
        after_reboot.close()
