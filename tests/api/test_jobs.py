"""/jobs endpoints through a live uvicorn server, on each store (SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from conveyor.jobs import Job, JobFilter
from conveyor.stores import Store

JOB_FIELDS = {
    "id",
    "type",
    "queue",
    "payload",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "run_at",
    "unique_key",
    "result",
    "last_error",
    "worker",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "progress",
    "progress_message",
    "concurrency_key",
    "depends_on",
    "on_dependency_failure",
}


def _claim(store: Store) -> Job:
    (job,) = store.claim(worker="test-worker", queues=None, limit=1, lease=timedelta(seconds=30))
    return job


def _post(client: httpx.Client, **body: object) -> Any:
    response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# -- POST /jobs ------------------------------------------------------------------------------
def test_enqueue_returns_201_and_the_job(client):
    response = client.post(
        "/jobs", json={"type": "reverse", "payload": "hello", "priority": 5, "max_attempts": 2}
    )
    assert response.status_code == 201
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert job["type"] == "reverse"
    assert job["payload"] == "hello"
    assert job["priority"] == 5
    assert job["max_attempts"] == 2
    assert job["queue"] == "default"
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None

    fetched = client.get(f"/jobs/{job['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == job


def test_enqueue_applies_defaults_and_the_tasks_options(client):
    plain = _post(client, type="print")
    assert (plain["queue"], plain["priority"], plain["max_attempts"]) == ("default", 0, 5)
    assert plain["payload"] is None
    task = _post(client, type="payment", payload={"order_id": "A"})
    assert (task["queue"], task["priority"], task["max_attempts"]) == ("payments", 3, 7)
    overridden = _post(client, type="payment", queue="vip", priority=-1, max_attempts=1)
    assert (overridden["queue"], overridden["priority"], overridden["max_attempts"]) == (
        "vip",
        -1,
        1,
    )


def test_payload_keeps_any_json_value(client):
    payload = {"nested": [1, 2.5, None, True, {"ü": "✓"}], "empty": {}}
    assert _post(client, type="reverse", payload=payload)["payload"] == payload
    assert _post(client, type="reverse", payload=[1, "a"])["payload"] == [1, "a"]
    assert _post(client, type="reverse", payload=0)["payload"] == 0


def test_delay_and_run_at_set_run_at(client):
    before = datetime.now(UTC)
    delayed = _post(client, type="reverse", delay=60)
    assert datetime.fromisoformat(delayed["run_at"]) >= before + timedelta(seconds=59)
    at = "2031-05-06T07:08:09.123456+02:00"
    scheduled = _post(client, type="reverse", run_at=at)
    assert datetime.fromisoformat(scheduled["run_at"]) == datetime.fromisoformat(at)
    zulu = _post(client, type="reverse", run_at="2031-05-06T05:08:09Z")
    assert datetime.fromisoformat(zulu["run_at"]) == datetime(2031, 5, 6, 5, 8, 9, tzinfo=UTC)


def test_unique_key_201_then_200_with_the_same_job(client):
    first = client.post("/jobs", json={"type": "reverse", "payload": "a", "unique_key": "ORD-1"})
    again = client.post("/jobs", json={"type": "reverse", "payload": "b", "unique_key": "ORD-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["payload"] == "a"
    # once that job is finished, the key is free again
    assert client.post(f"/jobs/{first.json()['id']}/cancel").status_code == 200
    third = client.post("/jobs", json={"type": "reverse", "unique_key": "ORD-1"})
    assert third.status_code == 201
    assert third.json()["id"] != first.json()["id"]


# -- POST /jobs/batch -------------------------------------------------------------------------
def test_batch_returns_201_and_the_jobs_in_order(client, count_jobs):
    items = [
        {"type": "reverse", "payload": "a"},
        {"type": "payment", "payload": {"order_id": "B"}, "priority": 5},
        {"type": "print", "queue": "other", "delay": 30},
    ]
    response = client.post("/jobs/batch", json={"jobs": items})
    assert response.status_code == 201
    jobs = response.json()["jobs"]
    assert [j["type"] for j in jobs] == ["reverse", "payment", "print"]
    assert [j["priority"] for j in jobs] == [0, 5, 0]
    assert jobs[1]["queue"] == "payments"
    assert jobs[2]["queue"] == "other"
    assert jobs[0]["id"] < jobs[1]["id"] < jobs[2]["id"]
    assert count_jobs() == 3
    assert client.post("/jobs/batch", json={"jobs": []}).json() == {"jobs": []}


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "reverse", "priority": 40000},
        {"type": "no-such-task"},
        {"type": "reverse", "delay": 1, "run_at": "2031-01-01T00:00:00Z"},
        {"type": "reverse", "surprise": 1},
        {"payload": "no type"},
        {"type": "reverse", "payload": "\u0000"},
    ],
    ids=["range", "unknown-type", "delay-and-run_at", "unknown-field", "no-type", "nul"],
)
def test_batch_is_all_or_nothing(client, count_jobs, bad):
    items = [{"type": "reverse", "payload": "ok"}, {"type": "print"}, bad, {"type": "print"}]
    response = client.post("/jobs/batch", json={"jobs": items})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert count_jobs() == 0
    assert client.get("/jobs").json() == {"jobs": []}


def test_batch_unique_keys_inside_one_batch(client, count_jobs):
    items = [{"type": "reverse", "unique_key": "k"}, {"type": "reverse", "unique_key": "k"}]
    jobs = client.post("/jobs/batch", json={"jobs": items}).json()["jobs"]
    assert jobs[0]["id"] == jobs[1]["id"]
    assert count_jobs() == 1


# -- GET /jobs/{id}, GET /jobs --------------------------------------------------------------
def test_get_missing_job_is_404(client):
    response = client.get("/jobs/999999")
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


@pytest.mark.parametrize("job_id", ["abc", "1.5", "0", "-3", str(2**63), "1e3"])
def test_bad_job_ids_are_422(client, job_id):
    assert client.get(f"/jobs/{job_id}").status_code == 422
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 422
    assert client.post(f"/jobs/{job_id}/retry").status_code == 422


def test_each_start_of_a_job(client, store):
    job = client.post("/jobs", json={"type": "reverse", "payload": "x"}).json()
    assert client.get(f"/jobs/{job['id']}/starts").json() == {"starts": []}
    first = _claim(store)
    store.fail(first.lease_ref(), "once", retry_at=datetime.now(UTC))
    second = _claim(store)
    response = client.get(f"/jobs/{job['id']}/starts")
    assert response.status_code == 200, response.text
    starts = [datetime.fromisoformat(t) for t in response.json()["starts"]]
    assert starts == [first.started_at, second.started_at]
    assert client.get(f"/jobs/{job['id']}").json()["started_at"] == response.json()["starts"][-1]
    assert client.get("/jobs/999999999/starts").status_code == 404
    assert client.get("/jobs/0/starts").status_code == 422


def test_list_is_newest_first_with_filters_and_pages(client):
    ids = [
        _post(client, type="reverse", payload=str(n), queue="q1" if n % 2 else "q2")["id"]
        for n in range(7)
    ]
    _post(client, type="print")
    listed = client.get("/jobs", params={"type": "reverse"}).json()["jobs"]
    assert [j["id"] for j in listed] == ids[::-1]

    q1 = client.get("/jobs", params={"queue": "q1"}).json()["jobs"]
    assert [j["id"] for j in q1] == [i for n, i in enumerate(ids) if n % 2][::-1]

    page1 = client.get("/jobs", params={"type": "reverse", "limit": 3}).json()["jobs"]
    page2 = client.get(
        "/jobs", params={"type": "reverse", "limit": 3, "before_id": page1[-1]["id"]}
    ).json()["jobs"]
    assert [j["id"] for j in page1 + page2] == ids[::-1][:6]

    client.post(f"/jobs/{ids[0]}/cancel")
    cancelled = client.get("/jobs", params={"status": "cancelled"}).json()["jobs"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    none = client.get("/jobs", params={"status": "done", "queue": "q1"}).json()
    assert none == {"jobs": []}


def test_list_limit_defaults_to_100(client):
    batch = [{"type": "print"} for _ in range(105)]
    assert client.post("/jobs/batch", json={"jobs": batch}).status_code == 201
    assert len(client.get("/jobs").json()["jobs"]) == 100
    assert len(client.get("/jobs", params={"limit": 1000}).json()["jobs"]) == 105


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"before_id": "x"},
        {"before_id": 0},
        {"status": "sleeping"},
        {"type": ""},
        {"queue": "q" * 201},
        {"type": "a\u0000b"},
    ],
)
def test_list_with_bad_parameters_is_422(client, params):
    assert client.get("/jobs", params=params).status_code == 422


# -- cancel / retry ----------------------------------------------------------------------------
def test_cancel_pending_then_409(client):
    job = _post(client, type="reverse")
    response = client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert client.post("/jobs/424242/cancel").status_code == 404


def test_cancel_processing_job(client, store):
    job = _post(client, type="reverse")
    _claim(store)
    response = client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_cancel_done_job_is_409(client, store):
    job = _post(client, type="reverse")
    assert store.complete(_claim(store).lease_ref(), '"x"')
    response = client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 409
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "done"


def test_retry_failed_job(client, store):
    job = _post(client, type="reverse", max_attempts=1)
    store.fail(_claim(store).lease_ref(), "Boom: it broke", retry_at=None)
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "failed"
    response = client.post(f"/jobs/{job['id']}/retry")
    assert response.status_code == 200
    retried = response.json()
    assert retried["status"] == "pending"
    assert retried["attempts"] == 1
    assert retried["max_attempts"] >= 2
    assert datetime.fromisoformat(retried["run_at"]) <= datetime.now(UTC)
    # runnable now: a worker can claim it
    assert [j.id for j in store.list_jobs(JobFilter(status=None))] == [job["id"]]
    assert _claim(store).id == job["id"]


def test_retry_cancelled_job_and_409_otherwise(client, store):
    job = _post(client, type="reverse")
    assert client.post(f"/jobs/{job['id']}/retry").status_code == 409  # pending
    client.post(f"/jobs/{job['id']}/cancel")
    response = client.post(f"/jobs/{job['id']}/retry")
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    _claim(store)
    assert client.post(f"/jobs/{job['id']}/retry").status_code == 409  # processing
    assert client.post("/jobs/424242/retry").status_code == 404
