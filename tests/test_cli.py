"""The console scripts a user runs from a shell: installed, answer --help at once with an example, refuse wrong arguments
in one line before any work starts, write where their user is (./runs/ under the current folder, or --out), leave nothing
half-written when a run fails, and do the job end to end (a folder of your own tiles, training on the console,
roadgie-segment on one scene or a folder of them, the demo with and without the real tiles). A built wheel carries the
samples, the chapters and the weights, and building it writes nothing into the source tree."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = ["roadgie-demo", "roadgie-bench", "roadgie-train", "roadgie-eval", "roadgie-segment"]
REPO = Path(__file__).resolve().parents[1]


def run(args, timeout=900, env=None, **kw):  # cwd=... runs the script from that folder
    exe = shutil.which(args[0])
    assert exe, f"{args[0]} is not on PATH: was the package installed with pip install -e .?"
    return subprocess.run([exe, *map(str, args[1:])], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env}, **kw)


def one_line_error(r, status=2):
    "Assert a run ended with exit `status` and exactly one line on stderr, no traceback; returns that line."
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == status and len(lines) == 1 and "Traceback" not in r.stderr + r.stdout, \
        (r.returncode, r.stderr[-2000:], r.stdout[-1000:])
    return lines[0]


def no_partial_runs(folder):
    return [p.name for p in Path(folder).glob(".*.partial-*")] if Path(folder).exists() else []


def package_state():
    "Every file of the package roadgie runs from (installed, or the checkout's roadgie/) with its SHA-256: a run changes none."
    import hashlib, roadgie
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(roadgie.__file__).parent.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def own_tiles(tmp_path_factory):
    """A folder of your own: 6 tiles in images/ + masks/ (192x192 crops of the bundled synthetic samples), no tiles.csv."""
    from roadgie.data import RoadTiles, samples_dir, save_image, save_mask
    root = tmp_path_factory.mktemp("own") / "my_tiles"
    ds = RoadTiles(samples_dir())
    for i in range(6):
        img, msk = ds.load(i)
        y, x = np.argwhere(msk).mean(0).astype(int).clip(96, 512 - 96)   # centred on road
        save_image(root / "images" / f"field_{i:02d}.png", img[y - 96:y + 96, x - 96:x + 96])
        save_mask(root / "masks" / f"field_{i:02d}.png", msk[y - 96:y + 96, x - 96:x + 96])
    return root


@pytest.fixture(scope="module")
def broken_tiles(own_tiles, tmp_path_factory):
    "The same folder with one image that cannot be read (its mask is fine): a failure only the run itself meets."
    root = tmp_path_factory.mktemp("broken") / "my_tiles"
    shutil.copytree(own_tiles, root)
    (root / "images" / "field_03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


# --- friction 4: --help everywhere, one-line errors ---------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_help(script):
    "Every console script answers --help (exit 0) with its usage, its options (--out among them) and an example, within 1 s."
    secs = []
    for _ in range(3):   # the best of three: a shared machine's other work is not the script's
        t0 = time.perf_counter(); r = run([script, "--help"], timeout=120); secs.append(time.perf_counter() - t0)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "usage:" in r.stdout and "examples:" in r.stdout and f"\n  {script}" in r.stdout and "--out" in r.stdout
    assert min(secs) <= 1.0, secs


def test_train_help_lists_parameters_and_eval_help_prompt_kinds():
    from roadgie.prompts import KINDS
    from roadgie.training import TRAIN_DEFAULTS
    h = run(["roadgie-train", "--help"], timeout=120).stdout
    assert "data_root" in h and "max_train_tiles" in h and f"epochs{' ' * 18}{TRAIN_DEFAULTS['epochs']!r}" in h
    h = run(["roadgie-eval", "--help"], timeout=120).stdout
    assert all(k in h for k in KINDS) and "default centre" in h
    h = " ".join(run(["roadgie-segment", "--help"], timeout=120).stdout.split())
    assert "the weights' own decision threshold" in h and "a probability of 0." in h


WRONG = [  # (arguments, a piece of the one-line message); {own} is a folder of own tiles, {scene} a small GeoTIFF
    (["roadgie-train", "-p", "epoch", "3"], "did you mean epochs"),
    (["roadgie-train", "-p", "epochs"], "expected 2 arguments"),
    (["roadgie-train", "-p", "epochs", "three"], "expected a whole number"),
    (["roadgie-train", "-p", "data_root", "/nonexistent/tiles"], "does not exist"),
    (["roadgie-train", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
    (["roadgie-train", "-p", "data_root", "{own}", "-p", "init", "/nonexistent/w.safetensors"], "weights file not found"),
    (["roadgie-eval", "/nonexistent/tiles"], "does not exist"),
    (["roadgie-eval", "{own}", "--split", "tset"], "use train or val"),
    (["roadgie-eval", "{own}", "--model", "/nonexistent/w.safetensors"], "weights file not found"),
    (["roadgie-eval", "{own}", "--prompt", "scribble"], "invalid choice: 'scribble'"),
    (["roadgie-eval", "{own}", "--methods", "sam"], "unknown method 'sam'"),
    (["roadgie-eval", "{own}", "--rounds", "0"], "--rounds 0"),
    (["roadgie-eval", "{own}", "--sequential", "--region-splits", "tset"], "--region-splits tset"),
    (["roadgie-eval", "{own}", "--sequential", "--merge", "sometimes"], "invalid choice: 'sometimes'"),
    (["roadgie-eval", "{own}", "--name", "/elsewhere/x"], "expected a plain folder name (use --out DIR"),
    (["roadgie-eval", "{noms}"], "5 image(s) in images/, no masks/"),
    (["roadgie-segment", "/nonexistent/nope.tif", "--out", "{tmp}"], "nope.tif"),
    (["roadgie-segment", "{scene}", "--out", "{tmp}", "--min-length", "-5"], "0 or more"),
    (["roadgie-segment", "{scene}", "--out", "{tmp}", "--gsd", "fine"], "expected 'auto', 'none' or a positive number"),
    (["roadgie-segment", "{noms}"], "holds 0 file(s) and no scene"),
    (["roadgie-segment", "{scene}", "{scene}", "--prompts", "{scene}"], "the prompts of one scene, but 2 scenes"),
    (["roadgie-bench", "--sizes", "8"], "32 px or more"),
    (["roadgie-bench", "--scene", "10"], "1000 px or more"),
    (["roadgie-bench", "--lessons", "0"], "expected 1 lesson or more"),
    (["roadgie-bench", "--lessons", "1", "--scene", "2000"], "give one of them"),
    (["roadgie-demo", "--nmae", "x"], "unrecognized arguments"),
]


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    from roadgie.scene import write_test_scene
    return write_test_scene(tmp_path_factory.mktemp("scene") / "scene.tif", size=600, tile=300, seed=1)[0]


@pytest.fixture(scope="module")
def images_without_masks(tmp_path_factory):
    "A folder with images/ (5 images) and no masks/."
    from roadgie.data import save_image
    root = tmp_path_factory.mktemp("noms") / "tiles"
    for i in range(5): save_image(root / "images" / f"a{i}.png", np.zeros((16, 16, 3)))
    return root


@pytest.mark.parametrize("args,msg", WRONG, ids=[" ".join(a[:3]) for a, _ in WRONG])
def test_wrong_arguments_are_one_line_errors(args, msg, own_tiles, small_scene, images_without_masks, tmp_path):
    "A wrong argument comes back as one line on stderr with exit status 2, before any work starts, writing nothing."
    here = tmp_path / "here"; here.mkdir()
    t0 = time.time()
    r = run([a.format(own=own_tiles, scene=small_scene, tmp=tmp_path / "o", noms=images_without_masks) for a in args],
            timeout=300, cwd=here)
    line = one_line_error(r)
    assert msg in line, line
    assert time.time() - t0 < 60                                   # no run was started
    assert list(here.iterdir()) == [] and not (tmp_path / "o").exists()


# --- friction 2: a folder of your own, no index; nothing half-written --------------------------------------------

def test_eval_on_own_folder_without_index(own_tiles):
    """roadgie-eval . from inside a folder of images/ + masks/ with no tiles.csv: every tile, a one-line note, a progress
    line, and a complete run folder in ./runs/<name>/ of that folder, named on the last line; the package is untouched."""
    package = package_state()
    r = run(["roadgie-eval", ".", "--rounds", "2", "--methods", "roadgie-lite,prompts", "--name", "mine"], cwd=own_tiles)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = own_tiles / "runs" / "mine"
    try:
        assert "has no tiles.csv index, so split test means all 6 tiles" in r.stdout
        assert "benchmark: 6 tiles x 2 methods x 2 rounds" in r.stdout
        assert {"table.md", "curves.png", "worst.png", "per_round.csv", "roadgie-run.json"} <= {p.name for p in out.iterdir()}
        table = (out / "table.md").read_text()
        assert "## Columns" in table and "**b0 err r1/2**" in table and "**NoC@0.80 (never)**" in table
        assert "mean over 6 tiles" in r.stdout and "roadgie-lite" in r.stdout.split("mean over 6 tiles")[1]
        assert f"Results in {out}:" in r.stdout.strip().splitlines()[-1]
        assert no_partial_runs(out.parent) == [] and package_state() == package
    finally:
        shutil.rmtree(own_tiles / "runs", ignore_errors=True)


def test_eval_out_elsewhere(own_tiles, tmp_path):
    "--out DIR writes there (a relative path: under the current folder), and a second run replaces the first."
    for _ in range(2):
        r = run(["roadgie-eval", own_tiles, "--rounds", "1", "--methods", "prompts", "--out", "res"], cwd=tmp_path)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (tmp_path / "res" / "table.md").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = run(["roadgie-eval", own_tiles, "--rounds", "1", "--methods", "prompts", "--out", tmp_path / "mine"])
    assert "is not a roadgie run folder" in one_line_error(r) and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_eval_sequential_learns_a_region(tmp_path):
    "--sequential: a region's first tiles taught to a SceneLearner, the rest measured against a fresh one, all in --out."
    from roadgie.data import samples_dir
    from roadgie.model import AUTOMATIC_PATH, PRETRAINED_PATH
    bad = run(["roadgie-eval", samples_dir(), "--sequential", "--source", "synthetic", "--teach", "2", "--automatic", "nothing.safetensors",
               "--out", "seq"], cwd=tmp_path)
    assert "--automatic" in one_line_error(bad) and "nothing.safetensors" in one_line_error(bad) and not (tmp_path / "seq").exists()
    r = run(["roadgie-eval", samples_dir(), "--sequential", "--source", "synthetic", "--teach", "2", "--teach-rounds", "1",
             "--rounds", "2", "--out", "seq", "--automatic", AUTOMATIC_PATH, "--model", PRETRAINED_PATH], cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = tmp_path / "seq"
    assert {"summary.json", "curve.png", "tiles.csv", "curve.csv", "lessons.csv", "forgetting.csv"} <= {p.name for p in out.iterdir()}
    s = json.loads((out / "summary.json").read_text())
    assert s["tiles_taught"] == 2 and 0 <= s["draft_adapted"] <= 1 and "strokes to Dice 0.8" in r.stdout
    assert (s["options"]["learner"]["interactive"], s["options"]["learner"]["automatic"]) == (str(PRETRAINED_PATH), str(AUTOMATIC_PATH))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def test_bench_lessons(tmp_path):
    "--lessons N: how long \"Learn\" takes on a 512x512 tile, printed and in bench.json of the folder named."
    r = run(["roadgie-bench", "--lessons", "1", "--out", "b"], cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    js = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert len(js["seconds"]) == 1 and js["size"] == 512 and js["median_s"] > 0 and "a lesson on a 512x512 tile" in r.stdout
    assert js["warm_up_s"] > 0 and "warm-up" in r.stdout       # timed apart, as the widget warms the learner up when it opens
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_eval_failure_leaves_nothing_half_written(broken_tiles, tmp_path):
    "A run that fails halfway: one line (exit 1) naming the file, no run folder, no partial folder, the traceback kept."
    r = run(["roadgie-eval", broken_tiles, "--rounds", "1", "--methods", "prompts", "--name", "b"], cwd=tmp_path)
    line = one_line_error(r, status=1)
    assert "cannot read image file" in line and "field_03.png" in line and "nothing was written" in line, line
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["b.failed.log"] and "Traceback" in (runs / "b.failed.log").read_text()


# --- friction 3: training on the console ---------------------------------------------------------------------------

def test_train_on_own_folder_on_the_console(own_tiles, tmp_path):
    """roadgie-train -p data_root DIR (no tiles.csv) from another folder: a stated 85/15 split, one line per epoch and a
    progress bar on the console, and the run's weights in ./runs/<name>/ of the folder it was started from."""
    r = run(["roadgie-train", "-p", "data_root", own_tiles, "-p", "epochs", "2", "-p", "batch", "2", "-p", "crop", "64",
             "-p", "rounds", "2", "-p", "threads", "1", "-p", "max_val_tiles", "1", "--name", "t"], cwd=tmp_path)
    both = r.stdout + r.stderr
    assert r.returncode == 0, both[-3000:]
    assert "Traceback" not in both and "has no tiles.csv index: split 'train' is" in r.stdout
    assert both.count("epoch 1/2 step") == 1 and both.count("epoch 2/2 step") == 1     # one line per epoch
    assert "epoch 1/2:" in r.stderr and "%|" in r.stderr                                # a plain-text progress bar
    run_dir = tmp_path / "runs" / "t"
    assert (run_dir / "best.safetensors").is_file() and (run_dir / "metrics.csv").is_file()
    assert json.loads((run_dir / "config.json").read_text())["data_root"] == str(own_tiles)
    assert f"everything in {run_dir}" in r.stdout.strip().splitlines()[-1]


def test_train_failure_leaves_no_run_folder(broken_tiles, tmp_path):
    "A training run that fails before its first checkpoint leaves no run folder, only the traceback, and says why."
    r = run(["roadgie-train", "-p", "data_root", broken_tiles, "-p", "epochs", "1", "-p", "batch", "2", "-p", "crop", "64",
             "-p", "rounds", "1", "-p", "threads", "1", "--out", tmp_path / "t"])
    line = [l for l in r.stderr.splitlines() if l.startswith("roadgie-train: error:")]
    assert r.returncode == 1 and len(line) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "cannot read image file" in line[0] and "field_03.png" in line[0] and "nothing was written" in line[0], line[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.failed.log"]


# --- friction 5: roadgie-segment -----------------------------------------------------------------------------------

def test_segment_cli_on_a_small_scene(small_scene, tmp_path):
    """roadgie-segment writes a mask GeoTIFF in the scene's CRS, a GeoJSON, a quick look; it drops pieces shorter than
    --min-length and says that a run without prompts is a first draft."""
    import rasterio
    import torch
    from roadgie.model import build_model, save_model
    torch.manual_seed(0)
    ckpt = tmp_path / "net.safetensors"
    save_model(build_model("lite"), ckpt)
    out = tmp_path / "out"
    r = run(["roadgie-segment", small_scene, "--out", out, "--model", ckpt])
    assert r.returncode == 0, r.stderr[-2000:]
    with rasterio.open(small_scene) as a, rasterio.open(out / "mask.tif") as b:
        assert a.crs == b.crs and a.transform == b.transform and (a.height, a.width) == (b.height, b.width)
    assert json.loads((out / "roads.geojson").read_text())["type"] == "FeatureCollection"
    assert (out / "quicklook.png").read_bytes()[:4] == b"\x89PNG"
    assert "first draft" in r.stdout and "shorter than 10 m dropped (--min-length)" in r.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["min_length"] == 10 and s["min_length_unit"] == "m" and "first draft" in s["note"]
    assert s["resampled"] == 1.0, s   # the scene's own ground resolution is inside the network's band
    assert "first draft" in run(["roadgie-segment", "--help"], timeout=120).stdout
    r = run(["roadgie-segment", small_scene, "--out", tmp_path / "fine", "--model", ckpt, "--gsd", "0.1"])
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "fine" / "summary.json").read_text())   # told 10 cm pixels: shown at 0.3 m
    assert s["gsd"] == 0.1 and abs(s["resampled"] - 1 / 3) < 1e-6, s


def test_segment_a_folder_of_scenes(small_scene, tmp_path):
    """roadgie-segment FOLDER from the folder a user is in: one output folder per scene under ./runs/segment/, summary.csv
    with a row each, a plain image's network length in pixels, and the last line saying where."""
    import pandas as pd
    import torch
    from roadgie.data import load_image, save_image
    from roadgie.model import build_model, save_model
    torch.manual_seed(0); ckpt = tmp_path / "net.safetensors"; save_model(build_model("lite"), ckpt)
    scenes = tmp_path / "scenes"; scenes.mkdir()
    shutil.copy(small_scene, scenes / "town.tif"); save_image(scenes / "plain.png", load_image(small_scene))
    r = run(["roadgie-segment", "scenes", "--model", ckpt, "--window", "256", "--overlap", "32"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "runs" / "segment"
    t = pd.read_csv(out / "summary.csv")
    assert t.folder.tolist() == ["plain", "town"] and (out / "plain" / "mask.tif").is_file() and (out / "town" / "roads.geojson").is_file()
    plain = json.loads((out / "plain" / "summary.json").read_text())
    assert plain["georeferenced"] is False and plain["length_px"] > 0 and f"{plain['length_px']:.0f} px in all" in r.stdout
    assert str(out) in r.stdout.strip().splitlines()[-1]


def test_segment_reads_a_saved_widget_session(small_scene, tmp_path):
    """`roadgie-segment --prompts` reads the GeoJSON the widget's "Save session" writes (a scene session's prompts)."""
    from roadgie.scene import SceneSession
    s = SceneSession(small_scene, model="dilation")
    s.add_scribble([(20, 100), (280, 110)]); s.predict(); s.add_click(150, 105, positive=False); s.predict()
    prompts, _ = s.save_session(tmp_path / "session.geojson")
    torch = pytest.importorskip("torch")
    from roadgie.model import build_model, save_model
    torch.manual_seed(0); ckpt = tmp_path / "net.safetensors"; save_model(build_model("lite"), ckpt)
    r = run(["roadgie-segment", small_scene, "--out", tmp_path / "out", "--prompts", prompts, "--model", ckpt,
             "--window", "256", "--overlap", "32"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "prompts: 2 prompt(s) used" in r.stdout


# --- friction 1 and 6: the demo --------------------------------------------------------------------------------------

def test_wheel_ships_samples_chapters_and_weights(tmp_path):
    """`pip wheel .` builds a wheel holding the bundled samples, the chapters and the weights with their card, and writes
    nothing into the source tree (no build/, no roadgie.egg-info/)."""
    import zipfile
    before = sorted(p.name for p in REPO.iterdir())
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in REPO.iterdir()) == before
    names = set(zipfile.ZipFile(next(tmp_path.glob("roadgie-*.whl"))).namelist())
    assert {"roadgie/data_samples/tiles.csv", "roadgie/nbs/09_training.ipynb", "roadgie/nbs/12_evaluation.ipynb",
            "roadgie/weights/roadgie-lite.safetensors", "roadgie/weights/roadgie-lite.json", "roadgie/weights/README.md"} <= names
    assert any(n.startswith("roadgie/data_samples/synthetic/images/") for n in names)


def _demo(here, env):
    "The demo run from the folder `here`: its outputs in here/runs/demo/, the package and the checkout unchanged."
    package = package_state()
    t0 = time.time()
    r = run(["roadgie-demo"], timeout=1800, env=env, cwd=here)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = here / "runs" / "demo"
    assert package_state() == package
    assert {"data-tiles.png", "data-training-crops.png", "roadgie-run.json"} <= {p.name for p in out.iterdir()}
    assert "## Columns" in (out / "eval" / "table.md").read_text() and (out / "eval" / "curves.png").is_file()
    assert f"Outputs in {out}" in r.stdout and "Dice (APLS) after round 1 -> after round 5" in r.stdout
    assert str(out) in r.stdout.strip().splitlines()[-1] and no_partial_runs(out.parent) == []
    return r, time.time() - t0


def test_demo_runs_end_to_end(repo_root, shared_roads, tmp_path):
    "The README's main job with the real tiles beside the repo: a fixed subset of 12 test tiles, in a couple of minutes."
    r, secs = _demo(tmp_path, {})
    assert f"12 test tiles of the real tiles at {shared_roads}" in r.stdout and "mean over 12 tiles" in r.stdout
    assert secs < 300, secs


def test_demo_without_real_tiles_uses_the_bundled_samples(repo_root, tmp_path):
    "With no ../shared (ROADGIE_SHARED pointing nowhere, the code honours it) the demo runs on data_samples/ and says so."
    env = {"ROADGIE_SHARED": "/nonexistent/shared", "ROADGIE_DATA": ""}
    r, _ = _demo(tmp_path, env)
    assert "the 2 synthetic test tiles bundled in" in r.stdout and "mean over 2 tiles" in r.stdout
