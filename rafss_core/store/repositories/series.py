"""Series: closing the series that have been quiet long enough (the assembler's statement).

A series is ``open`` while instances arrive (``record_instance`` re-opens it on every new
instance). :func:`close_quiet_series` closes, in one statement, every open series whose last
instance is older than its quiet period: the smallest ``series_quiet_seconds`` configured for
its calling AE title in ``allowed_sources``, else the default. ``FOR UPDATE SKIP LOCKED``
lets several assemblers run without blocking each other.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import SeriesState

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
    WHERE s.state = :open
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
    """Close up to ``limit`` open series that have been quiet long enough; return their ids."""
    rows = session.execute(_CLOSE_QUIET_SERIES, {
        "default_seconds": float(default_quiet_seconds), "limit": limit,
        "open": SeriesState.OPEN.value, "closed": SeriesState.CLOSED.value,
    }).scalars().all()
    return [int(i) for i in rows]
