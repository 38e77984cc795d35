"""/healthz, /readyz, /metrics (JSON and Prometheus), GET /, /docs, /openapi.json."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from conveyor.jobs import JobStatus
from tests.api.servers import ThreadedApi, make_app

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def _samples(
    text: str, parse: Callable[[str], Iterable[Metric]] = text_string_to_metric_families
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse(text)
        for s in family.samples
    }


def _unreachable_url(store_url: str, tmp_path: Path) -> str:
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-dir' / 'jobs.db'}"
    return "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"


# -- probes --------------------------------------------------------------------------------------
def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}


def test_store_unreachable(store_url, settings, tmp_path):
    app = make_app(_unreachable_url(store_url, tmp_path))
    try:
        with ThreadedApi(app, settings) as live, live.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "store unavailable" in ready.json()["detail"]
            assert client.get("/healthz").status_code == 200
            for response in (
                client.post("/jobs", json={"type": "reverse"}),
                client.post("/jobs/batch", json={"jobs": [{"type": "reverse"}]}),
                client.get("/jobs"),
                client.get("/jobs/1"),
                client.post("/jobs/1/cancel"),
                client.get("/metrics"),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["detail"]
            # bad input is still refused as such, before the store is asked
            assert client.post("/jobs", json={"type": 1}).status_code == 422
            # the dashboard's page needs no store; its script shows what /overview answers
            assert client.get("/").status_code == 200
            overview = client.get("/overview")
            assert overview.status_code == 503
            assert overview.json()["detail"]
            # Prometheus keeps the process's counters and reports the store as down
            scrape = client.get("/metrics", headers={"Accept": "text/plain"})
            assert scrape.status_code == 200
            assert _samples(scrape.text)[("conveyor_store_up", ())] == 0
    finally:
        app.close()


# -- /metrics ------------------------------------------------------------------------------------
def test_metrics_json(client):
    client.post("/jobs/batch", json={"jobs": [{"type": "reverse"}, {"type": "payment"}]})
    job = client.post("/jobs", json={"type": "print", "queue": "mail"}).json()
    client.post(f"/jobs/{job['id']}/cancel")
    for accept in (None, "application/json", "*/*", "text/html,application/xhtml+xml,*/*;q=0.8"):
        response = client.get("/metrics", headers={"Accept": accept} if accept else {})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        for counter in ("processed", "failed", "recovered", "retried"):
            assert body[counter] == 0
        assert body["queues"] == {
            "default": {"pending": 1},
            "payments": {"pending": 1},
            "mail": {"cancelled": 1},
        }


def test_metrics_prometheus_text(client, live, store):
    created = client.post("/jobs/batch", json={"jobs": [{"type": "reverse"}] * 3}).json()
    jobs = [store.get_job(j["id"]) for j in created["jobs"]]
    live.metrics.slots_total, live.metrics.slots_busy = 4, 1
    live.metrics.job_finished(jobs[0], JobStatus.DONE, 0.2, 0.03)
    live.metrics.job_finished(jobs[1], JobStatus.PENDING, 1.5, 0.5)
    live.metrics.job_finished(jobs[2], JobStatus.FAILED, 7.0, 42.0)
    live.metrics.jobs_recovered(2)

    response = client.get("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    reverse = (("type", "reverse"),)
    assert samples[("conveyor_jobs_processed_total", reverse)] == 1
    assert samples[("conveyor_jobs_retried_total", reverse)] == 1
    assert samples[("conveyor_jobs_failed_total", reverse)] == 1
    assert samples[("conveyor_jobs_recovered_total", ())] == 2
    assert samples[("conveyor_job_duration_seconds_count", reverse)] == 3
    assert samples[("conveyor_job_duration_seconds_sum", reverse)] == pytest.approx(8.7)
    assert samples[("conveyor_job_duration_seconds_bucket", (("le", "0.25"), *reverse))] == 1
    assert samples[("conveyor_queue_wait_seconds_count", reverse)] == 3
    assert samples[("conveyor_queue_wait_seconds_bucket", (("le", "60.0"), *reverse))] == 3
    assert samples[("conveyor_worker_slots_total", ())] == 4
    assert samples[("conveyor_worker_slots_busy", ())] == 1
    assert samples[("conveyor_store_up", ())] == 1
    # queue depth comes from the store: the three jobs are still pending there
    assert samples[("conveyor_jobs", (("queue", "default"), ("status", "pending")))] == 3
    assert samples[("conveyor_jobs", (("queue", "default"), ("status", "done")))] == 0

    # JSON reads the same counters
    body = client.get("/metrics").json()
    assert (body["processed"], body["retried"], body["failed"], body["recovered"]) == (1, 1, 1, 2)


def test_metrics_openmetrics(client):
    client.post("/jobs", json={"type": "print"})
    response = client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    samples = _samples(response.text, openmetrics_families)
    assert samples[("conveyor_jobs", (("queue", "default"), ("status", "pending")))] == 1


# -- docs and dashboard ---------------------------------------------------------------------------
def test_openapi_and_docs(client):
    schema = client.get("/openapi.json").json()
    for path in (
        "/jobs",
        "/jobs/batch",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/retry",
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
    ):
        assert path in schema["paths"], path
    job_in = schema["components"]["schemas"]["JobIn"]
    assert job_in["additionalProperties"] is False
    assert job_in["required"] == ["type"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert "/openapi.json" in docs.text


def test_docs_page_needs_no_internet(client):
    # Swagger UI's script and stylesheet come from this server, not from a CDN
    page = client.get("/docs").text
    assert "cdn." not in page and "https://" not in page
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    redoc = client.get("/redoc").text
    assert "cdn." not in redoc and "https://" not in redoc
    assets += re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', redoc)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
    assert client.get("/docs/assets/no-such-file.js").status_code == 404
