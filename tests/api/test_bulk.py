"""POST /jobs/cancel and POST /jobs/retry (SPEC §8 bulk actions) through a live server, on
each store: the filtered set changes and nothing else; bad bodies are 422 and change
nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conveyor.jobs import Finish, Job, JobFilter
from conveyor.stores import Store
from conveyor.validation import new_job

LEASE = timedelta(seconds=30)


def add(store: Store, n: int, *, queue: str = "q", type: str = "reverse") -> list[Job]:
    return [store.enqueue(new_job(type, "x", queue=queue, max_attempts=1)).job for _ in range(n)]


def fail(store: Store, queue: str, n: int) -> list[Job]:
    claimed = store.claim(worker="w", queues=[queue], limit=n, lease=LEASE)
    store.finish_many([Finish.failed(job.lease_ref(), "boom") for job in claimed])
    return claimed


def snapshot(store: Store) -> dict[int, dict[str, Any]]:
    return {job.id: job.to_json() for job in store.list_jobs(JobFilter(limit=1000))}


def status_of(store: Store, jobs: list[Job]) -> set[str]:
    return {store.get_job(job.id).status.value for job in jobs}


def test_retry_over_a_filter_changes_exactly_that_set(client, store):
    target = add(store, 5, queue="q", type="reverse")
    other_queue = add(store, 2, queue="r", type="reverse")
    other_type = add(store, 2, queue="q", type="print")
    fail(store, "q", 7)
    fail(store, "r", 2)
    pending = add(store, 1, queue="q")
    before = snapshot(store)
    response = client.post(
        "/jobs/retry", json={"status": "failed", "queue": "q", "type": "reverse"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 5}
    assert status_of(store, target) == {"pending"}
    after = snapshot(store)
    for job in other_queue + other_type + pending:
        assert after[job.id] == before[job.id]
    again = client.post("/jobs/retry", json={"status": "failed", "queue": "q", "type": "reverse"})
    assert again.json() == {"count": 0}


def test_cancel_of_jobs_created_before_a_time(client, store):
    early = add(store, 3)
    late = add(store, 2)
    cutoff = late[0].created_at.isoformat()
    response = client.post("/jobs/cancel", json={"status": "pending", "created_before": cutoff})
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 3}
    assert status_of(store, early) == {"cancelled"}
    assert status_of(store, late) == {"pending"}
    # a null filter is no filter
    everything = client.post("/jobs/cancel", json={"status": "pending", "queue": None})
    assert everything.json() == {"count": 2}


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/jobs/retry", {}, "Field required"),
        ("/jobs/retry", {"queue": "q"}, "Field required"),
        ("/jobs/retry", {"status": "bogus"}, "retry applies to failed or cancelled jobs"),
        ("/jobs/retry", {"status": "pending"}, "retry applies to failed or cancelled jobs"),
        ("/jobs/retry", {"status": "done"}, "retry applies to failed or cancelled jobs"),
        ("/jobs/cancel", {"status": "failed"}, "cancel applies to pending or processing jobs"),
        ("/jobs/cancel", {"status": 1}, "string"),
        ("/jobs/retry", {"status": "failed", "created_before": "yesterday"}, "ISO 8601"),
        ("/jobs/retry", {"status": "failed", "created_before": "2030-01-01T00:00"}, "timezone"),
        ("/jobs/retry", {"status": "failed", "created_before": 1700000000}, "ISO 8601"),
        ("/jobs/retry", {"status": "failed", "queue": ""}, "at least 1 character"),
        ("/jobs/retry", {"status": "failed", "type": "a\u0000b"}, "NUL"),
        ("/jobs/cancel", {"status": "pending", "id": 3}, "Extra inputs"),
    ],
)
def test_bad_bodies_are_422_and_change_nothing(client, store, path, body, fragment):
    add(store, 2)
    fail(store, "q", 1)
    before = snapshot(store)
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.text, response.text
    assert snapshot(store) == before


def test_bulk_paths_do_not_collide_with_one_job_paths(client, store):
    (job,) = add(store, 1)
    assert client.post(f"/jobs/{job.id}/cancel").json()["status"] == "cancelled"
    assert client.get("/jobs/cancel").status_code == 422  # GET /jobs/{job_id}: not an id
    assert client.post("/jobs/retry", json={"status": "cancelled"}).json() == {"count": 1}
    assert client.get(f"/jobs/{job.id}").json()["status"] == "pending"


def test_openapi_documents_the_statuses_each_action_takes(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["CancelIn"]["properties"]["status"]["enum"] == ["pending", "processing"]
    assert schemas["RetryIn"]["properties"]["status"]["enum"] == ["failed", "cancelled"]
    assert schemas["CancelIn"]["required"] == ["status"]
