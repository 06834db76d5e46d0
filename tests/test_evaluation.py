"""The simulated-user benchmark (roadgie.evaluation): protocol on toy models with known behaviour, NoC, determinism, bad input."""
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage.morphology import disk

from roadgie.evaluation import (METRICS, noc, run_benchmark, simulate_user, summarize, noc_per_tile, markdown_table,
                                largest_component)
from roadgie.prompts import PromptState, correction_prompts, simulate_prompt
from roadgie.synthetic import make_world

RADIUS = 3


def dilated_prompts(image, prompts, prev_logits=None):
    "Toy model: the positive prompts dilated by a disk of RADIUS px (negatives ignored), as +-4 logits."
    pos = ndimage.binary_dilation(np.asarray(prompts[0]) > 0.5, structure=disk(RADIUS))
    return np.where(pos, 4.0, -4.0).astype(np.float32)


def hand_dice(gt, kind, rounds, stem, seed):
    "The protocol replayed by hand: own largest component, own rng per round, own dilation and own Dice formula."
    lab, n = ndimage.label(gt, structure=np.ones((3, 3)))
    areas = [(lab == i).sum() for i in range(1, n + 1)]
    comp = lab == 1 + int(np.argmax(areas))
    pos, pred, out = np.zeros(gt.shape, bool), None, []
    for r in range(1, rounds + 1):
        rng = np.random.default_rng([seed, zlib.crc32(stem.encode()), r])
        if r == 1:
            pos |= simulate_prompt(comp, kind, rng) > 0.5
        else:
            st = correction_prompts(pred, gt, PromptState(gt.shape), rng, kind=kind, strategy="largest", n=1)
            if st.history and st.history[0][1]: pos |= st.history[0][0] > 0.5
        pred = ndimage.binary_dilation(pos, structure=disk(RADIUS))
        out.append(2 * (pred & gt).sum() / (pred.sum() + gt.sum()))
    return out


@pytest.mark.parametrize("kind", ["bezier", "point"])
def test_dilated_prompts_dice_rises_and_matches_hand_computation(kind):
    w = make_world(seed=5, size=128)
    rows, _ = simulate_user(w.image, w.mask, dilated_prompts, kind=kind, rounds=6, stem="toy", seed=3)
    got = [r["dice"] for r in rows]
    np.testing.assert_allclose(got, hand_dice(w.mask, kind, 6, "toy", 3), atol=1e-12)
    assert np.all(np.diff(got) >= -1e-12) and got[-1] > got[0] + 0.05, got


def test_component_oracle_closed_form():
    "A model returning every gt bar touched by a positive prompt: Dice after round r is 2 S_r / (S_r + |G|)."
    gt = np.zeros((70, 120), bool)
    lengths = (100, 70, 40, 20)
    for i, L in enumerate(lengths): gt[5 + 15 * i:12 + 15 * i, 10:10 + L] = True
    lab, _ = ndimage.label(gt, np.ones((3, 3)))

    def oracle(image, prompts, prev_logits=None):
        hit = np.unique(lab[(prompts[0] > 0.5) & gt])
        return np.where(np.isin(lab, hit[hit > 0]), 5.0, -5.0).astype(np.float32)

    rows, snap = simulate_user(np.zeros(gt.shape + (3,), np.float32), gt, oracle, kind="line", rounds=5, stem="bars")
    S = np.cumsum([7 * L for L in lengths])
    np.testing.assert_allclose([r["dice"] for r in rows], [2 * s / (s + S[-1]) for s in S] + [1.0], atol=1e-12)
    assert [r["added"] for r in rows] == [True, True, True, True, False]
    assert snap["round"] == 5 and (snap["mask"] == gt).all()
    assert noc([r["dice"] for r in rows], 0.80) == 2     # 2*1190/(1190+1610) = 0.85
    assert noc([r["dice"] for r in rows], 0.96) == 4     # 2*1470/(1470+1610) = 0.955 < 0.96


def test_largest_component_is_used_for_round_one():
    gt = np.zeros((60, 60), bool); gt[5:9, 5:55] = True; gt[30:34, 5:25] = True
    rows, snap = simulate_user(np.zeros((60, 60, 3), np.float32), gt, dilated_prompts, kind="center", rounds=1,
                               stem="lc", snapshot_round=1)
    assert snap["pos"].any() and not snap["pos"][30:34].any()
    assert largest_component(gt)[6, 30] and not largest_component(gt)[31, 10]


def test_noc_counting():
    assert noc([0.9, 0.95]) == 1
    assert noc([0.5, 0.84, 0.85]) == 3
    assert noc([0.1] * 10) == 11                      # never: capped at R + 1
    df = pd.DataFrame(dict(method="m", source=["s"] * 6 + ["t"] * 3, stem=["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                           round=[1, 2, 3] * 3, dice=[0.5, 0.81, 0.9, 0.9, 0.9, 0.9, 0.1, 0.2, 0.3]))
    tt = noc_per_tile(df).set_index("stem")
    assert tt["noc@0.80"].to_dict() == {"a": 2, "b": 1, "c": 4}
    assert tt["noc@0.85"].to_dict() == {"a": 3, "b": 1, "c": 4}
    for k in METRICS:
        if k not in df: df[k] = 0.0
    s = summarize(df)
    assert s.loc[("m", "all"), "noc@0.80"] == pytest.approx(7 / 3)
    assert s.loc[("m", "all"), "noc@0.80_never"] == 1 and s.loc[("m", "s"), "noc@0.80_never"] == 0
    assert "| m | t | 1 |" in markdown_table(s)


def test_determinism_and_same_first_prompt():
    kw = dict(rounds=3, methods={"prompts": None, "toy": dilated_prompts}, max_tiles=2, verbose=False)
    a, b = run_benchmark(**kw), run_benchmark(**kw)
    cols = ["method", "stem", "round", "n_pos", "n_neg"] + list(METRICS)
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert len(a) == 2 * 2 * 3 and set(a["source"]) == {"synthetic"}
    r1 = a[a["round"] == 1]
    assert (r1.groupby("stem")["n_pos"].nunique() == 1).all()
    c = run_benchmark(**{**kw, "seed": 1})
    assert not np.allclose(a["dice"], c["dice"])      # another seed, other prompts


def test_outputs_written(tmp_path):
    run_benchmark(rounds=2, methods=["prompts"], max_tiles=1, out_dir=tmp_path, verbose=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["curves.png", "per_round.csv", "per_tile.csv", "snapshots.npz", "summary.csv", "table.md", "worst.png"]
    assert len(pd.read_csv(tmp_path / "per_round.csv")) == 2
    assert np.load(tmp_path / "snapshots.npz")["prompts|synth_010|pos"].dtype == bool


@pytest.mark.parametrize("kw, msg", [
    (dict(prompt="scribble"), "unknown prompt kind"),
    (dict(methods=["sam"]), "unknown method 'sam'"),
    (dict(methods=[]), "at least one method"),
    (dict(methods=["paper"]), "paper_model"),
    (dict(split="nosuchsplit"), "nosuchsplit"),
    (dict(rounds=0), "rounds"),
    (dict(max_tiles=0), "max_tiles"),
])
def test_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg): run_benchmark(**{"methods": ["prompts"], **kw})


def test_empty_split(tmp_path):
    (tmp_path / "tiles.csv").write_text("stem,split,source\n")
    with pytest.raises(ValueError, match="test"): run_benchmark(tmp_path, split="test", methods=["prompts"])


def test_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        run_benchmark(methods=["roadgie-lite"], model_path="/nonexistent/model.safetensors", max_tiles=1)


def test_shared_test_split_smoke(shared_roads):
    import pandas as pd
    sources = set(pd.read_csv(shared_roads / "tiles.csv").query("split == 'test'")["source"])   # from the index
    df = run_benchmark(shared_roads, split="test", rounds=2, methods=["prompts"], max_tiles=len(sources), verbose=False)
    assert set(df["source"]) == sources   # round-robin over sources: one tile of each
    assert df["dice"].between(0, 1).all()
