"""Use case: one retention pass (``rafss retention run``; the service loop runs it periodically).

Each file is deleted first and its row marked purged after, batch by batch: a pass killed
midway leaves at most files already gone whose rows are not marked yet, and the next pass marks
them (deleting a missing file is a no-op). Nothing still needed is ever selected (see
:mod:`rafss_core.store.repositories.retention`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rafss_core.app.context import App
from rafss_core.store.repositories import audit
from rafss_core.store.repositories import retention as repo

log = logging.getLogger(__name__)


@dataclass
class Category:
    files: int = 0
    bytes: int = 0
    items: int = 0


@dataclass
class RetentionReport:
    dry_run: bool
    spool: Category = field(default_factory=Category)
    results: Category = field(default_factory=Category)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def run_retention(app: App, actor: str, *, dry_run: bool = False,
                  now: dt.datetime | None = None, batch: int = 500) -> RetentionReport:
    """Delete the spool files and result files past their window (or, with ``dry_run``, only
    count them); one audit row per pass that deleted something (or was a dry run)."""
    now = now or dt.datetime.now(dt.UTC)
    st = app.settings
    spool_before = now - dt.timedelta(hours=st.spool_retention_hours)
    results_before = now - dt.timedelta(days=st.result_retention_days)
    report = RetentionReport(dry_run)
    after = 0  # a cursor: a dry run marks nothing, so paging must not rely on marks
    while True:
        with app.sessions() as s:
            files = repo.eligible_spool_files(s, spool_before, batch, after)
        if not files:
            break
        after = files[-1].instance_id
        for f in files:
            report.spool.bytes += _size(f.path)
            report.spool.files += 1
            if not dry_run:
                Path(f.path).unlink(missing_ok=True)
        report.spool.items += len(files)
        if not dry_run:
            with app.sessions.begin() as s:
                repo.mark_instances_purged(s, [f.instance_id for f in files])
    after = 0
    while True:
        with app.sessions() as s:
            results = repo.eligible_results(s, results_before, batch, after)
        if not results:
            break
        after = results[-1].result_id
        for r in results:
            for path in r.paths:
                report.results.bytes += _size(path)
                report.results.files += 1
                if not dry_run:
                    Path(path).unlink(missing_ok=True)
        report.results.items += len(results)
        if not dry_run:
            with app.sessions.begin() as s:
                repo.mark_results_purged(s, [r.result_id for r in results])
    if dry_run or report.spool.items or report.results.items:
        with app.sessions.begin() as s:
            audit(s, actor=actor, action="retention.dry_run" if dry_run else "retention.run",
                  object_type="retention", object_id=now.isoformat(timespec="seconds"),
                  details=report.as_dict())
    log.info("retention%s: spool %d files (%d bytes), results %d files (%d bytes)",
             " (dry run)" if dry_run else "", report.spool.files, report.spool.bytes,
             report.results.files, report.results.bytes)
    return report
