"""Dependencies over HTTP (SPEC §8): depends_on and on_dependency_failure on POST /jobs and
POST /jobs/batch ("@i" for earlier items), shown on every job; a reference that names no
job, or no earlier item, is a 422 that stores nothing."""

from __future__ import annotations

import httpx
import pytest


def test_a_job_with_dependencies_over_http(client: httpx.Client):
    a = client.post("/jobs", json={"type": "reverse", "payload": "a"}).json()
    assert a["depends_on"] == [] and a["on_dependency_failure"] == "cancel"
    response = client.post(
        "/jobs",
        json={"type": "reverse", "depends_on": [a["id"]], "on_dependency_failure": "run"},
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "pending"
    assert job["depends_on"] == [a["id"]] and job["on_dependency_failure"] == "run"
    assert client.get(f"/jobs/{job['id']}").json()["depends_on"] == [a["id"]]


def test_a_jobs_dependents_over_http(client: httpx.Client):
    a = client.post("/jobs", json={"type": "reverse", "payload": "a"}).json()
    ids = [
        client.post("/jobs", json={"type": "reverse", "depends_on": [a["id"]]}).json()["id"]
        for _ in range(3)
    ]
    response = client.get(f"/jobs/{a['id']}/dependents")
    assert response.status_code == 200, response.text
    assert [j["id"] for j in response.json()["jobs"]] == ids
    assert [j["id"] for j in client.get(f"/jobs/{a['id']}/dependents?limit=2").json()["jobs"]] == (
        ids[:2]
    )
    assert client.get(f"/jobs/{ids[0]}/dependents").json() == {"jobs": []}
    assert client.get("/jobs/999999999/dependents").status_code == 404
    assert client.get(f"/jobs/{a['id']}/dependents?limit=0").status_code == 422


def test_batch_items_reference_earlier_items_over_http(client: httpx.Client):
    response = client.post(
        "/jobs/batch",
        json={
            "jobs": [
                {"type": "reverse", "payload": "u1"},
                {"type": "reverse", "payload": "u2"},
                {"type": "reverse", "depends_on": ["@0", "@1"]},
            ]
        },
    )
    assert response.status_code == 201, response.text
    first, second, merge = response.json()["jobs"]
    assert merge["depends_on"] == [first["id"], second["id"]]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/jobs", {"type": "reverse", "depends_on": [987654]}, "no job 987654"),
        ("/jobs", {"type": "reverse", "depends_on": ["@0"]}, "belong to a batch"),
        ("/jobs", {"type": "reverse", "depends_on": [0]}, "depends_on"),
        ("/jobs", {"type": "reverse", "depends_on": ["1"]}, "depends_on"),
        ("/jobs", {"type": "reverse", "depends_on": 1}, "depends_on"),
        ("/jobs", {"type": "reverse", "on_dependency_failure": "ignore"}, "on_dependency"),
        (
            "/jobs/batch",
            {"jobs": [{"type": "reverse"}, {"type": "reverse", "depends_on": ["@1"]}]},
            "earlier item",
        ),
        (
            "/jobs/batch",
            {"jobs": [{"type": "reverse"}, {"type": "reverse", "depends_on": ["@0", 987654]}]},
            "no job 987654",
        ),
    ],
)
def test_bad_references_are_422_and_store_nothing(client, count_jobs, path, body, message):
    client.post("/jobs", json={"type": "reverse"})
    before = count_jobs()
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert count_jobs() == before
