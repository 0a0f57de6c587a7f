"""De-identification of the reference bank (DICOM PS3.15 Annex E, basic profile).

The bank keeps only what retrieval and memories need: the normalised pixel array of each slice,
its label mask and its embedding. No DICOM header is stored, so names, IDs, dates, descriptions,
institution and device attributes and private tags never enter it. What remains are the UIDs
that say where a slice came from; the basic profile requires them to be replaced, and they are,
with dicognito (MIT, maintained, implements the basic profile without a recipe): its UID mapping
is deterministic for a per-installation secret seed, so the slices of one series keep one
study/series UID and a re-import maps to the same values, while nobody without the seed can map
an original UID to its replacement (pydicom/deid hashes UIDs unsalted and needs a hand-written
recipe; its default recipe deletes every UID, SOP Class included).

Burned-in annotations (the basic profile's "clean pixel data" option) are not removed:
reference images are MR/CT slices whose modalities do not burn in text; a source with
``BurnedInAnnotation = YES`` should not be imported.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import MRImageStorage


def installation_seed(path: Path) -> str:
    """The installation's secret seed, created (0600) on first use; when several processes
    race to create it, exactly one wins and all read the winner's seed."""
    import os

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic, and fails when another process created it first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


@dataclass(frozen=True)
class DeidentifiedUids:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: list[str]


class Deidentifier:
    """Replaces the UIDs of a source series consistently (one instance per seed)."""

    def __init__(self, seed: str) -> None:
        from dicognito.anonymizer import Anonymizer

        self._anonymizer = Anonymizer(seed=seed)
        self._lock = threading.Lock()

    def uids(self, study_uid: str, series_uid: str,
             sop_uids: Sequence[str]) -> DeidentifiedUids:
        out: list[str] = []
        study = series = ""
        with self._lock:
            for sop_uid in sop_uids:
                ds = Dataset()
                ds.file_meta = FileMetaDataset()
                ds.SOPClassUID = MRImageStorage  # a standard UID: left alone by the profile
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                ds.SOPInstanceUID = sop_uid
                self._anonymizer.anonymize(ds)
                study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
                out.append(str(ds.SOPInstanceUID))
        return DeidentifiedUids(study, series, out)
