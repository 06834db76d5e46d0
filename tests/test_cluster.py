"""Whole scenes as Dask tasks, the way a user runs them: `roadgie-segment --workers N` / `--scheduler ADDRESS` and
`segment_scene(..., client=...)` give the in-process outputs (same mask, same network), survive a worker killed
mid-run, skip the blocks already done when an interrupted run is started again, keep prompts and --gsd working, and
say at once when no scheduler answers."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from test_cli import run


def masks(*paths):
    import rasterio
    out = []
    for p in paths:
        with rasterio.open(p) as s: out.append((s.read(1) > 0, s.crs, s.transform, s.dataset_mask() > 0))
    return out


def network(geojson):
    "(connected components, total length px, features) of a roads.geojson."
    from roadgie.geo import network_stats
    n = network_stats(geojson)
    return n["components"], n["length_px"], n["features"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    "A 1536 x 1536 synthetic GeoTIFF (UTM, 1 m) and the in-process outputs of the shipped networks on it."
    from roadgie.geo import segment_scene
    from roadgie.scene import write_test_scene
    d = tmp_path_factory.mktemp("cluster")
    p = write_test_scene(d / "scene.tif", 1536, tile=768, seed=2, truth=False)[0]
    return p, segment_scene(p, d / "in-process", window=256, overlap=32, progress=False)


def same_outputs(ref, out, mask_tol=0.001):
    (a, crs_a, tr_a, _), (b, crs_b, tr_b, _) = masks(ref["mask"], out["mask"])
    assert (crs_a, tr_a) == (crs_b, tr_b)
    assert (a != b).sum() <= mask_tol * a.sum(), ((a != b).sum(), a.sum())
    (ca, la, _), (cb, lb, _) = network(ref["geojson"]), network(out["geojson"])
    assert abs(ca - cb) <= 0.02 * ca and abs(la - lb) <= 0.01 * la, (ca, cb, la, lb)


def test_workers_survive_a_killed_worker(scene, tmp_path):
    """Two worker processes; one is killed (SIGKILL) as soon as the first block is predicted. Dask reruns its tasks on
    the worker that is left (or its restart) and the outputs equal the in-process run."""
    from roadgie.geo import local_cluster, segment_scene
    p, ref = scene
    client = local_cluster(2)
    try:
        pids = list(client.run(os.getpid).values())
        res, work = {}, tmp_path / "out" / ".blocks"
        th = threading.Thread(target=lambda: res.update(out=segment_scene(p, tmp_path / "out", window=256, overlap=32,
                                                                           progress=False, client=client, k=2)))
        th.start()
        t0 = time.time()
        while not list(work.glob("a_*.json")) and time.time() - t0 < 300: time.sleep(0.05)
        assert list(work.glob("a_*.json")), "no block was predicted within 300 s"
        os.kill(pids[0], signal.SIGKILL)
        th.join(600)
        assert "out" in res, "the run did not finish after a worker was killed"
    finally:
        client.close(); client.cluster.close()
    same_outputs(ref, res["out"])
    s = json.loads(res["out"]["summary"].read_text())
    from roadgie.geo import plan_blocks
    assert s["blocks"] == len(plan_blocks((1536, 1536), 256, 32, 2).blocks) > 4 and s["crs"] == "EPSG:32633"
    assert s["windows_run"] == s["windows"]
    assert not work.exists()   # the blocks go once the outputs are written


def test_cli_workers_interrupted_and_resumed(scene, tmp_path):
    """`roadgie-segment --workers 2` stopped by Ctrl-C halfway leaves its blocks; the same command again skips them
    and writes the in-process outputs, with workers, seconds and Mpx/s in summary.json."""
    from roadgie.geo import segment_scene
    p, _ = scene
    ref = segment_scene(p, tmp_path / "ref", window=128, overlap=16, progress=False)   # small windows: many blocks, time to stop it
    out = tmp_path / "o"
    exe = [sys.executable, "-c", "from roadgie.cli import segment; segment()", str(p), "--out", str(out), "--workers", "2",
           "--window", "128", "--overlap", "16"]
    # as in a terminal, where Ctrl-C reaches Python: a shell running this test in the background (`cmd &`, no job
    # control) ignores SIGINT, its children inherit that, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(exe, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    blocks, t0 = tmp_path / ".o.blocks" / "scene", time.time()
    # stop it once the first block is predicted (a_*), when most of the run is still ahead: a block's last task (c_*)
    # comes late, and on an idle machine the run can end before an interrupt sent then arrives
    while not list(blocks.glob("a_*.json")) and time.time() - t0 < 300 and proc.poll() is None: time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err[-2000:])
    predicted, done = len(list(blocks.glob("a_*.json"))), len(list(blocks.glob("c_*.json")))
    assert not out.exists() and predicted >= 1
    r = run(["roadgie-segment", p, "--out", out, "--workers", "2", "--window", "128", "--overlap", "16"])
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["workers"] == 2 and s["blocks_skipped"] >= done and s["predictions_reused"] >= predicted, s
    assert s["blocks"] > s["blocks_skipped"] and s["mpx_per_s"] > 0, s
    assert "Mpx/s on 2 Dask worker(s)" in r.stdout
    same_outputs(ref, {"mask": out / "mask.tif", "geojson": out / "roads.geojson"})
    assert not (tmp_path / ".o.blocks").exists()


def test_prompts_and_gsd_with_a_worker(tmp_path):
    """--prompts and --gsd reach the workers: with one worker the mask is the in-process one, prompts and all."""
    from roadgie.scene import write_test_scene
    p = write_test_scene(tmp_path / "s.tif", 700, tile=350, seed=4, truth=False)[0]
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"positive": True}, "geometry": {"type": "LineString",
         "coordinates": [[500_020.0, 4_999_650.0], [500_680.0, 4_999_640.0]]}},
        {"type": "Feature", "properties": {"positive": False}, "geometry": {"type": "Point", "coordinates": [500_300.0, 4_999_400.0]}}]}
    prompts = tmp_path / "prompts.geojson"; prompts.write_text(json.dumps(gj))
    args = [p, "--prompts", prompts, "--gsd", "0.1", "--window", "256", "--overlap", "32"]
    a = run(["roadgie-segment", *args, "--out", tmp_path / "a"])
    b = run(["roadgie-segment", *args, "--out", tmp_path / "b", "--workers", "1"])
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-1500:], b.stderr[-1500:])
    sa, sb = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert sa["prompts"] == sb["prompts"] == 2 and sa["resampled"] == sb["resampled"] != 1.0 and sb["workers"] == 1
    (ma, *_), (mb, *_) = masks(tmp_path / "a" / "mask.tif", tmp_path / "b" / "mask.tif")
    assert (ma != mb).sum() <= 0.001 * max(ma.sum(), 1), (ma != mb).sum()


def test_unreachable_scheduler_is_a_quick_clear_error(tmp_path):
    from roadgie.scene import write_test_scene
    p = write_test_scene(tmp_path / "s.tif", 300, tile=300, truth=False)[0]
    t0 = time.time()
    r = run(["roadgie-segment", p, "--out", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9"], timeout=120)
    assert r.returncode == 2 and "no Dask scheduler answered at 'tcp://127.0.0.1:9'" in r.stderr, r.stderr[-1500:]
    assert time.time() - t0 < 30 and not (tmp_path / "o").exists()
    r = run(["roadgie-segment", p, "--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], timeout=120)
    assert r.returncode == 2 and "give one" in r.stderr
    r = run(["roadgie-segment", p, "--workers", "0"], timeout=120)
    assert r.returncode == 2 and "expected 1 or more" in r.stderr
