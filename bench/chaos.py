"""Chaos: push N jobs through real `conveyor worker` processes while killing them.

    .venv/bin/python -m bench.chaos --store sqlite --jobs 20000
    .venv/bin/python -m bench.chaos --store postgres --jobs 20000     # restarts PostgreSQL twice
    .venv/bin/python -m bench.chaos --store redis --jobs 20000        # own server, SIGKILLed twice
    .venv/bin/python -m bench.chaos --store sqlite --jobs 2000 --workflow

Four worker processes (`--workers`) run the jobs of bench/chaos_app.py. Meanwhile the runner
repeatedly SIGKILLs a random worker, or SIGTERMs one (graceful shutdown with a short
`--shutdown-timeout`, so long jobs are handed back), and starts a replacement each time; on
PostgreSQL it also restarts the database server `--db-restarts` times; on Redis it starts a
redis-server of its own (append-only file, fsync on every write, a free port; tests/support/
redis.py) and SIGKILLs and starts it again `--db-restarts` times. Each execution is
recorded from the side (bench/chaos_app.py), and at the end the runner checks the delivery
guarantees of docs/guarantees.md:

- every job is `done`, none `pending`, `processing` or `failed`, each enqueued exactly once;
- every job's body ran to completion at least once, and the run whose outcome was stored is
  one of them (lost = 0);
- a job that started more than once was interrupted: each earlier start happened in a process
  the runner SIGKILLed or SIGTERMed (handed back) — duplicates are attributable;
- every SIGTERMed worker exited 0; no worker died on its own; no traceback in any log.

`--workflow` enqueues the jobs as workflows (SPEC §8) instead of independent jobs: diamonds
(a root, two children, a join), fan-out/fan-in groups (a root, 3-30 children depending on
it, a join depending on all of them), fan-ins of 2-10 independent roots, and chains of 3-5
jobs, each workflow in one enqueue_many batch with "@i" references and the default "cancel"
policy. Every task succeeds, so every job must still end `done` (a cancelled one would mean
a dependency was seen to fail), and two more checks run:

- every job's stored `depends_on` names the planned dependencies;
- every run of a dependent (each start in the side records, not only the stored run)
  started after the stored run of each of its dependencies had finished (its recorded
  end), and on PostgreSQL the dependent's stored `started_at` is not before the
  dependency's stored `finished_at` either (SQLite stamps a write before it waits for the
  write lock, so there its timestamps need not follow the commit order).

It prints one summary line, and exits 1 with the list of problems when a check fails or the
hard `--timeout` passes. PostgreSQL: a scratch database `conveyor_chaos` on $BENCH_PG_ADMIN
(default postgresql://postgres@127.0.0.1:5432/postgres) is dropped and re-created per run;
restarts run `pg_ctlcluster --skip-systemctl-redirect <version> main restart` (needs root).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import chaos_app
from conveyor import Conveyor
from conveyor.jobs import Job, JobFilter
from conveyor.stores import Store, open_store

ROOT = Path(__file__).resolve().parents[1]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
APP = "bench.chaos_app:app"


class RestartFailed(Exception):
    """The database could not be restarted (not root, no such cluster)."""


@dataclass
class ChaosConfig:
    store: str  # "sqlite", "postgres" or "redis" (for the report; the URL decides)
    url: str
    workdir: Path
    jobs: int = 20_000
    workers: int = 4  # worker processes kept running
    slots: int = 8  # --workers of each process
    lease: float = 2.0
    shutdown_timeout: float = 0.5  # short, so SIGTERM hands long jobs back
    action_interval: float = 0.7  # mean seconds between chaos actions
    min_kill_age: float = 1.0  # SIGKILL workers serving for a moment at least
    db_restarts: int = 0
    timeout: float = 900.0  # hard limit for the whole run
    long_every: int = 40  # one job in this many works 200-1200 ms (so SIGTERM hands back)
    upfront: float = 0.25  # share of jobs enqueued before the workers start
    batch: int = 500  # producer batch size (enqueue_many) after that
    backlog: int = 3000  # the producer keeps at most this many pending
    seed: int | None = None
    verbose: bool = False
    workflow: bool = False  # enqueue workflows of dependent jobs (see the module docstring)
    # restarts the store's server, when it is the caller's own (Redis); None: the local
    # PostgreSQL cluster behind the URL (pg_ctlcluster)
    restart: Callable[[], None] | None = None


@dataclass
class Report:
    store: str
    jobs: int
    kills: int = 0
    terms: int = 0
    db_restarts: int = 0
    duplicates: int = 0  # jobs that started more than once
    extra_starts: int = 0  # starts beyond the first, summed over jobs
    completed_twice: int = 0  # jobs whose body ran to completion more than once
    after_kill: int = 0  # duplicates whose earlier run was in a SIGKILLed process
    after_handback: int = 0  # ... in a SIGTERMed process that handed the job back
    after_outage: int = 0  # ... in a live process cut off by a DB restart (> 2/3 lease)
    overlaps: int = 0  # a run that completed after the next run of the job had started
    unattributed: int = 0
    lost: int = 0
    producer_retries: int = 0
    startup_refusals: int = 0  # workers started while the database restarted: exited 1
    workflows: int = 0  # --workflow: workflows enqueued
    edges: int = 0  # ... dependencies whose order was checked
    order_violations: int = 0  # ... a dependent started before a dependency had finished
    elapsed: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        attributed = (
            f"all attributable: {self.after_kill} after SIGKILL, "
            f"{self.after_handback} handed back at SIGTERM"
            + (f", {self.after_outage} after a DB outage > 2/3 lease" if self.db_restarts else "")
            if not self.unattributed
            else f"{self.unattributed} NOT attributable"
        )
        ratio = self.duplicates / self.kills if self.kills else 0.0
        return (
            f"chaos store={self.store} jobs={self.jobs} kills={self.kills} terms={self.terms} "
            f"db_restarts={self.db_restarts} duplicates={self.duplicates} ({attributed}) "
            f"dup/kill={ratio:.2f} completed_twice={self.completed_twice} "
            f"overlaps={self.overlaps} lost={self.lost} "
            + (
                f"workflows={self.workflows} edges={self.edges} "
                f"order_violations={self.order_violations} "
                if self.workflows
                else ""
            )
            + f"elapsed={self.elapsed:.1f}s"
            + ("" if self.ok else " FAILED")
        )


@dataclass
class Worker:
    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    spawned_at: float = field(default_factory=time.time)
    fate: str = ""  # "", "killed", "terminated"
    signalled: float = 0.0  # monotonic
    signalled_at: float = 0.0  # wall clock, to compare with the execution records

    ready: bool = False
    ready_after: float = 0.0  # seconds from spawn to "started" (as first seen)
    ready_at_signal: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_ready(self) -> bool:
        """Its pool logged "started": signal handlers are installed, SIGTERM is graceful."""
        if not self.ready:
            with open(self.log, "rb") as f:
                self.ready = b" started: " in f.read(4096)
            if self.ready:
                self.ready_after = time.monotonic() - self.started
        return self.ready


class Chaos:
    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.spec_rng = random.Random(self.rng.random())  # the producer thread's own
        self.record = cfg.workdir / "executions.txt"
        self.procs: list[Worker] = []
        self.report = Report(cfg.store, cfg.jobs)
        self.restart_windows: list[tuple[float, float]] = []
        self.last_restart_end = 0.0
        self.enqueued = 0
        self.producer_error: BaseException | None = None
        self.stop_producing = threading.Event()
        # --workflow: the dependencies (seqs) of each seq, and the seqs that begin a workflow
        self.deps: list[tuple[int, ...]] = []
        self.workflow_starts: set[int] = set()
        if cfg.workflow:
            self.deps, starts = plan_workflows(cfg.jobs, random.Random(self.rng.random()))
            self.workflow_starts = set(starts)
            self.report.workflows = len(starts)

    # -- workers ------------------------------------------------------------------------
    def start_worker(self) -> Worker:
        n = len(self.procs)
        log = self.cfg.workdir / f"worker{n}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [
                    CONVEYOR,
                    "worker",
                    "--app",
                    APP,
                    "--database-url",
                    self.cfg.url,
                    "--workers",
                    str(self.cfg.slots),
                    "--fetch-limit",
                    str(self.cfg.slots),
                    "--fetch-interval",
                    "1",
                    "--lease",
                    str(self.cfg.lease),
                    "--shutdown-timeout",
                    str(self.cfg.shutdown_timeout),
                    "--log-level",
                    "INFO",  # the "started" line tells when SIGTERM is handled
                ],
                cwd=ROOT,
                env={**os.environ, "CHAOS_RECORD": str(self.record)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(popen, log, time.monotonic())
        self.procs.append(worker)
        return worker

    def active(self) -> list[Worker]:
        return [w for w in self.procs if not w.fate and w.popen.poll() is None]

    def act(self) -> None:
        """One chaos action: SIGKILL or SIGTERM a random worker, start a replacement."""
        active = self.active()
        now = time.monotonic()
        can_term = [w for w in active if w.is_ready()]
        can_kill = [w for w in can_term if now - w.started >= self.cfg.min_kill_age]
        draining = sum(1 for w in self.procs if w.fate == "terminated" and w.popen.poll() is None)
        if can_term and draining < 2 and self.rng.random() < 0.5:
            victim = self.rng.choice(can_term)
            self.signal(victim, signal.SIGTERM)
            self.report.terms += 1
        elif can_kill:
            victim = self.rng.choice(can_kill)
            self.signal(victim, signal.SIGKILL)
            self.report.kills += 1
        else:
            return
        self.start_worker()
        self.log(f"{victim.fate} pid {victim.pid}")

    def signal(self, w: Worker, sig: signal.Signals) -> None:
        w.ready_at_signal = w.is_ready()
        w.popen.send_signal(sig)
        w.fate = "killed" if sig == signal.SIGKILL else "terminated"
        w.signalled, w.signalled_at = time.monotonic(), time.time()

    def check_processes(self) -> None:
        """A worker that exits on its own is a problem; one that ignores SIGTERM too."""
        for w in self.procs:
            code = w.popen.poll()
            if not w.fate and code is not None:
                w.fate = "died"
                if code == 1 and self.refused_during_restart(w):
                    self.report.startup_refusals += 1
                else:
                    self.report.problems.append(
                        f"worker pid {w.pid} exited by itself with code {code} (log {w.log})"
                    )
                self.start_worker()
            if (
                w.fate == "terminated"
                and code is None
                and time.monotonic() - w.signalled > self.cfg.shutdown_timeout + 30
            ):
                w.fate = "hung"
                w.popen.kill()
                self.report.problems.append(
                    f"worker pid {w.pid} still running 30 s after SIGTERM (log {w.log})"
                )

    def refused_during_restart(self, w: Worker) -> bool:
        """A worker whose first connection met the restarting database exits 1 with one
        line (SPEC §3: an unreachable store is an operator error); a supervisor (here, the
        runner) starts it again. Anything else is a problem."""
        text = w.log.read_text(errors="replace").strip()
        one_error_line = "\n" not in text and text.startswith(("error: PostgreSQL", "error: Redis"))
        return one_error_line and any(
            w.spawned_at <= end + 5 and time.time() >= begin for begin, end in self.restart_windows
        )

    def stop_all(self) -> None:
        """SIGTERM every worker still serving (once it is up) and check it exits 0."""
        wait_deadline = time.monotonic() + 15
        while time.monotonic() < wait_deadline and not all(w.is_ready() for w in self.active()):
            time.sleep(0.05)
        for w in self.active():
            self.signal(w, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.shutdown_timeout + 30
        for w in self.procs:
            try:
                w.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.popen.kill()
                w.popen.wait(10)
                w.fate = "hung"
                self.report.problems.append(
                    f"worker pid {w.pid} still running 30 s after SIGTERM (log {w.log})"
                )
            if w.fate == "terminated" and w.ready_at_signal and w.popen.returncode != 0:
                self.report.problems.append(
                    f"worker pid {w.pid} exited {w.popen.returncode} after SIGTERM, not 0 "
                    f"(log {w.log})"
                )

    def kill_all(self) -> None:
        for w in self.procs:
            if w.popen.poll() is None:
                w.popen.kill()
        for w in self.procs:
            try:
                w.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass

    # -- database -------------------------------------------------------------------------
    def restart_db(self) -> None:
        begin = time.time()
        if self.cfg.restart is not None:
            self.log(f"restarting the {self.cfg.store} server")
            self.cfg.restart()
        else:
            self.restart_postgres()
        self.last_restart_end = time.time()
        self.restart_windows.append((begin, self.last_restart_end))
        self.report.db_restarts += 1
        self.log(f"{self.cfg.store} back after {time.time() - begin:.1f}s")

    def restart_postgres(self) -> None:
        version, cluster = pg_cluster_for(self.cfg.url)
        self.log(f"restarting PostgreSQL {version}/{cluster}")
        done = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RestartFailed(
                f"pg_ctlcluster {version} {cluster} restart exited {done.returncode}: "
                + (done.stderr.strip() or done.stdout.strip())
            )

    # -- producing --------------------------------------------------------------------------
    def job_spec(self, seq: int, first: int = 0) -> dict[str, object]:
        """The job of `seq`, in a batch that begins with seq `first` ("@i" references)."""
        long = self.spec_rng.randrange(self.cfg.long_every) == 0
        ms = self.spec_rng.uniform(200, 1200) if long else self.spec_rng.uniform(0, 3)
        spec: dict[str, object] = {
            "type": "chaos" if seq % 2 else "achaos",
            "payload": {"seq": seq, "ms": round(ms, 2)},
            "unique_key": f"chaos-{seq}",
            # the producer app has no tasks registered, so it cannot know the task's own
            "max_attempts": chaos_app.MAX_ATTEMPTS,
        }
        if self.deps and self.deps[seq]:
            assert min(self.deps[seq]) >= first, "a workflow split over two batches"
            spec["depends_on"] = [f"@{dep - first}" for dep in self.deps[seq]]
        return spec

    def batches(self, start: int, end: int, size: int) -> Iterator[range]:
        """The seqs from start to end in batches of about `size`, each workflow whole in one
        batch ("@i" refers to an item of the same batch)."""
        begin = start
        while begin < end:
            stop = min(begin + size, end)
            while stop < end and not self.begins_batch(stop):
                stop += 1
            yield range(begin, stop)
            begin = stop

    def begins_batch(self, seq: int) -> bool:
        return not self.cfg.workflow or seq in self.workflow_starts

    def enqueue_batch(self, app: Conveyor, seqs: range) -> None:
        specs = [self.job_spec(seq, seqs.start) for seq in seqs]
        delay = 0.1
        while True:
            try:
                app.enqueue_many(specs)
                self.enqueued += len(specs)
                return
            except Exception as exc:
                # The store is restarting. unique_key makes the retry idempotent while the
                # first insert (if it committed after all) is still unfinished.
                self.report.producer_retries += 1
                self.log(f"producer: enqueue failed, retrying: {exc}")
                if self.stop_producing.wait(delay):
                    raise
                delay = min(delay * 2, 2.0)

    def produce(self, start: int) -> None:
        try:
            with Conveyor(self.cfg.url) as app:
                # The last batches wait for the planned DB restarts, so that every restart
                # happens while work is still flowing, however fast the jobs drain.
                hold_from = self.cfg.jobs - 2 * self.cfg.batch
                for batch in self.batches(start, self.cfg.jobs, self.cfg.batch):
                    begin = batch.start
                    while not self.stop_producing.is_set():
                        held = begin >= hold_from and self.report.db_restarts < self.cfg.db_restarts
                        try:
                            if not held and count(app.store, "pending") < self.cfg.backlog:
                                break
                        except Exception as exc:
                            self.log(f"producer: stats failed: {exc}")
                        self.stop_producing.wait(0.05)
                    if self.stop_producing.is_set():
                        return
                    self.enqueue_batch(app, batch)
        except BaseException as exc:
            self.producer_error = exc

    # -- the run ------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.cfg.verbose:
            print(f"[chaos +{time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr)

    def run(self) -> Report:
        self.t0 = time.monotonic()
        deadline = self.t0 + self.cfg.timeout
        store = open_store(self.cfg.url)
        producer: threading.Thread | None = None
        try:
            store.migrate()
            upfront = min(self.cfg.jobs, max(self.cfg.batch, int(self.cfg.jobs * self.cfg.upfront)))
            while upfront < self.cfg.jobs and not self.begins_batch(upfront):
                upfront += 1
            with Conveyor(self.cfg.url) as app:
                for batch in self.batches(0, upfront, 1000):
                    self.enqueue_batch(app, batch)
            for _ in range(self.cfg.workers):
                self.start_worker()
            producer = threading.Thread(
                target=self.produce, args=(upfront,), name="chaos-producer", daemon=True
            )
            producer.start()
            thresholds = [
                self.cfg.jobs * (k + 1) / (self.cfg.db_restarts + 2)
                for k in range(self.cfg.db_restarts)
            ]
            next_action = time.monotonic() + self.cfg.action_interval
            last_progress = 0.0
            while True:
                now = time.monotonic()
                if now > deadline:
                    self.report.problems.append(
                        f"hard timeout: {self.cfg.timeout:.0f}s passed with "
                        f"{self.cfg.jobs - safe_count(store, 'done')} jobs not done"
                    )
                    if self.cfg.workflow:
                        self.report.problems += stuck_waiting(store)
                    break
                if self.producer_error is not None:
                    self.report.problems.append(f"producer failed: {self.producer_error!r}")
                    break
                self.check_processes()
                done = safe_count(store, "done")
                if (
                    done >= self.cfg.jobs
                    and self.enqueued >= self.cfg.jobs
                    and safe_count(store, "pending") + safe_count(store, "processing") == 0
                ):
                    break
                if (
                    thresholds
                    and done >= thresholds[0]
                    and time.time() > self.last_restart_end + 2 * self.cfg.lease + 1
                ):
                    thresholds.pop(0)
                    try:
                        self.restart_db()
                    except RestartFailed as exc:
                        self.report.problems.append(str(exc))
                        break
                    continue
                if now >= next_action:
                    self.act()
                    next_action = now + self.cfg.action_interval * self.rng.uniform(0.5, 1.5)
                if now - last_progress > 5:
                    last_progress = now
                    self.log(f"done {done}/{self.cfg.jobs}, enqueued {self.enqueued}")
                time.sleep(0.1)
            self.stop_producing.set()
            producer.join(30)
            self.stop_all()
            self.report.elapsed = time.monotonic() - self.t0
            ups = sorted(w.ready_after for w in self.procs if w.ready)
            if ups:
                self.log(
                    f"{len(self.procs)} workers started; up after median "
                    f"{ups[len(ups) // 2]:.2f}s, max {ups[-1]:.2f}s"
                )
            if not any(p.startswith("hard timeout") for p in self.report.problems):
                self.verify(store)
        finally:
            self.stop_producing.set()
            self.kill_all()
            store.close()
        return self.report

    # -- the checks --------------------------------------------------------------------------
    def verify(self, store: Store) -> None:
        problems = self.report.problems
        rows = all_jobs(store)
        by_seq: dict[int, list[Job]] = collections.defaultdict(list)
        for job in rows:
            assert isinstance(job.payload, dict)
            by_seq[int(str(job.payload["seq"]))].append(job)
        statuses = collections.Counter(j.status.value for j in rows)
        if set(statuses) != {"done"}:
            problems.append(f"not every job is done: {dict(statuses)}")
        twice = [seq for seq, jobs in by_seq.items() if len(jobs) > 1]
        if twice:
            problems.append(f"{len(twice)} seqs enqueued more than once, e.g. {twice[:5]}")

        # Lines are `seq pid start [job_id]` and `seq pid start end [job_id]`.
        recorded_ids: dict[int, set[int]] = collections.defaultdict(set)
        started: dict[int, list[tuple[float, int]]] = collections.defaultdict(list)
        for line in read_lines(Path(str(self.record) + ".started")):
            started[int(line[0])].append((float(line[2]), int(line[1])))
            recorded_ids[int(line[0])].update(int(i) for i in line[3:4])
        finished: dict[int, list[tuple[float, int]]] = collections.defaultdict(list)
        run_end: dict[tuple[int, int, float], float] = {}
        for line in read_lines(self.record):
            f_seq, f_pid, f_start = int(line[0]), int(line[1]), float(line[2])
            finished[f_seq].append((f_start, f_pid))
            run_end[f_seq, f_pid, f_start] = float(line[3])
            recorded_ids[f_seq].update(int(i) for i in line[4:5])
        strangers = {
            seq: ids - {job.id for job in by_seq.get(seq, [])} for seq, ids in recorded_ids.items()
        }
        strangers = {seq: ids for seq, ids in strangers.items() if ids}
        if strangers:
            problems.append(
                f"{len(strangers)} seqs have runs recorded for a job id that is not theirs, "
                f"e.g. {sorted(strangers.items())[:5]}"
            )

        lost = []
        for seq in range(self.cfg.jobs):
            jobs = by_seq.get(seq, [])
            done = [j for j in jobs if j.status == "done"]
            if not done or not finished.get(seq):
                lost.append(seq)
                continue
            job = done[0]
            pid = worker_pid(job.worker)
            if job.result != seq or pid not in {p for _, p in finished[seq]}:
                problems.append(
                    f"job {job.id} (seq {seq}) is done by {job.worker} with result "
                    f"{job.result!r}, but no run of it completed in pid {pid}"
                )
        self.report.lost = len(lost)
        if lost:
            problems.append(f"lost {len(lost)} jobs, e.g. seqs {lost[:10]}")
        if self.cfg.workflow:
            self.verify_order(by_seq, started, finished, run_end)

        job_ids = {job.id: seq for seq, jobs in by_seq.items() for job in jobs}
        signalled = {w.pid: w for w in self.procs if w.fate in ("killed", "terminated")}
        handed_back = {
            w.pid: {job_ids.get(j) for j in handed_back_ids(w.log)}
            for w in self.procs
            if w.fate == "terminated"
        }
        finished_in = {seq: {pid for _, pid in runs} for seq, runs in finished.items()}
        unattributed = []
        overlaps: list[str] = []
        for seq, unsorted in started.items():
            if len(unsorted) <= 1:
                continue
            self.report.duplicates += 1
            self.report.extra_starts += len(unsorted) - 1
            starts = sorted(unsorted)
            causes = set()
            # Each run but the last must have been cut short by the runner: its process was
            # SIGKILLed, or SIGTERMed and handed this job back, before the next run began
            # (or, PostgreSQL, the database was down for longer than the lease meanwhile).
            for (start, pid), (next_start, _) in itertools.pairwise(starts):
                end = run_end.get((seq, pid, start))
                if end is not None and end > next_start:
                    overlaps.append(
                        f"seq {seq}: run in pid {pid} ended {end:.6f}, "
                        f"after the next run started {next_start:.6f}"
                    )
                w = signalled.get(pid)
                # A lease is renewed every third of its length, so the last renewal before
                # an outage can be a third of a lease old: an outage longer than the other
                # two thirds can let it expire (G5 c).
                outage = any(
                    start <= e and next_start >= b and e - b > self.cfg.lease * 2 / 3
                    for b, e in self.restart_windows
                )
                if w is None or w.signalled_at > next_start:
                    causes.add("outage" if outage else "none")
                elif w.fate == "killed":
                    causes.add("kill")
                elif seq in handed_back[pid] or pid not in finished_in.get(seq, ()):
                    # shutdown cut it short: handed back, or (release failed) lease expired
                    causes.add("handback")
                else:
                    # SIGTERMed after the run finished, while the database was down for
                    # longer than the lease: the outcome could not be written in time and the
                    # job was recovered (G5 c)
                    causes.add("outage" if outage else "none")
            if "none" in causes:
                unattributed.append((seq, starts))
            elif "kill" in causes:
                self.report.after_kill += 1
            elif "handback" in causes:
                self.report.after_handback += 1
            else:
                self.report.after_outage += 1
        self.report.completed_twice = sum(1 for ends in finished.values() if len(ends) > 1)
        self.report.unattributed = len(unattributed)
        for seq, starts in unattributed[:10]:
            shown = ", ".join(f"pid {pid} at {start:.3f}" for start, pid in starts)
            near = [
                f"{b:.1f}-{e:.1f}"
                for b, e in self.restart_windows
                if b - 5 <= starts[0][0] <= e + 5 * self.cfg.lease
            ]
            problems.append(
                f"seq {seq} started more than once without a kill: {shown}"
                + (f" (near DB restart {near})" if near else "")
            )
        if len(unattributed) > 10:
            problems.append(f"... and {len(unattributed) - 10} more unattributed duplicates")
        self.report.overlaps = len(overlaps)
        problems += [f"concurrent double execution: {o}" for o in overlaps[:10]]

        for w in self.procs:
            text = w.log.read_text(errors="replace")
            if "Traceback" in text:
                problems.append(f"traceback in {w.log} (pid {w.pid}, {w.fate or 'alive'})")

    def verify_order(
        self,
        by_seq: dict[int, list[Job]],
        started: dict[int, list[tuple[float, int]]],
        finished: dict[int, list[tuple[float, int]]],
        run_end: dict[tuple[int, int, float], float],
    ) -> None:
        """--workflow: the store kept each job's dependencies, and no run of a job started
        before the stored run of each of its dependencies had ended."""
        problems = self.report.problems
        seq_of = {job.id: seq for seq, jobs in by_seq.items() for job in jobs}
        # PostgreSQL stamps a write with its transaction's now(), and a dependent's claim
        # begins after its last dependency's finish committed. The SQLite store reads its
        # clock before it waits for the write lock, so its stamps need not follow the order
        # of the commits (a finish that waited long carries a time from before the finish
        # that released the dependent, and the claim that took it): there the side records
        # alone decide.
        store_clock_ordered = not self.cfg.url.startswith("sqlite")
        stored_end: dict[int, float] = {}  # seq → when its stored run's body ended
        for seq, copies in by_seq.items():
            pid = worker_pid(copies[0].worker)
            # Only the last claim's outcome can be stored (the fence), so when one process
            # completed the job more than once, the stored run is its last start there.
            runs = sorted(start for start, p in finished.get(seq, []) if p == pid)
            if runs:
                stored_end[seq] = run_end[seq, pid, runs[-1]]
        wrong_edges: list[str] = []
        early: list[str] = []
        for seq, planned in enumerate(self.deps):
            jobs = by_seq.get(seq)
            if not planned or not jobs:
                continue  # a job without dependencies; a missing job is reported as lost
            job = jobs[0]
            stored = sorted(seq_of.get(i, -1) for i in job.depends_on)
            if stored != sorted(planned):
                wrong_edges.append(f"seq {seq} depends on seqs {stored}, not {list(planned)}")
                continue
            for dep in planned:
                self.report.edges += 1
                dep_job = by_seq[dep][0]
                end = stored_end.get(dep)
                if end is not None:
                    for start, pid in started.get(seq, []):
                        if start < end:
                            early.append(
                                f"seq {seq} (job {job.id}) started in pid {pid} at {start:.6f}, "
                                f"before its dependency seq {dep} (job {dep_job.id}) ended "
                                f"at {end:.6f}"
                            )
                if (
                    store_clock_ordered
                    and job.started_at is not None
                    and dep_job.finished_at is not None
                    and job.started_at < dep_job.finished_at
                ):
                    early.append(
                        f"seq {seq} (job {job.id}) has started_at {job.started_at.isoformat()}, "
                        f"before its dependency seq {dep} (job {dep_job.id}) has finished_at "
                        f"{dep_job.finished_at.isoformat()}"
                    )
        if wrong_edges:
            problems.append(
                f"{len(wrong_edges)} jobs lost or gained dependencies in the store, "
                f"e.g. {wrong_edges[:5]}"
            )
        self.report.order_violations = len(early)
        problems += [f"dependency order: {e}" for e in early[:10]]
        if len(early) > 10:
            problems.append(f"... and {len(early) - 10} more dependency order violations")


# -- helpers --------------------------------------------------------------------------------
def plan_workflows(n: int, rng: random.Random) -> tuple[list[tuple[int, ...]], list[int]]:
    """n jobs as whole workflows, one after another: the dependencies (seqs) of each seq,
    and the first seq of each workflow. The last workflow is cut short at n (a prefix of
    a workflow is a workflow too: each job depends only on earlier ones)."""
    deps: list[tuple[int, ...]] = []
    starts: list[int] = []
    while len(deps) < n:
        first = len(deps)
        shape = rng.random()
        local: list[tuple[int, ...]]
        if shape < 0.35:  # diamond
            local = [(), (0,), (0,), (1, 2)]
        elif shape < 0.65:  # fan-out/fan-in: a root, k children, a join
            k = rng.randint(3, 30)
            local = [(), *[(0,)] * k, tuple(range(1, k + 1))]
        elif shape < 0.8:  # fan-in of k independent roots
            k = rng.randint(2, 10)
            local = [*[()] * k, tuple(range(k))]
        else:  # a chain of 3-5
            local = [(), *[(i,) for i in range(rng.randint(3, 5) - 1)]]
        starts.append(first)
        deps += [tuple(first + i for i in d) for d in local[: n - first]]
    return deps, starts


def stuck_waiting(store: Store) -> list[str]:
    """Pending jobs whose dependencies have all ended `done`: each should have run."""
    rows = all_jobs(store)
    status = {job.id: job.status for job in rows}
    stuck = [
        job.id
        for job in rows
        if job.status == "pending"
        and job.depends_on
        and all(status.get(d) == "done" for d in job.depends_on)
    ]
    if not stuck:
        return []
    return [f"{len(stuck)} jobs still pending though every dependency is done: {stuck[:10]}"]


def count(store: Store, status: str) -> int:
    return sum(q.get(status, 0) for q in store.stats().values())


def safe_count(store: Store, status: str) -> int:
    """-1 while the store is unreachable (a DB restart): the loop just tries again."""
    try:
        return count(store, status)
    except Exception:
        return -1


def all_jobs(store: Store) -> list[Job]:
    jobs: list[Job] = []
    before: int | None = None
    while True:
        page = store.list_jobs(JobFilter(limit=1000, before_id=before))
        jobs += page
        if len(page) < 1000:
            return jobs
        before = page[-1].id


def read_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [ln.split() for ln in text.splitlines() if ln.strip()]


HANDED_BACK = re.compile(r"handed back to pending.* job=(\d+)")


def handed_back_ids(log: Path) -> set[int]:
    """Job ids a worker's log says it handed back at shutdown (conveyor/worker/pool.py)."""
    return {int(m.group(1)) for m in HANDED_BACK.finditer(log.read_text(errors="replace"))}


def worker_pid(worker: str | None) -> int:
    """Worker ids are `host-pid-suffix` (conveyor/worker/pool.py new_worker_id)."""
    try:
        return int((worker or "").rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return -1


def pg_cluster_for(url: str) -> tuple[str, str]:
    """The local cluster (version, name) listening on the URL's port; by default the one
    the brief names: `$(ls /etc/postgresql) main`."""
    from psycopg.conninfo import conninfo_to_dict

    port = str(conninfo_to_dict(url).get("port") or "5432")
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in listed.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[0], fields[1]
    return sorted(os.listdir("/etc/postgresql"))[-1], "main"


def run_chaos(cfg: ChaosConfig) -> Report:
    return Chaos(cfg).run()


def fresh_url(store: str, workdir: Path) -> str:
    if store == "sqlite":
        return f"sqlite:///{workdir / 'chaos.db'}"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS conveyor_chaos WITH (FORCE)")
        conn.execute("CREATE DATABASE conveyor_chaos")
    return PG_ADMIN.rsplit("/", 1)[0] + "/conveyor_chaos"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgres", "redis"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--slots", type=int, default=8, help="--workers of each process")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.7, help="mean s between actions")
    parser.add_argument(
        "--db-restarts", type=int, default=None, help="default 2 on postgres and redis"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="hard limit, seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--workflow", action="store_true", help="enqueue workflows of dependent jobs"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="kept; default a temp dir")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    # the runner's own store connections warn while the database restarts
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING if args.verbose else logging.CRITICAL)
    logging.basicConfig(handlers=[handler])
    restarts = args.db_restarts if args.db_restarts is not None else 2 * (args.store != "sqlite")
    if restarts and args.store == "sqlite":
        parser.error("--db-restarts needs --store postgres or redis")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        restart = None
        if args.store == "redis":
            from tests.support.redis import RedisServer, redis_server

            server: RedisServer = stack.enter_context(redis_server())
            url = server.url
            restart = server.restart
        else:
            url = fresh_url(args.store, workdir)
        return _run_main(args, workdir, url, restarts, restart)


def _run_main(
    args: argparse.Namespace,
    workdir: Path,
    url: str,
    restarts: int,
    restart: Callable[[], None] | None,
) -> int:
    cfg = ChaosConfig(
        store=args.store,
        url=url,
        workdir=workdir,
        jobs=args.jobs,
        workers=args.workers,
        slots=args.slots,
        lease=args.lease,
        action_interval=args.interval,
        db_restarts=restarts,
        timeout=args.timeout,
        seed=args.seed,
        verbose=args.verbose,
        workflow=args.workflow,
        restart=restart,
    )
    report = run_chaos(cfg)
    print(report.summary(), flush=True)
    if not report.ok:
        for problem in report.problems:
            print(f"  problem: {problem}", file=sys.stderr)
        print(f"  logs and records kept in {workdir}", file=sys.stderr)
        return 1
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
