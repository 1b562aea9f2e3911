"""The web viewer in headless Chromium against the real gateway (uvicorn + Triton).

The page is driven like a user would: API key, uploads (file picker and drag and drop),
player, overlay controls, timeline, CSA plot, downloads, results list. What the page draws
is compared with what the API returns: the overlay canvas has tinted pixels exactly where
the mask is 1, the frame canvas shows the uploaded frame.

``ULTRAMN_WRITE_SCREENSHOT=1`` also writes ``docs/viewer.png``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.data.test_decoders import write_dicom_cine
from tests.gateway.helpers import make_settings
from tests.viewer.conftest import API_KEY, UNTRAINED_THRESHOLD, LiveGateway, ViewerClip
from ultramn.data.decoders import EXTENSION_FORMATS

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "viewer.png"
SPACING_MM = 0.1

# Reads a canvas back as base64 bytes: channel `c` of every pixel (3 = alpha).
READ_CANVAS_JS = """([id, c]) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let s = "";
  for (let p = 0; p < data.length; p += 4) s += String.fromCharCode(data[p + c]);
  return btoa(s);
}"""

# Both canvases show frame i.
SHOWS_FRAME_JS = """i => ["frame", "overlay"].every((id) => document.getElementById(id).dataset.frame === String(i))"""
# Every frame image and mask of the open analysis has loaded.
ALL_LOADED_JS = """n => { const s = window.ultramnViewer.state;
  return s.masks.filter(Boolean).length === n && s.images.filter(Boolean).length === n; }"""
# The timeline's runs: [plane, start, end, class].
SEGMENTS_JS = "els => els.map(e => [e.dataset.plane, +e.dataset.start, +e.dataset.end, e.className])"
# Points of the CSA plot (polyline vertices + lone dots).
PLOT_POINTS_JS = """els => els.reduce((a, e) => a + (e.tagName === "circle" ? 1 : e.getAttribute("points").split(" ").length), 0)"""
# The results list holds exactly one row, analysis `id`.
ONLY_ROW_JS = """id => { const rows = document.querySelectorAll("#results-body tr[data-id]");
  return rows.length === 1 && rows[0].dataset.id === id; }"""

# The tint of the overlay's non-transparent pixels: [min R, max G, min G, max B] over them.
TINT_JS = """() => {
  const canvas = document.getElementById("overlay");
  const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0, greenest = 0;
  for (let p = 0; p < d.length; p += 4) if (d[p + 3] > 0) { n++; if (d[p + 1] > d[p] && d[p + 1] > d[p + 2]) greenest++; }
  return [n, greenest];
}"""

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _canvas(page: Any, canvas_id: str, channel: int, shape: tuple[int, int]) -> np.ndarray:
    raw = base64.b64decode(page.evaluate(READ_CANVAS_JS, [canvas_id, channel]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _show_frame(page: Any, i: int) -> None:
    """Seek to frame ``i`` and wait until both canvases show it."""
    page.evaluate("i => window.ultramnViewer.seek(i)", i)
    page.wait_for_function(SHOWS_FRAME_JS, arg=i)


def _set_range(page: Any, selector: str, value: float) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }", value)


def _drop_file(page: Any, name: str, data: bytes) -> None:
    """Drag-and-drop ``data`` as a file named ``name`` onto the drop zone."""
    page.evaluate(
        """([name, b64]) => {
          const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, {type: "application/octet-stream"}));
          const zone = document.getElementById("drop-zone");
          zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
          zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        [name, base64.b64encode(data).decode()],
    )


def _upload_api(gw: LiveGateway, clip: ViewerClip) -> dict[str, Any]:
    r = httpx.post(
        f"{gw.url}/v1/analyses",
        files={"file": ("clip.npz", clip.npz)},
        data={"wait": "true"},
        headers=gw.headers,
        timeout=90,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "succeeded", body
    return body


def test_serves_page_static_files_and_frame_images(live_gateway: LiveGateway, viewer_clip: ViewerClip) -> None:
    gw = live_gateway
    with httpx.Client(base_url=gw.url, timeout=60) as http:
        r = http.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert '<canvas id="overlay"' in r.text and "/static/app.js" in r.text
        accept = re.search(r'type="file"[^>]*accept="([^"]+)"', r.text, re.S)
        assert accept is not None
        offered = set(accept.group(1).split(","))
        assert set(EXTENSION_FORMATS) <= offered, set(EXTENSION_FORMATS) - offered  # the chooser offers every clip file the gateway decodes
        for name, ctype in (("app.js", "javascript"), ("style.css", "text/css")):
            r = http.get(f"/static/{name}")
            assert r.status_code == 200 and ctype in r.headers["content-type"], (name, r.headers)
        assert http.get("/static/missing.js").status_code == 404

        job = _upload_api(gw, viewer_clip)
        n = viewer_clip.frames.shape[0]
        url = f"/v1/analyses/{job['id']}/frames/{{}}/image.png"
        # The frame image is data: it needs the key like every /v1 route.
        r = http.get(url.format(0))
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        for i in (0, n // 2, n - 1):
            r = http.get(url.format(i), headers=gw.headers)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), viewer_clip.frames[i])
        for bad in (n, -1):
            r = http.get(url.format(bad), headers=gw.headers)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        r = http.get("/v1/analyses/nope/frames/0/image.png", headers=gw.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_viewer_end_to_end(live_gateway: LiveGateway, viewer_clip: ViewerClip, page: Any, tmp_path: Path) -> None:
    gw = live_gateway
    frames = viewer_clip.frames
    n, h, w = frames.shape

    # -- without the key the list request fails: the API's error is shown
    page.goto(gw.url + "/")
    page.wait_for_selector("#error:not([hidden])")
    assert page.get_attribute("#error", "data-code") == "unauthorized"
    assert "X-API-Key" in page.inner_text("#error-message")

    # -- save the key (kept in localStorage): the error goes, the list loads
    page.fill("#api-key", API_KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#error", state="hidden")
    assert page.evaluate("localStorage.getItem('ultramn.apiKey')") == API_KEY

    # -- a bad upload through the file picker: the 415 error body is displayed
    page.set_input_files("#file-input", files=[{"name": "clip.mp4", "mimeType": "video/mp4", "buffer": b"not a video at all"}])
    page.click("#upload-btn")
    page.wait_for_selector("#error:not([hidden])")
    assert page.get_attribute("#error", "data-code") == "unsupported_media_type"
    assert "HTTP 415" in page.inner_text("#error-code")

    # -- the real clip by drag and drop, with a pixel spacing
    _drop_file(page, "clip.npz", viewer_clip.npz)
    assert "clip.npz" in page.inner_text("#file-name")
    page.fill("#spacing", str(SPACING_MM))
    page.click("#upload-btn")
    page.wait_for_selector("#progress[data-state=succeeded]", timeout=90_000)
    assert page.inner_text("#upload-pct") == "100 %"
    # progress and pictures are announced to assistive technology
    expect(page.get_by_role("progressbar", name="Upload")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_role("progressbar", name="Processing")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#process-text")).to_have_attribute("aria-live", "polite")
    expect(page.get_by_role("img", name="Ultrasound frame")).to_have_count(1)
    page.wait_for_selector("#error", state="hidden")
    page.wait_for_selector("#viewer[data-id]")
    job_id = page.get_attribute("#viewer", "data-id")
    assert job_id
    # every frame and mask loaded
    page.wait_for_function(ALL_LOADED_JS, arg=n)

    detail = httpx.get(f"{gw.url}/v1/analyses/{job_id}", headers=gw.headers, timeout=30).json()
    result = detail["result"]
    assert detail["status"] == "succeeded" and result["pixel_spacing_mm"]["dx"] == pytest.approx(SPACING_MM)
    npz = httpx.get(f"{gw.url}/v1/analyses/{job_id}/masks.npz", headers=gw.headers, timeout=30)
    masks = np.load(io.BytesIO(npz.content))["masks"]
    assert masks.shape == (n, h, w)

    # -- canvases vs the API: frame pixels = upload; overlay alpha > 0 exactly where mask == 1
    nonempty = [i for i in range(n) if masks[i].any()]
    if gw.settings.mask_threshold == UNTRAINED_THRESHOLD:
        assert nonempty, "the untrained model's threshold no longer yields any mask pixels"
    for i in range(n):
        _show_frame(page, i)
        np.testing.assert_array_equal(_canvas(page, "frame", 0, (h, w)), frames[i], err_msg=f"frame canvas, frame {i}")
        alpha = _canvas(page, "overlay", 3, (h, w))
        np.testing.assert_array_equal(alpha > 0, masks[i] == 1, err_msg=f"overlay vs mask, frame {i}")
        assert page.input_value("#frame-slider") == str(i)
        assert page.inner_text("#frame-label") == f"{i + 1} / {n}"
        assert page.text_content("#m-frame") == f"{i + 1}/{n} · idx {i}"  # shown upper-case by CSS
    if nonempty:
        # A frame with a nerve: tinted green at the chosen opacity, and its measurements shown.
        k = max(nonempty, key=lambda i: int(masks[i].sum()))
        _set_range(page, "#opacity", 0.8)
        _show_frame(page, k)
        alpha = _canvas(page, "overlay", 3, (h, w))
        assert set(np.unique(alpha[masks[k] == 1]).tolist()) == {204}
        tinted, greenish = page.evaluate(TINT_JS)
        assert tinted == int(masks[k].sum()) == greenish
        f = result["frames"][k]
        assert f["nerve_present"]
        assert page.get_attribute("#m-plane", "data-plane") == f["plane"]
        assert f"{f['csa_mm2']:.2f} mm²" in page.inner_text("#m-csa")
        assert page.inner_text("#m-circularity") == f"{f['circularity']:.2f}"
    else:
        # An untrained model may find no nerve: every overlay above was empty, as the masks are.
        assert not masks.any()

    # -- overlay toggle: off clears the canvas, on draws it again
    page.uncheck("#overlay-toggle")
    assert not _canvas(page, "overlay", 3, (h, w)).any()
    page.check("#overlay-toggle")
    np.testing.assert_array_equal(_canvas(page, "overlay", 3, (h, w)) > 0, masks[page.evaluate("window.ultramnViewer.state.current")] == 1)

    # -- plane timeline: one coloured run per result run, the clip plane, the frame marker
    runs = result["plane_timeline"]
    segs = page.eval_on_selector_all("#timeline .seg", SEGMENTS_JS)
    assert [(p, s, e) for p, s, e, _ in segs] == [(r["plane"], r["start"], r["end"]) for r in runs]
    assert all(f"plane-{p}" in cls for p, _, _, cls in segs)
    assert page.get_attribute("#clip-plane", "data-plane") == result["plane"]
    _show_frame(page, n - 1)
    left = page.eval_on_selector("#timeline-marker", "el => parseFloat(el.style.left)")
    assert left == pytest.approx((n - 0.5) / n * 100, abs=0.01)

    # -- a click on the timeline seeks to the frame under the pointer
    box = page.locator("#timeline").bounding_box()
    k = n // 3
    page.click("#timeline", position={"x": box["width"] * (k + 0.5) / n, "y": box["height"] / 2})
    page.wait_for_function(SHOWS_FRAME_JS, arg=k)

    # -- clip card: the model with the short SHA-256 of its weights (full in the tooltip)
    weights = result["model"]["weights"]
    assert page.inner_text("#clip-model") == f"{result['model']['name']} v{result['model']['version']} · weights {weights[:12]}"
    assert page.get_attribute("#clip-model", "title") == f"checkpoint SHA-256 {weights}"
    # -- clip card: the area is named for the view (a longitudinal band is not a CSA); excursion as in summary.csv
    band = result["plane"] in ("LW", "LF")
    assert page.inner_text("#m-csa-label") == ("Area" if band else "CSA")
    assert page.inner_text("#clip-csa-label") == ("Area median" if band else "CSA median")
    exc = result["excursion"]
    if exc is not None and exc["max_from_first"] is not None:
        text = page.inner_text("#clip-excursion")
        assert text.startswith(f"{exc['max_from_first']:.2f} {exc['unit']} from start")
        relative = exc.get("relative_to_tissue")  # transverse clips: the excursion against the tissue too
        assert (relative is not None) == (not band)
        assert (f"{relative['max_from_first']:.2f} {exc['unit']} against the tissue" in text) if relative else ("tissue" not in text)

    # -- CSA plot: in mm² (the spacing is known), one point per frame the result says has a nerve
    assert page.get_attribute("#csa-plot", "data-unit") == "mm²"
    n_points = page.eval_on_selector_all("#csa-plot polyline, #csa-plot circle", PLOT_POINTS_JS)
    assert n_points == sum(f["nerve_present"] for f in result["frames"])

    # -- play advances the frames, pause stops
    _show_frame(page, 0)
    page.click("#play")
    page.wait_for_function("() => window.ultramnViewer.state.current >= 2")
    page.click("#play")
    assert not page.evaluate("window.ultramnViewer.state.playing")

    # -- downloads: the result JSON and masks.npz
    with page.expect_download() as dl:
        page.click("#dl-json")
    saved = json.loads(Path(dl.value.path()).read_text())
    assert saved["id"] == job_id and saved["result"]["plane_timeline"] == runs
    with page.expect_download() as dl:
        page.click("#dl-npz")
    np.testing.assert_array_equal(np.load(dl.value.path())["masks"], masks)
    with page.expect_download() as dl:
        page.click("#dl-csv")
    assert dl.value.suggested_filename == f"{job_id}-frames.csv"
    table = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert [int(r["csa_px"]) for r in table] == [f["csa_px"] for f in saved["result"]["frames"]]
    with page.expect_download() as dl:
        page.click("#dl-mp4")
    assert dl.value.suggested_filename == f"{job_id}-overlay.mp4"
    with av.open(dl.value.path()) as video:
        assert sum(1 for _ in video.decode(video=0)) == masks.shape[0]  # the whole clip, overlaid
    expect(page.locator("#dl-mp4")).to_be_enabled()

    # -- an address pasted into the open tab opens that analysis, forgetting the previous one:
    #    an id with no result leaves no masks to download (they were the old analysis's)
    page.evaluate("id => { location.hash = '#/analyses/' + id; }", "0" * 32)
    page.wait_for_selector("#error:not([hidden])")
    assert page.evaluate("window.ultramnViewer.state.analysis") is None
    assert all(page.is_disabled(b) for b in ("#dl-npz", "#dl-csv", "#dl-mp4"))
    # ... and nothing of the previous analysis stays on screen under the new address
    expect(page.locator("#viewer")).to_be_hidden()
    expect(page.locator("#empty-title")).to_have_text(f"Analysis {'0' * 8} could not be opened")
    page.evaluate("id => { location.hash = '#/analyses/' + id; }", job_id)
    page.wait_for_function("id => window.ultramnViewer.state.analysis?.id === id", arg=job_id)
    assert not page.is_disabled("#dl-npz") and page.is_hidden("#error")

    # -- results list: filters find it; cursor pagination reaches it behind a newer analysis
    page.select_option("#filter-status", "succeeded")
    page.select_option("#filter-plane", result["plane"])
    page.wait_for_selector(f"#results-body tr[data-id='{job_id}']")
    newer = _upload_api(gw, viewer_clip)
    page.select_option("#filter-plane", "")
    page.fill("#page-size", "1")
    page.press("#page-size", "Enter")
    page.wait_for_function(ONLY_ROW_JS, arg=newer["id"])
    # A refresh that returns the same rows keeps the row nodes, so a click that lands while
    # one is in flight (the input's blur fires "change" again) still opens the analysis.
    page.evaluate("() => { window._row = document.querySelector('#results-body tr[data-id]'); }")
    page.evaluate("() => window.ultramnViewer.refreshList()")
    assert page.evaluate("() => document.querySelector('#results-body tr[data-id]') === window._row")
    page.click(f"#results-body tr[data-id='{newer['id']}']")  # open another analysis
    page.wait_for_selector(f"#viewer[data-id='{newer['id']}']")
    page.click("#next-page")
    page.wait_for_selector(f"#results-body tr[data-id='{job_id}']")
    assert page.inner_text("#page-label") == "page 2"
    page.click(f"#results-body tr[data-id='{job_id}']")  # and back to the first one
    page.wait_for_selector(f"#viewer[data-id='{job_id}']")
    page.wait_for_function(ALL_LOADED_JS, arg=n)

    # -- long clips keep only a window of frames in memory, and it follows the player
    page.evaluate("id => { window.ultramnViewer.state.preload = 6; return window.ultramnViewer.openAnalysis(id); }", job_id)
    page.wait_for_function("() => window.ultramnViewer.state.images.filter(Boolean).length === 6")
    for i in (4, n - 2):
        _show_frame(page, i)
        np.testing.assert_array_equal(_canvas(page, "frame", 0, (h, w)), frames[i])
        np.testing.assert_array_equal(_canvas(page, "overlay", 3, (h, w)) > 0, masks[i] == 1)
        assert page.evaluate("window.ultramnViewer.state.images.filter(Boolean).length") <= 6

    # -- the address names the open analysis: a reload opens it again (the key is remembered)
    assert page.url.endswith(f"#/analyses/{job_id}")
    page.reload()
    page.wait_for_selector(f"#viewer[data-id='{job_id}']")
    page.wait_for_function(ALL_LOADED_JS, arg=n)
    assert page.input_value("#api-key") == API_KEY

    if os.environ.get("ULTRAMN_WRITE_SCREENSHOT") == "1":
        page.fill("#page-size", "12")
        page.press("#page-size", "Enter")
        page.select_option("#filter-status", "")
        _set_range(page, "#opacity", 0.5)
        _show_frame(page, max(nonempty, key=lambda i: int(masks[i].sum())) if nonempty else n // 2)
        page.evaluate("document.activeElement.blur()")
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOT), full_page=False)


# ---------------------------------------------------------------- fixes found by the viewer audit


@pytest.fixture(scope="module")
def two_analyses(live_gateway: LiveGateway, viewer_clip: ViewerClip) -> tuple[str, str]:
    """Two succeeded analyses (older, newer) of the module's clip."""
    return _upload_api(live_gateway, viewer_clip)["id"], _upload_api(live_gateway, viewer_clip)["id"]


@pytest.fixture(scope="module")
def dead_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """A gateway whose Triton is unreachable: uploads are accepted and stay queued."""
    settings = make_settings(tmp_path_factory.mktemp("viewer-dead-gateway"), "127.0.0.1:1", api_key=API_KEY)
    with serve_in_thread(create_app(settings), name="viewer-dead-gateway") as url:
        yield LiveGateway(url, settings)


def _with_key(page: Any) -> Any:
    """The page with the API key already saved (as a returning user has it)."""
    page.add_init_script(f"localStorage.setItem('ultramn.apiKey', {json.dumps(API_KEY)})")
    return page


def _npz(frames: np.ndarray, fps: float) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames, fps=np.float32(fps))
    return buf.getvalue()


# Holds back every later XMLHttpRequest (the page's uploads) until window.releaseUploads().
GATE_UPLOADS_JS = """() => {
  const send = XMLHttpRequest.prototype.send;
  const gate = new Promise((resolve) => { window.releaseUploads = resolve; });
  XMLHttpRequest.prototype.send = function (body) { gate.then(() => send.call(this, body)); };
}"""


def test_file_input_is_reachable_and_operable_by_keyboard(live_gateway: LiveGateway, page: Any) -> None:
    page.goto(live_gateway.url + "/")
    page.focus("#spacing")
    page.keyboard.press("Shift+Tab")  # the control before the spacing field is the file chooser
    assert page.evaluate("document.activeElement.id") == "file-input"
    # Space on a focused file input is what opens the browser's file dialog: the input gets a
    # click. (Counting the click, not waiting for the native dialog, which headless Chromium
    # does not always raise twice in one browser process.)
    page.evaluate("window.inputClicks = 0; document.getElementById('file-input').addEventListener('click', () => window.inputClicks++)")
    page.keyboard.press("Space")
    assert page.evaluate("window.inputClicks") == 1
    page.set_input_files("#file-input", files=[{"name": "k.npz", "mimeType": "application/octet-stream", "buffer": b"x" * 2048}])
    expect(page.locator("#file-name")).to_contain_text("k.npz")
    expect(page.locator("#upload-btn")).to_be_enabled()


def test_late_answer_for_a_previous_open_does_not_overwrite_the_open_analysis(
    live_gateway: LiveGateway, two_analyses: tuple[str, str], page: Any
) -> None:
    a, b = two_analyses
    _with_key(page).goto(live_gateway.url + "/")
    # A's first answer is held back until B is on screen.
    page.evaluate(
        """a => { const real = window.fetch;
          const gate = new Promise((resolve) => { window.releaseA = resolve; });
          window.aAnswered = new Promise((resolve) => { window.fetch = (url, opts) =>
            String(url).includes(a + "?include_frames=false")
              ? gate.then(() => real(url, opts)).then((r) => { resolve(); return r; })
              : real(url, opts); }); }""",
        a,
    )
    page.evaluate("a => { window.ultramnViewer.openAnalysis(a); }", a)
    page.evaluate("b => { window.ultramnViewer.openAnalysis(b); }", b)
    page.wait_for_selector(f"#viewer[data-id='{b}']")
    page.evaluate("async () => { window.releaseA(); await window.aAnswered; await new Promise((r) => setTimeout(r, 300)); }")
    assert page.inner_text("#title") == f"Analysis {b[:8]}"
    expect(page.locator("#player-area")).to_be_visible()
    assert page.evaluate("window.ultramnViewer.state.analysis.id") == b


def test_key_saved_after_a_401_opens_the_linked_analysis_and_bad_keys_are_refused(
    live_gateway: LiveGateway, two_analyses: tuple[str, str], page: Any
) -> None:
    a, _ = two_analyses
    page.goto(f"{live_gateway.url}/#/analyses/{a}")  # a shared link, no key saved yet
    expect(page.locator("#error")).to_have_attribute("data-code", "unauthorized")
    expect(page.locator("#viewer")).to_be_hidden()
    # a key no HTTP header can carry is refused at the field, not reported as a network failure
    page.fill("#api-key", "clé-ключ")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-msg")).to_be_visible()
    expect(page.locator("#key-msg")).to_contain_text("ASCII")
    assert page.get_attribute("#api-key", "aria-invalid") == "true"
    assert page.evaluate("localStorage.getItem('ultramn.apiKey')") is None
    page.fill("#api-key", API_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-msg")).to_be_hidden()
    page.wait_for_selector(f"#viewer[data-id='{a}']")
    expect(page.locator("#error")).to_be_hidden()


def test_upload_keeps_analyse_disabled_and_does_not_take_over_another_open_analysis(
    live_gateway: LiveGateway, viewer_clip: ViewerClip, two_analyses: tuple[str, str], page: Any
) -> None:
    a, _ = two_analyses
    _with_key(page).goto(live_gateway.url + "/")
    page.evaluate(GATE_UPLOADS_JS)
    page.set_input_files("#file-input", files=[{"name": "c.npz", "mimeType": "application/octet-stream", "buffer": viewer_clip.npz}])
    page.click("#upload-btn")
    expect(page.locator("#progress")).to_have_attribute("data-state", "uploading")
    # choosing another file while one is processed does not offer a second "Analyse"
    page.set_input_files("#file-input", files=[{"name": "d.npz", "mimeType": "application/octet-stream", "buffer": viewer_clip.npz}])
    expect(page.locator("#file-name")).to_contain_text("d.npz")
    expect(page.locator("#upload-btn")).to_be_disabled()
    # the user opens another analysis while the upload runs: it stays on screen
    page.evaluate("a => window.ultramnViewer.openAnalysis(a)", a)
    page.wait_for_selector(f"#viewer[data-id='{a}']")
    page.evaluate("() => window.releaseUploads()")
    page.wait_for_selector("#progress[data-state=succeeded]", timeout=90_000)
    assert page.evaluate("window.ultramnViewer.state.openId") == a
    expect(page.locator("#results-body tr[data-id]").first).not_to_have_attribute("data-id", a)  # the new one is listed
    assert page.get_attribute("#viewer", "data-id") == a and page.url.endswith(f"#/analyses/{a}")
    expect(page.locator("#upload-btn")).to_be_enabled()  # d.npz can go now


def test_short_clip_plot_has_whole_frame_ticks_and_slow_clip_keeps_its_fps(live_gateway: LiveGateway, page: Any) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 80), dtype=np.uint8)
    r = httpx.post(
        f"{live_gateway.url}/v1/analyses",
        files={"file": ("slow.npz", _npz(frames, 0.4))},
        data={"wait": "true"},
        headers=live_gateway.headers,
        timeout=90,
    )
    assert r.status_code == 200, r.text
    job = r.json()["id"]
    _with_key(page).goto(f"{live_gateway.url}/#/analyses/{job}")
    page.wait_for_selector(f"#viewer[data-id='{job}']")
    ticks = page.eval_on_selector_all("#csa-plot text.tick[text-anchor=middle]", "els => els.map((e) => e.textContent)")
    assert ticks == ["0", "1", "2"]
    assert page.input_value("#fps") == "0.4"
    assert "0.4 fps" in page.inner_text("#clip-frames")


def test_queued_upload_says_it_waits_for_triton_and_its_row_stays_selected(
    dead_gateway: LiveGateway, viewer_clip: ViewerClip, page: Any
) -> None:
    _with_key(page).goto(dead_gateway.url + "/")
    page.set_input_files("#file-input", files=[{"name": "c.npz", "mimeType": "application/octet-stream", "buffer": viewer_clip.npz}])
    page.click("#upload-btn")
    expect(page.locator("#process-text")).to_have_text("queued — waiting for the inference server (triton_unavailable)", timeout=15_000)
    row = page.locator("#results-body tr[data-id]").first  # the only analysis here
    row.click()
    expect(page.locator("#job-status")).to_contain_text("waiting for the inference server")
    page.evaluate("() => window.ultramnViewer.refreshList()")
    expect(row).to_have_class(re.compile(r"\bselected\b"))


def test_unequal_pixel_spacing_shows_both_values(live_gateway: LiveGateway, tmp_path: Path, page: Any) -> None:
    frames = np.random.default_rng(1).integers(0, 255, (2, 64, 80), dtype=np.uint8)
    dcm = write_dicom_cine(tmp_path / "aniso.dcm", frames, region_cm=(0.008, 0.012))  # dx 0.08 mm, dy 0.12 mm
    r = httpx.post(
        f"{live_gateway.url}/v1/analyses",
        files={"file": ("aniso.dcm", dcm.read_bytes())},
        data={"wait": "true"},
        headers=live_gateway.headers,
        timeout=90,
    )
    assert r.status_code == 200, r.text
    sp = r.json()["result"]["pixel_spacing_mm"]
    job = r.json()["id"]
    _with_key(page).goto(f"{live_gateway.url}/#/analyses/{job}")
    expect(page.locator("#clip-spacing")).to_contain_text(f"{sp['dx']:.4f} × {sp['dy']:.4f} mm/px")


# Every answer about analysis `window.failId` says it failed (a job failure the page cannot cause).
FAIL_UPLOADED_JS = """() => { const real = window.fetch;
  window.fetch = async (url, opts) => {
    const r = await real(url, opts);
    const m = String(url).match(/\\/v1\\/analyses\\/([0-9a-f]+)(\\?include_frames=false)?$/);
    if (!m || !r.ok) return r;
    const body = await r.json();
    if (body.status === "succeeded" && !window.keepId) window.keepId = body.id;  // none is open yet: the upload's
    if (body.id === window.keepId) Object.assign(body, {status: "failed", result: null, error: {code: "analysis_failed", message: "boom"}});
    return new Response(JSON.stringify(body), {status: 200, headers: {"Content-Type": "application/json"}});
  }; }"""


def test_failed_upload_keeps_its_error_banner(live_gateway: LiveGateway, viewer_clip: ViewerClip, page: Any) -> None:
    _with_key(page).goto(live_gateway.url + "/")
    page.evaluate(FAIL_UPLOADED_JS)
    page.set_input_files("#file-input", files=[{"name": "c.npz", "mimeType": "application/octet-stream", "buffer": viewer_clip.npz}])
    page.click("#upload-btn")
    page.wait_for_selector("#progress[data-state=failed]", timeout=90_000)
    expect(page.locator("#job-status")).to_contain_text("analysis_failed: boom")  # the failed job is open ...
    expect(page.locator("#error")).to_have_attribute("data-code", "analysis_failed")  # ... and the banner says why
    expect(page.locator("#error")).to_be_visible()


def test_longitudinal_clip_names_its_area_a_band_not_a_csa(live_gateway: LiveGateway, page: Any) -> None:
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    clip = generate_clip(ClipSpec(SynthConfig(height=256, width=256, frames=12, seed=11), 0, "LW", "R"))
    r = httpx.post(
        f"{live_gateway.url}/v1/analyses",
        files={"file": ("long.npz", _npz(np.ascontiguousarray(clip.arrays.frames, dtype=np.uint8), 20.0))},
        data={"wait": "true", "pixel_spacing_mm": str(clip.acquisition.pixel_spacing_mm)},
        headers=live_gateway.headers,
        timeout=90,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"]["plane"] == "LW", body["result"]["plane"]  # the shipped model reads the view
    _with_key(page).goto(f"{live_gateway.url}/#/analyses/{body['id']}")
    page.wait_for_selector(f"#viewer[data-id='{body['id']}']")
    expect(page.locator("#csa-title")).to_have_text("Nerve band area over time (longitudinal view: not a CSA)")
    assert page.get_attribute("#csa-plot", "aria-label") == "Nerve band area over time"
    assert [page.inner_text(f"#{i}") for i in ("m-csa-label", "clip-csa-label", "clip-csa-range-label")] == [
        "Area",
        "Area median",
        "Area range",
    ]


def test_follow_up_fields_are_sent_and_the_patients_visits_are_shown(live_gateway: LiveGateway, page: Any) -> None:
    patient = "P-viewer-1"
    earlier = httpx.post(  # an earlier visit of the same patient, by the API
        f"{live_gateway.url}/v1/analyses",
        files={"file": ("tw.npz", (SAMPLES / "sample_TW.npz").read_bytes())},
        data={"wait": "true", "patient": patient, "side": "R", "visit": "2026-01-10"},
        headers=live_gateway.headers,
        timeout=90,
    ).json()
    _with_key(page).goto(live_gateway.url + "/")
    page.set_input_files("#file-input", str(SAMPLES / "sample_TW.npz"))
    page.click("#follow-up-fields summary")
    page.fill("#patient", patient)
    page.select_option("#side", "R")
    page.fill("#visit", "2026-02-20")
    page.click("#upload-btn")
    page.wait_for_selector("#progress[data-state=succeeded]", timeout=90_000)
    page.wait_for_function("() => window.ultramnViewer.state.analysis !== null")
    detail = page.evaluate("window.ultramnViewer.state.analysis")
    assert (detail["patient"], detail["side"], detail["visit"]) == (patient, "R", "2026-02-20")  # the fields reached the gateway
    expect(page.locator("#clip-patient")).to_have_text(f"{patient} · R · 2026-02-20")
    expect(page.locator("#follow-up")).to_be_visible()
    rows = page.locator("#follow-up-body tr")
    expect(rows).to_have_count(2)
    csa = earlier["result"]["csa"]["median"]
    assert rows.nth(0).locator("td").all_inner_texts()[:3] == ["2026-01-10", "R", f"{csa:.2f}"]
    second = rows.nth(1).locator("td").all_inner_texts()
    assert second[:2] == ["2026-02-20", "R"] and second[2] == f"{csa:.2f} (0.00)"  # the same clip again: no change
    assert "selected" in (rows.nth(1).get_attribute("class") or "")  # the open analysis's visit
    # the list filters by patient
    page.fill("#filter-patient", patient)
    page.dispatch_event("#filter-patient", "change")
    expect(page.locator("#results-body tr[data-id]")).to_have_count(2)
    # an analysis without a patient has no follow-up card
    other = httpx.post(
        f"{live_gateway.url}/v1/analyses",
        files={"file": ("tw.npz", (SAMPLES / "sample_TW.npz").read_bytes())},
        data={"wait": "true"},
        headers=live_gateway.headers,
        timeout=90,
    ).json()
    page.evaluate("id => { location.hash = '#/analyses/' + id; }", other["id"])
    page.wait_for_function("id => window.ultramnViewer.state.analysis?.id === id", arg=other["id"])
    expect(page.locator("#follow-up")).to_be_hidden()
    expect(page.locator("#clip-patient")).to_have_text("—")


def test_live_mode_streams_a_video_file_and_draws_each_frame_with_its_result(live_gateway: LiveGateway, page: Any, tmp_path: Path) -> None:
    from tests.data.test_decoders import write_video
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    clip = generate_clip(ClipSpec(SynthConfig(height=256, width=256, frames=30, seed=7), 0, "TW", "R"))
    video = write_video(tmp_path / "scan.webm", np.ascontiguousarray(clip.arrays.frames, dtype=np.uint8), "libvpx-vp9", fps=10)
    _with_key(page).goto(live_gateway.url + "/")
    page.select_option("#live-source", "file")
    expect(page.locator("#live-file-row")).to_be_visible()
    page.set_input_files("#live-file", str(video))
    page.select_option("#live-fps", "10")
    page.click("#follow-up-fields summary")
    page.fill("#patient", "P-live-viewer")
    page.check("#live-record")
    page.click("#live-start")
    expect(page.locator("#live-area")).to_be_visible()
    expect(page.locator("#empty-state")).to_be_hidden()
    # the 3 s file ends, the page sends "end", the server reports every frame and closes
    expect(page.locator("#live-status")).to_contain_text("ended", timeout=60_000)
    counts = "{next: l.next, results: l.results, skipped: l.skipped}"
    live = page.evaluate(f"(() => {{ const l = window.ultramnViewer.live(); return {counts}; }})()")
    assert live["next"] >= 10 and live["results"] + live["skipped"] == live["next"], live  # every frame sent came back once
    assert live["results"] >= 5
    assert page.inner_text("#live-plane").split()[0] == "TW"  # the shipped model reads the view of the streamed frames
    assert page.inner_text("#live-csa").endswith("px²")  # no pixel spacing given: pixels
    size = page.evaluate("(() => { const c = document.getElementById('live-frame'); return [c.width, c.height]; })()")
    assert size == [256, 256]  # the frame drawn is the video's, at its own size
    assert page.is_enabled("#live-start")  # a new stream may start; Stop closes the live view
    # recorded: the scan is a stored analysis of the patient, and the link opens it
    stored = page.evaluate("window.ultramnViewer.live().stored")
    assert stored and page.get_attribute("#live-stored", "href") == f"#/analyses/{stored}"
    page.click("#live-stored")
    page.wait_for_function("id => window.ultramnViewer.state.analysis?.id === id", arg=stored, timeout=90_000)
    expect(page.locator("#live-area")).to_be_hidden()  # opening an analysis leaves live mode
    expect(page.locator("#clip-patient")).to_contain_text("P-live-viewer")
    assert page.evaluate("window.ultramnViewer.state.analysis.result.n_frames") == live["next"]
