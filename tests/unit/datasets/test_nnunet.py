from __future__ import annotations

import json

import pytest

from rafss_core.datasets.nnunet import NnUNetDataset


def test_acdc_layout(acdc_root):
    ds = NnUNetDataset.open(acdc_root)
    assert ds.labels == {1: "RV", 2: "MYO", 3: "LV"}
    assert ds.modality == "MR"
    train, test = ds.patients("train"), ds.patients("test")
    assert not set(train) & set(test)
    cases = ds.cases_of(test[:1])
    assert len(cases) == 2 and all(c.patient == test[0] for c in cases)
    volume, labels = ds.load(cases[0])
    assert labels is not None and labels.shape == volume.shape
    assert set(int(v) for v in labels.ravel()) <= {0, 1, 2, 3}


def test_missing_dataset_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset\.json"):
        NnUNetDataset.open(tmp_path)


def test_without_splits_uses_an_80_20_patient_split(tmp_path, acdc_root):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "A": 1}, "channel_names": {"0": "CT"}}))
    for p in range(5):
        (tmp_path / "imagesTr" / f"p{p}_f1_0000.nii.gz").symlink_to(
            acdc_root / "imagesTr" / "patient001_frame01_0000.nii.gz")
    ds = NnUNetDataset.open(tmp_path)
    assert ds.modality == "CT"
    assert ds.patients("train") == ["p0", "p1", "p2", "p3"] and ds.patients("test") == ["p4"]
    assert ds.cases()[0].label is None
