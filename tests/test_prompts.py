"""Property tests of the prompt simulator (roadgie.prompts) on real tiles from ../shared/data/roads and on synthetic masks."""
import numpy as np
from skimage.morphology import skeletonize
import pytest
from scipy import ndimage

from roadgie.data import load_mask
from roadgie.prompts import (KINDS, PromptState, correction_prompts, draw_polyline, error_components, initial_prompts,
                             simulate_prompt, uncertainty_map, _bezier)

WIDTH = 3
SEEDS = range(3)


def _dilate(m, width=WIDTH):
    return ndimage.binary_dilation(m, iterations=width)


def _on_fraction(prompt, region):
    "Share of the prompt's mass inside `region`."
    return float(prompt[region].sum() / prompt.sum())


def _synthetic(seed, size=160):
    "A synthetic road mask: curved roads of random widths, some touching the border."
    rng = np.random.default_rng(seed)
    gt = np.zeros((size, size), bool)
    for _ in range(4):
        gt |= draw_polyline(gt.shape, _bezier(*rng.uniform(-20, size + 20, (3, 2)), 200), int(rng.integers(3, 14))) > 0
    return gt


def _degrade(gt):
    p = gt.copy(); H, W = gt.shape
    p[:, W // 5: W // 5 + 12] = False
    p[H // 8: H // 3, W // 2: W * 7 // 8] = False
    yy, xx = np.ogrid[:H, :W]
    p |= (yy - H * 3 // 4) ** 2 + (xx - W * 3 // 4) ** 2 < (H // 12) ** 2
    return p


@pytest.fixture(scope="module")
def real_masks(shared_roads):
    "Two ground-truth masks per source (both mask styles), from the shared tiles."
    out = []
    for src in ("massachusetts", "epfl_cil2018", "eth_cil2022"):
        for p in sorted((shared_roads / src / "masks").glob("*.png"))[:2]:
            out.append((p.stem, load_mask(p)))
    assert len(out) == 6
    return out


def _masks(real_masks):
    return real_masks + [(f"synthetic{s}", _synthetic(s)) for s in range(3)]


@pytest.fixture(scope="module")
def all_masks(real_masks):
    return _masks(real_masks)


@pytest.mark.parametrize("kind", KINDS + ("mixed",))
def test_initial_prompts_on_road_and_background(all_masks, kind):
    for name, gt in all_masks:
        road, bg = _dilate(gt), ~gt
        for s in SEEDS:
            st = initial_prompts(gt, np.random.default_rng(s), kind=kind, n_pos=3, n_neg=3)
            assert st.n_prompts == 6, name
            for m, positive in st.history:
                assert m.sum() > 0, (name, kind, s)
                frac = _on_fraction(m, road if positive else bg)
                assert frac >= 0.95, (name, kind, s, positive, frac)


@pytest.mark.parametrize("kind", KINDS)
def test_simulate_prompt_stays_on_region_never_empty(all_masks, kind):
    for name, gt in all_masks:
        for s in SEEDS:
            m = simulate_prompt(gt, kind, np.random.default_rng(s), width=WIDTH)
            assert m.dtype == np.float32 and m.shape == gt.shape
            assert 0 <= m.min() and m.max() == 1, (name, kind, s)
            assert _on_fraction(m, _dilate(gt)) >= 0.95 and m[~gt].sum() == 0, (name, kind, s)


def test_determinism_per_seed(all_masks):
    for name, gt in all_masks:
        pred = _degrade(gt)
        runs = []
        for _ in range(2):
            st = initial_prompts(gt, np.random.default_rng(7), kind="mixed")
            correction_prompts(pred, gt, st, np.random.default_rng(8), kind="mixed", strategy="sample")
            runs.append(st)
        np.testing.assert_array_equal(runs[0].pos, runs[1].pos)
        np.testing.assert_array_equal(runs[0].neg, runs[1].neg)
        other = initial_prompts(gt, np.random.default_rng(9), kind="mixed")
        assert not (np.array_equal(other.pos, runs[0].pos) and np.array_equal(other.neg, runs[0].neg)), name


@pytest.mark.parametrize("kind", KINDS)
def test_corrections_target_largest_error(all_masks, kind):
    for name, gt in all_masks:
        pred = _degrade(gt)
        comps = error_components(pred, gt)
        assert comps, name
        largest, _, positive = comps[0]
        for s in SEEDS:
            st = correction_prompts(pred, gt, PromptState(gt.shape), np.random.default_rng(s), kind=kind, n=1)
            assert st.n_prompts == 1
            m, pos = st.history[0]
            assert pos == positive and m.sum() > 0
            assert m[~largest].sum() == 0, (name, kind, s)          # the whole prompt lies on the largest error


def test_correction_sign_and_count(all_masks):
    for name, gt in all_masks:
        pred = _degrade(gt)
        fn, fp = gt & ~pred, pred & ~gt
        for s in SEEDS:
            st = correction_prompts(pred, gt, PromptState(gt.shape), np.random.default_rng(s), kind="mixed",
                                    strategy="sample")
            assert 1 <= st.n_prompts <= 3
            for m, positive in st.history:
                assert m[~(fn if positive else fp)].sum() == 0, (name, s, positive)


def test_no_error_adds_nothing(all_masks):
    for name, gt in all_masks:
        st = PromptState(gt.shape)
        assert correction_prompts(gt, gt, st, np.random.default_rng(0), n=3) is st and st.n_prompts == 0


def test_sample_strategy_prefers_large_components():
    gt = np.zeros((64, 64), bool); gt[10:14, :] = True; gt[40:42, 10:20] = True   # 256 px vs 20 px missing
    hits = [correction_prompts(np.zeros_like(gt), gt, PromptState(gt.shape), np.random.default_rng(s),
                               kind="point", strategy="sample", n=1).pos[10:14].sum() > 0 for s in range(60)]
    assert 45 <= sum(hits) < 60   # drawn in proportion to area (about 93%), not always the largest


def test_uncertainty_concentrates_prompts(all_masks):
    for name, gt in all_masks:
        lab, n = ndimage.label(gt, np.ones((3, 3)))
        ys, xs = np.nonzero(gt)
        y, x = ys[len(ys) // 2], xs[len(xs) // 2]
        hot = np.zeros(gt.shape, bool); hot[max(y - 15, 0):y + 16, max(x - 15, 0):x + 16] = True
        U = np.where(hot & gt, 1.0, 0.0)
        near = _dilate(hot, 8)
        for kind in [k for k in KINDS if k != "centre"]:
            share = np.mean([_on_fraction(simulate_prompt(gt, kind, np.random.default_rng(s), uncertainty=U), near)
                             for s in SEEDS])
            assert share > 0.6, (name, kind, share)
        # the benchmark's `centre` annotator traces the longest centreline whatever the experts say
        np.testing.assert_array_equal(simulate_prompt(gt, "centre", np.random.default_rng(0), uncertainty=U),
                                      simulate_prompt(gt, "centre", np.random.default_rng(1)))
        st = initial_prompts(gt, np.random.default_rng(0), kind="point", n_pos=3, n_neg=0, uncertainty=U)
        assert _on_fraction(st.pos, _dilate(hot, 4)) > 0.9, name   # disks centred in the hot area
        assert hot.sum() / gt.size < 0.1   # the hot area is a small part of the tile


def test_uncertainty_map_eq4():
    gt = np.zeros((4, 4), bool); gt[1] = True
    p1, p2 = np.full((4, 4), 0.5, np.float32), gt.astype(np.float32)
    np.testing.assert_allclose(uncertainty_map([p1, p2], gt), 0.25)


# --- bad input -------------------------------------------------------------------------------------------------

def test_empty_region_gives_zeros():
    for kind in KINDS:
        m = simulate_prompt(np.zeros((20, 30), bool), kind, np.random.default_rng(0))
        assert m.shape == (20, 30) and m.dtype == np.float32 and m.sum() == 0
    st = initial_prompts(np.zeros((20, 30), bool), np.random.default_rng(0), n_pos=2, n_neg=0)
    assert st.n_prompts == 0


def test_region_touching_border_and_tiny_regions():
    shapes = []
    full = np.ones((24, 24), bool); shapes.append(full)                      # the whole tile
    edge = np.zeros((24, 24), bool); edge[:, :2] = True; shapes.append(edge)  # a 2-px band along the border
    corner = np.zeros((24, 24), bool); corner[-1, -1] = True; shapes.append(corner)
    diag = np.eye(24, dtype=bool); shapes.append(diag)                        # 1-px diagonal, 8-connected
    for region in shapes:
        for kind in KINDS:
            for s in SEEDS:
                m = simulate_prompt(region, kind, np.random.default_rng(s))
                assert m.sum() > 0 and m[~region].sum() == 0, (kind, s)


def test_non_binary_masks():
    gt = _synthetic(0)
    soft = np.where(gt, 0.8, 0.1)
    np.testing.assert_array_equal(simulate_prompt(soft, "bezier", np.random.default_rng(1)),
                                  simulate_prompt(gt, "bezier", np.random.default_rng(1)))   # binarised at 0.5
    np.testing.assert_array_equal(simulate_prompt(gt.astype(np.uint8) * 255, "point", np.random.default_rng(0)),
                                  simulate_prompt(gt, "point", np.random.default_rng(0)))   # 8-bit 0/255 mask image
    with pytest.raises(ValueError, match=r"region: expected a bool mask or values in \[0,1\]"):
        simulate_prompt(gt.astype(np.int64) * 255, "point", np.random.default_rng(0))     # 0..255 only as uint8
    with pytest.raises(ValueError, match="gt: expected a bool mask"):
        initial_prompts(np.where(gt, 2.0, -1.0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="pred: expected a bool mask"):
        correction_prompts(np.where(gt, 5.0, -5.0), gt, PromptState(gt.shape), np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        simulate_prompt(np.full((8, 8), np.nan), "point", np.random.default_rng(0))


def test_wrong_shapes():
    gt = _synthetic(1)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"expected an \(H,W\) mask"):
        simulate_prompt(np.stack([gt] * 3, -1), "line", rng)
    with pytest.raises(ValueError, match=r"expected an \(H,W\) mask"):
        initial_prompts(gt[None], rng)
    with pytest.raises(ValueError, match="pred: expected the shape of gt"):
        correction_prompts(gt[:-1], gt, PromptState(gt.shape), rng)
    with pytest.raises(ValueError, match="state: expected shape"):
        correction_prompts(gt, ~gt, PromptState((5, 5)), rng)
    with pytest.raises(ValueError, match="state: expected shape"):
        initial_prompts(gt, rng, state=PromptState((5, 5)))
    with pytest.raises(ValueError, match="uncertainty: expected an"):
        simulate_prompt(gt, "point", rng, uncertainty=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mask: expected shape"):
        PromptState(gt.shape).add(np.ones((3, 3)))
    with pytest.raises(ValueError, match="kind: expected one of"):
        simulate_prompt(gt, "scribble", rng)
    with pytest.raises(ValueError, match="strategy: expected"):
        correction_prompts(gt, ~gt, PromptState(gt.shape), rng, strategy="smallest")


def test_prompt_state_channels():
    gt = _synthetic(2)
    st = initial_prompts(gt, np.random.default_rng(0), n_pos=2, n_neg=2)
    ch = st.to_channels()
    assert tuple(ch.shape) == (2,) + gt.shape and str(ch.dtype) == "torch.float32"
    assert 0 <= float(ch.min()) and float(ch.max()) <= 1
    undo = PromptState.from_history(st.shape, st.history[:-1])
    assert undo.n_prompts == st.n_prompts - 1
    assert (st.covered() >= undo.covered()).all()


def test_centre_annotator_traces_the_largest_component(all_masks):
    "On real masks: on the road, on its largest component only, long (a traced road, not a dab), and deterministic."
    from roadgie.prompts import largest_component
    for name, gt in all_masks:
        m = simulate_prompt(gt, "centre", np.random.default_rng(0)) > 0.5
        big = largest_component(gt)
        assert m.any() and not (m & ~big).any(), name
        assert m.sum() >= 0.3 * skeletonize(big).sum(), (name, m.sum(), skeletonize(big).sum())
        np.testing.assert_array_equal(m, simulate_prompt(gt, "centre", np.random.default_rng(7)) > 0.5)
