"""The disk watermark: below ``RAFSS_MIN_FREE_DISK_MB`` free under the spool, stop receiving.

The SCP checks it when an association is requested and refuses with A-ASSOCIATE-RJ
*rejected-transient*, source *service-provider (presentation)*, reason *local limit exceeded*
(PS3.8 9.3.4): senders (PACS, modalities) treat a transient rejection as "try again later" and
keep the study queued, and nothing is transferred in vain. An association already open when
space runs out gets 0xA700 (out of resources) per instance. The state is recomputed at every
check, so the SCP accepts again by itself when space returns; it logs once per episode.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass
class DiskState:
    free_bytes: int
    min_free_bytes: int

    @property
    def low(self) -> bool:
        return self.free_bytes < self.min_free_bytes


class DiskWatermark:
    def __init__(self, path: Path, min_free_mb: int) -> None:
        self.path = path
        self.min_free_bytes = int(min_free_mb) * 1024 * 1024
        self._low = False
        self._lock = threading.Lock()

    def check(self) -> DiskState:
        state = DiskState(free_bytes(self.path), self.min_free_bytes)
        with self._lock:
            if state.low and not self._low:
                log.error("disk watermark: %d MB free under %s, below %d MB; refusing new "
                          "associations until space returns (free disk space or lower "
                          "RAFSS_MIN_FREE_DISK_MB)", state.free_bytes // 2**20, self.path,
                          self.min_free_bytes // 2**20)
            elif self._low and not state.low:
                log.warning("disk watermark: %d MB free again under %s; accepting associations",
                            state.free_bytes // 2**20, self.path)
            self._low = state.low
        return state
