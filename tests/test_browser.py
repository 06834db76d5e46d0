"""Real-browser test of the scribble widget: JupyterLab in headless Chromium (playwright) opens a copy of
nbs/09_widget.ipynb, runs it, drags a scribble along a road of the bundled tile, presses "Segment", checks the overlay
appears along that road and not across the tile, presses "Undo", checks the overlay goes away, reloads the page and checks the canvas is redrawn,
and saves screenshots under runs/browser/.

The widget's model is the deterministic prompt-dilation baseline (ROADGIE_WIDGET_MODEL=dilation, set below), so the
test checks the widget and its plumbing, not the network's weights. Needs /usr/bin/chromium
(`apt-get install chromium fonts-dejavu-core`); skipped without it unless CI=true.
"""
import base64, io, json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

from _chromium import CHROMIUM, local_page

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[1]
OVERLAY_RGB = (255, 0, 200)  # roadgie.widget.OVERLAY_RGB


def _need(cond, msg):
    if not cond:
        if os.environ.get("CI", "").lower() == "true": pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _api(base, token, path, method="GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on a free port over a per-run copy of nbs/09_widget.ipynb; yields (base url, token)."
    _need(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium fonts-dejavu-core)")
    _need(shutil.which("jupyter") is not None, "jupyter not on PATH")
    root = tmp_path / "nbs"; root.mkdir()
    shutil.copy(REPO / "nbs" / "09_widget.ipynb", root / "09_widget.ipynb")
    shutil.copy(REPO / "settings.ini", tmp_path / "settings.ini")  # the notebook's last cell runs nbdev_export (into tmp_path)
    env = dict(os.environ, HOME=str(tmp_path / "home"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), IPYTHONDIR=str(tmp_path / "ipy"),
               ROADGIE_WIDGET_MODEL="dilation", MPLBACKEND="Agg")
    us = tmp_path / "cfg" / "lab" / "user-settings" / "@jupyterlab"
    (us / "notebook-extension").mkdir(parents=True); (us / "apputils-extension").mkdir(parents=True)
    (us / "notebook-extension" / "tracker.jupyterlab-settings").write_text(  # no windowing: keep every output in the DOM
        '{"autoStartDefaultKernel": true, "windowingMode": "none"}')
    (us / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--allow-root",
                             "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None: raise RuntimeError(f"jupyter lab exited: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
            try: _api(base, token, "/api/status"); break
            except OSError: time.sleep(0.5)
        else: raise RuntimeError("jupyter lab did not start within 60 s")
        yield base, token
    finally:
        try:
            for k in _api(base, token, "/api/kernels") or []: _api(base, token, f"/api/kernels/{k['id']}", "DELETE")
        except Exception: pass
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
        try: proc.wait(20)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(10)
        log.close()


def _road_polyline():
    "About 180 px of road (N,2) (x, y) on the widget's default tile, from the tile's graph JSON; and the tile's (H, W)."
    from roadgie.widget import default_tile
    from roadgie.synthetic import graph_from_json
    from roadgie.data import load_image
    tile = default_tile()
    gpath = tile.parent.parent / "graphs" / f"{tile.stem}.json"
    assert gpath.exists(), f"graph JSON for the default tile not found: {gpath}"
    H, W = load_image(tile).shape[:2]
    best = None
    for _, _, e in graph_from_json(gpath).edges(data=True):
        pts = np.asarray(e["pts"], float)
        if len(pts) < 2: continue
        pts = np.concatenate([a + np.linspace(0, 1, max(2, int(np.hypot(*(b - a)) // 4) + 1))[:-1, None] * (b - a)
                              for a, b in zip(pts[:-1], pts[1:])] + [pts[-1:]])  # resampled every ~4 px
        s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
        if s[-1] < 180: continue
        mid = pts[(s >= s[-1] / 2 - 90) & (s <= s[-1] / 2 + 90)]
        inside = ((mid > 30) & (mid < np.array([W, H]) - 30)).all()
        if inside and (best is None or s[-1] > best[0]): best = (s[-1], mid)
    assert best is not None, "no road on the default tile with 180 px of it at least 30 px from the border"
    return best[1], (H, W)


def _canvas_pixels(page, handle):
    "The widget canvas as an (H,W,4) uint8 array (ipycanvas 0.14 draws all layers into one <canvas>)."
    url = page.evaluate("c => c.toDataURL('image/png')", handle)
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def _overlay_pixels(now, before):
    "Pixels where the magenta prediction overlay shows: changed since `before`, red and blue well above green."
    d = np.abs(now[..., :3].astype(int) - before[..., :3].astype(int)).sum(-1)
    r, g, b = (now[..., i].astype(int) for i in range(3))
    return (d > 30) & (r - g > 40) & (b - g > 40)


def _dist_to_polyline(shape, pts):
    from scipy import ndimage
    from skimage.draw import line
    m = np.ones(shape, bool)
    p = np.rint(pts).astype(int)
    for (x0, y0), (x1, y1) in zip(p[:-1], p[1:]):
        rr, cc = line(y0, x0, y1, x1); m[rr, cc] = False
    return ndimage.distance_transform_edt(m)


def test_widget_in_jupyterlab(lab, tmp_path):
    base, token = lab
    road, (H, W) = _road_polyline()
    dist = _dist_to_polyline((H, W), road)
    out = REPO / "runs" / "browser"; out.mkdir(parents=True, exist_ok=True)
    with local_page(tmp_path / "chrome", 1400, 1300) as (page, errors):
        try:
            page.goto(f"{base}/lab/tree/09_widget.ipynb?reset&token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90_000)  # kernel ready
            for attempt in range(3):  # Run > Run All Cells, until a cell starts running
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                try:
                    page.wait_for_function("""() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                                              .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""", timeout=20_000)
                    break
                except Exception:
                    if attempt == 2: raise
            # the widget's canvas: the one whose drawing buffer is the tile's size, once it has pixels
            sel = f"canvas[width='{W}'][height='{H}']"
            page.wait_for_selector(f".jp-OutputArea {sel}", state="attached", timeout=180_000)
            canvas = page.locator(f".jp-OutputArea {sel}").first
            page.wait_for_function("""c => { const x = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                                      for (let i = 3; i < x.length; i += 4000) if (x[i] > 0) return true; return false; }""",
                                   arg=canvas.element_handle(), timeout=120_000)
            # let the notebook finish running (its test cells follow the widget) before drawing
            page.wait_for_function("""() => { const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                                      return ps.length > 0 && ps.every(p => /\\[\\d+\\]/.test(p.textContent)); }""",
                                   timeout=240_000)
            canvas.scroll_into_view_if_needed()
            handle = canvas.element_handle()
            before = _canvas_pixels(page, handle)
            assert before[..., 3].mean() > 200, "the tile was not drawn on the canvas"
            box = canvas.bounding_box()
            sx, sy = box["width"] / W, box["height"] / H
            to_page = lambda x, y: (box["x"] + (x + 0.5) * sx, box["y"] + (y + 0.5) * sy)
            page.mouse.move(*to_page(*road[0])); page.mouse.down()
            for x, y in road[1:]: page.mouse.move(*to_page(x, y), steps=2)
            page.mouse.up()
            page.wait_for_function("s => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes(s))",
                                   arg="1 prompts", timeout=60_000)
            page.get_by_role("button", name="Segment", exact=True).click()
            time.sleep(2.0)
            after = _canvas_pixels(page, handle)
            canvas.locator("xpath=..").screenshot(path=str(out / "widget_segment.png"))  # the whole widget
            ov = _overlay_pixels(after, before)
            near, far = (ov & (dist <= 12)).sum(), (ov & (dist > 25)).sum()
            length = np.hypot(*np.diff(road, axis=0).T).sum()
            assert near > length, f"too few overlay pixels along the road: {near} for a {length:.0f} px stroke"
            assert far <= 0.02 * near, f"overlay spreads across the tile: {far} pixels more than 25 px from the road"
            page.get_by_role("button", name="Undo", exact=True).click()
            page.wait_for_function("s => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes(s))",
                                   arg="0 prompts", timeout=60_000)
            time.sleep(1.0)
            undone = _canvas_pixels(page, handle)
            canvas.locator("xpath=..").screenshot(path=str(out / "widget_undo.png"))
            assert _overlay_pixels(undone, before).sum() <= 0.02 * near, "the overlay did not go away after Undo"
            diff = np.abs(undone[..., :3].astype(int) - before[..., :3].astype(int)).sum(-1)
            assert (diff > 30).mean() < 0.001, "the canvas did not return to its state before the scribble"
            # a page reload: the widget's canvas must be redrawn from the kernel (on_client_ready)
            page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()  # save, so the outputs survive the reload
            page.locator(".lm-Menu-itemLabel", has_text="Save Notebook").first.click()
            page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
            page.reload()
            page.wait_for_selector(f".jp-OutputArea {sel}", state="attached", timeout=120_000)
            canvas = page.locator(f".jp-OutputArea {sel}").first
            page.wait_for_function("""c => { const x = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                                      let n = 0; for (let i = 3; i < x.length; i += 400) n += x[i] > 0; return n > x.length / 800; }""",
                                   arg=canvas.element_handle(), timeout=120_000)
            time.sleep(1.0)
            reloaded = _canvas_pixels(page, canvas.element_handle())
            canvas.locator("xpath=..").screenshot(path=str(out / "widget_reload.png"))
            rdiff = np.abs(reloaded[..., :3].astype(int) - before[..., :3].astype(int)).sum(-1)
            assert (rdiff > 30).mean() < 0.001, "the canvas was not redrawn as it was after a page reload"
            (out / "widget_result.json").write_text(json.dumps(dict(stroke_px=float(length), overlay_near=int(near),
                                                                    overlay_far=int(far), page_errors=errors)))
        except Exception:
            try: page.screenshot(path=str(out / "widget_failure.png"), full_page=True)
            except Exception: pass
            raise
    assert not errors, f"page errors: {errors}"
