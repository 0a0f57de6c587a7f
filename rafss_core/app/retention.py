"""Use case: one retention pass (``rafss retention run``; the service loop runs it periodically).

Each file is deleted first and its row marked purged after, batch by batch: a pass killed
midway leaves at most files already gone whose rows are not marked yet, and the next pass marks
them (deleting a missing file is a no-op). Nothing still needed is ever selected (see
:mod:`rafss_core.store.repositories.retention`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

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


def _pass(app: App, category: Category, dry_run: bool,
          fetch: Callable[[Session, int], list[Any]], id_of: Callable[[Any], int],
          paths_of: Callable[[Any], tuple[str, ...]],
          mark: Callable[[Session, list[int]], None]) -> None:
    """One category, batch by batch: delete the files, then mark the rows (see the module
    docstring). Pages by id cursor, since a dry run marks nothing."""
    after = 0
    while True:
        with app.sessions() as s:
            items = fetch(s, after)
        if not items:
            return
        after = id_of(items[-1])
        for item in items:
            for path in paths_of(item):
                category.bytes += _size(path)
                category.files += 1
                if not dry_run:
                    Path(path).unlink(missing_ok=True)
        category.items += len(items)
        if not dry_run:
            with app.sessions.begin() as s:
                mark(s, [id_of(i) for i in items])


def run_retention(app: App, actor: str, *, dry_run: bool = False,
                  now: dt.datetime | None = None, batch: int = 500) -> RetentionReport:
    """Delete the spool files and result files past their window (or, with ``dry_run``, only
    count them); one audit row per pass that deleted something (or was a dry run)."""
    now = now or dt.datetime.now(dt.UTC)
    st = app.settings
    spool_before = now - dt.timedelta(hours=st.spool_retention_hours)
    results_before = now - dt.timedelta(days=st.result_retention_days)
    report = RetentionReport(dry_run)
    _pass(app, report.spool, dry_run, lambda s, after: repo.eligible_spool_files(
        s, spool_before, batch, after), lambda f: f.instance_id, lambda f: (f.path,),
        repo.mark_instances_purged)
    _pass(app, report.results, dry_run, lambda s, after: repo.eligible_results(
        s, results_before, batch, after), lambda r: r.result_id, lambda r: r.paths,
        repo.mark_results_purged)
    if dry_run or report.spool.items or report.results.items:
        with app.sessions.begin() as s:
            audit(s, actor=actor, action="retention.dry_run" if dry_run else "retention.run",
                  object_type="retention", object_id=now.isoformat(timespec="seconds"),
                  details=report.as_dict())
    log.info("retention%s: spool %d files (%d bytes), results %d files (%d bytes)",
             " (dry run)" if dry_run else "", report.spool.files, report.spool.bytes,
             report.results.files, report.results.bytes)
    return report
