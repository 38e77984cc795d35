"""GET /workers and GET /overview (SPEC §9): JSON for the dashboard, behind the token like
every other API route, documented in OpenAPI."""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.fleet import WorkerInfo
from conveyor.jobs import utcnow
from tests.api.servers import ThreadedApi, api_settings

TOKEN = "fleet-token"  # noqa: S105


def _register(store, worker_id: str = "host-a-1-abc123", busy: int = 1) -> WorkerInfo:
    now = utcnow()
    worker = WorkerInfo(worker_id, "host-a", 1, ("default",), 4, busy, "9.9", now, now)
    store.register_worker(worker, lease=timedelta(seconds=30))
    return worker


def test_workers_lists_the_registry(client, store):
    assert client.get("/workers").json() == {"workers": []}
    worker = _register(store)
    [listed] = client.get("/workers").json()["workers"]
    assert set(listed) == {
        "id",
        "host",
        "pid",
        "queues",
        "slots",
        "busy",
        "started_at",
        "last_heartbeat",
        "version",
    }
    assert listed["id"] == worker.id
    assert (listed["host"], listed["pid"], listed["queues"]) == ("host-a", 1, ["default"])
    assert (listed["slots"], listed["busy"], listed["version"]) == (4, 1, "9.9")
    started = datetime.fromisoformat(listed["started_at"])
    assert abs((started - worker.started_at).total_seconds()) < 0.001


def test_overview_shape(client, store):
    created = client.post("/jobs/batch", json={"jobs": [{"type": "reverse"}] * 2}).json()
    client.post(f"/jobs/{created['jobs'][0]['id']}/cancel")
    _register(store, busy=3)
    body = client.get("/overview").json()
    assert set(body) == {
        "queues",
        "per_minute",
        "queue_wait",
        "run_time",
        "workers",
        "generated_at",
    }
    assert body["queues"] == {"default": {"pending": 1, "cancelled": 1}}
    minutes = [datetime.fromisoformat(m["minute"]) for m in body["per_minute"]]
    assert len(minutes) == 60 and minutes == sorted(minutes)
    assert minutes[-1] == datetime.fromisoformat(body["generated_at"]).replace(
        second=0, microsecond=0
    )
    assert all(m["finished"] == m["failed"] == m["retried"] == 0 for m in body["per_minute"])
    assert body["queue_wait"] == body["run_time"] == {"p50": None, "p95": None}
    assert body["workers"] == {"live": 1, "slots": 4, "busy": 3}
    assert datetime.fromisoformat(body["generated_at"]).tzinfo is not None


def test_fleet_routes_need_the_token(conveyor):
    with ThreadedApi(conveyor, api_settings(api_token=TOKEN)) as live, live.client() as client:
        for path in ("/workers", "/overview"):
            assert client.get(path).status_code == 401
            authorised = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert authorised.status_code == 200, authorised.text


def test_openapi_documents_the_fleet_routes(client):
    schema = client.get("/openapi.json").json()
    for path, model in (("/workers", "WorkersOut"), ("/overview", "OverviewOut")):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"] == f"#/components/schemas/{model}"
    overview = schema["components"]["schemas"]["OverviewOut"]["properties"]
    assert {"queues", "per_minute", "queue_wait", "run_time", "workers", "generated_at"} <= set(
        overview
    )
