"""The one settings object (environment variables ``RAFSS_*``, optional config file)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """``$RAFSS_DATA_DIR`` or ``~/.local/share/rafss``."""
    env = os.environ.get("RAFSS_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "rafss"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``RAFSS_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="RAFSS_",
        env_file=os.environ.get("RAFSS_CONFIG_FILE"),
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    models: str = "tiny-random"
    device: str = "cpu"
    k: int = 4

    @property
    def models_dir(self) -> Path:
        """Where ``rafss models import`` keeps checkpoints and the registry file."""
        return self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
