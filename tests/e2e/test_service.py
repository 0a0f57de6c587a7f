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


def test_study_in_seg_out(make_rafss, pacs, series_files):
    rafss = make_rafss().start()
    rafss.setup_cardiac(pacs.port)
    assert storescu(rafss.scp_port, series_files) == 0

    received = wait_for(pacs.received, 180, "the SEG at the PACS")
    assert len(received) == 1
    seg = pydicom.dcmread(received[0])
    assert seg.Modality == "SEG"
    assert _dciodvfy_errors(received[0]) == []
    sent = [pydicom.dcmread(p, stop_before_pixels=True) for p in series_files]
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == sent[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} == \
        {d.SOPInstanceUID for d in sent}
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["RV", "MYO", "LV"]
    assert "not for diagnosis" in seg.SeriesDescription

    jobs = wait_for(lambda: [j for j in rafss.jobs() if j["state"] == "succeeded"], 60,
                    "the job to show succeeded")
    assert len(jobs) == 1 and jobs[0]["task"] == "cardiac"
    metrics = rafss.metrics()
    assert re.search(r'rafss_instances_received_total\{validity="valid"\} 10\.0', metrics)
    assert re.search(r'rafss_jobs\{state="succeeded"\} 1\.0', metrics)
    assert "rafss_job_latency_seconds_count 1.0" in metrics

    assert rafss.stop() == 0  # SIGTERM stops everything cleanly
    log = rafss.log_path.read_text()
    assert "Storage SCP RAFSS stopped" in log
    for phi in (PATIENT_NAME, PATIENT_ID, "DOE", "19700101"):
        assert phi not in log, f"PHI {phi!r} leaked into the logs"
