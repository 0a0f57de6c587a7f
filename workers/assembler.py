"""Series assembly: close a series after a quiet period with no new instance.

No system can know when a series is complete; like MONAI Deploy's Informatics Gateway, Kaapana
and Orthanc, RAFSS waits until no instance has arrived for N seconds. N is configurable
globally and per source AE (``allowed_sources.series_quiet_seconds``). The state lives in the
``series`` table, so a restart loses nothing: an open series is simply closed on the next tick.
The statement itself lives in :mod:`rafss_core.store.repositories.series`.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from rafss_core.store.repositories import series as series_repo

log = logging.getLogger(__name__)


def close_quiet_series(session: Session, default_quiet_seconds: float,
                       limit: int = 500) -> list[int]:
    """Close every open series that has been quiet long enough; return their ids."""
    closed = series_repo.close_quiet_series(session, default_quiet_seconds, limit)
    for series_id in closed:
        log.info("series %s closed after quiet period", series_id)
    return closed
