"""The correction loop in a real browser: a radiologist's corrected SEG comes back through the
SCP, becomes a candidate with its Dice against RAFSS's SEG, and a reviewer approves it in the
web UI (Debian's chromium driven by Playwright); later jobs retrieve it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pydicom

from tests.e2e.harness import REPO, storescu, wait_for
from tests.factories import acdc_case

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


def _api(rafss, token: str, path: str, method: str = "GET") -> object:
    req = urllib.request.Request(f"http://127.0.0.1:{rafss.api_port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _token(rafss, role: str) -> str:
    return rafss.cli("tokens", "create", "--role", role, "--name", f"e2e-{role}").split()[-1]


def _corrected_seg(series_files: list[Path], out: Path) -> Path:
    """What a radiologist sends back: the expert annotation of the series as a new SEG."""
    from rafss_core.app.tasks import parse_label
    from rafss_core.dicom.seg import AlgorithmInfo, CodeTriplet, SegmentSpec, write_seg
    from rafss_core.dicom.series import load_series

    _, truth = acdc_case("patient001_frame01")
    loaded = load_series(series_files)
    segments = []
    for i, text in enumerate(["1:RV", "2:MYO", "3:LV"]):
        spec = parse_label(text, i)
        segments.append(SegmentSpec(
            label=spec.number, name=spec.name,
            category=CodeTriplet(spec.category[1], spec.category[0], spec.category[2]),
            type=CodeTriplet(spec.type[1], spec.type[0], spec.type[2]),
            color=(255, 0, 0)))
    seg = write_seg(truth, loaded, segments, AlgorithmInfo(["radiologist"], "0"),
                    "radiologist-correction-1")
    seg.save_as(out)
    return out


def test_reviewer_approves_a_correction_in_the_browser(make_rafss, pacs, series_files, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium: apt-get install -y chromium"

    rafss = make_rafss().start()
    rafss.setup_cardiac(pacs.port)
    reviewer, viewer = _token(rafss, "reviewer"), _token(rafss, "viewer")
    assert storescu(rafss.scp_port, series_files) == 0
    wait_for(pacs.received, 180, "RAFSS's SEG at the PACS")
    (segmented,) = [j for j in rafss.jobs() if j["kind"] == "segment"]
    task = _api(rafss, viewer, "/api/tasks/cardiac")
    assert task["reference_set_version"] == 1

    corrected = _corrected_seg(series_files, tmp_path / "corrected-seg.dcm")
    assert storescu(rafss.scp_port, [corrected]) == 0
    (candidate,) = wait_for(lambda: _api(rafss, viewer, "/api/candidates?state=pending"), 300,
                            "the correction to become a candidate")
    assert candidate["origin"] == "feedback" and candidate["corrected_job_id"] == segmented["id"]
    assert set(candidate["dice"]) == {"RV", "MYO", "LV"}
    assert all(0.0 <= d <= 1.0 for d in candidate["dice"].values())
    assert candidate["slices"] == len(series_files)

    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{rafss.api_port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page()
        page.goto(f"{base}/ui/tasks/cardiac")
        assert page.url.endswith("/ui/login")  # no session: the login page
        page.fill("#token", "rafss_not-a-token")
        page.click("#login")
        assert "unknown or revoked" in page.text_content("main")
        page.fill("#token", reviewer)
        page.click("#login")
        page.goto(f"{base}/ui/tasks/cardiac")
        card = page.locator(f"#candidate-{candidate['id']}")
        assert "Dice of the correction" in card.text_content()
        assert card.locator("img").count() > 0
        all_images_loaded = ("Array.from(document.images).every(i => i.complete && "
                             "i.naturalWidth > 0)")
        page.wait_for_function(all_images_loaded)  # thumbnails render (PNG with overlay)
        card.locator("button.approve").click()
        assert f"candidate {candidate['id']} approved: reference set v2" in page.text_content(
            "[role=status]")
        assert page.locator(f"#candidate-{candidate['id']}").count() == 0
        decided = page.text_content("#decided")
        assert f"#{candidate['id']}" in decided and "approved" in decided
        page.wait_for_function(all_images_loaded)
        page.screenshot(path=str(ARTIFACTS / "curation-correction-approved.png"), full_page=True)
        browser.close()

    assert _api(rafss, viewer, "/api/tasks/cardiac")["reference_set_version"] == 2
    approved = _api(rafss, viewer, f"/api/candidates/{candidate['id']}")
    assert approved["state"] == "approved" and approved["reference_set_version"] == 2
    audit = _api(rafss, reviewer, "/api/audit?action=candidate.approve")
    assert (audit[0]["actor"], audit[0]["object_id"]) == ("token:e2e-reviewer",
                                                          str(candidate["id"]))
    assert (ARTIFACTS / "curation-correction-approved.png").stat().st_size > 10_000
    # the bank holds no original UID of the corrected study
    sent = pydicom.dcmread(series_files[0], stop_before_pixels=True)
    from tests.e2e.harness import sql

    stored = sql(rafss.data_dir, "SELECT DISTINCT series_instance_uid FROM reference_slices "
                 "WHERE origin = 'feedback'")
    assert stored and sent.SeriesInstanceUID not in {r[0] for r in stored}
