"""Prometheus exposition of /metrics, in a registry of our own (never the global one).

Counters and histograms are this process's, fed per finished job through a FinishObserver on
the shared Metrics; the rest is read at scrape time: recovered, handed back and slots from
Metrics, and the fleet's gauges (jobs by queue and status, the oldest pending job's age per
queue, live workers) from the store.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor.app import Conveyor
from conveyor.errors import ConveyorError
from conveyor.jobs import Job, JobStatus, utcnow
from conveyor.metrics import FinishObserver, Metrics

# Jobs range from milliseconds to an hour; the default buckets stop at 10 s.
SECONDS_BUCKETS: tuple[float, ...] = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    *(30, 60, 120, 300, 600, 1800, 3600, float("inf")),
)


def wants_prometheus(accept: str | None) -> bool:
    """Prometheus asks for openmetrics or text/plain; browsers and JSON clients do not."""
    if not accept:
        return False
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(types & {"text/plain", "application/openmetrics-text"})


class _FinishedJobs(FinishObserver):
    def __init__(self, registry: CollectorRegistry) -> None:
        by_type = ["type"]
        self.processed = Counter("conveyor_jobs_processed", "Jobs done", by_type, registry=registry)
        self.failed = Counter(
            "conveyor_jobs_failed", "Jobs failed for good", by_type, registry=registry
        )
        self.retried = Counter(
            "conveyor_jobs_retried",
            "Failed attempts scheduled to retry",
            by_type,
            registry=registry,
        )
        self.duration = Histogram(
            "conveyor_job_duration_seconds",
            "Run time of one attempt",
            by_type,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "conveyor_queue_wait_seconds",
            "Time from run_at (enqueue or due time) to start",
            by_type,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def job_finished(self, job: Job, status: JobStatus, duration: float, wait: float) -> None:
        if status == JobStatus.DONE:
            self.processed.labels(job.type).inc()
        elif status == JobStatus.FAILED:
            self.failed.labels(job.type).inc()
        else:
            self.retried.labels(job.type).inc()
        self.duration.labels(job.type).observe(duration)
        self.wait.labels(job.type).observe(wait)


class _ScrapeTime(Collector):
    """Values read when scraped: process counters without a type, slots, the store's counts."""

    def __init__(self, conveyor: Conveyor, metrics: Metrics) -> None:
        self._conveyor = conveyor
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snap = self._metrics.snapshot()
        yield CounterMetricFamily(
            "conveyor_jobs_recovered", "Jobs recovered after their lease expired", snap["recovered"]
        )
        yield CounterMetricFamily(
            "conveyor_jobs_handed_back", "Jobs handed back at shutdown", snap["handed_back"]
        )
        yield GaugeMetricFamily("conveyor_worker_slots_total", "Job slots", snap["slots_total"])
        yield GaugeMetricFamily("conveyor_worker_slots_busy", "Busy job slots", snap["slots_busy"])
        # The fleet's gauges, read from the store (SPEC §9): the same for every process
        # scraped, so an API-only node (`serve --workers 0`) reports the whole fleet.
        try:
            store = self._conveyor.store  # opening it may fail too
            stats = store.stats()
            oldest = store.oldest_pending()
            workers = store.list_workers()
        except ConveyorError:
            yield GaugeMetricFamily("conveyor_store_up", "1 when the store answered", 0)
            return
        now = utcnow()
        yield GaugeMetricFamily("conveyor_store_up", "1 when the store answered", 1)
        depth = GaugeMetricFamily(
            "conveyor_jobs", "Jobs by queue and status (the store's)", labels=["queue", "status"]
        )
        for queue, counts in sorted(stats.items()):
            for status in JobStatus:
                depth.add_metric([queue, status.value], counts.get(status.value, 0))
        yield depth
        age = GaugeMetricFamily(
            "conveyor_oldest_pending_seconds",
            "Age of the oldest due pending job per queue (since its run_at)",
            labels=["queue"],
        )
        for queue, run_at in sorted(oldest.items()):
            age.add_metric([queue], max(0.0, (now - run_at).total_seconds()))
        yield age
        yield GaugeMetricFamily(
            "conveyor_workers_live", "Live worker processes in the registry", len(workers)
        )


class PrometheusExporter:
    def __init__(self, conveyor: Conveyor, metrics: Metrics) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.observer = _FinishedJobs(self.registry)
        self.registry.register(_ScrapeTime(conveyor, metrics))
        metrics.observers.append(self.observer)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format `accept` asks for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
