"""/queues (SPEC §7, §9) and the jobs' concurrency_key through a live server, on each store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from conveyor.jobs import QueueSettings, RateLimit, utcnow
from tests.api.servers import ThreadedApi, api_settings

SETTINGS = {
    "name",
    "concurrency",
    "rate_limit",
    "key_concurrency",
    "fair",
    "paused",
    "paused_until",
}


def _put(client: httpx.Client, name: str, **body: object) -> Any:
    response = client.put(f"/queues/{name}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_no_queues(client):
    response = client.get("/queues")
    assert response.status_code == 200
    assert response.json() == {"queues": []}


def test_put_sets_limits_and_get_lists_them_with_counts(client, store):
    payments = _put(client, "payments", concurrency=2, rate_limit="10/s", key_concurrency=1)
    assert payments == {
        "name": "payments",
        "concurrency": 2,
        "rate_limit": "10/s",
        "key_concurrency": 1,
        "fair": False,
        "paused": False,
        "paused_until": None,
    }
    assert _put(client, "reports", fair=True)["fair"] is True
    job = client.post("/jobs", json={"type": "payment", "concurrency_key": "tenant-42"}).json()
    assert (job["queue"], job["concurrency_key"]) == ("payments", "tenant-42")
    client.post("/jobs", json={"type": "reverse"})

    listed = client.get("/queues").json()["queues"]
    assert [q["name"] for q in listed] == ["default", "payments", "reports"]
    for queue in listed:
        assert set(queue) == SETTINGS | {"counts"}
    default, payments_listed, reports = listed
    assert default["counts"] == {"pending": 1}
    assert payments_listed == {**payments, "counts": {"pending": 1}}
    assert reports["counts"] == {}
    assert store.list_queues()[1] == QueueSettings(
        "payments", concurrency=2, rate_limit=RateLimit(10, 1), key_concurrency=1
    )


def test_put_changes_only_what_is_given_and_null_clears(client):
    _put(client, "q", concurrency=3, rate_limit="600/m", key_concurrency=2, fair=True)
    cleared = _put(client, "q", rate_limit=None)
    assert (cleared["concurrency"], cleared["rate_limit"], cleared["key_concurrency"]) == (
        3,
        None,
        2,
    )
    assert cleared["fair"] is True
    assert _put(client, "q", rate_limit="none")["rate_limit"] is None
    assert _put(client, "q") == cleared  # an empty object changes nothing
    assert _put(client, "q", concurrency=5.0)["concurrency"] == 5  # JSON's 5.0 is 5
    assert _put(client, "q", fair=False, concurrency=None)["concurrency"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"concurrency": 1_000_000_000},
        {"concurrency": "5"},
        {"concurrency": "none"},
        {"concurrency": 2.5},
        {"concurrency": True},
        {"key_concurrency": 0},
        {"rate_limit": "0/s"},
        {"rate_limit": "10/d"},
        {"rate_limit": "10/S"},
        {"rate_limit": 10},
        {"rate_limit": "1000000000/s"},
        {"fair": None},
        {"fair": "true"},
        {"fair": 1},
        {"paused": True},  # pause and resume have their own routes
        {"concurrency": 1, "unknown": 1},
        [],
        "x",
    ],
)
def test_bad_settings_are_422_and_change_nothing(client, store, body):
    before = _put(client, "q", concurrency=1)
    response = client.put("/queues/q", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]
    assert store.list_queues() == [QueueSettings("q", concurrency=1)]
    assert client.get("/queues").json()["queues"] == [{**before, "counts": {}}]


def test_messages_name_the_problem(client):
    response = client.put("/queues/q", json={"rate_limit": "0/s"})
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "rate_limit"]
    assert error["msg"].startswith("rate_limit must be N/s, N/m or N/h")
    missing = client.put("/queues/q")
    assert missing.status_code == 422


def test_pause_and_resume(client, store):
    paused = client.post("/queues/payments/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json() == {
        "name": "payments",
        "concurrency": None,
        "rate_limit": None,
        "key_concurrency": None,
        "fair": False,
        "paused": True,
        "paused_until": None,
    }
    assert client.get("/queues").json()["queues"][0]["paused"] is True
    # a fleet-wide backoff shows as paused_until; resume ends it with the pause
    until = utcnow() + timedelta(seconds=90)
    store.hold_queue("payments", until)
    listed = client.get("/queues").json()["queues"][0]
    assert listed["paused_until"] == until.isoformat()
    resumed = client.post("/queues/payments/resume")
    assert resumed.status_code == 200
    assert (resumed.json()["paused"], resumed.json()["paused_until"]) == (False, None)
    # an empty JSON body is fine too
    assert client.post("/queues/payments/pause", json=None).json()["paused"] is True


def test_queue_names_with_slashes_and_any_text(client):
    assert _put(client, "reports/eu", concurrency=1)["name"] == "reports/eu"
    assert _put(client, "a%2Fb", fair=True)["name"] == "a/b"
    assert client.post("/queues/reports/eu/pause").json()["name"] == "reports/eu"
    assert client.post("/queues/reports%2Feu/resume").json()["paused"] is False
    assert _put(client, "é ✓", concurrency=2)["name"] == "é ✓"
    names = [q["name"] for q in client.get("/queues").json()["queues"]]
    assert names == ["a/b", "reports/eu", "é ✓"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/queues/a%00b"),
        ("POST", "/queues/a%00b/pause"),
        ("POST", "/queues/" + "q" * 201 + "/resume"),
    ],
)
def test_bad_queue_names_are_422(client, store, method, path):
    response = client.request(method, path, json={} if method == "PUT" else None)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "name"]
    assert store.list_queues() == []


def test_concurrency_key_on_post_jobs_and_batches(client, store):
    one = client.post("/jobs", json={"type": "reverse", "concurrency_key": "t1"})
    assert one.status_code == 201
    assert one.json()["concurrency_key"] == "t1"
    assert client.get(f"/jobs/{one.json()['id']}").json()["concurrency_key"] == "t1"
    plain = client.post("/jobs", json={"type": "reverse"}).json()
    assert plain["concurrency_key"] is None
    batch = client.post(
        "/jobs/batch",
        json={
            "jobs": [
                {"type": "reverse", "concurrency_key": "t2"},
                {"type": "reverse"},
                {"type": "reverse", "concurrency_key": "t3", "unique_key": "u3"},
            ]
        },
    )
    assert batch.status_code == 201, batch.text
    assert [j["concurrency_key"] for j in batch.json()["jobs"]] == ["t2", None, "t3"]
    listed = client.get("/jobs").json()["jobs"]
    assert [j["concurrency_key"] for j in listed] == ["t3", None, "t2", None, "t1"]


@pytest.mark.parametrize("key", ["", "k" * 256, 42, "a\x00b"])
def test_bad_concurrency_keys_are_422(client, count_jobs, key):
    assert client.post("/jobs", json={"type": "reverse", "concurrency_key": key}).status_code == 422
    batch = {"jobs": [{"type": "reverse"}, {"type": "reverse", "concurrency_key": key}]}
    assert client.post("/jobs/batch", json=batch).status_code == 422
    assert count_jobs() == 0


def test_openapi_documents_the_queue_routes(client):
    schema = client.get("/openapi.json").json()
    for path in ("/queues", "/queues/{name}", "/queues/{name}/pause", "/queues/{name}/resume"):
        assert path in schema["paths"], path
    assert set(schema["paths"]["/queues/{name}"]) == {"put"}
    body = schema["components"]["schemas"]["QueueSettingsIn"]
    assert body["additionalProperties"] is False
    assert set(body["properties"]) == {"concurrency", "rate_limit", "key_concurrency", "fair"}
    assert "required" not in body
    assert "concurrency_key" in schema["components"]["schemas"]["JobIn"]["properties"]
    assert "concurrency_key" in schema["components"]["schemas"]["JobOut"]["properties"]


def test_queue_routes_need_the_token(conveyor, store):
    token = "q-t0ken"  # noqa: S105
    with ThreadedApi(conveyor, api_settings(api_token=token)) as live, live.client() as client:
        for method, path in [
            ("GET", "/queues"),
            ("PUT", "/queues/q"),
            ("POST", "/queues/q/pause"),
            ("POST", "/queues/q/resume"),
        ]:
            response = client.request(method, path, json={"concurrency": 1})
            assert response.status_code == 401, (method, path)
            authorized = client.request(
                method,
                path,
                json={"concurrency": 1} if method == "PUT" else None,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert authorized.status_code == 200, (method, path, authorized.text)
    assert store.list_queues() == [QueueSettings("q", concurrency=1)]
