"""RAFSS's SEG in a real viewer from a real PACS: OHIF (prebuilt, from npm) reading Orthanc's
DICOMweb, in Debian's chromium driven by Playwright."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pydicom

from tests.e2e.harness import storescu, wait_for
from tests.e2e.ohif import colour_pixels, go_to_instance, open_segmentation, serve_viewer
from tests.e2e.test_curation_browser import ARTIFACTS, CHROMIUM
from tests.factories import acdc_case, volume_to_mr_series
from tests.integration.services.peers import orthanc


def _browser(p):
    assert CHROMIUM.exists(), "install Debian's chromium: apt-get install -y chromium"
    browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(90_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)
    # the viewer's onboarding tour would cover the page; mark it as shown
    page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    return browser, page


def _series_of_modality(server, modality: str) -> list[str]:
    query = json.dumps({"Level": "Series", "Query": {"Modality": modality}}).encode()
    return server.post("/tools/find", query)  # type: ignore[return-value]


def test_rafss_seg_from_orthanc_displays_in_ohif(make_rafss, series_files, tmp_path):
    """A series goes to RAFSS; RAFSS delivers SEG and report to Orthanc by STOW-RS; OHIF opens
    the study from Orthanc and lists every segment by name."""
    from playwright.sync_api import sync_playwright

    with orthanc(tmp_path / "orthanc", dicomweb=True) as pacs:
        rafss = make_rafss().start()
        rafss.setup_cardiac(None, destination=("orthanc", pacs.dicomweb_url, "--protocol",
                                               "stow-rs"))
        sent = subprocess.run(["storescu", "-aec", pacs.ae_title, "127.0.0.1",
                               str(pacs.dicom_port), *map(str, series_files)],
                              capture_output=True, timeout=120)
        assert sent.returncode == 0  # the modality also stores the study in the PACS
        assert storescu(rafss.scp_port, series_files) == 0
        wait_for(lambda: _series_of_modality(pacs, "SEG") and _series_of_modality(pacs, "SR"),
                 240, "RAFSS's SEG and report in Orthanc")
        study_uid = pydicom.dcmread(series_files[0], stop_before_pixels=True).StudyInstanceUID
        with serve_viewer(f"http://127.0.0.1:{pacs.http_port}") as base, \
                sync_playwright() as p:
            browser, page = _browser(p)
            names = open_segmentation(page, base, study_uid)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ohif-rafss-seg.png"))
            browser.close()
    assert {"RV", "MYO", "LV"} <= set(names), names


def test_empty_slices_inside_an_organ_are_placed_right(tmp_path):
    """RAFSS omits empty frames; OHIF must still put every frame on its own slice. LV is
    removed from two slices in the middle of the heart: OHIF shows LV on the slices around them
    and nothing on them."""
    from playwright.sync_api import sync_playwright

    from rafss_core.dicom.seg import AlgorithmInfo, CodeTriplet, SegmentSpec, write_seg
    from rafss_core.dicom.series import load_series

    volume, labels = acdc_case("patient001_frame01")
    files = volume_to_mr_series(volume, tmp_path / "series", seed=uuid.uuid4().hex)
    loaded = load_series(files)
    lv = 3
    with_lv = [z for z in range(labels.shape[0]) if (labels[z] == lv).sum() > 200]
    gap = with_lv[len(with_lv) // 2 - 1: len(with_lv) // 2 + 1]  # two middle slices
    labels = labels.copy()
    for z in gap:
        labels[z][labels[z] == lv] = 0
    yellow = (255, 225, 25)
    anatomy = CodeTriplet("91723000", "SCT", "Anatomical Structure")
    segments = [
        SegmentSpec(1, "RV", anatomy, CodeTriplet("71836000", "SCT", "Right ventricle cavity"),
                    (230, 25, 75)),
        SegmentSpec(2, "MYO", anatomy, CodeTriplet("74281007", "SCT", "Myocardium"),
                    (60, 180, 75)),
        SegmentSpec(lv, "LV", anatomy, CodeTriplet("32547003", "SCT", "Left ventricle cavity"),
                    yellow),
    ]
    seg = write_seg(labels, loaded, segments, AlgorithmInfo(["test"], "1"), uuid.uuid4().hex)
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path, enforce_file_format=True)
    number_of = {ds.SOPInstanceUID: int(ds.InstanceNumber)
                 for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    instance_of = {z: number_of[uid] for z, uid in enumerate(loaded.sop_instance_uids)}
    shown: dict[int, int] = {}
    with orthanc(tmp_path / "orthanc", dicomweb=True) as pacs:
        for path in [*files, seg_path]:
            pacs.post("/instances", Path(path).read_bytes())
        with serve_viewer(f"http://127.0.0.1:{pacs.http_port}") as base, \
                sync_playwright() as p:
            browser, page = _browser(p)
            assert "LV" in open_segmentation(page, base, loaded.study_instance_uid)
            page.mouse.move(5, 500)
            for z in [*gap, with_lv[0], with_lv[-1], gap[0] - 1, gap[-1] + 1]:
                go_to_instance(page, instance_of[z])
                shown[z] = colour_pixels(page, yellow)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ohif-frame-placement.png"))
            browser.close()
    present = [z for z in shown if z not in gap]
    assert all(shown[z] > 200 for z in present), shown
    assert all(shown[z] < 0.1 * min(shown[p] for p in present) for z in gap), shown
