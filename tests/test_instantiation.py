"""Fault tests and real-tile checks for roadgie.instantiation (the notebook tests the synthetic done criteria)."""
import numpy as np
import pytest

from roadgie.instantiation import instantiate, instance_target, road_structure, select_instance, regularise
from roadgie.prompts import PromptState, simulate_prompt
from roadgie.synthetic import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(0, size=(256, 320), layout="mixed")


def _scribble(region, seed=0, positive=True):
    return PromptState(region.shape).add(simulate_prompt(region, "bezier", np.random.default_rng(seed)), positive)


@pytest.mark.parametrize("bad, msg", [
    (lambda w, p: instantiate(w.mask.astype(float) * 8 - 4, w.image, p), "pred_mask: expected a bool mask or values in [0,1]"),
    (lambda w, p: instantiate(w.mask.astype(np.int64) * 255, w.image, p), "divide 0..255 values that are not uint8 by 255"),
    (lambda w, p: instantiate(np.where(w.mask, np.nan, 0.0), w.image, p), "NaN/inf"),
    (lambda w, p: instantiate(w.mask[None], w.image, p), "(H,W)"),
    (lambda w, p: instantiate(w.mask, w.image[:, :100], p), "does not match"),
    (lambda w, p: instantiate(w.mask, w.image[..., :2], p), "(H,W,3)"),
    (lambda w, p: instantiate(w.mask, w.image * 255, p), "[0,1]"),
    (lambda w, p: instantiate(w.mask, w.image, p.pos), "(2,H,W)"),
    (lambda w, p: instantiate(w.mask, w.image, np.zeros((2, 10, 10))), "does not match"),
    (lambda w, p: instantiate(w.mask, w.image, np.full((2,) + w.mask.shape, np.nan)), "NaN"),
    (lambda w, p: instantiate(w.mask, w.image, p, mode="every"), "'instance' or 'all'"),
    (lambda w, p: instantiate(w.mask, w.image, p, tolerance=3), "unknown parameter"),
])
def test_bad_input(world, bad, msg):
    p = _scribble(world.class_masks["highway"])
    with pytest.raises(ValueError, match=None) as e:
        bad(world, p)
    assert msg in str(e.value)


def test_edge_cases(world):
    shape = world.mask.shape
    p = _scribble(world.class_masks["highway"])
    assert not instantiate(np.zeros(shape, bool), world.image, p).any()  # empty mask -> empty
    assert not instantiate(np.zeros(shape, bool), world.image, p, mode="all").any()
    assert not instantiate(world.mask, world.image, PromptState(shape)).any()  # no positive -> empty
    speck = np.zeros(shape, bool); speck[10:13, 10:13] = True  # removed by regularise
    assert not instantiate(speck, world.image, p).any()
    assert not regularise(speck).any()
    tiny = np.ones((3, 3), bool)
    assert instantiate(tiny, np.zeros((3, 3, 3), np.float32), np.ones((2, 3, 3)), min_area=0).shape == (3, 3)


def test_non_square_tile(world):
    hw = world.class_masks["highway"]
    out = instantiate(world.mask, world.image, _scribble(hw))
    iou = (out & hw).sum() / (out | hw).sum()
    assert out.shape == world.mask.shape and iou > 0.8, iou
    tg = instance_target(world.mask, world.image, _scribble(hw))
    assert (tg & ~world.mask).sum() == 0


def test_real_tiles(shared_roads):
    from roadgie.data import find_tiles, load_image, load_mask
    recs = find_tiles(shared_roads)
    picked = [r for s in ("massachusetts", "epfl_cil2018", "eth_cil2022") for r in [x for x in recs if x["source"] == s][:2]]
    for k, r in enumerate(picked):
        img, gt = load_image(r["image"]), load_mask(r["mask"])
        p = _scribble(gt, k)
        st = road_structure(gt, img)
        res = select_instance(st, p)
        inst = res["mask"]
        assert inst.any() and not (inst & ~st.mask).any(), r["stem"]
        assert (inst & (p.pos > 0.5)).sum() >= 0.5 * (gt & (p.pos > 0.5)).sum(), r["stem"]  # it covers the scribble
        # the same scribble as a negative removes that instance in mode "all"
        n = PromptState(gt.shape).add(p.pos, positive=False)
        rest = instantiate(gt, img, n, mode="all", structure=st)
        assert (rest & inst).sum() <= 0.05 * inst.sum(), r["stem"]
        assert rest.sum() >= (st.mask & ~inst).sum() * 0.5, r["stem"]
