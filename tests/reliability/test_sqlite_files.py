"""SQLite file trouble under real processes (issue 12, finding 4).

- A database that is read-only for 3 s under a running `conveyor serve` (chattr +i on the
  file and its -wal, which root cannot write through either): API writes answer 503 with a
  clear message, never 500; /readyz answers 503; once writable again everything recovers
  on its own (before, connections opened meanwhile stayed read-only for good).
- The database file deleted, renamed or replaced under a running `conveyor serve` and a
  running `conveyor worker`: both stop within 5 s, non-zero, naming the file (before, they
  went on writing into a file no other process sees, a silent split brain).

Figures (time to recover, time to exit) are printed: run with -s to see them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.stores.sqlite.store import SqliteStore
from tests.api.servers import ServeProcess
from tests.sqlite.immutable import database_files, immutable, require_chattr
from tests.support.procs import Records, Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.slow]

WINDOW_S = 3.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    require_chattr(tmp_path)
    return tmp_path / "jobs.db"


@pytest.fixture
def serve(db: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess(
        tmp_path, f"sqlite:///{db}", "--workers", "2", "--fetch-interval", "0.5", "--lease", "6"
    )
    try:
        proc.wait_serving()
        yield proc
    finally:
        proc.close()


class Producer(threading.Thread):
    """POST /jobs in a loop until stopped; keeps every answer's status and the ids created."""

    def __init__(self, url: str) -> None:
        super().__init__(name="producer", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.statuses: list[int] = []
        self.created: list[int] = []
        self.bodies: dict[int, str] = {}

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stopping.is_set():
                n += 1
                response = client.post("/jobs", json={"type": "reverse", "payload": f"p{n}"})
                self.statuses.append(response.status_code)
                self.bodies.setdefault(response.status_code, response.text)
                if response.status_code == 201:
                    self.created.append(response.json()["id"])
                self.stopping.wait(0.02)  # pacing, not synchronisation

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive()


def status_of(client: httpx.Client, job_id: int) -> str:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def all_done(client: httpx.Client, ids: list[int]) -> bool:
    return all(status_of(client, i) == "done" for i in ids)


def enqueue(client: httpx.Client, body: dict[str, Any], path: str = "/jobs") -> httpx.Response:
    return client.post(path, json=body)


def test_a_read_only_window_answers_503_and_serve_recovers_on_its_own(db, serve):
    with serve.client() as client:
        first = [
            enqueue(client, {"type": "reverse", "payload": f"a{i}"}).json()["id"] for i in range(5)
        ]
        wait_until(lambda: all_done(client, first), message="jobs before the window")
        producer = Producer(serve.url)
        producer.start()
        wait_until(lambda: len(producer.created) >= 5, message="producer running")

        with immutable(*database_files(db)):
            frozen = time.monotonic()
            ready = wait_until(
                lambda: (r := client.get("/readyz")).status_code == 503 and r,
                timeout=2,
                message="/readyz kept answering 200 while the file was read-only",
            )
            assert "cannot be written" in ready.json()["detail"], ready.text
            assert str(db) in ready.json()["detail"]
            answers = {
                "single": enqueue(client, {"type": "reverse", "payload": "x"}),
                "unique_key": enqueue(
                    client, {"type": "reverse", "payload": "x", "unique_key": "k1"}
                ),
                "batch": enqueue(
                    client,
                    {"jobs": [{"type": "reverse", "payload": f"b{i}"} for i in range(3)]},
                    "/jobs/batch",
                ),
            }
            for name in ("single", "unique_key", "batch"):
                response = answers[name]
                assert response.status_code == 503, (name, response.status_code, response.text)
                detail = response.json()["detail"]
                assert str(db) in detail and "\n" not in detail, (name, detail)
                assert "read-only" in detail or "readonly" in detail or "I/O" in detail, detail
            # for the whole window, /readyz says the store cannot serve
            while time.monotonic() - frozen < WINDOW_S:
                assert client.get("/readyz").status_code == 503
        thawed = time.monotonic()

        wait_until(
            lambda: client.get("/readyz").status_code == 200,
            timeout=5,
            message="/readyz did not recover within 5 s of the file being writable",
        )
        ready_after = time.monotonic() - thawed
        created = wait_until(
            lambda: (
                (r := enqueue(client, {"type": "reverse", "payload": "after"})).status_code == 201
                and r
            ),
            timeout=5 - (time.monotonic() - thawed),
            message="enqueues did not recover within 5 s",
        )
        enqueue_after = time.monotonic() - thawed
        unique = enqueue(client, {"type": "reverse", "payload": "x", "unique_key": "k1"})
        assert unique.status_code == 201, unique.text
        batch = enqueue(
            client,
            {"jobs": [{"type": "reverse", "payload": f"b{i}"} for i in range(3)]},
            "/jobs/batch",
        )
        assert batch.status_code == 201, batch.text
        wait_until(lambda: len(producer.created) >= 5 + 10, message="producer after the window")
        producer.stop()

        ids = [
            *first,
            *producer.created,
            created.json()["id"],
            unique.json()["id"],
            *(j["id"] for j in batch.json()["jobs"]),
        ]
        wait_until(lambda: all_done(client, ids), timeout=15, message="jobs after the window")
        processed_after = time.monotonic() - thawed

    assert 500 not in producer.statuses, producer.bodies.get(500)
    assert set(producer.statuses) <= {201, 503}, producer.bodies
    assert producer.statuses.count(503) > 0  # the producer did run into the window
    assert serve.proc.poll() is None, serve.output()
    output = serve.output()
    assert "Traceback" not in output, output
    print(
        f"\nread-only window {WINDOW_S:.0f}s: after chattr -i, /readyz 200 in {ready_after:.2f}s, "
        f"enqueue 201 in {enqueue_after:.2f}s, all {len(ids)} jobs done in "
        f"{processed_after:.2f}s; producer: {producer.statuses.count(201)} x 201, "
        f"{producer.statuses.count(503)} x 503, no 500"
    )


def _replace(db: Path) -> None:
    other = SqliteStore(db.with_name("other.db"))
    other.migrate()
    other.close()
    os.replace(db.with_name("other.db"), db)


TROUBLE = {
    "deleted": (lambda db: db.unlink(), "was deleted or renamed"),
    "renamed": (lambda db: db.rename(db.with_name("moved.db")), "was deleted or renamed"),
    "replaced": (_replace, "was replaced by another file"),
}


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "running-jobs"])
@pytest.mark.parametrize("trouble", list(TROUBLE))
def test_serve_and_worker_stop_when_the_database_file_goes(db, serve, tmp_path, trouble, busy):
    workers = Workers(f"sqlite:///{db}", Records(tmp_path / "record.txt"), tmp_path)
    try:
        # the demo app, as the serve runs (the last --app given wins)
        worker = workers.start(
            "--app", "conveyor.demo:app", "--workers", "2", "--fetch-interval", "0.5"
        )
        wait_until(lambda: " started: " in workers.log(0), message="worker did not start")
        with serve.client() as client:
            # both are live: jobs run (the serve's pool and the worker share them)
            ids = [
                enqueue(client, {"type": "reverse", "payload": f"{i}"}).json()["id"]
                for i in range(4)
            ]
            wait_until(lambda: all_done(client, ids), message="jobs before the trouble")
            if busy:
                # every slot of both processes runs a long job: their outcome can never be
                # written, so waiting out --shutdown-timeout (30 s) would be pointless
                for _ in range(4):
                    enqueue(client, {"type": "sleep", "payload": {"seconds": 60}})
                wait_until(
                    lambda: (
                        len(
                            {
                                j["worker"]
                                for j in client.get("/jobs?status=processing").json()["jobs"]
                            }
                        )
                        == 2
                    ),
                    message="long jobs running in both processes",
                )

        act, what = TROUBLE[trouble]
        act(db)
        started = time.monotonic()
        wait_until(
            lambda: serve.proc.poll() is not None and worker.poll() is not None,
            timeout=5,
            message=f"serve/worker still running 5 s after the file {trouble}",
        )
        took = time.monotonic() - started
    finally:
        workers.stop_all()

    for name, code, output in (
        ("serve", serve.proc.returncode, serve.output()),
        ("worker", worker.returncode, workers.log(0)),
    ):
        assert code not in (0, None) and code > 0, (name, code, output)  # exited, not killed
        assert f"SQLite database {db} {what}" in output, (name, output)
        assert "Traceback" not in output, (name, output)
    if trouble != "replaced":
        assert not db.exists()  # nobody made a fresh empty database in its place
    print(
        f"\nfile {trouble} ({'running jobs' if busy else 'idle'}): serve exited "
        f"{serve.proc.returncode}, worker exited {worker.returncode}, both within {took:.2f}s"
    )
