"""nnU-Net v2-style datasets: ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json`` and an optional ``splits.json`` with ``train`` / ``test`` patient lists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rafss_core.datasets.nifti import read_volume
from rafss_core.segmentation.volume import Volume


@dataclass(frozen=True)
class Case:
    case_id: str
    image: Path
    label: Path | None

    @property
    def patient(self) -> str:
        """ACDC-style cases ``patientNNN_frameFF`` group by the part before ``_``."""
        return self.case_id.split("_")[0]


@dataclass
class NnUNetDataset:
    root: Path
    labels: dict[int, str]
    modality: str
    file_ending: str
    splits: dict[str, list[str]] | None

    @classmethod
    def open(cls, root: Path) -> NnUNetDataset:
        meta_path = root / "dataset.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{root} has no dataset.json: not an nnU-Net-style dataset")
        meta = json.loads(meta_path.read_text())
        labels = {int(v): k for k, v in meta["labels"].items() if int(v) != 0}
        channels = " ".join(str(v) for v in meta.get("channel_names", {}).values()).upper()
        modality = "CT" if "CT" in channels else "MR" if "MR" in channels else "OT"
        splits_path = root / "splits.json"
        splits = json.loads(splits_path.read_text()) if splits_path.exists() else None
        return cls(root, labels, modality, meta.get("file_ending", ".nii.gz"), splits)

    def cases(self) -> list[Case]:
        out = []
        suffix = "_0000" + self.file_ending
        for image in sorted((self.root / "imagesTr").glob("*" + suffix)):
            case_id = image.name[: -len(suffix)]
            label = self.root / "labelsTr" / (case_id + self.file_ending)
            out.append(Case(case_id, image, label if label.exists() else None))
        return out

    def patients(self, split: str) -> list[str]:
        """Patients of a split in file order; without splits.json, train = all but the last 20%."""
        patients = list(dict.fromkeys(c.patient for c in self.cases()))
        if self.splits is not None:
            if split not in self.splits:
                raise KeyError(f"splits.json has no {split!r} list")
            return list(self.splits[split])
        cut = max(1, int(len(patients) * 0.8))
        return patients[:cut] if split == "train" else patients[cut:]

    def cases_of(self, patients: list[str]) -> list[Case]:
        wanted = set(patients)
        return [c for c in self.cases() if c.patient in wanted]

    def load(self, case: Case) -> tuple[Volume, np.ndarray | None]:
        volume = read_volume(case.image, self.modality)
        if case.label is None:
            return volume, None
        labels = read_volume(case.label).array.astype(np.int16)
        if labels.shape != volume.shape:
            raise ValueError(f"{case.case_id}: label shape {labels.shape} != {volume.shape}")
        return volume, labels
