"""Periodic jobs across real `conveyor worker` processes (SPEC §7), on both stores: three
workers of an app with an every-second schedule enqueue every tick exactly once while they
run (by the jobs' unique keys and by the task's own run records); after the whole fleet
stopped for 5 s, a restart enqueues only the most recent missed tick, not a burst of five.
Then `conveyor periodic list` and GET /periodic show the schedules."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from conveyor.jobs import JobFilter, JobStatus
from conveyor.stores import Store
from tests.api.servers import ServeProcess
from tests.support.procs import CONVEYOR, ROOT, Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.slow]

APP = "tests.support.periodic_app:app"
WORKER_ARGS = ["--app", APP, "--workers", "2", "--fetch-interval", "1", "--shutdown-timeout", "5"]
RUN_S, PAUSE_S = 10.0, 5.0


def tick_of(key: str) -> datetime:
    return datetime.fromisoformat(key.split(":", 2)[2])  # periodic:beat:<tick>


def beat_jobs(store: Store) -> list:
    return [j for j in store.list_jobs(JobFilter(limit=1000)) if j.type == "beat"]


def start_fleet(workers: Workers) -> tuple[list[subprocess.Popen[bytes]], float]:
    """Three workers; returns them and the wall time by which all three are scheduling."""
    first = len(workers.procs)
    procs = [workers.start(*WORKER_ARGS) for _ in range(3)]
    for n in range(first, first + 3):
        wait_until(
            lambda n=n: "periodic jobs: beat" in workers.log(n),
            timeout=30,
            message=f"worker {n} registered its schedules",
        )
    return procs, time.time()


def stop_fleet(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(30) == 0


def seconds(first: datetime, last: datetime) -> list[datetime]:
    count = int((last - first).total_seconds())
    return [first + timedelta(seconds=n) for n in range(count + 1)]


def test_every_tick_once_across_three_workers_and_after_a_pause_only_the_latest(
    workers, store, store_url, tmp_path
):
    # -- three workers, RUN_S -------------------------------------------------------------------
    fleet, ready = start_fleet(workers)
    time.sleep(RUN_S)
    stopping = time.time()
    stop_fleet(fleet)
    keys = [j.unique_key for j in beat_jobs(store)]
    assert keys, "ticks were enqueued"
    assert not [k for k, n in Counter(keys).items() if n > 1], "no tick enqueued twice"
    ticks = sorted(tick_of(k) for k in keys)
    # every second from the first whole second all three were scheduling to the last one
    # before the stop was asked: no gap, none twice
    due = seconds(
        datetime.fromtimestamp(math.ceil(ready), UTC),
        datetime.fromtimestamp(math.floor(stopping - 0.5), UTC),
    )
    assert set(due) <= set(ticks), sorted(set(due) - set(ticks))
    assert ticks == seconds(ticks[0], ticks[-1]), "consecutive seconds"
    assert len(ticks) >= RUN_S - 1
    pids = {ln[1] for ln in workers.records.lines()}
    assert len(pids) >= 2, "the ticks' jobs ran in several workers"
    last_before_pause = ticks[-1]

    # -- the whole fleet stops for PAUSE_S, then starts again -------------------------------------
    time.sleep(PAUSE_S)
    restarting = time.time()
    fleet, _ = start_fleet(workers)
    time.sleep(3)
    wait_until(
        lambda: all(j.status == JobStatus.DONE for j in beat_jobs(store)),
        timeout=30,
        message="every tick's job ran",
    )
    stop_fleet(fleet)

    jobs = beat_jobs(store)
    keys = [j.unique_key for j in jobs]
    assert len(keys) == len(set(keys)), "no tick enqueued twice"
    after = sorted(tick for tick in map(tick_of, keys) if tick > last_before_pause)
    # the ticks missed while no worker ran are not replayed: the first after the pause is
    # the latest one due when the first worker looked (at or after `restarting`)
    missed = [tick for tick in after if tick.timestamp() < math.floor(restarting)]
    assert missed == [], f"no burst of missed ticks: {missed}"
    assert after, "ticks enqueued after the restart"
    assert after == seconds(after[0], after[-1]), "consecutive seconds after the restart"
    # ... and that first tick once, by the jobs and by the task's own runs
    runs = Counter(ln[0] for ln in workers.records.lines())
    assert runs == Counter(keys), "each tick's job ran exactly once"
    assert all(j.status == JobStatus.DONE and j.attempts == 1 for j in jobs)

    # -- what operators see -------------------------------------------------------------------
    last = max(jobs, key=lambda j: tick_of(j.unique_key))
    check_periodic_list(store_url, last)
    check_get_periodic(store_url, last, tmp_path)


def _nightly_tick(now: datetime) -> datetime:
    berlin = now.astimezone(ZoneInfo("Europe/Berlin"))
    tick = berlin.replace(hour=3, minute=0, second=0, microsecond=0)
    if tick <= berlin:
        tick = (berlin + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    return tick.astimezone(UTC)


def conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONVEYOR, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def check_periodic_list(url: str, last) -> None:
    shown = conveyor("periodic", "list", "--app", APP, "--database-url", url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [
        "name",
        "schedule",
        "timezone",
        "next_tick",
        "last_tick",
        "last_job",
        "active",
    ]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"beat", "nightly-export"}
    beat = rows["beat"]
    assert "* * * * * *  UTC" in beat
    assert tick_of(last.unique_key).isoformat() in beat
    assert f"{last.id} (done)" in beat
    assert beat.rstrip().endswith("yes")
    nightly = rows["nightly-export"].split()
    assert nightly[:7] == ["nightly-export", "0", "3", "*", "*", "*", "Europe/Berlin"]
    assert nightly[7] == _nightly_tick(datetime.now(UTC)).isoformat()
    assert nightly[8:] == ["-", "-", "yes"]

    before = datetime.now(UTC)
    as_json = conveyor("periodic", "list", "--json", "--app", APP, "--database-url", url)
    after = datetime.now(UTC)
    assert as_json.returncode == 0, as_json.stderr
    listed = {item["name"]: item for item in json.loads(as_json.stdout)["periodic"]}
    assert listed["beat"]["last_job_id"] == last.id
    assert listed["beat"]["last_job_status"] == "done"
    assert listed["beat"]["last_tick"] == tick_of(last.unique_key).isoformat()
    next_tick = datetime.fromisoformat(listed["beat"]["next_tick"])
    assert before < next_tick <= after + timedelta(seconds=1)

    # without --app the CLI sees the store's rows only, and cannot tell what is active
    bare = conveyor("periodic", "list", "--json", "--database-url", url)
    assert bare.returncode == 0, bare.stderr
    assert [(i["name"], i["active"]) for i in json.loads(bare.stdout)["periodic"]] == [
        ("beat", None),
        ("nightly-export", None),
    ]


def check_get_periodic(url: str, last, tmp_path) -> None:
    server = ServeProcess(
        tmp_path,
        url,
        "--workers",
        "0",
        "--app",
        APP,
        env={"API_TOKEN": "s3cret", "PYTHONPATH": str(ROOT)},
    )
    try:
        base = server.wait_serving()
        assert httpx.get(f"{base}/periodic").status_code == 401
        answer = httpx.get(f"{base}/periodic", headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200
        listed = {item["name"]: item for item in answer.json()["periodic"]}
        assert set(listed) == {"beat", "nightly-export"}
        beat, nightly = listed["beat"], listed["nightly-export"]
        assert (beat["schedule"], beat["timezone"], beat["active"]) == ("* * * * * *", "UTC", True)
        assert (beat["last_job_id"], beat["last_job_status"]) == (last.id, "done")
        assert beat["last_tick"] == tick_of(last.unique_key).isoformat()
        assert (nightly["schedule"], nightly["timezone"]) == ("0 3 * * *", "Europe/Berlin")
        assert nightly["next_tick"] == _nightly_tick(datetime.now(UTC)).isoformat()
        assert nightly["last_tick"] is None and nightly["last_job_id"] is None
        spec = httpx.get(f"{base}/openapi.json", headers={"Authorization": "Bearer s3cret"})
        assert "/periodic" in spec.json()["paths"]
        assert "PeriodicOut" in spec.json()["components"]["schemas"]
    finally:
        server.close()
