"""A study goes in, a DICOM-SEG comes out at PACS: `rafss up` with real peers."""

from __future__ import annotations

import re
import subprocess

import pydicom

from tests.e2e.conftest import PATIENT_ID, PATIENT_NAME
from tests.e2e.harness import storescu, wait_for


def _dciodvfy_errors(path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _check_report(report_path, seg_path, series_files) -> None:
    """The report's volumes are the SEG's segments' voxels times the voxel volume."""
    import numpy as np

    from rafss_core.dicom.report import read_volumes
    from rafss_core.dicom.seg import read_seg
    from rafss_core.dicom.series import load_series

    loaded = load_series(series_files)
    labels = read_seg(seg_path, loaded).labels  # SEG segment numbers
    voxel_ml = float(np.prod(loaded.volume.spacing)) / 1000
    report = pydicom.dcmread(report_path)
    volumes = read_volumes(report)
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    for number, segment in enumerate(seg.SegmentSequence, start=1):
        key = f"{segment.SegmentLabel} (segment {number})"
        assert abs(volumes[key] - float((labels == number).sum()) * voxel_ml) < 1e-3, key
    assert seg.SOPInstanceUID in str(report)


def test_study_in_seg_out(make_rafss, pacs, series_files):
    rafss = make_rafss().start()
    rafss.setup_cardiac(pacs.port)
    assert storescu(rafss.scp_port, series_files) == 0

    received = wait_for(pacs.segs, 180, "the SEG at the PACS")
    assert len(received) == 1
    seg = pydicom.dcmread(received[0])
    (report,) = wait_for(pacs.reports, 60, "the volume report next to the SEG")
    assert _dciodvfy_errors(report) == []
    _check_report(report, received[0], series_files)
    assert seg.Modality == "SEG"
    assert _dciodvfy_errors(received[0]) == []
    sent = [pydicom.dcmread(p, stop_before_pixels=True) for p in series_files]
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == sent[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} == \
        {d.SOPInstanceUID for d in sent}
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["RV", "MYO", "LV"]
    assert "not for diagnosis" in seg.SeriesDescription

    jobs = wait_for(lambda: [j for j in rafss.jobs() if j["state"] == "succeeded"
                             and j["kind"] == "segment"], 60, "the job to show succeeded")
    assert len(jobs) == 1 and jobs[0]["task"] == "cardiac"
    metrics = rafss.metrics()
    assert re.search(r'rafss_instances_received_total\{validity="valid"\} 10\.0', metrics)
    assert re.search(r'rafss_jobs\{kind="segment",state="succeeded"\} 1\.0', metrics)
    assert "rafss_job_latency_seconds_count 1.0" in metrics

    assert rafss.stop() == 0  # SIGTERM stops everything cleanly
    log = rafss.log_path.read_text()
    assert "Storage SCP RAFSS stopped" in log
    for phi in (PATIENT_NAME, PATIENT_ID, "DOE", "19700101"):
        assert phi not in log, f"PHI {phi!r} leaked into the logs"


def test_make_up_defaults_deliver_real_masks(make_rafss, pacs, series_files):
    """What a new user gets from `make up` (no --models): LiteMedSAM's real weights, and a SEG
    whose masks match the expert annotation of ACDC patient001."""
    import numpy as np

    from rafss_core.dicom.seg import read_seg
    from rafss_core.dicom.series import load_series
    from rafss_core.segmentation import metrics
    from tests.factories import acdc_case

    rafss = make_rafss(models=None).start()
    rafss.setup_cardiac(pacs.port, ref_patients="patient003_frame01,patient004_frame01")
    assert storescu(rafss.scp_port, series_files) == 0
    received = wait_for(pacs.segs, 600, "the SEG at the PACS")
    assert _dciodvfy_errors(received[0]) == []
    seg = pydicom.dcmread(received[0])
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "backend=litemedsam-box" in str(algo.AlgorithmParameters)
    assert "litemedsam:79d8c9dca6db" in str(algo.AlgorithmParameters)
    labels = read_seg(received[0], load_series(series_files)).labels  # SEG segment numbers
    _, truth = acdc_case("patient001_frame01")
    dice = [metrics.per_label(labels, truth, [v], (10.0, 1.5, 1.5))[v]["dice"] for v in (1, 2, 3)]
    assert np.mean(dice) > 0.5, dice  # random weights give near 0
    log = rafss.log_path.read_text()
    assert "segmentation backend litemedsam-box" in log and "RANDOM WEIGHTS" not in log
