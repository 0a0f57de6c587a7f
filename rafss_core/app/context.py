"""What every use case needs: database sessions and the settings (paths, models)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from rafss_core.config import Settings


@dataclass(frozen=True)
class App:
    sessions: sessionmaker[Session]
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> App:
        """Connect to ``settings``' database (the embedded server of the data dir unless
        ``RAFSS_DATABASE_URL`` is set)."""
        from rafss_core.store.engine import database_url, make_engine, session_factory

        return cls(session_factory(make_engine(database_url(settings))), settings)
