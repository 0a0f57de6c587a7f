"""Prometheus metrics read from the database at scrape time.

The SCP, the workers and the loops may run in different processes; the rows are the single
source of truth, so a custom collector queries them instead of keeping in-process counters
(the figures come from :func:`rafss_core.store.repositories.stats.service_stats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import JobKind, JobState
from rafss_core.store.repositories.retention import spool_bytes
from rafss_core.store.repositories.stats import ServiceStats, service_stats
from services.disk import DiskWatermark

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


class DiskCollector(Collector):
    """Free bytes under the spool, spool bytes (recorded, not purged), watermark state."""

    def __init__(self, sessions: sessionmaker[Session], spool_dir: Path,
                 min_free_disk_mb: int) -> None:
        self.sessions = sessions
        self.watermark = DiskWatermark(spool_dir, min_free_disk_mb)

    def collect(self) -> Iterator[object]:
        state = self.watermark.check()
        with self.sessions() as s:
            spool = spool_bytes(s)
        yield GaugeMetricFamily("rafss_disk_free_bytes", "Free bytes under the spool",
                                value=state.free_bytes)
        yield GaugeMetricFamily("rafss_spool_bytes", "Bytes of spooled instances not purged",
                                value=spool)
        yield GaugeMetricFamily("rafss_disk_watermark_active",
                                "1 while free space is below RAFSS_MIN_FREE_DISK_MB (the SCP "
                                "refuses associations)", value=1.0 if state.low else 0.0)
