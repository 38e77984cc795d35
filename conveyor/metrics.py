"""This process's counters (SPEC §4 /metrics): processed, failed, retried, recovered."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from conveyor.jobs import Job, JobStatus


@dataclass
class Metrics:
    """Counts by outcome and by task type, plus how busy the worker slots are.
    Updated by the worker runtime on the event loop; read by the API from any thread."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    recovered: int = 0
    handed_back: int = 0
    slots_total: int = 0
    slots_busy: int = 0
    by_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    observers: list[FinishObserver] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def job_finished(self, job: Job, status: JobStatus, duration: float, wait: float) -> None:
        with self._lock:
            if status == JobStatus.DONE:
                self.processed += 1
                outcome = "processed"
            elif status == JobStatus.FAILED:
                self.failed += 1
                outcome = "failed"
            else:
                self.retried += 1
                outcome = "retried"
            self.by_type[(outcome, job.type)] += 1
        for observer in self.observers:
            observer.job_finished(job, status, duration, wait)

    def jobs_recovered(self, count: int) -> None:
        with self._lock:
            self.recovered += count

    def jobs_handed_back(self, count: int) -> None:
        with self._lock:
            self.handed_back += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "processed": self.processed,
                "failed": self.failed,
                "retried": self.retried,
                "recovered": self.recovered,
                "handed_back": self.handed_back,
                "slots_total": self.slots_total,
                "slots_busy": self.slots_busy,
            }


class FinishObserver:
    """Something that wants each finished job (Prometheus histograms, tests)."""

    def job_finished(self, job: Job, status: JobStatus, duration: float, wait: float) -> None:
        raise NotImplementedError
