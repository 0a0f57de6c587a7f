"""Prometheus metrics read from the database at scrape time.

The SCP, the workers and the loops may run in different processes; the rows are the single
source of truth, so a custom collector queries them instead of keeping in-process counters.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import JobState

LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class DatabaseCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[object]:
        with self.sessions() as s:
            received = s.execute(sa.text("SELECT count(*) FROM instances")).scalar_one()
            invalid = s.execute(
                sa.text("SELECT count(*) FROM instances WHERE state = 'invalid'")
            ).scalar_one()
            by_state = dict(
                s.execute(sa.text("SELECT state, count(*) FROM jobs GROUP BY state")).all()
            )
            latencies = (
                s.execute(
                    sa.text(
                        "SELECT extract(epoch FROM finished_at - created_at) FROM jobs "
                        "WHERE state = 'succeeded' AND finished_at IS NOT NULL"
                    )
                )
                .scalars()
                .all()
            )
            failures = s.execute(
                sa.text(
                    "SELECT coalesce(sum(GREATEST(attempts - CASE WHEN status = 'succeeded' "
                    "THEN 1 ELSE 0 END, 0)), 0) FROM deliveries"
                )
            ).scalar_one()
            dead = s.execute(
                sa.text("SELECT count(*) FROM deliveries WHERE status = 'dead'")
            ).scalar_one()
        c = CounterMetricFamily(
            "rafss_instances_received", "DICOM instances received", labels=["validity"]
        )
        c.add_metric(["valid"], received - invalid)
        c.add_metric(["invalid"], invalid)
        yield c
        g = GaugeMetricFamily("rafss_jobs", "Jobs by state", labels=["state"])
        for state in JobState:
            g.add_metric([state.value], by_state.get(state.value, 0))
        yield g
        buckets, total = [], 0.0
        for bound in LATENCY_BUCKETS:
            buckets.append((str(bound), sum(1 for x in latencies if x <= bound)))
        buckets.append(("+Inf", len(latencies)))
        total = float(sum(latencies))
        yield HistogramMetricFamily(
            "rafss_job_latency_seconds",
            "Queued-to-finished latency of succeeded jobs",
            buckets=buckets,
            sum_value=total,
        )
        f = CounterMetricFamily("rafss_delivery_failures", "Failed delivery attempts")
        f.add_metric([], float(failures))
        yield f
        d = GaugeMetricFamily("rafss_deliveries_dead", "Deliveries whose retries ran out")
        d.add_metric([], dead)
        yield d
