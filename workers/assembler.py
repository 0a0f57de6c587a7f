"""Series assembly: close a series after a quiet period with no new instance.

No system can know when a series is complete; like MONAI Deploy's Informatics Gateway, Kaapana
and Orthanc, RAFSS waits until no instance has arrived for N seconds. N is configurable
globally and per source AE (``allowed_sources.series_quiet_seconds``). The state lives in the
``series`` table, so a restart loses nothing: an open series is simply closed on the next tick.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import SeriesState

log = logging.getLogger(__name__)

# One statement: the per-AE quiet period (the smallest configured for that AE title, else the
# default) decides; SKIP LOCKED lets several assemblers run without blocking each other.
_CLOSE_QUIET_SERIES = sa.text("""
WITH quiet AS (
    SELECT ae_title, min(series_quiet_seconds) AS seconds
    FROM allowed_sources
    WHERE enabled AND series_quiet_seconds IS NOT NULL
    GROUP BY ae_title
), due AS (
    SELECT s.id
    FROM series s
    LEFT JOIN quiet q ON q.ae_title = s.calling_ae
    WHERE s.state = 'open'
      AND s.last_instance_at
          <= now() - make_interval(secs => coalesce(q.seconds, :default_seconds))
    ORDER BY s.last_instance_at
    LIMIT :limit
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE series SET state = :closed, closed_at = now()
FROM due WHERE series.id = due.id
RETURNING series.id
""")


def close_quiet_series(session: Session, default_quiet_seconds: float,
                       limit: int = 500) -> list[int]:
    """Close every open series that has been quiet long enough; return their ids."""
    rows = session.execute(_CLOSE_QUIET_SERIES, {
        "default_seconds": float(default_quiet_seconds), "limit": limit,
        "closed": SeriesState.CLOSED.value,
    }).scalars().all()
    for series_id in rows:
        log.info("series %s closed after quiet period", series_id)
    return [int(i) for i in rows]
