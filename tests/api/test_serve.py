"""`conveyor serve` as a real child process: HTTP + worker pool, signals, API-only nodes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.stores import open_store
from tests.support.wait import wait_until

pytestmark = pytest.mark.process


def _job(client: httpx.Client, job_id: int) -> Any:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    return response.json()


def test_serve_runs_jobs_enqueued_over_http(store_url, serve_process):
    proc = serve_process(store_url, "--workers", "2")
    url = proc.wait_serving()
    assert url.startswith("http://127.0.0.1:")  # the default bind address
    with proc.client() as client:
        assert client.get("/readyz").status_code == 200
        job = client.post("/jobs", json={"type": "reverse", "payload": "hello"}).json()
        done = wait_until(
            lambda: (j := _job(client, job["id"]))["status"] == "done" and j,
            message="the serve process's pool did not run the job",
        )
        assert done["result"] == "olleh"
        assert done["attempts"] == 1
        assert done["worker"]

        # one Metrics object is shared by the pool and the API
        metrics = client.get("/metrics").json()
        assert metrics["processed"] == 1
        assert metrics["slots_total"] == 2
        assert metrics["queues"] == {"default": {"done": 1}}
        scrape = client.get("/metrics", headers={"Accept": "text/plain; version=0.0.4"}).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scrape)
            for s in family.samples
        }
        assert samples[("conveyor_jobs_processed_total", (("type", "reverse"),))] == 1
        assert samples[("conveyor_job_duration_seconds_count", (("type", "reverse"),))] == 1
        assert samples[("conveyor_queue_wait_seconds_count", (("type", "reverse"),))] == 1

    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    output = proc.output()
    assert f"Conveyor serving on {url}" in output
    assert "Traceback" not in output


def test_sigterm_stops_http_and_hands_back_the_running_job(store_url, serve_process):
    proc = serve_process(store_url, "--workers", "1", "--shutdown-timeout", "0.5")
    url = proc.wait_serving()
    with proc.client() as client:
        job = client.post("/jobs", json={"type": "sleep", "payload": {"seconds": 120}}).json()
        wait_until(lambda: _job(client, job["id"])["status"] == "processing")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=url, timeout=5) as client:
        client.get("/healthz")
    store = open_store(store_url)
    try:
        back = store.get_job(job["id"])
    finally:
        store.close()
    assert back is not None
    assert back.status == "pending"  # handed back, not lost
    assert back.attempts == 0  # and the attempt was given back
    assert "Traceback" not in proc.output()


def test_api_only_node_with_token_from_the_environment(store_url, serve_process):
    token = "env-token-123"  # noqa: S105
    proc = serve_process(store_url, "--workers", "0", env={"API_TOKEN": token})
    proc.wait_serving()
    auth = {"Authorization": f"Bearer {token}"}
    with proc.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/jobs").status_code == 401
        assert client.post("/jobs", json={"type": "reverse"}).status_code == 401
        job = client.post("/jobs", json={"type": "reverse", "payload": "x"}, headers=auth)
        assert job.status_code == 201
        metrics = client.get("/metrics", headers=auth).json()
        assert metrics["slots_total"] == 0  # no pool in this process
        assert _job_with(client, job.json()["id"], auth)["status"] == "pending"
    proc.signal(signal.SIGINT)
    assert proc.wait() == 0
    assert "API only" in proc.output()


def _job_with(client: httpx.Client, job_id: int, headers: dict[str, str]) -> Any:
    response = client.get(f"/jobs/{job_id}", headers=headers)
    assert response.status_code == 200
    return response.json()


def test_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "conveyor",
                "serve",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{tmp_path / 'jobs.db'}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]]
    assert f"cannot listen on 127.0.0.1:{port}" in errors[0]
    assert "Traceback" not in result.stderr


def test_serve_help_lists_its_options():
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for option in (
        "--host",
        "--port",
        "--workers",
        "--database-url",
        "--app",
        "--queues",
        "--shutdown-timeout",
        "--lease",
        "--log-format",
    ):
        assert option in result.stdout, option
