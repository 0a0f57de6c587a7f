"""Prometheus metrics read from the database at scrape time.

The SCP, the workers and the loops may run in different processes; the rows are the single
source of truth, so a custom collector queries them instead of keeping in-process counters
(the figures come from :func:`rafss_core.store.repositories.stats.service_stats`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import JobKind, JobState
from rafss_core.store.repositories.stats import ServiceStats, service_stats

LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _instances(stats: ServiceStats) -> CounterMetricFamily:
    c = CounterMetricFamily(
        "rafss_instances_received", "DICOM instances received", labels=["validity"]
    )
    c.add_metric(["valid"], stats.received - stats.invalid)
    c.add_metric(["invalid"], stats.invalid)
    return c


def _jobs(stats: ServiceStats) -> GaugeMetricFamily:
    g = GaugeMetricFamily("rafss_jobs", "Jobs by kind and state", labels=["kind", "state"])
    for kind in JobKind:
        for state in JobState:
            g.add_metric([kind.value, state.value], stats.jobs.get((kind.value, state.value), 0))
    return g


def _latency(stats: ServiceStats) -> HistogramMetricFamily:
    latencies = stats.latencies
    buckets: list[tuple[str, float]] = []
    for bound in LATENCY_BUCKETS:
        buckets.append((str(bound), sum(1 for x in latencies if x <= bound)))
    buckets.append(("+Inf", len(latencies)))
    return HistogramMetricFamily(
        "rafss_job_latency_seconds",
        "Queued-to-finished latency of succeeded segmentation jobs",
        buckets=buckets,
        sum_value=stats.latency_sum,
    )


def _deliveries(stats: ServiceStats) -> Iterator[object]:
    f = CounterMetricFamily("rafss_delivery_failures", "Failed delivery attempts")
    f.add_metric([], float(stats.delivery_failures))
    yield f
    d = GaugeMetricFamily("rafss_deliveries_dead", "Deliveries whose retries ran out")
    d.add_metric([], stats.dead_deliveries)
    yield d


class DatabaseCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[object]:
        with self.sessions() as s:
            stats = service_stats(s)
        yield _instances(stats)
        yield _jobs(stats)
        yield _latency(stats)
        yield from _deliveries(stats)
