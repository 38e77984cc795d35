"""SPEC §7 from Python: `app.configure_queue`, `pause_queue`, `resume_queue`, `queues()` and
`concurrency_key` on every enqueue path, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from conveyor import Conveyor
from conveyor.errors import InvalidJob
from conveyor.jobs import Finish, QueueSettings, RateLimit, utcnow
from tests.support.factories import LEASE


@pytest.fixture
def app(store_url: str) -> Iterator[Conveyor]:
    app = Conveyor(store_url)

    @app.task(queue="payments")
    def payment(order_id: str = "", amount: int = 0) -> None:
        return None

    @app.task
    def export(report_id: int = 0) -> None:
        return None

    yield app
    app.close()


def test_the_spec_example(app):
    payments = app.configure_queue("payments", concurrency=2, rate_limit="10/s", key_concurrency=1)
    assert payments == QueueSettings(
        "payments", concurrency=2, rate_limit=RateLimit(10, 1), key_concurrency=1
    )
    reports = app.configure_queue("reports", fair=True)
    assert reports == QueueSettings("reports", fair=True)
    job = app.enqueue("payment", {"order_id": "A"}, queue="payments", concurrency_key="tenant-42")
    assert job.concurrency_key == "tenant-42"
    assert app.get_job(job.id).concurrency_key == "tenant-42"
    assert app.pause_queue("payments").paused
    assert not app.resume_queue("payments").paused
    listed = {queue.name: queue for queue in app.queues()}
    assert listed["payments"] == QueueSettings(
        "payments",
        concurrency=2,
        rate_limit=RateLimit(10, 1),
        key_concurrency=1,
        counts={"pending": 1},
    )
    assert listed["reports"] == QueueSettings("reports", fair=True, counts={})


def test_queues_lists_settings_and_counts_of_every_queue_with_jobs(app):
    app.enqueue("export", queue="reports")
    app.enqueue("export", queue="reports")
    done = app.enqueue("export", queue="archive")
    claimed = app.store.claim(worker="w", queues=["archive"], limit=1, lease=LEASE)
    assert [j.id for j in claimed] == [done.id]
    app.store.finish_many([Finish.done(claimed[0].lease_ref())])
    app.configure_queue("idle", concurrency=1)
    queues = app.queues()
    assert [q.name for q in queues] == ["archive", "idle", "reports"]
    archive, idle, reports = queues
    # a queue whose jobs all finished has no settings row on every store: defaults
    assert archive == QueueSettings("archive", counts={"done": 1})
    assert idle == QueueSettings("idle", concurrency=1, counts={})
    assert reports.counts == {"pending": 2}
    assert reports.to_json()["counts"] == {"pending": 2}
    assert app.queues() == queues  # reading changes nothing


def test_only_the_given_settings_change_and_none_clears(app):
    app.configure_queue("q", concurrency=3, rate_limit="600/m", key_concurrency=2, fair=True)
    assert app.configure_queue("q", rate_limit=None) == QueueSettings(
        "q", concurrency=3, key_concurrency=2, fair=True
    )
    assert app.configure_queue("q", concurrency="none", key_concurrency=None) == QueueSettings(
        "q", fair=True
    )
    assert app.configure_queue("q", rate_limit=RateLimit(5, 3600)).rate_limit == RateLimit(5, 3600)
    assert app.configure_queue("q", fair=False).fair is False


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"concurrency": 0}, "concurrency must be between 1 and 999999999, got 0"),
        ({"key_concurrency": -3}, "key_concurrency must be between 1 and 999999999, got -3"),
        ({"concurrency": 2.5}, "concurrency must be an integer"),
        ({"rate_limit": "10/d"}, "rate_limit must be N/s, N/m or N/h"),
        ({"rate_limit": "0/s"}, "rate_limit must be N/s, N/m or N/h"),
        ({"fair": 1}, "fair must be true or false"),
        ({"fair": None}, "fair must be true or false"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(app, settings, message):
    before = app.configure_queue("q", concurrency=1)
    with pytest.raises(InvalidJob, match=message):
        app.configure_queue("q", **settings)
    with pytest.raises(InvalidJob, match=message):  # also for a queue not yet configured
        app.configure_queue("new", **{"fair": True, **settings})
    assert app.store.list_queues() == [before]


def test_unknown_settings_and_bad_names(app):
    with pytest.raises(TypeError, match="unknown queue setting 'concurency'"):
        app.configure_queue("q", concurency=2)  # type: ignore[call-arg]
    for call in (app.configure_queue, app.pause_queue, app.resume_queue):
        with pytest.raises(InvalidJob, match="queue must be 1 to 200 characters"):
            call("")
        with pytest.raises(InvalidJob, match="queue must not contain NUL characters"):
            call("a\x00")
    assert app.queues() == []


def test_pause_and_resume_a_queue_before_it_has_jobs(app):
    assert app.pause_queue("later") == QueueSettings("later", paused=True)
    job = app.enqueue("export", queue="later")  # enqueueing still works
    assert app.get_job(job.id).status == "pending"
    assert app.resume_queue("later") == QueueSettings("later")


def test_resume_clears_a_fleet_wide_backoff(app):
    until = utcnow() + timedelta(seconds=120)
    assert app.store.hold_queue("payments", until).paused_until == until
    assert app.queues()[0].paused_until == until
    assert app.resume_queue("payments").paused_until is None


def test_configure_and_resume_wake_this_process_workers(app):
    woken: list[str] = []
    app.add_enqueue_listener(lambda: woken.append("woken"))
    app.pause_queue("q")
    assert woken == []  # a pause releases nothing
    app.resume_queue("q")
    app.configure_queue("q", concurrency=2)
    assert woken == ["woken", "woken"]


def test_concurrency_key_on_every_enqueue_path(app):
    via_task = app.tasks["export"].enqueue({"report_id": 1}, concurrency_key="t1")
    assert via_task.concurrency_key == "t1"
    keywords = app.tasks["export"].enqueue(report_id=2, concurrency_key="t2")
    assert (keywords.payload, keywords.concurrency_key) == ({"report_id": 2}, "t2")
    batch = app.enqueue_many(
        [
            {"type": "export", "payload": {"report_id": 3}, "concurrency_key": "t3"},
            {"type": "export", "payload": {"report_id": 4}},
            {"type": "export", "payload": {"report_id": 5}, "unique_key": "u5"},
            {"type": "payment", "concurrency_key": "t6", "unique_key": "u6"},
        ]
    )
    assert [job.concurrency_key for job in batch] == ["t3", None, None, "t6"]
    assert [app.get_job(job.id).concurrency_key for job in batch] == ["t3", None, None, "t6"]

    async def from_async_code() -> list[str | None]:
        one = await app.enqueue_async("export", {"report_id": 7}, concurrency_key="t7")
        many = await app.enqueue_many_async([{"type": "export", "concurrency_key": "t8"}])
        return [one.concurrency_key, many[0].concurrency_key]

    assert asyncio.run(from_async_code()) == ["t7", "t8"]


def test_bad_concurrency_keys_are_refused_everywhere(app):
    with pytest.raises(InvalidJob, match="concurrency_key must be 1 to 255 characters, got 256"):
        app.enqueue("export", concurrency_key="k" * 256)
    with pytest.raises(InvalidJob, match="concurrency_key must not contain NUL characters"):
        app.tasks["export"].enqueue(concurrency_key="a\x00b")
    with pytest.raises(InvalidJob, match=r"jobs\[1\]: concurrency_key must be 1 to 255"):
        app.enqueue_many([{"type": "export"}, {"type": "export", "concurrency_key": ""}])
    assert app.list_jobs() == []
