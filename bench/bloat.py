"""Bloat: does PostgreSQL's jobs table stay the same size while a million jobs pass through
it, with retention deleting them a minute after they finish?

    .venv/bin/python -m bench.bloat                                  # 1,000,000 jobs
    .venv/bin/python -m bench.bloat --server postgresql://postgres@127.0.0.1:5433/postgres

A fresh database on `--server` (dropped at the end), two real `conveyor worker` processes
(bench/app.py's `noop`, 10 slots each) started with `--retain-done 1m`, so that their
retention service (one of them at a time) deletes done jobs a minute after they finished,
checking every 15 s. This script enqueues at a steady `--rate` with `enqueue_many`, and
prints `pg_total_relation_size('jobs')` (heap, indexes, TOAST) once `--first` jobs have
finished and again after all of them: the two must be within 1.5 x of each other. With
`-v` it prints a line every `--every` seconds: jobs done, live and dead rows, heap and
index sizes, vacuums so far.

Real worker processes rather than the store API in a loop: the size must be the one a
deployed queue gives the table, each job inserted, claimed (status and lease written),
finished and deleted by the retention service inside a worker, while autovacuum works
beside them. A steady rate rather than as fast as the workers drain: the table's steady
state holds about (retention + interval) x rate live jobs plus the dead versions of up to
one `autovacuum_naptime` (a minute) of churn, and is reached after a few vacuums, about
three minutes in; at full speed (5-8k jobs/s on the project VM) 200,000 jobs pass in under
a minute, before retention has deleted anything, and the first reading would be of a table
still filling. At the default 1,000 jobs/s the first reading comes after 200 s, in the
steady state (at 2,000 jobs/s, after 100 s, it is still growing towards it: docs/
performance.md); 1,000,000 jobs take about 17 minutes. The enqueuer also keeps
at most `--backlog` jobs unfinished, so that pending jobs (live rows retention cannot
delete) do not pile up in the table when the workers fall behind the rate; the line
prints the rate achieved. It never catches up above the rate after such a slow spell.

The server must run autovacuum (`SHOW autovacuum`): without it nothing reclaims the space
of deleted and updated rows and the table grows with every job, whatever Conveyor does.
`--no-autovacuum` shows that: it turns autovacuum off for the jobs table (and runs on a
server without it). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from conveyor import Conveyor

ROOT = Path(__file__).resolve().parents[1]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
SERVER = os.environ.get("CONVEYOR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 500  # jobs per enqueue_many
TICK_S = 0.1  # the enqueuer's step

SIZES = """
SELECT pg_total_relation_size('jobs') AS total,
       pg_relation_size('jobs') AS heap,
       pg_indexes_size('jobs') AS indexes,
       coalesce(s.n_live_tup, 0) AS live,
       coalesce(s.n_dead_tup, 0) AS dead,
       coalesce(s.autovacuum_count, 0) + coalesce(s.vacuum_count, 0) AS vacuums,
       coalesce(s.n_tup_del, 0) AS deleted
FROM pg_stat_user_tables AS s WHERE s.relname = 'jobs'
"""
# Two counts, each over its own small partial index (a count of status IN (...) was
# planned as a scan of the whole table: 70 ms a time, a third of a core when polled).
UNFINISHED = """
SELECT (SELECT count(*) FROM jobs WHERE status = 'pending')
     + (SELECT count(*) FROM jobs WHERE status = 'processing')
"""
POLL_S = 0.5  # how often the script counts unfinished jobs
INDEXES = """
SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)
FROM pg_index WHERE indrelid = 'jobs'::regclass ORDER BY 1
"""


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}MB"


def sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(SIZES).fetchone()
    assert row is not None
    names = ("total", "heap", "indexes", "live", "dead", "vacuums", "deleted")
    return dict(zip(names, row, strict=True))


def describe(done: int, at: float, s: dict[str, int]) -> str:
    return (
        f"done={done:,} t={at:.0f}s total={mb(s['total'])} heap={mb(s['heap'])} "
        f"indexes={mb(s['indexes'])} live={s['live']:,} dead={s['dead']:,} "
        f"deleted={s['deleted']:,} vacuums={s['vacuums']}"
    )


def start_workers(
    url: str, n: int, slots: int, retain: str, logdir: Path
) -> list[subprocess.Popen[bytes]]:
    """Worker processes at log level INFO, each piped through grep so that only their
    retention lines (not two lines per job) are kept, in logdir/worker<n>.log."""
    procs = []
    for i in range(n):
        worker = subprocess.Popen(
            [
                *(CONVEYOR, "worker", "--app", "bench.app:app", "--database-url", url),
                *("--workers", str(slots), "--fetch-limit", str(slots)),
                *("--retain-done", retain, "--log-level", "INFO"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        with open(logdir / f"worker{i}.log", "wb") as log:
            subprocess.Popen(
                ["grep", "--line-buffered", "-E", "retention|store:|WARNING|ERROR"],
                stdin=worker.stdout,
                stdout=log,
            )
        assert worker.stdout is not None
        worker.stdout.close()  # grep holds the pipe now
        procs.append(worker)
    return procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", default=SERVER, help="admin URL of the PostgreSQL server")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--first", type=int, default=200_000, help="jobs before 1st reading")
    parser.add_argument("--rate", type=float, default=1_000.0, help="jobs enqueued per second")
    parser.add_argument("--backlog", type=int, default=2_000, help="most unfinished at once")
    parser.add_argument("--retain-done", default="1m")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between -v lines")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--no-autovacuum", action="store_true", help="to see the table grow")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    name = f"conveyor_bloat_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        autovacuum = admin.execute("SHOW autovacuum").fetchone()
        if autovacuum != ("on",) and not args.no_autovacuum:
            print(
                f"bloat: autovacuum is {autovacuum[0] if autovacuum else '?'} on {args.server}: "
                "nothing would reclaim deleted rows; use a server that runs it, or "
                "--no-autovacuum to see the table grow",
                file=sys.stderr,
            )
            return 2
        version = admin.execute("SHOW server_version").fetchone()
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.server.rsplit('/', 1)[0]}/{name}"
    logdir = Path(tempfile.mkdtemp(prefix="conveyor-bloat-"))
    t0 = time.monotonic()
    code = 1
    try:
        with Conveyor(url) as app, psycopg.connect(url, autocommit=True) as conn:
            app.store.migrate()
            if args.no_autovacuum:
                conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
                autovacuum = ("off for jobs",)
            workers = start_workers(url, args.processes, args.slots, args.retain_done, logdir)
            try:
                code = run(args, app, conn, workers, t0, logdir)
            finally:
                for w in workers:
                    if w.poll() is None:
                        w.send_signal(signal.SIGTERM)
                for w in workers:
                    try:
                        w.wait(60)
                    except subprocess.TimeoutExpired:
                        w.kill()
        if args.verbose or code:
            for log in sorted(logdir.iterdir()):
                lines = log.read_text(errors="replace").splitlines()
                print(f"{log.name}: {len(lines)} lines, last: {lines[-3:]}", file=sys.stderr)
        server = version[0] if version else "?"
        print(f"bloat: server {server}, autovacuum {autovacuum[0] if autovacuum else '?'}")
    finally:
        if not args.keep:
            with psycopg.connect(args.server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for path in logdir.iterdir():
                path.unlink()
            logdir.rmdir()
        else:
            print(f"bloat: kept database {url} and logs in {logdir}", file=sys.stderr)
    return code


def run(
    args: argparse.Namespace,
    app: Conveyor,
    conn: psycopg.Connection[Any],
    workers: list[subprocess.Popen[bytes]],
    t0: float,
    logdir: Path,
) -> int:
    deadline = t0 + args.timeout
    batch = [{"type": "noop"}] * BATCH
    enqueued = unfinished = 0
    first: dict[str, int] | None = None
    first_at = 0.0
    next_line = time.monotonic() + args.every
    start = next_poll = time.monotonic()
    startup = start - t0
    while True:
        now = time.monotonic()
        if now >= next_poll:
            next_poll = now + POLL_S
            if now > deadline:
                print(f"bloat: hard timeout after {args.timeout:.0f}s", file=sys.stderr)
                return 1
            for w in workers:
                if w.poll() is not None:
                    print(f"bloat: a worker exited {w.returncode}, see {logdir}", file=sys.stderr)
                    return 1
            row = conn.execute(UNFINISHED).fetchone()
            unfinished = row[0] if row else 0
            done = enqueued - unfinished
            if first is None and done >= args.first:
                first, first_at = sizes(conn), now - t0
                print(f"bloat: after {args.first:,} jobs: {describe(done, first_at, first)}")
            if args.verbose and now >= next_line:
                next_line += args.every
                print(f"bloat: {describe(done, now - t0, sizes(conn))}", file=sys.stderr)
            if enqueued >= args.jobs and done >= args.jobs:
                break
        due = min(args.jobs, int((now - start) * args.rate))
        if due - enqueued > args.rate:
            # More than a second behind (the workers were slower for a while): forget the
            # debt rather than catch up in a burst above the rate, which would change the
            # steady state being measured.
            start = now - enqueued / args.rate
            due = enqueued + int(args.rate * TICK_S)
        if enqueued < due and unfinished < args.backlog:
            n = min(BATCH, due - enqueued)
            app.enqueue_many(batch[:n])
            enqueued += n
            unfinished += n
        else:
            time.sleep(TICK_S)
    assert first is not None
    last = sizes(conn)
    elapsed = time.monotonic() - t0
    print(f"bloat: after {args.jobs:,} jobs: {describe(args.jobs, elapsed, last)}")
    indexes = conn.execute(INDEXES).fetchall()
    print("bloat: indexes " + ", ".join(f"{n}={mb(s)}" for n, s in indexes))
    ratio = last["total"] / first["total"]
    leader = conn.execute("SELECT holder FROM leaders WHERE role = 'retention'").fetchone()
    ok = 1 / 1.5 <= ratio <= 1.5
    print(
        f"bloat jobs={args.jobs} rate={args.jobs / (elapsed - startup):,.0f}/s "
        f"(asked {args.rate:g}/s) retain_done={args.retain_done} "
        f"elapsed={elapsed:.0f}s total_after_{args.first}={mb(first['total'])} "
        f"total_after_{args.jobs}={mb(last['total'])} ratio={ratio:.2f} "
        f"({'within' if ok else 'OUTSIDE'} 1.5x) leader={leader[0] if leader else None}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
