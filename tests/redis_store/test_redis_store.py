"""The Redis store's own behaviour, beyond the contract suite: the URL, the warning about
persistence settings that could lose jobs (SPEC §10), a server killed and started again,
and sending an enqueue or a claim again after its reply was lost without applying it twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis

from conveyor.errors import ConfigurationError, StoreUnavailable
from conveyor.jobs import JobFilter, JobStatus
from conveyor.stores import open_store
from conveyor.stores.redis.scripts import FUNCTION, SHA
from conveyor.stores.redis.store import RedisStore
from conveyor.validation import new_job
from tests.support.factories import LEASE, add, claim_one
from tests.support.redis import redis_server
from tests.support.wait import wait_until


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url)
    yield s
    s.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_redis_urls_open_the_redis_store():
    assert isinstance(open_store("redis://127.0.0.1:1/0"), RedisStore)  # connects lazily
    assert isinstance(open_store("rediss://user:secret@example.invalid:6380/2"), RedisStore)
    assert "secret" not in repr(open_store("redis://user:secret@127.0.0.1:1/0"))
    with pytest.raises(ConfigurationError, match="redis://host:6379/0"):
        open_store("mysql://x")


@pytest.fixture
def persistence(admin: redis.Redis) -> Iterator[redis.Redis]:
    """The test server's persistence settings, put back after the test changes them."""
    before = admin.config_get("append*")
    yield admin
    admin.config_set("appendfsync", before["appendfsync"])
    admin.config_set("appendonly", before["appendonly"])
    # turned on again, the append-only file is rewritten first (a shutdown meanwhile waits)
    wait_until(lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0)


def _warnings(redis_url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="conveyor.stores.redis"):
        fresh = RedisStore(redis_url)
        try:
            fresh.get_job(1)  # the first use reads the settings
            fresh.get_job(1)  # and only the first
        finally:
            fresh.close()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_durable_settings_start_without_a_warning(redis_url, caplog):
    assert _warnings(redis_url, caplog) == []


def test_everysec_warns_that_a_second_of_jobs_can_be_lost(redis_url, persistence, caplog):
    persistence.config_set("appendfsync", "everysec")
    (message,) = _warnings(redis_url, caplog)
    assert "appendfsync everysec: up to 1 s of acknowledged jobs can be lost" in message


def test_no_append_only_file_warns_that_jobs_can_be_lost(redis_url, persistence, caplog):
    persistence.config_set("appendonly", "no")
    (message,) = _warnings(redis_url, caplog)
    assert "appendonly no: acknowledged jobs can be lost when it restarts" in message


def _lose_first_reply(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the store's next script call run on the server but lose its reply, as a
    connection dropped after the command was sent; returns the ops called."""
    client = store._redis()
    real = client.fcall
    calls: list[str] = []

    def fcall(function, numkeys, *args):
        calls.append(args[3])  # the op (after the route key, the prefix and now)
        reply = real(function, numkeys, *args)
        if len(calls) == 1:
            raise redis.ConnectionError("connection reset after the command was sent")
        return reply

    monkeypatch.setattr(client, "fcall", fcall)
    return calls


def test_an_enqueue_whose_reply_was_lost_is_sent_again_and_applies_once(store, monkeypatch):
    calls = _lose_first_reply(store, monkeypatch)
    job = add(store, payload={"n": 1})
    assert calls == ["enqueue", "enqueue"]
    assert [j.id for j in store.list_jobs(JobFilter())] == [job.id]


def test_a_claim_whose_reply_was_lost_hands_out_the_jobs_it_took(store, monkeypatch):
    first, second = add(store), add(store)
    calls = _lose_first_reply(store, monkeypatch)
    claimed = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    assert calls == ["claim", "claim"]
    assert [j.id for j in claimed] == [first.id]
    assert [j.id for j in store.claim(worker="w", queues=None, limit=5, lease=LEASE)] == [second.id]


def test_other_transitions_are_never_sent_twice(store, monkeypatch):
    add(store)
    job = claim_one(store)
    calls = _lose_first_reply(store, monkeypatch)
    with pytest.raises(StoreUnavailable, match="connection reset"):
        store.complete(job.lease_ref())
    assert calls == ["finish"]  # redis-py's own retry is off: the client sent it once
    assert store.get_job(job.id).status == "done"


def test_a_killed_server_comes_back_with_every_acknowledged_job():
    """SIGKILL, then a new server on the same append-only file: every job acknowledged
    before is there, leases included, and the same store object goes on (it reconnects, and
    loads its script into the new server)."""
    with redis_server() as server:
        store = RedisStore(server.url)
        try:
            store.migrate()
            store.enqueue_many([new_job("t", {"n": i}) for i in range(100)])
            running = store.claim(worker="w", queues=None, limit=10, lease=LEASE)
            assert store.complete(running[0].lease_ref())
            before = store.stats()
            server.kill()
            with pytest.raises(StoreUnavailable):
                store.get_job(running[1].id)
            server.start()
            assert (
                store.stats() == before == {"default": {"done": 1, "processing": 9, "pending": 90}}
            )
            assert store.heartbeat([j.lease_ref() for j in running[1:]], lease=LEASE).lost == set()
            assert store.complete(running[1].lease_ref())
            add(store)
            assert len(store.claim(worker="w", queues=None, limit=500, lease=LEASE)) == 91
            assert store.get_job(running[0].id).status == JobStatus.DONE
        finally:
            store.close()


def test_cancel_and_retry_answer_the_job_as_their_script_left_it(store, monkeypatch):
    """A worker may claim a retried job the moment the retry's script ends: retry answers
    the job as retried (pending), not as read afterwards (found by
    tests/process/test_operator_actions.py on Redis)."""
    add(store, max_attempts=1)
    job = claim_one(store)
    store.fail(job.lease_ref(), "boom", retry_at=None)
    real = store.get_job

    def claimed_meanwhile(job_id):
        store.claim(worker="w2", queues=None, limit=1, lease=LEASE)
        return real(job_id)

    monkeypatch.setattr(store, "get_job", claimed_meanwhile)
    assert store.retry(job.id).status == JobStatus.PENDING
    assert real(job.id).status == JobStatus.PENDING  # nothing read it in between
    assert store.cancel(job.id).status == JobStatus.CANCELLED


def _libraries(admin: redis.Redis) -> set[str]:
    """The names of the function libraries the server holds (FUNCTION LIST)."""
    return {
        dict(zip(lib[::2], lib[1::2], strict=True))["library_name"] for lib in admin.function_list()
    }


def test_a_server_without_the_library_gets_it_loaded_at_the_next_call(store, admin):
    """The ops run as one function library (FUNCTION LOAD once per server, then FCALL): a
    server that lost it (flushed, or restarted without its data) has it loaded again by the
    next call, which then applies once."""
    first = add(store)
    assert FUNCTION in _libraries(admin)
    admin.function_flush()
    assert FUNCTION not in _libraries(admin)
    second = add(store)
    assert FUNCTION in _libraries(admin)
    assert [j.id for j in store.list_jobs(JobFilter())] == [second.id, first.id]


def test_a_redis_without_functions_runs_the_same_ops_as_a_script(store, admin, monkeypatch):
    """Before Redis 7 there is no FCALL: the first call's "unknown command" switches the
    client to the same code as one script (EVALSHA), for good."""
    client = store._redis()
    tried: list[str] = []

    def no_fcall(function, numkeys, *args):
        tried.append(args[3])
        raise redis.ResponseError("unknown command 'FCALL', with args beginning with: ")

    monkeypatch.setattr(client, "fcall", no_fcall)
    admin.script_flush()
    job = add(store)
    claimed = claim_one(store)
    assert store.complete(claimed.lease_ref())
    assert tried == ["enqueue"]  # asked once, then scripts only
    assert admin.script_exists(SHA) == [True]
    assert store.get_job(job.id).status == JobStatus.DONE
