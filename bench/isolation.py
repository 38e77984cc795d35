"""Process isolation (SPEC §6): what a child process costs, and whether CPU-bound sync tasks
use every core from one worker process.

    .venv/bin/python -m bench.isolation                  # SQLite in a temporary directory
    .venv/bin/python -m bench.isolation --jobs 20 --seconds 0.5 --trivial 2000

Prints one line per figure:

- `cpu`: `--jobs` CPU-bound jobs of about `--seconds` each (calibrated here), run by one
  `conveyor worker --pool process --workers 2`, against the same jobs one after another
  (`--workers 1`) and on the thread pool (`--pool thread --workers 2`, which the GIL
  serialises). Expected ratio on 2 cores: about 0.5 for processes, about 1 for threads.
- `trivial`: jobs/s of a no-op task through one worker (`--workers 5`), isolated vs on the
  thread pool: the per-job cost of the round trip to a child.
- `spawn`: a child's start (fork from the fork server, import-free since the server
  preloaded the app) measured in-process with `--max-tasks-per-child 1`, and the first
  child, which also starts the fork server.

The worker runs this module's own app (`--app bench.isolation:app`). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor import Conveyor

ROOT = Path(__file__).resolve().parents[1]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
SPEC = "bench.isolation:app"

app = Conveyor()


@app.task
def crunch(loops: int) -> int:
    """CPU-bound: pure Python arithmetic, holds the GIL throughout."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


@app.task(isolated=True)
def noop() -> None:
    pass


@app.task
def thread_noop() -> None:
    pass


def calibrate(seconds: float) -> int:
    """Loops of `crunch` that take about `seconds` here."""
    loops = 100_000
    while True:
        begin = time.perf_counter()
        crunch.func(loops)
        took = time.perf_counter() - begin
        if took > 0.1:
            return int(loops * seconds / took)
        loops *= 4


def drain(url: str, jobs: list[dict[str, object]], *worker_args: str) -> tuple[float, float]:
    """Start a worker, enqueue `jobs`, wait for all to be done: seconds from enqueue to the
    last finish, and the mean run time of a job (by the jobs' own timestamps)."""
    producer = Conveyor(url)
    log = open(Path(tempfile.gettempdir()) / "bench-isolation-worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *(CONVEYOR, "worker", "--database-url", url, "--app", SPEC),
            *("--log-level", "WARNING", *worker_args),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        time.sleep(1.0)  # the worker is up and idle; its first child starts with the first job
        enqueued = producer.enqueue_many(jobs)
        first = min(j.created_at for j in enqueued)
        while True:  # counts only: reading every job would compete with the worker for CPU
            by_status: dict[str, int] = {}
            for per_queue in producer.store.stats().values():
                for status, count in per_queue.items():
                    by_status[status] = by_status.get(status, 0) + count
            if by_status.get("done", 0) + by_status.get("failed", 0) == len(jobs):
                break
            time.sleep(0.1)
        finished = [producer.get_job(j.id) for j in enqueued]
        failed = [j for j in finished if j is None or j.status != "done"]
        if failed:
            raise SystemExit(f"{len(failed)} jobs failed: {failed[0]}")
        spans = [(j.started_at, j.finished_at) for j in finished if j is not None]
        last = max(end for _, end in spans if end is not None)
        runs = [(end - start).total_seconds() for start, end in spans if start and end]
        return (last - first).total_seconds(), sum(runs) / len(runs)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        producer.close()


def spawn_cost(calls: int) -> tuple[float, float, float]:
    """(first child incl. the fork server, per fresh child, per reused child) in seconds."""
    from conveyor.worker.isolation import ChildPool, IsolationConfig

    async def main() -> tuple[float, float, float]:
        fresh = ChildPool(app, IsolationConfig(app_spec=SPEC, max_tasks_per_child=1), 1)
        reused = ChildPool(app, IsolationConfig(app_spec=SPEC), 1)
        task = app.tasks["noop"]

        async def one(pool: ChildPool) -> None:
            await pool.call(task, None, (), {}, timeout=None, on_cancel=lambda f: None)  # type: ignore[arg-type]

        try:
            begin = time.perf_counter()
            await one(fresh)
            first = time.perf_counter() - begin
            begin = time.perf_counter()
            for _ in range(calls):
                await one(fresh)
            per_fresh = (time.perf_counter() - begin) / calls
            await one(reused)
            begin = time.perf_counter()
            for _ in range(calls * 10):
                await one(reused)
            per_reused = (time.perf_counter() - begin) / (calls * 10)
        finally:
            fresh.close()
            reused.close()
        return first, per_fresh, per_reused

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU time per job")
    parser.add_argument("--trivial", type=int, default=2000, help="no-op jobs per pool kind")
    parser.add_argument("--spawns", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args(argv)
    print(f"cores={os.cpu_count()}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:

        def fresh_url(name: str) -> str:
            return args.database_url or f"sqlite:///{Path(tmp) / name}.db"

        loops = calibrate(args.seconds)
        cpu = [{"type": "crunch", "payload": {"loops": loops}} for _ in range(args.jobs)]
        serial, serial_run = drain(fresh_url("serial"), cpu, "--pool", "process", "--workers", "1")
        parallel, parallel_run = drain(
            fresh_url("parallel"), cpu, "--pool", "process", "--workers", "2"
        )
        threads, threads_run = drain(
            fresh_url("threads"), cpu, "--pool", "thread", "--workers", "2"
        )
        print(
            f"cpu jobs={args.jobs} x {args.seconds}s: process --workers 2 {parallel:.2f}s "
            f"(a job {parallel_run:.2f}s), one after another (--workers 1) {serial:.2f}s "
            f"(a job {serial_run:.2f}s), ratio {parallel / serial:.2f}; thread --workers 2 "
            f"{threads:.2f}s (a job {threads_run:.2f}s), ratio {threads / serial:.2f}",
            flush=True,
        )

        n = args.trivial
        iso, _ = drain(fresh_url("iso"), [{"type": "noop"}] * n, "--workers", "5")
        thr, _ = drain(fresh_url("thr"), [{"type": "thread_noop"}] * n, "--workers", "5")
        print(
            f"trivial jobs={n} --workers 5: isolated {n / iso:,.0f} jobs/s, "
            f"thread {n / thr:,.0f} jobs/s, isolation adds {(iso - thr) / n * 1e3:.2f} ms/job "
            f"of drain time",
            flush=True,
        )

    # In a process started with -c: under `python -m bench.isolation` every child would run
    # this module again as __mp_main__ (multiprocessing's main-module fix-up), which a
    # worker started by the `conveyor` script does not pay (the fork server preloads it).
    code = f"import bench.isolation as b; b.print_spawn_cost({args.spawns})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return 0


def print_spawn_cost(calls: int) -> None:
    first, per_fresh, per_reused = spawn_cost(calls)
    print(
        f"spawn first_child(+fork server)={first * 1e3:.0f}ms "
        f"call_with_fresh_child={per_fresh * 1e3:.1f}ms call_with_reused_child="
        f"{per_reused * 1e3:.2f}ms spawn~{(per_fresh - per_reused) * 1e3:.1f}ms",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
