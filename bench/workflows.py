"""Workflows (SPEC §8): what dependencies cost. Two worker processes (bench/app.py's no-op
task, which returns its start time) on each store; prints Markdown tables.

- Fan-in: 1,000 parents, then one child depending on all of them (`--fan-in`). The delay
  from the last parent's finish (its `finished_at`) to the child's claim (its `started_at`)
  and to the start of its code (the no-op's result); median of `--repeats`.
- Blocked backlog: `--drain-n` independent jobs drained, jobs/s from the first start to the
  last finish, in a store with nothing else and in one where `--blocked` jobs wait on
  dependencies that never finish (each depends on one of 10 parents scheduled 50 years
  ahead, in a queue of their own, so they stay pending throughout: checked). The two
  stores are drained in turn, `--drain-repeats` times each (the medians are compared); the
  blocked jobs are enqueued once, in enqueue_many batches of 1,000, and that is timed too.
- Fan-out enqueue: one enqueue_many of a root, `--fan-out` children depending on "@0" and a
  join depending on all the children; seconds per batch (median of `--fan-out-repeats`),
  beside a batch of as many independent jobs.

    .venv/bin/python -m bench.workflows                 # SQLite and PostgreSQL
    .venv/bin/python -m bench.workflows --stores sqlite --blocked 10000 --drain-n 2000

PostgreSQL: scratch databases `conveyor_bench_wf` and `conveyor_bench_wf_blocked` on
$BENCH_PG_ADMIN (default postgresql://postgres@127.0.0.1:5432/postgres), dropped and
re-created per scenario.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.run import ROOT, fresh_url, start_workers, stop_workers, wait_drained
from conveyor import Conveyor
from conveyor.jobs import Job, JobFilter, JobStatus

WORKERS = 2  # worker processes
BLOCKING_PARENTS = 10  # the blocked jobs each depend on one of these
BLOCKED_QUEUE = "blocked"
WORK_QUEUE = "work"


@dataclass
class FanIn:
    to_claim_ms: list[float]  # last parent's finished_at → child's started_at
    to_start_ms: list[float]  # ... → the child's code started (the no-op's result)


@dataclass
class Backlog:
    empty: list[float]  # jobs/s per drain, nothing else in the store
    blocked: list[float]  # ... beside the blocked jobs
    blocked_enqueue_s: float  # enqueueing the blocked jobs (and their parents)


@dataclass
class FanOut:
    workflow_s: list[float]  # seconds per enqueue_many of root + children + join
    plain_s: list[float]  # ... of as many independent jobs


def jobs_in(app: Conveyor, first: int, last: int) -> list[Job]:
    """The jobs with ids first..last."""
    jobs: list[Job] = []
    before = last + 1
    while before > first:
        page = app.store.list_jobs(JobFilter(limit=1000, before_id=before))
        jobs += [j for j in page if j.id >= first]
        if len(page) < 1000:
            break
        before = page[-1].id
    return jobs


def warm_up(app: Conveyor) -> None:
    """Workers are up and have run a job."""
    job = app.enqueue("noop", queue=WORK_QUEUE)
    if app.wait(job.id, timeout=60).status != JobStatus.DONE:
        raise RuntimeError("the warm-up job did not end done")


# -- fan-in ----------------------------------------------------------------------------------
def bench_fan_in(url: str, parents: int, repeats: int, slots: int) -> FanIn:
    result = FanIn([], [])
    with Conveyor(url) as app:
        workers = start_workers(url, WORKERS, slots)
        try:
            warm_up(app)
            for _ in range(repeats):
                batch = [{"type": "noop", "queue": WORK_QUEUE}] * parents
                ids = [job.id for job in app.enqueue_many(batch)]
                child = app.enqueue("noop", queue=WORK_QUEUE, depends_on=ids)
                done = app.wait(child.id, timeout=120)
                wait_drained(app)
                finished = [j.finished_at for j in jobs_in(app, min(ids), max(ids))]
                if done.status != JobStatus.DONE or len(finished) != parents:
                    raise RuntimeError(f"fan-in: child {done.status}, {len(finished)} parents")
                last = max(at for at in finished if at is not None)
                if child.created_at >= last:
                    raise RuntimeError(
                        "every parent had finished before the child was enqueued: "
                        "this measures nothing; raise --fan-in"
                    )
                assert done.started_at is not None
                assert isinstance(done.result, float)
                result.to_claim_ms.append((done.started_at - last).total_seconds() * 1000)
                result.to_start_ms.append((done.result - last.timestamp()) * 1000)
        finally:
            stop_workers(workers)
    return result


# -- blocked backlog ---------------------------------------------------------------------------
def enqueue_blocked(url: str, blocked: int) -> float:
    """`blocked` jobs waiting on parents that never run while the bench lasts; seconds."""
    far = datetime.now(UTC) + timedelta(days=365 * 50)
    with Conveyor(url) as app:
        t0 = time.perf_counter()
        parent_jobs = app.enqueue_many(
            [{"type": "noop", "queue": BLOCKED_QUEUE, "run_at": far}] * BLOCKING_PARENTS
        )
        parents = [job.id for job in parent_jobs]
        for start in range(0, blocked, 1000):
            app.enqueue_many(
                [
                    {
                        "type": "noop",
                        "queue": BLOCKED_QUEUE,
                        "depends_on": [parents[i % BLOCKING_PARENTS]],
                    }
                    for i in range(start, min(start + 1000, blocked))
                ]
            )
        return time.perf_counter() - t0


def check_blocked(app: Conveyor, blocked: int) -> None:
    counts = app.store.stats().get(BLOCKED_QUEUE, {})
    expected = blocked + BLOCKING_PARENTS if blocked else 0
    if {k: v for k, v in counts.items() if v} != ({"pending": expected} if expected else {}):
        raise RuntimeError(f"the blocked queue holds {counts}, not {expected} pending jobs")


def drain(url: str, n: int, blocked: int, slots: int) -> float:
    """Drain n more independent jobs with the workers; jobs/s from first start to last
    finish (the store's own timestamps)."""
    with Conveyor(url) as app:
        check_blocked(app, blocked)
        first = last = 0
        for start in range(0, n, 1000):
            jobs = app.enqueue_many([{"type": "noop", "queue": WORK_QUEUE}] * min(1000, n - start))
            first, last = first or jobs[0].id, jobs[-1].id
        workers = start_workers(url, WORKERS, slots)
        try:
            app.wait(last, timeout=300)
            deadline = time.monotonic() + 300
            while app.store.stats().get(WORK_QUEUE, {}).get("done", 0) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError("the jobs did not drain")
                time.sleep(0.05)
        finally:
            stop_workers(workers)
        jobs = jobs_in(app, first, last)
        check_blocked(app, blocked)
    if len(jobs) != n or any(j.status != JobStatus.DONE for j in jobs):
        raise RuntimeError(f"drain: {len(jobs)} jobs, not {n} done")
    begin = min(j.started_at for j in jobs if j.started_at is not None)
    end = max(j.finished_at for j in jobs if j.finished_at is not None)
    return n / (end - begin).total_seconds()


def bench_backlog(store: str, tmp: Path, n: int, blocked: int, repeats: int, slots: int) -> Backlog:
    (tmp / "empty").mkdir(exist_ok=True)
    (tmp / "blocked").mkdir(exist_ok=True)
    empty_url = fresh_url(store, tmp / "empty", "conveyor_bench_wf")
    blocked_url = fresh_url(store, tmp / "blocked", "conveyor_bench_wf_blocked")
    for url in (empty_url, blocked_url):
        with Conveyor(url) as app:
            app.store.migrate()
    result = Backlog([], [], enqueue_blocked(blocked_url, blocked))
    for _ in range(repeats):  # in turn, so the machine's drift falls on both alike
        result.empty.append(drain(empty_url, n, 0, slots))
        result.blocked.append(drain(blocked_url, n, blocked, slots))
    return result


# -- fan-out enqueue ---------------------------------------------------------------------------
def bench_fan_out(url: str, children: int, repeats: int) -> FanOut:
    child: dict[str, object] = {"type": "noop", "queue": WORK_QUEUE, "depends_on": ["@0"]}
    join: dict[str, object] = {
        "type": "noop",
        "queue": WORK_QUEUE,
        "depends_on": [f"@{i}" for i in range(1, children + 1)],
    }
    workflow: list[dict[str, object]] = [
        {"type": "noop", "queue": WORK_QUEUE},
        *[child] * children,
        join,
    ]
    plain = [{"type": "noop", "queue": WORK_QUEUE}] * len(workflow)
    result = FanOut([], [])
    with Conveyor(url) as app:
        app.enqueue_many(plain)  # connect and migrate outside the timing
        for _ in range(repeats):  # in turn
            t0 = time.perf_counter()
            jobs = app.enqueue_many(workflow)
            result.workflow_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            app.enqueue_many(plain)
            result.plain_s.append(time.perf_counter() - t0)
            last = jobs[-1]
            if len(last.depends_on) != children or last.status != JobStatus.PENDING:
                raise RuntimeError(f"fan-out: the join waits on {len(last.depends_on)} jobs")
    return result


# -- report --------------------------------------------------------------------------------------
def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    return head + (" + working tree" if git("status", "--porcelain") else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--fan-in", type=int, default=1000, help="parents of the fan-in child")
    parser.add_argument("--repeats", type=int, default=5, help="fan-in repeats")
    parser.add_argument("--drain-n", type=int, default=10_000)
    parser.add_argument("--blocked", type=int, default=100_000)
    parser.add_argument("--drain-repeats", type=int, default=3)
    parser.add_argument("--fan-out", type=int, default=1000, help="children of the fan-out")
    parser.add_argument("--fan-out-repeats", type=int, default=10)
    parser.add_argument("--slots", type=int, default=10)
    args = parser.parse_args()
    started = datetime.now(UTC)
    results: list[tuple[str, FanIn, Backlog, FanOut]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for store in args.stores.split(","):
            fan_in = bench_fan_in(
                fresh_url(store, tmp, "conveyor_bench_wf"), args.fan_in, args.repeats, args.slots
            )
            print(f"# {store}: fan-in done", file=sys.stderr, flush=True)
            backlog = bench_backlog(
                store, tmp, args.drain_n, args.blocked, args.drain_repeats, args.slots
            )
            print(f"# {store}: blocked backlog done", file=sys.stderr, flush=True)
            fan_out = bench_fan_out(
                fresh_url(store, tmp, "conveyor_bench_wf"), args.fan_out, args.fan_out_repeats
            )
            print(f"# {store}: fan-out done", file=sys.stderr, flush=True)
            results.append((store, fan_in, backlog, fan_out))
    ended = datetime.now(UTC)
    median = statistics.median
    print(
        f"Conveyor workflows bench, {started:%Y-%m-%d %H:%M} to {ended:%H:%M} UTC, {commit()}, "
        f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{WORKERS} worker processes of {args.slots} slots, no-op async jobs\n"
    )
    print(
        f"Fan-in: {args.fan_in:,} parents → 1 child; from the last parent's finished_at, "
        f"median of {args.repeats} (each repeat's figures in brackets)\n"
    )
    print("| store | to the child's claim ms | to its code's start ms | target |")
    print("|---|---|---|---|")
    for store, fan_in, _, _ in results:
        claims = ", ".join(f"{v:.0f}" for v in fan_in.to_claim_ms)
        starts = ", ".join(f"{v:.0f}" for v in fan_in.to_start_ms)
        print(
            f"| {store} | **{median(fan_in.to_claim_ms):.1f}** ({claims}) "
            f"| **{median(fan_in.to_start_ms):.1f}** ({starts}) | < 100 ms |"
        )
    print(
        f"\nBlocked backlog: {args.drain_n:,} independent jobs drained (first start to last "
        f"finish), alone and beside {args.blocked:,} jobs waiting on unfinished dependencies; "
        f"median of {args.drain_repeats} drains each, in turn\n"
    )
    print(
        "| store | alone jobs/s | beside the blocked jobs/s | ratio | enqueue of the blocked "
        "| target |"
    )
    print("|---|---|---|---|---|---|")
    for store, _, backlog, _ in results:
        alone, beside = median(backlog.empty), median(backlog.blocked)
        each = ", ".join(
            f"{a:,.0f}/{b:,.0f}" for a, b in zip(backlog.empty, backlog.blocked, strict=True)
        )
        rate = args.blocked / backlog.blocked_enqueue_s
        print(
            f"| {store} | {alone:,.0f} | {beside:,.0f} | **{beside / alone:.2f}** ({each}) "
            f"| {backlog.blocked_enqueue_s:.1f} s ({rate:,.0f} jobs/s) | ratio ≥ 0.90 |"
        )
    print(
        f'\nFan-out enqueue: one enqueue_many of 1 root + {args.fan_out:,} children on "@0" '
        f"+ 1 join on all children, beside {args.fan_out + 2:,} independent jobs; median "
        f"(min) of {args.fan_out_repeats}\n"
    )
    print("| store | workflow batch ms | independent batch ms | ratio |")
    print("|---|---|---|---|")
    for store, _, _, fan_out in results:
        wf, plain = median(fan_out.workflow_s) * 1000, median(fan_out.plain_s) * 1000
        print(
            f"| {store} | **{wf:.1f}** ({min(fan_out.workflow_s) * 1000:.1f}) "
            f"| {plain:.1f} ({min(fan_out.plain_s) * 1000:.1f}) | {wf / plain:.1f} |"
        )


if __name__ == "__main__":
    main()
