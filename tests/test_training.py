"""Fault and distributed tests of roadgie.training: SIGKILL + resume, corrupt checkpoint fallback, resume equivalence,
and two gloo ranks under torchrun ending with identical weights. Tiny runs (crop 48, 2 rounds) on a few tiles."""
import json, os, signal, subprocess, sys, time, warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from roadgie.data import samples_dir, shared_roads_dir
from roadgie.checkpoints import latest_checkpoint, list_checkpoints
from roadgie.training import train

TINY = dict(batch=2, crop=48, rounds=2, workers=0, max_train_tiles=8, max_val_tiles=1, final_full=False,
            progress=False, threads=1, seed=3)


@pytest.fixture(scope="module")
def tiny_root():
    "A data root with train and val tiles: the bundled data_samples/, else ../shared/data/roads."
    import pandas as pd
    for root in (samples_dir(), shared_roads_dir()):
        if root is not None and (Path(root) / "tiles.csv").exists():
            splits = set(pd.read_csv(Path(root) / "tiles.csv").split)
            if {"train", "val"} <= splits: return Path(root)
    pytest.skip("no data root with train and val tiles (data_samples/ or ../shared/data/roads)")


def _cli(root, out, *extra):
    "Command line of a tiny `python -m roadgie.training` run."
    args = [sys.executable, "-m", "roadgie.training", "--data_root", str(root), "--out_dir", str(out)]
    for k, v in TINY.items(): args += [f"--{k}", str(v)]
    return args + [str(a) for a in extra]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def test_sigkill_mid_epoch_then_resume(tiny_root, tmp_path):
    out = tmp_path / "run"
    log = open(tmp_path / "first.log", "w")
    p = subprocess.Popen(_cli(tiny_root, out, "--epochs", 3, "--ckpt_steps", 1), stdout=log, stderr=subprocess.STDOUT,
                         env=_env())
    t0 = time.time()
    try:
        while time.time() - t0 < 240:   # wait for a mid-epoch checkpoint
            ck = latest_checkpoint(out / "checkpoints") if (out / "checkpoints").exists() else None
            if ck is not None and ck[3]["batch_in_epoch"] > 0: break
            assert p.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.2)
        else: pytest.fail("no mid-epoch checkpoint within 240 s")
        p.send_signal(signal.SIGKILL); p.wait(30)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == -signal.SIGKILL
    assert not (out / "result.json").exists()                     # it really died before finishing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path, _, _, js = latest_checkpoint(out / "checkpoints")   # what survived the kill
    r = subprocess.run(_cli(tiny_root, out, "--epochs", 3, "--ckpt_steps", 1, "--resume", "True"),
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resumed from {path}" in r.stdout and f"step {js['step']})" in r.stdout
    res = json.loads((out / "result.json").read_text())
    spe = 8 // TINY["batch"]
    assert res["steps"] == 3 * spe and res["stopped"] == "done"   # the schedule continued to its planned end
    assert res["sessions"] == 2 and res["total_train_minutes"] > res["train_minutes"]   # time adds up over sessions
    import pandas as pd
    df = pd.read_csv(out / "metrics.csv")
    assert sorted(df[df.phase == "val"].epoch.unique()) == [0, 1, 2]
    assert len(list_checkpoints(out / "checkpoints")) == 2        # keep the last 2


def test_corrupt_checkpoint_falls_back(tiny_root, tmp_path):
    out = tmp_path / "run"
    train(data_root=tiny_root, out_dir=out, epochs=1, max_steps=2, ckpt_steps=1, **TINY)
    cks = list_checkpoints(out / "checkpoints")
    assert [c.name for c in cks] == ["step-00000001", "step-00000002"]
    (cks[-1] / "state.safetensors").write_bytes(b"garbage")      # corrupt the last one
    with pytest.warns(UserWarning, match="corrupt"):
        res = train(data_root=tiny_root, out_dir=out, epochs=1, resume=True, max_steps=3, **TINY)
    assert res["steps"] == 3                                      # resumed at step 1, ran steps 2 and 3


def test_resume_is_equivalent(tiny_root, tmp_path):
    a = train(data_root=tiny_root, out_dir=tmp_path / "a", epochs=2, **TINY)
    b1 = train(data_root=tiny_root, out_dir=tmp_path / "b", epochs=2, max_steps=5, **TINY)  # stops mid-epoch 2
    assert b1["stopped"] == "max_steps" and b1["steps"] == 5
    b = train(data_root=tiny_root, out_dir=tmp_path / "b", epochs=2, resume=True, **TINY)
    assert a["steps"] == b["steps"] == 8
    wa, wb = load_file(a["final_weights"]), load_file(b["final_weights"])
    for k in wa: torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")


def test_torchrun_two_gloo_ranks_identical_weights(tiny_root, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + \
        _cli(tiny_root, out, "--epochs", 1, "--device", "cpu")[1:]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    h0, h1 = ((out / "ddp" / f"rank{i}.sha256").read_text() for i in (0, 1))
    assert h0 == h1
    res = json.loads((out / "result.json").read_text())
    assert res["world"] == 2 and res["steps"] == 8 // (2 * TINY["batch"])   # each rank trained its half of the epoch
