"""OHIF Viewer for the display tests: the prebuilt viewer from npm, served with a same-origin
reverse proxy to Orthanc's DICOMweb, and a Playwright driver for its segmentation panel.

The OHIF version is pinned here, and only here.
"""

from __future__ import annotations

import colorsys
import http.client
import io
import mimetypes
import re
import shutil
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from tests.e2e.harness import REPO

OHIF_VERSION = "3.13.2"
CACHE = REPO / ".cache" / "ohif" / OHIF_VERSION

# OHIF 3.13's data-cy selectors
VIEWPORT = '[data-cy="viewport-pane"]'
VIEWPORT_INFO = '[data-cy="viewport-overlay-bottom-right"]'  # "I:3 (8/10)" once drawn
THUMB_NO_IMAGE = '[data-cy="study-browser-thumbnail-no-image"]'  # SEG, SR
MODALITY_LABEL = '[data-cy="series-modality-label"]'
HYDRATE_YES = '[data-cy="yes-hydrate-btn"]'
SEG_PANEL_TAB = '[data-cy^="panelSegmentation"][data-cy$="-btn"]'
SEG_ROW_TITLE = '[data-cy="data-row-title"]'

APP_CONFIG = """window.config = {
  routerBasename: '/', extensions: [], modes: [], customizationService: {},
  showStudyList: true, maxNumberOfWebWorkers: 2, showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false, showLoadingIndicator: true,
  investigationalUseDialog: { option: 'never' }, defaultDataSourceName: 'orthanc',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb', sourceName: 'orthanc',
    configuration: {
      friendlyName: 'Orthanc', name: 'orthanc', qidoRoot: '/dicom-web',
      wadoRoot: '/dicom-web', wadoUriRoot: '/dicom-web', qidoSupportsIncludeField: false,
      supportsReject: false, supportsFuzzyMatching: false, supportsWildcard: false,
      imageRendering: 'wadors', thumbnailRendering: 'wadors', enableStudyLazyLoad: true,
      staticWado: false, bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      omitQuotationForMultipartRequest: true } }],
};
"""


def viewer_dist() -> Path:
    """The prebuilt viewer (``@ohif/app``'s ``dist``), fetched once with ``npm pack``."""
    dist = CACHE / "package" / "dist"
    if (dist / "index.html").exists():
        return dist
    npm = shutil.which("npm")
    assert npm, "npm (Node.js) is needed to fetch the OHIF viewer"
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--silent"], cwd=CACHE,
                   check=True, capture_output=True, timeout=600)
    (tarball,) = CACHE.glob("ohif-app-*.tgz")
    with tarfile.open(tarball) as tar:
        tar.extractall(CACHE, filter="data")
    tarball.unlink()
    assert (dist / "index.html").exists(), f"no prebuilt viewer in @ohif/app@{OHIF_VERSION}"
    return dist


mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailers", "transfer-encoding", "upgrade", "content-length"}


class _Handler(SimpleHTTPRequestHandler):
    """Static viewer with SPA fallback; ``/dicom-web`` proxied to Orthanc with the Host header
    kept, so Orthanc writes same-origin BulkDataURIs."""

    protocol_version = "HTTP/1.1"

    def __init__(self, *args: Any, orthanc: str, **kwargs: Any) -> None:
        self.orthanc = urllib.parse.urlsplit(orthanc)
        super().__init__(*args, **kwargs)

    def log_message(self, *args: Any) -> None:
        pass

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(self.orthanc.hostname, self.orthanc.port, timeout=120)
        conn.request(self.command, self.path, body=body,
                     headers={k: v for k, v in self.headers.items() if k.lower() not in HOP})
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def _route(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/dicom-web"):
            return self._proxy()
        if path == "/app-config.js":
            data = APP_CONFIG.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"  # /viewer, /segmentation, ...
        return super().do_GET()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()


@contextmanager
def serve_viewer(orthanc_http_url: str) -> Iterator[str]:
    """The viewer on a free local port, its DICOMweb proxied to Orthanc; yields the base URL."""
    handler = partial(_Handler, directory=str(viewer_dist()), orthanc=orthanc_http_url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def open_segmentation(page: Any, base: str, study_uid: str) -> list[str]:
    """Open the study in OHIF's segmentation mode, load its SEG, return the panel's segment
    names."""
    from playwright.sync_api import expect

    page.goto(f"{base}/segmentation?StudyInstanceUIDs={study_uid}")
    expect(page.locator(VIEWPORT_INFO)).to_contain_text("I:")  # the image is drawn
    seg = page.locator(THUMB_NO_IMAGE).filter(has=page.locator(MODALITY_LABEL, has_text="SEG"))
    seg.first.dblclick()
    page.locator(HYDRATE_YES).click()
    rows = page.locator(SEG_ROW_TITLE)
    page.wait_for_timeout(1000)
    if not rows.first.is_visible():
        page.locator(SEG_PANEL_TAB).first.click()
    expect(rows.first).to_be_visible()
    page.wait_for_timeout(1000)  # the rows render together
    return [t.strip() for t in rows.all_inner_texts()]


def current_instance(page: Any) -> tuple[int, int, int]:
    """(InstanceNumber, position, count) from the viewport's "I:3 (8/10)" overlay."""
    text = page.locator(VIEWPORT_INFO).first.inner_text()
    m = re.search(r"I:\s*(\d+)\s*\((\d+)/(\d+)\)", text)
    assert m, f"no slice overlay in {text!r}"
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def go_to_instance(page: Any, instance_number: int) -> None:
    """Scroll the viewport (arrow keys; back the other way at the end of the stack) until it
    shows that InstanceNumber."""
    page.mouse.move(*_viewport_centre(page))
    key = "ArrowDown"
    for _ in range(128):
        current, position, _count = current_instance(page)
        if current == instance_number:
            page.wait_for_timeout(800)  # re-render (software WebGL)
            return
        page.keyboard.press(key)
        page.wait_for_timeout(250)
        if current_instance(page)[1] == position:  # at the end: turn round
            key = "ArrowUp" if key == "ArrowDown" else "ArrowDown"
    raise AssertionError(f"instance {instance_number} not reached")


def _viewport_centre(page: Any) -> tuple[float, float]:
    box = page.locator(VIEWPORT).first.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def colour_pixels(page: Any, rgb: tuple[int, int, int], margin: int = 40) -> int:
    """Viewport pixels with ``rgb``'s hue (an overlay blended over grey keeps its hue)."""
    from PIL import Image

    png = page.locator(VIEWPORT).first.screenshot()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[margin:-margin, margin:-margin]
    arr = img.astype(float) / 255
    mx, mn = arr.max(axis=2), arr.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1e-6)
    d = np.maximum(mx - mn, 1e-6)
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    hue = np.where(mx == r, ((g - b) / d) % 6,
                   np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    want = colorsys.rgb_to_hsv(*[c / 255 for c in rgb])[0]
    dist = np.minimum(abs(hue - want), 1 - abs(hue - want))
    return int(((sat > 0.25) & (mx > 0.15) & (dist < 0.04)).sum())
