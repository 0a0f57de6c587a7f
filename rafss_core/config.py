"""The one settings object (environment variables ``RAFSS_*``, optional config file).

Precedence, lowest first: the defaults below < the config file named by ``RAFSS_CONFIG_FILE``
(``KEY=value`` lines, e.g. ``RAFSS_SCP_PORT=104``) < the environment < options actually given on
the command line (:meth:`Settings.load` takes only those; every CLI option defaults to "not
given"). Each default lives here, once.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from rafss_core.segmentation.segmenter import BuildContext


def default_data_dir() -> Path:
    """``$RAFSS_DATA_DIR`` or ``~/.local/share/rafss``."""
    env = os.environ.get("RAFSS_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "rafss"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rafss`` or ``~/.cache/rafss``: what can be rebuilt from the install."""
    env = os.environ.get("XDG_CACHE_HOME")
    return (Path(env) if env else Path.home() / ".cache") / "rafss"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``RAFSS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RAFSS_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # received instances; a path shared by every SCP and worker host (see deploy/README.md)
    spool_dir_override: Path | None = Field(None, alias="RAFSS_SPOOL_DIR")
    database_url: str | None = None
    # Celery broker; unset means the embedded default: kombu's SQLAlchemy transport on the
    # same Postgres (no extra service). Production: redis://... or amqp://...
    broker_url: str | None = None
    # segmentation backend: "auto" = sam2-memory when a SAM 2 and a DINOv2 are imported, else
    # litemedsam-box (real bundled weights); models None = the backend's default spec
    backend: str = "auto"
    models: str | None = None
    # cpu, cuda (the current GPU) or cuda:N; a worker process pins the one GPU it is given
    device: str = "cpu"
    # auto (bf16 autocast on a GPU; on the CPU fp32, but bf16 for litemedsam-box under
    # OpenVINO where the CPU has native bf16), fp32 or bf16
    precision: str = "auto"
    # slices per encoder batch and (slice, label) pairs per decode batch; None: 32 on a GPU,
    # 8 on the CPU. Lower it on a GPU with little memory
    batch_size: int | None = Field(None, ge=1)
    # litemedsam-box's inference runtime: auto (OpenVINO on the CPU when installed, else
    # torch), torch (the reference) or openvino
    runtime: str = "auto"
    # models converted for a runtime (OpenVINO IR), converted once per machine and shared by
    # every data folder and process: they depend only on the checkpoint and the runtime version
    compiled_dir: Path = Field(default_factory=lambda: default_cache_dir() / "compiled")
    # references retrieved per target slice, for tasks created without --k and `rafss segment`
    k: int = 4
    # DICOM edge
    ae_title: str = "RAFSS"
    scp_host: str = "127.0.0.1"
    scp_port: int = 11112
    allow_any_ae: bool = False
    # optional DICOM TLS for the SCP (PEM paths; TLS 1.2+); a CA enables client verification
    scp_tls_cert: Path | None = None
    scp_tls_key: Path | None = None
    scp_tls_ca: Path | None = None
    scp_tls_require_client_cert: bool = False
    # disk safety: below this much free space under the spool the SCP refuses new associations
    # (A-ASSOCIATE-RJ rejected-transient, local limit exceeded) until space returns
    min_free_disk_mb: int = 2048
    # retention: spool files of fully segmented and delivered series, and result files
    spool_retention_hours: float = 72.0
    result_retention_days: float = 30.0
    retention_interval_seconds: float = 3600.0
    # worker loops
    series_quiet_seconds: float = 10.0
    loop_interval_seconds: float = 1.0
    job_stale_seconds: float = 60.0
    job_heartbeat_seconds: float = 5.0
    job_max_attempts: int = 5  # a job that failed this often is dead (dead letter)
    job_time_limit_seconds: int = 3600
    # delivery (SCU) retries: base * 2**(n-1) seconds between attempts, then dead-letter
    delivery_backoff_seconds: float = 30.0
    delivery_max_attempts: int = 8
    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    max_upload_mb: int = 2048  # the largest request body the API accepts (413 above it)
    # `rafss worker`: Celery pool (solo or threads: CUDA is not fork-safe), concurrency, queues
    worker_pool: str = "solo"
    worker_concurrency: int = 1
    worker_queues: str = "io,model"

    @classmethod
    def load(cls, **given: object) -> Settings:
        """Settings from defaults, the config file, the environment and the ``given`` options
        (those that are None were not given and do not count)."""
        options = {k: v for k, v in given.items() if v is not None}
        if "spool_dir" in options:
            options["RAFSS_SPOOL_DIR"] = options.pop("spool_dir")
        return cls(_env_file=os.environ.get("RAFSS_CONFIG_FILE"),  # type: ignore[call-arg]
                   **options)

    @property
    def spool_dir(self) -> Path:
        """``RAFSS_SPOOL_DIR``, else ``<data_dir>/spool``."""
        return self.spool_dir_override or self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    def build_context(self, **overrides: Any) -> BuildContext:
        """Where and how segmentation backends run (models, device, precision, batch, caches),
        from these settings; ``overrides`` replace fields (e.g. ``memories_dir=None``)."""
        from dataclasses import replace

        from rafss_core.segmentation.segmenter import BuildContext

        return replace(BuildContext(self.models_dir, self.device, self.precision,
                                    self.memories_dir, self.encodings_dir, self.batch_size,
                                    self.runtime, self.compiled_dir),
                       **overrides)

    @property
    def memories_dir(self) -> Path:
        """SAM 2 reference memories, precomputed at approval and shared by the workers."""
        return self.data_dir / "memories"

    @property
    def encodings_dir(self) -> Path:
        """LiteMedSAM image encodings of approved references, computed once at import."""
        return self.data_dir / "encodings"

    @property
    def uploads_dir(self) -> Path:
        """Reference uploads staged by the API until a worker has imported them."""
        return self.data_dir / "uploads"

    @property
    def deid_seed_file(self) -> Path:
        """The installation's secret seed for de-identifying reference UIDs (created once)."""
        return self.data_dir / "deid.seed"

    @property
    def models_dir(self) -> Path:
        """Where ``rafss models import`` keeps checkpoints and the registry file."""
        return self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.load()
