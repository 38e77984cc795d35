"""The fleet as an API-only node sees it (SPEC §9): real `conveyor worker` processes in the
registry, leaving it when they stop or vanish; the store's gauges on /metrics, as parsed by
prometheus_client and as a real Prometheus server (Debian's) scrapes them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor
from tests.api.servers import ThreadedApi, api_settings
from tests.support import pg
from tests.support.procs import free_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

LEASE = 1.0  # seconds: short, so that a killed worker's row expires quickly
FAST = ["--fetch-interval", "0.5", "--lease", str(LEASE), "--queues", "default"]


def _workers(client: httpx.Client) -> list[dict[str, object]]:
    response = client.get("/workers")
    assert response.status_code == 200
    return response.json()["workers"]  # type: ignore[no-any-return]


def _gauges(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    scrape = client.get("/metrics", headers={"Accept": "text/plain"})
    assert scrape.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
    }


def test_an_api_only_node_sees_the_fleet(workers, producer, store_url):
    with (
        Conveyor(store_url) as api_app,
        ThreadedApi(api_app, api_settings()) as api,  # the app alone: no worker pool here
        api.client() as client,
    ):
        killed = workers.start("--workers", "2", *FAST)
        stopped = workers.start("--workers", "3", *FAST)
        listed = wait_until(lambda: len(_workers(client)) == 2 and _workers(client), timeout=15)
        assert {w["pid"] for w in listed} == {killed.pid, stopped.pid}
        assert sorted(w["slots"] for w in listed) == [2, 3]
        assert all(w["queues"] == ["default"] for w in listed)

        producer.enqueue_many([{"type": "record", "payload": {"seq": i}} for i in range(6)])
        producer.enqueue("record", {"seq": 99}, queue="elsewhere")  # no worker serves it
        wait_until(lambda: len(workers.records.seqs()) == 6, timeout=15, message="6 jobs ran")

        gauges = wait_until(
            lambda: (
                (g := _gauges(client))[
                    ("conveyor_jobs", (("queue", "default"), ("status", "done")))
                ]
                == 6
                and g
            ),
            timeout=10,
        )
        assert gauges[("conveyor_workers_live", ())] == 2
        assert gauges[("conveyor_oldest_pending_seconds", (("queue", "elsewhere"),))] >= 0
        assert ("conveyor_oldest_pending_seconds", (("queue", "default"),)) not in gauges
        assert gauges[("conveyor_jobs", (("queue", "elsewhere"), ("status", "pending")))] == 1
        # this process ran no job: its own histograms are empty
        assert not any(name == "conveyor_job_duration_seconds_count" for name, _ in gauges)
        overview = client.get("/overview").json()
        assert sum(m["finished"] for m in overview["per_minute"]) == 6
        assert overview["workers"] == {"live": 2, "slots": 5, "busy": 0}

        killed.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: len(_workers(client)) == 1, timeout=3 * LEASE, message="killed left")
        gone_after = time.monotonic() - killed_at
        assert gone_after < 2 * LEASE, f"the killed worker was listed {gone_after:.2f}s more"
        assert [w["pid"] for w in _workers(client)] == [stopped.pid]

        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(10) == 0
        assert _workers(client) == [], "a worker that stopped cleanly leaves at once"


def _prometheus_binary() -> str:
    """Debian's `prometheus` (installed by .ci/run): fail under CI=true without it."""
    found = shutil.which("prometheus")
    if found is None:
        pg.unavailable(
            "prometheus is not installed (apt-get install prometheus)",
            tests="the Prometheus scrape test",
        )
    return found


SCRAPE_LABELS = {"__name__", "job", "instance"}


def _query(prometheus: httpx.Client, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query: each series' own labels (not its name, job or instance) and value."""
    answer = prometheus.get("/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", answer
    series = {}
    for found in answer["data"]["result"]:
        labels = {k: v for k, v in found["metric"].items() if k not in SCRAPE_LABELS}
        series[tuple(sorted(labels.items()))] = float(found["value"][1])
    return series


def test_a_prometheus_server_scraping_an_api_only_node_sees_the_fleet(
    workers, producer, store_url, tmp_path
):
    binary = _prometheus_binary()
    with Conveyor(store_url) as api_app, ThreadedApi(api_app, api_settings()) as api:
        workers.start("--workers", "2", *FAST)
        producer.enqueue_many([{"type": "record", "payload": {"seq": i}} for i in range(4)])
        wait_until(lambda: len(workers.records.seqs()) == 4, timeout=15, message="4 jobs ran")

        target = api.url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: conveyor\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as prometheus:

                def scraped() -> dict[tuple[tuple[str, str], ...], float] | None:
                    try:
                        done = _query(prometheus, "conveyor_jobs")
                    except (httpx.HTTPError, ValueError):
                        return None  # not listening, or not ready (503, not JSON), yet
                    key = (("queue", "default"), ("status", "done"))
                    return done if done.get(key) == 4 else None

                wait_until(scraped, timeout=30, message="Prometheus scraped the done jobs")
                assert _query(prometheus, 'up{job="conveyor"}') == {(): 1.0}
                assert _query(prometheus, "conveyor_workers_live") == {(): 1.0}
                health = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
                assert [(t["health"], t["lastError"]) for t in health] == [("up", "")]
        finally:
            server.terminate()
            server.wait(15)
