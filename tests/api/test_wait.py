"""GET /jobs/{id}?wait=S (SPEC §8) through a live uvicorn server, on both stores, a real
worker process finishing the jobs: the answer comes as soon as the job finishes, or with
the job as it is when S passes (200 either way); S out of (0, 60] is 422, an absent job 404
at once; waiting requests hold no thread of the server's pool."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from conveyor import Conveyor
from tests.support.procs import workers  # noqa: F401 - fixture
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

# Starlette runs plain `def` routes on a pool of this many threads (anyio's default)
SERVER_THREADS = 40


@pytest.fixture
def producer(store_url: str) -> Iterator[Conveyor]:
    """Enqueues the workers' tasks (tests/support/apps.py), which the API's app does not know."""
    app = Conveyor(store_url)
    yield app
    app.close()


def waiting_for(conveyor: Conveyor) -> set[int]:
    watch = conveyor._finish_watch
    return set() if watch is None else watch.waiting_for()


def test_wait_answers_as_soon_as_the_job_finishes(client, producer, workers):  # noqa: F811
    workers.start("--workers", "2", "--fetch-interval", "0.5")
    job = producer.enqueue("slow", {"seq": 1, "seconds": 0.5})
    began = time.monotonic()
    response = client.get(f"/jobs/{job.id}", params={"wait": 30})
    returned = time.time()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done" and body["result"] == 1
    assert time.monotonic() - began >= 0.5, "it waited for the run"
    lag = returned - datetime.fromisoformat(body["finished_at"]).timestamp()
    assert lag < 0.2, f"answered {lag * 1000:.0f} ms after finished_at"
    assert client.get(f"/jobs/{job.id}").json() == body


def test_wait_answers_with_the_job_as_it_is_when_the_time_is_up(client, producer):
    job = producer.enqueue("slow", {"seq": 1, "seconds": 0.5}, queue="nobody")
    for wait in ("1", "0.5"):
        began = time.monotonic()
        response = client.get(f"/jobs/{job.id}", params={"wait": wait})
        elapsed = time.monotonic() - began
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "pending"
        assert float(wait) <= elapsed < float(wait) + 0.5
    assert response.json() == client.get(f"/jobs/{job.id}").json()


def test_a_finished_job_is_answered_at_once_up_to_the_longest_wait(client, producer):
    job = producer.enqueue("slow", {"seq": 1, "seconds": 0.5}, queue="nobody")
    producer.cancel(job.id)
    began = time.monotonic()
    response = client.get(f"/jobs/{job.id}", params={"wait": 60})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - began < 1


def test_bad_waits_are_422_and_absent_jobs_404_at_once(client, producer):
    job = producer.enqueue("slow", {"seq": 1, "seconds": 0.5}, queue="nobody")
    for bad in ("0", "-1", "61", "60.001", "x", "", "nan", "inf", "1e9"):
        response = client.get(f"/jobs/{job.id}", params={"wait": bad})
        assert response.status_code == 422, (bad, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "wait"], (bad, error)
    for bad_id in ("0", "abc", str(2**64)):
        assert client.get(f"/jobs/{bad_id}", params={"wait": 5}).status_code == 422
    began = time.monotonic()
    response = client.get(f"/jobs/{job.id + 1000}", params={"wait": 30})
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job.id + 1000} not found"}
    # at once, not after the 30 s asked for (the bound leaves room for the first wait's
    # listener to connect on a loaded machine: it took 1.02 s once in CI)
    assert time.monotonic() - began < 5
    assert client.get(f"/jobs/{job.id}").json()["status"] == "pending", "nothing changed"


def test_waiting_requests_hold_no_server_thread(client, conveyor, producer):
    """More requests wait than Starlette has threads for plain routes; a plain GET is still
    answered at once (a wait on a thread would have it queue until the waits end)."""
    jobs = [
        producer.enqueue("slow", {"seq": n, "seconds": 0.5}, queue="nobody")
        for n in range(SERVER_THREADS + 5)
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        waits = [pool.submit(client.get, f"/jobs/{job.id}", params={"wait": 5}) for job in jobs]
        wait_until(
            lambda: waiting_for(conveyor) == {job.id for job in jobs},
            timeout=10,
            message="every request waiting",
        )
        began = time.monotonic()
        response = client.get(f"/jobs/{jobs[0].id}")
        assert response.status_code == 200
        assert time.monotonic() - began < 1
        assert not any(w.done() for w in waits)
        answers = [w.result() for w in waits]
    assert {(r.status_code, r.json()["status"]) for r in answers} == {(200, "pending")}
