"""Where a PostgreSQL worker's statements spend the server's time: one worker drains a
backlog on a scratch database whose sessions log every plan with its timings and triggers
(auto_explain), then each statement kind's median duration and its triggers' are printed.

    .venv/bin/python -m bench.pg_statements                  # 3,000 jobs
    .venv/bin/python -m bench.pg_statements --plan           # and one finish_and_claim plan

Needs a superuser (ALTER DATABASE ... SET session_preload_libraries) and the server's log
file (--log; Debian's by default). auto_explain's own timing makes every figure larger than
in a normal run: compare trees measured the same way, interleaved.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import psycopg

from bench.run import fresh_url, start_workers, stop_workers, wait_drained
from conveyor import Conveyor

LOG = "/var/log/postgresql/postgresql-15-main.log"
SETTINGS = (
    "session_preload_libraries = 'auto_explain'",
    "auto_explain.log_min_duration = 0",
    "auto_explain.log_analyze = on",
    "auto_explain.log_triggers = on",
    "auto_explain.log_timing = on",
    "auto_explain.log_nested_statements = off",
)
ENTRY = re.compile(r"\n(?=\d{4}-\d\d-\d\d [\d:.]+ UTC \[\d+\])")


def logged_drain(jobs: int, log: str) -> str:
    """The server log written while one worker drained `jobs` no-op jobs."""
    url = fresh_url("postgres", Path(tempfile.mkdtemp()), "conveyor_statements")
    with Conveyor(url) as app:
        app.store.migrate()
        for start in range(0, jobs, 1000):
            app.enqueue_many([{"type": "noop"}] * min(1000, jobs - start))
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in SETTINGS:
            conn.execute(f"ALTER DATABASE conveyor_statements SET {setting}")
    start = os.path.getsize(log)
    with Conveyor(url) as app:
        workers = start_workers(url, 1, 10)
        try:
            wait_drained(app)
        finally:
            stop_workers(workers)
    with open(log) as f:
        f.seek(start)
        return f.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--log", default=LOG)
    parser.add_argument("--plan", action="store_true", help="print one finish_and_claim plan")
    args = parser.parse_args()
    text = logged_drain(args.jobs, args.log)
    durations: dict[str, list[float]] = defaultdict(list)
    triggers: dict[str, list[float]] = defaultdict(list)
    plans = []
    for entry in ENTRY.split(text):
        duration = re.search(r"duration: ([\d.]+) ms", entry)
        query = re.search(r"Query Text: (.{0,40})", entry)
        if not duration or not query:
            continue
        kind = query.group(1).strip()[:30]
        durations[kind].append(float(duration.group(1)))
        for name, ms in re.findall(r"Trigger (\w+)(?: on jobs)?: time=([\d.]+)", entry):
            triggers[f"{kind} / {name}"].append(float(ms))
        if kind.startswith("WITH outcome"):
            plans.append(entry)
    print("| statement (start) | calls | median ms |\n|---|---|---|")
    for kind, values in sorted(durations.items(), key=lambda item: -sum(item[1])):
        print(f"| `{kind}` | {len(values)} | {statistics.median(values):.3f} |")
    for name, values in triggers.items():
        print(f"| trigger: `{name}` | {len(values)} | {statistics.median(values):.3f} |")
    if args.plan and plans:
        for line in plans[len(plans) // 2].splitlines():
            if "actual" in line or "Trigger" in line or "duration" in line:
                print(line.rstrip()[:160])


if __name__ == "__main__":
    main()
