"""Soak: one worker process runs a million no-op jobs; does its memory stay flat?

    .venv/bin/python -m bench.soak                       # SQLite, 1,000,000 jobs
    .venv/bin/python -m bench.soak --jobs 200000 --database-url postgresql://…/db

One `conveyor worker` process (bench/chaos_app.py's `noop`) drains jobs that this script
enqueues in batches as it goes, keeping at most `--backlog` pending so the table stays
moderate, and pruning finished jobs every `--prune-every` jobs with `conveyor prune
--older-than 0s`. It reads the worker's resident memory (VmRSS in /proc/<pid>/status) once
the first `--warmup` jobs are done and again at the end, and prints one line with both
figures and their ratio. A hard `--timeout` bounds the run. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor import Conveyor
from conveyor.stores import Store

ROOT = Path(__file__).resolve().parents[1]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def counts(store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for per_queue in store.stats().values():
        for status, n in per_queue.items():
            out[status] = out.get(status, 0) + n
    return out


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=100_000, help="first RSS reading")
    parser.add_argument("--batch", type=int, default=5_000, help="enqueue_many size")
    parser.add_argument("--backlog", type=int, default=20_000, help="most pending at once")
    parser.add_argument("--prune-every", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=10, help="--workers of the process")
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--timeout", type=float, default=3600.0, help="hard limit, seconds")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="conveyor-soak-"))
    url = args.database_url or f"sqlite:///{workdir / 'soak.db'}"
    log = workdir / "worker.log"
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    with Conveyor(url) as app, open(log, "wb") as out:
        app.store.migrate()
        worker = subprocess.Popen(
            [
                CONVEYOR,
                "worker",
                "--app",
                "bench.chaos_app:app",
                "--database-url",
                url,
                "--workers",
                str(args.slots),
                "--fetch-limit",
                str(args.slots),
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            enqueued = pruned = 0
            first: dict[str, int] = {}
            next_prune = args.prune_every
            batch = [{"type": "noop"}] * args.batch
            while True:
                if time.monotonic() > deadline:
                    print(f"soak: hard timeout after {args.timeout:.0f}s", file=sys.stderr)
                    return 1
                if worker.poll() is not None:
                    print(f"soak: worker exited {worker.returncode}, see {log}", file=sys.stderr)
                    return 1
                now = counts(app.store)
                unfinished = now.get("pending", 0) + now.get("processing", 0)
                processed = enqueued - unfinished
                if now.get("failed", 0) or now.get("cancelled", 0):
                    print(f"soak: jobs failed: {now}", file=sys.stderr)
                    return 1
                if not first and processed >= args.warmup:
                    first = memory_kib(worker.pid)
                    first_at = time.monotonic() - t0
                    if args.verbose:
                        print(f"soak: {processed} done, worker {first}", file=sys.stderr)
                if processed >= next_prune:
                    done = subprocess.run(
                        [CONVEYOR, "prune", "--older-than", "0s", "--database-url", url],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    pruned += int(done.stdout.split()[1])
                    next_prune += args.prune_every
                    if args.verbose:
                        rate = processed / (time.monotonic() - t0)
                        print(
                            f"soak: {processed} done ({rate:,.0f}/s), {done.stdout.strip()}, "
                            f"worker {memory_kib(worker.pid)}",
                            file=sys.stderr,
                        )
                if enqueued >= args.jobs and unfinished == 0:
                    break
                if enqueued < args.jobs and now.get("pending", 0) < args.backlog:
                    n = min(args.batch, args.jobs - enqueued)
                    app.enqueue_many(batch[:n])
                    enqueued += n
                else:
                    time.sleep(0.05)
            elapsed = time.monotonic() - t0
            last = memory_kib(worker.pid)
            rows = sum(counts(app.store).values())
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                code = worker.wait(10)
    db = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    size = f" db_file={db.stat().st_size / 1e6:.0f}MB" if db and db.exists() else ""
    print(
        f"soak jobs={args.jobs} elapsed={elapsed:.0f}s rate={args.jobs / elapsed:,.0f}/s "
        f"rss_after_{args.warmup}={mib(first['VmRSS'])} (at {first_at:.0f}s) "
        f"rss_end={mib(last['VmRSS'])} ratio={last['VmRSS'] / first['VmRSS']:.2f} "
        f"peak={mib(last['VmHWM'])} pruned={pruned} rows_left={rows}{size} worker_exit={code}"
    )
    if code != 0:
        return 1
    if args.database_url is None:
        for path in workdir.iterdir():
            path.unlink()
        os.rmdir(workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
