"""The region scope of `roadgie.adapt.SceneLearner` on real tiles: the committed home features are what `write_home`
computes from the training tiles, and a learner taught on the unseen source keeps the shipped pair on the others."""
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from roadgie.adapt import SceneLearner, annotate, read_home, write_home
from roadgie.data import find_tiles, load_image, load_mask
from roadgie.domain import unseen_source
from roadgie.model import AUTOMATIC_PATH

STAGES = Path(__file__).resolve().parents[1] / "roadgie" / "weights" / "stages"
HELD_OUT = dict(interactive=STAGES / "unseen-int.safetensors", automatic=STAGES / "unseen-auto-aug2.safetensors")


def test_committed_home_features_are_reproduced(shared_roads, tmp_path):
    "The shipped automatic network's home file is write_home on the train split of every source (all of them trained it)."
    again = write_home(AUTOMATIC_PATH, find_tiles(shared_roads, "train"), out=tmp_path / "x.home.safetensors")
    np.testing.assert_allclose(load_file(str(again))["features"].numpy(), read_home(AUTOMATIC_PATH), atol=1e-4)
    u = unseen_source(shared_roads)   # the held-out network's: every source but the unseen one
    again = write_home(HELD_OUT["automatic"], [r for r in find_tiles(shared_roads, "train") if r["source"] != u],
                       out=tmp_path / "y.home.safetensors")
    np.testing.assert_allclose(load_file(str(again))["features"].numpy(), read_home(HELD_OUT["automatic"]), atol=1e-4)


def test_region_scope_on_real_tiles(shared_roads):
    "Taught two tiles of the unseen source, a region learner answers with its learnt pair there and with the base pair elsewhere."
    u = unseen_source(shared_roads)
    region = [r for r in find_tiles(shared_roads, "val") if r["source"] == u][:4]
    other = [r for r in find_tiles(shared_roads, "test") if r["source"] != u][::8][:4]
    lr = SceneLearner(**HELD_OUT, scope="region", steps=2, interactive_steps=2, crop=128)
    for r in region[:2]:
        s, _ = annotate(lr, load_image(r["image"]), load_mask(r["mask"]), 1, "centre", r["stem"])
        assert lr.learn_from(s)["learned"]
    assert [lr.in_region(load_image(r["image"])) for r in region] == [True] * len(region)
    base = SceneLearner(**HELD_OUT)
    for r in other:
        im = load_image(r["image"]); z = np.zeros((2,) + im.shape[:2], np.float32)
        assert not lr.in_region(im), r["stem"]
        np.testing.assert_array_equal(lr(im, z, None), base(im, z, None))
