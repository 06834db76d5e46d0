"""Real-browser test of the scribble widget: JupyterLab in headless Chromium (playwright) opens a copy of
nbs/13_widget.ipynb, runs it, drags a scribble along a road of the bundled tile, presses "Segment", checks the overlay
appears along that road and not across the tile, presses "Undo", checks the overlay goes away, reloads the page and checks the canvas is redrawn,
and saves screenshots under runs/browser/. A second test opens a 4000x4000 georeferenced scene in the widget, zooms in
(wheel and "+"), pans (the Pan tool), draws strokes along two roads, deletes one of them with the "Pick road" tool, saves
the session, reopens it and finds the same mask on the canvas and in the saved GeoTIFF.

The widget's model is the deterministic prompt-dilation baseline (ROADGIE_WIDGET_MODEL=dilation, set below), so the
test checks the widget and its plumbing, not the network's weights. Needs /usr/bin/chromium
(`apt-get install chromium fonts-dejavu-core`); skipped without it unless CI=true.
"""
import base64, io, json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from contextlib import contextmanager
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


@contextmanager
def _jupyterlab(tmp_path, root):
    "A JupyterLab server on a free port over the notebooks in `root` (a per-run copy); yields (base url, token)."
    _need(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium fonts-dejavu-core)")
    _need(shutil.which("jupyter") is not None, "jupyter not on PATH")
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


@pytest.fixture
def lab(tmp_path):
    "JupyterLab over a per-run copy of nbs/13_widget.ipynb; yields (base url, token)."
    root = tmp_path / "nbs"; root.mkdir()
    shutil.copy(REPO / "nbs" / "13_widget.ipynb", root / "13_widget.ipynb")
    shutil.copy(REPO / "settings.ini", tmp_path / "settings.ini")  # the notebook's last cell runs nbdev_export (into tmp_path)
    with _jupyterlab(tmp_path, root) as server: yield server


def _run_all(page, base, token, name):
    "Open notebook `name` and start Run > Run All Cells (retried until a cell runs)."
    page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90_000)  # kernel ready
    for attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function("""() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                                      .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""", timeout=20_000)
            return
        except Exception:
            if attempt == 2: raise


def _wait_drawn(page, canvas, timeout=180_000):
    page.wait_for_function("""c => { const x = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                              for (let i = 3; i < x.length; i += 4000) if (x[i] > 0) return true; return false; }""",
                           arg=canvas.element_handle(), timeout=timeout)


def _wait_idle(page, timeout=240_000):
    "Until every code cell has run (no [*] prompt left)."
    page.wait_for_function("""() => { const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                              return ps.length > 0 && ps.every(p => /\\[\\d+\\]/.test(p.textContent)); }""", timeout=timeout)


def _wait_status(page, text, timeout=60_000):
    "Until the widget's status line (or any HTML widget) contains `text`."
    page.wait_for_function("s => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes(s))",
                           arg=text, timeout=timeout)


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
            _run_all(page, base, token, "13_widget.ipynb")
            # the widget's canvas: the one whose drawing buffer is the tile's size, once it has pixels
            sel = f"canvas[width='{W}'][height='{H}']"
            page.wait_for_selector(f".jp-OutputArea {sel}", state="attached", timeout=180_000)
            canvas = page.locator(f".jp-OutputArea {sel}").first
            _wait_drawn(page, canvas, 120_000)
            _wait_idle(page)  # let the notebook finish running (its test cells follow the widget) before drawing
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
            _wait_status(page, "1 prompts")
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
            _wait_status(page, "0 prompts")
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


SCENE_NB = {"cells": [{"cell_type": "code", "execution_count": None, "id": "scene0", "metadata": {}, "outputs": [],
                       "source": ["from roadgie.widget import ScribbleWidget\n", "w = ScribbleWidget('scene.tif')\n", "w"]}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def _scene_roads(truth, box, n=2, length=110, margin=60):
    "`n` pieces of road centreline (N,2) (x, y), about `length` px each, inside box (x0, y0, x1, y1), far apart."
    from roadgie.graph import mask_to_graph
    x0, y0, x1, y1 = (int(v) for v in box)
    pieces = []
    for _, _, e in mask_to_graph(truth[y0:y1, x0:x1]).edges(data=True):
        pts = np.asarray(e["pts"], float) + (x0, y0)   # (x, y) in the scene
        s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
        if s[-1] < length + 20: continue
        mid = pts[(s >= s[-1] / 2 - length / 2) & (s <= s[-1] / 2 + length / 2)]
        if ((mid > (x0 + margin, y0 + margin)) & (mid < (x1 - margin, y1 - margin))).all(): pieces.append(mid)
    out = []
    for m in sorted(pieces, key=len, reverse=True):
        if all(np.hypot(*(m.mean(0) - o.mean(0))) > 150 for o in out): out.append(m)
    assert len(out) >= n, f"only {len(out)} separate roads of {length} px in the view {box}"
    return out[:n]


def _drag(page, to_page, pts, steps=2):
    page.mouse.move(*to_page(*pts[0])); page.mouse.down()
    for p in pts[1:]: page.mouse.move(*to_page(*p), steps=steps)
    page.mouse.up()


def test_scene_widget_in_jupyterlab(tmp_path):
    from roadgie.scene import write_test_scene
    from roadgie.widget import Viewport, canvas_size
    root = tmp_path / "nbs"; root.mkdir()
    (root / "scene.ipynb").write_text(json.dumps(SCENE_NB))
    S = 4000
    _, truth = write_test_scene(root / "scene.tif", S)   # georeferenced (EPSG:32633, 1 m/px)
    out = REPO / "runs" / "browser"; out.mkdir(parents=True, exist_ok=True)
    view = Viewport((S, S), canvas_size((S, S))).fit()   # the widget's view, replayed here to place the mouse
    cw, ch = view.size
    with _jupyterlab(tmp_path, root) as (base, token), local_page(tmp_path / "chrome", 1500, 1300) as (page, errors):
        try:
            _run_all(page, base, token, "scene.ipynb")
            sel = f"canvas[width='{cw}'][height='{ch}']"
            page.wait_for_selector(f".jp-OutputArea {sel}", state="attached", timeout=180_000)
            canvas = page.locator(f".jp-OutputArea {sel}").first
            _wait_drawn(page, canvas); _wait_idle(page)
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            ov = page.locator(".jp-OutputArea canvas[width='192'][height='192']").first.bounding_box()
            assert abs(ov["width"] - ov["height"]) <= 2, f"the overview of a square scene is shown {ov['width']}x{ov['height']}"
            sx, sy = box["width"] / cw, box["height"] / ch
            at_canvas = lambda cx, cy: (box["x"] + cx * sx, box["y"] + cy * sy)
            to_page = lambda x, y: at_canvas(*view.to_canvas(x, y))
            # zoom in: two wheel steps at the canvas centre, then "+" twice
            page.mouse.move(*at_canvas(cw / 2, ch / 2))
            for _ in range(2): page.mouse.wheel(0, -100); view.zoom_at(1.25, cw / 2, ch / 2); time.sleep(0.5)
            for _ in range(2): page.get_by_role("button", name="+", exact=True).click(); view.zoom_at(1.5, cw / 2, ch / 2); time.sleep(0.5)
            _wait_status(page, f"zoom {100 * view.zoom:.0f}%")
            # pan with the Pan tool: drag the image 120 px right and 80 px down
            page.get_by_role("button", name="Pan", exact=True).click()
            _drag(page, at_canvas, [(cw / 2, ch / 2), (cw / 2 + 120, ch / 2 + 80)], steps=8); view.pan(120, 80)
            time.sleep(1.0)
            x0, y0, w, h = view.box()
            roads = _scene_roads(truth, (x0, y0, x0 + w, y0 + h))
            page.get_by_role("button", name="Scribble", exact=True).click()
            shown = _canvas_pixels(page, canvas.element_handle())
            assert shown[..., 3].mean() > 200, "the zoomed scene was not drawn on the canvas"
            dists = [_dist_to_polyline((ch, cw), np.array([view.to_canvas(*p) for p in r])) for r in roads]
            for i, r in enumerate(roads):
                _drag(page, to_page, r); _wait_status(page, f"{i + 1} prompts"); time.sleep(1.5)
            both = _canvas_pixels(page, canvas.element_handle())
            canvas.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]").screenshot(path=str(out / "scene_strokes.png"))
            ov = _overlay_pixels(both, shown)
            near = [(ov & (d <= 8)).sum() for d in dists]
            far = (ov & (np.minimum(*dists) > 20)).sum()
            assert min(near) > 40, f"too few overlay pixels along the strokes: {near}"
            assert far <= 0.05 * sum(near), f"overlay away from the strokes: {far} pixels"
            # delete the first road with the Pick road tool (a click on it)
            page.get_by_role("button", name="Pick road", exact=True).click()
            page.mouse.click(*to_page(*roads[0][len(roads[0]) // 2]))
            _wait_status(page, "3 prompts"); time.sleep(1.5)
            picked = _canvas_pixels(page, canvas.element_handle())
            canvas.locator("xpath=..").screenshot(path=str(out / "scene_pick_road.png"))
            ov2 = _overlay_pixels(picked, shown)
            assert (ov2 & (dists[0] <= 8)).sum() <= 0.1 * near[0], "the picked road's overlay did not go away"
            assert (ov2 & (dists[1] <= 8)).sum() >= 0.9 * near[1], "the other road's overlay went away too"
            # save the session, look at the whole scene, reopen the session: the same canvas and the same mask
            page.get_by_role("button", name="Save session", exact=True).click()
            _wait_status(page, "saved session")
            page.get_by_role("button", name="Fit", exact=True).click(); _wait_status(page, f"zoom {100 * view.fit_zoom:.0f}%")
            time.sleep(1.0)
            saved = _canvas_pixels(page, canvas.element_handle())
            page.get_by_role("button", name="Open session", exact=True).click()
            _wait_status(page, "reopened"); time.sleep(1.5)
            reopened = _canvas_pixels(page, canvas.element_handle())
            canvas.locator("xpath=..").screenshot(path=str(out / "scene_reopened.png"))
            assert _overlay_pixels(saved, 0 * saved).sum() > 0, "no road on the fitted view before reopening"
            rdiff = np.abs(reopened[..., :3].astype(int) - saved[..., :3].astype(int)).sum(-1)
            assert (rdiff > 30).mean() < 0.001, "the reopened session does not look as it was saved"
            box_in = page.locator(".widget-text", has_text="Session file").locator("input")
            box_in.fill("reopened.geojson"); box_in.press("Enter")
            page.get_by_role("button", name="Save session", exact=True).click()
            _wait_status(page, "reopened.tif")
            import rasterio
            with rasterio.open(root / "roadgie_session.tif") as a, rasterio.open(root / "reopened.tif") as b:
                m1, m2 = a.read(1), b.read(1)
                assert a.crs == b.crs and a.transform == b.transform and str(a.crs) == "EPSG:32633"
            assert m1.any() and (m1 == m2).all(), "the reopened session's mask differs from the saved one"
            gj = json.loads((root / "roadgie_session.geojson").read_text())
            (out / "scene_result.json").write_text(json.dumps(dict(zoom=view.zoom, roads_near=[int(v) for v in near],
                overlay_far=int(far), mask_pixels=int((m1 > 0).sum()), features=len(gj["features"]), page_errors=errors)))
        except Exception:
            try: page.screenshot(path=str(out / "scene_failure.png"), full_page=True)
            except Exception: pass
            raise
    assert not errors, f"page errors: {errors}"
