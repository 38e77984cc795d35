"""The fleet as an API-only node sees it (SPEC §9): real `conveyor worker` processes in the
registry, leaving it when they stop or vanish; the store's gauges on /metrics."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor
from tests.api.servers import ThreadedApi, api_settings
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
