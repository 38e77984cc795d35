"""PostgreSQL direct and through PgBouncer (transaction mode, started here on a free port):
drain rate with 2 worker processes and enqueue-to-start latency with idle workers, for

- direct: DATABASE_URL to the server (prepared statements, generic plans, LISTEN);
- declared pooled, no pooler: the same URL with ?pooler=transaction and
  LISTEN_DATABASE_URL, i.e. the pooled statement path without the pooler's hop;
- PgBouncer + LISTEN_DATABASE_URL: DATABASE_URL to PgBouncer, wake-ups over the direct URL;
- PgBouncer, polling: ?pooler=transaction without LISTEN_DATABASE_URL (latency only).

    .venv/bin/python -m bench.pgbouncer --drain-n 20000
    .venv/bin/python -m bench.pgbouncer --paired 1000   # latency only, see `paired_latency`
    .venv/bin/python -m bench.pgbouncer --paired 1000 --against declared   # no pooler's hop

Needs Debian's pgbouncer (run as root, it is started with -u postgres).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.run import bench_drain, bench_latency, fresh_url, start_workers, stop_workers
from conveyor import Conveyor
from conveyor.jobs import JobStatus
from tests.support.pgbouncer import Bouncer, running_pgbouncer

SCRATCH = "conveyor_bench_pgbouncer"  # its own database: bench.run may run meanwhile


def modes(bouncer: Bouncer) -> list[tuple[str, Callable[[str], tuple[str, str | None]]]]:
    """(name, direct URL -> (DATABASE_URL, LISTEN_DATABASE_URL))."""
    return [
        ("direct", lambda url: (url, None)),
        ("declared pooled, no pooler", lambda url: (url + "?pooler=transaction", url)),
        ("PgBouncer + LISTEN_DATABASE_URL", lambda url: (bouncer.url(url), url)),
        ("PgBouncer, polling", lambda url: (bouncer.url(url, query="pooler=transaction"), None)),
    ]


def run_mode(
    how: Callable[[str], tuple[str, str | None]],
    tmp: Path,
    args: argparse.Namespace,
    *,
    drain: bool,
) -> tuple[float | None, float, float]:
    url, listen = how(fresh_url("postgres", tmp, SCRATCH))
    if listen is None:
        os.environ.pop("LISTEN_DATABASE_URL", None)
    else:
        os.environ["LISTEN_DATABASE_URL"] = listen  # the workers' and the producer's
    rate = bench_drain(url, args.drain_n, 2, args.slots) if drain and args.drain_n else None
    url, _ = how(fresh_url("postgres", tmp, SCRATCH))
    p50, p99 = bench_latency(url, args.latency_n, 2, args.slots)
    return rate, p50, p99


def paired_latency(bouncer: Bouncer, tmp: Path, n: int, slots: int, against: str) -> None:
    """Start latency direct and through PgBouncer + LISTEN_DATABASE_URL (`against`
    "pgbouncer"; "declared": the pooled statement path straight to the server, i.e. without
    the pooler's hops) at the same time: two databases, two idle workers each, one job
    enqueued into each in turn every 20 ms, so that both see the same load of a noisy
    machine. Prints p50 and p99 of each."""
    direct = fresh_url("postgres", tmp, SCRATCH)
    other = fresh_url("postgres", tmp, SCRATCH + "_pooled")
    pooled, name = (
        (bouncer.url(other), "PgBouncer + LISTEN_DATABASE_URL")
        if against == "pgbouncer"
        else (other + "?pooler=transaction", "declared pooled, no pooler")
    )
    os.environ.pop("LISTEN_DATABASE_URL", None)
    procs = start_workers(direct, 2, slots)
    os.environ["LISTEN_DATABASE_URL"] = other
    procs += start_workers(pooled, 2, slots)
    apps = {"direct": Conveyor(direct), name: Conveyor(pooled, listen_database_url=other)}
    sent: dict[str, list[tuple[int, float]]] = {name: [] for name in apps}
    try:
        for app in apps.values():  # both pools running before timing starts
            warm = app.enqueue("noop")
            while app.get_job(warm.id).status != JobStatus.DONE:
                time.sleep(0.02)
        time.sleep(2.0)  # idle
        for _ in range(n):
            for name, app in apps.items():
                t = time.time()
                sent[name].append((app.enqueue("noop").id, t))
                time.sleep(0.02)
        time.sleep(1.0)
        print(f"start latency, {n} jobs each, interleaved, 2 processes x {slots} slots each\n")
        print("| PostgreSQL | latency p50 ms | latency p99 ms |")
        print("|---|---|---|")
        for name, app in apps.items():
            lat = sorted((float(app.get_job(i).result) - t) * 1000 for i, t in sent[name])
            print(
                f"| {name} | {statistics.median(lat):.2f} | {lat[int(len(lat) * 0.99) - 1]:.2f} |"
            )
    finally:
        stop_workers(procs)
        for app in apps.values():
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drain-n", type=int, default=20_000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="every mode once per round")
    parser.add_argument("--paired", type=int, default=0, help="only paired_latency, N jobs")
    parser.add_argument(
        "--against", choices=["pgbouncer", "declared"], default="pgbouncer", help="--paired's"
    )
    args = parser.parse_args()
    if args.paired:
        with tempfile.TemporaryDirectory() as tmpdir, running_pgbouncer() as bouncer:
            paired_latency(bouncer, Path(tmpdir), args.paired, args.slots, args.against)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir, running_pgbouncer() as bouncer:
        for round_ in range(1, args.rounds + 1):
            for name, how in modes(bouncer):
                polls = name.endswith("polling")
                drain, p50, p99 = run_mode(how, Path(tmpdir), args, drain=not polls)
                rows.append((round_, name, drain, p50, p99))
                print(f"# round {round_}, {name}: done", file=sys.stderr, flush=True)
    print(f"drain N={args.drain_n} no-op jobs, 2 processes x {args.slots} slots\n")
    print("| round | PostgreSQL | drain 2 procs jobs/s | latency p50 ms | latency p99 ms |")
    print("|---|---|---|---|---|")
    for round_, name, drain, p50, p99 in rows:
        shown = "-" if drain is None else f"{drain:,.0f}"
        print(f"| {round_} | {name} | {shown} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
