"""roadgie.data on real tiles: the full sweep over the shared tiles, the bundled samples, and a folder of your own."""
import numpy as np
import pytest
import torch

from roadgie.data import (RoadTiles, SPLIT_VAL, find_tiles, hash_split, load_image, load_mask, samples_dir, shared_roads_dir,
                          tile_table)

def _index(root, split=None) -> dict:
    "Tiles per source in root/tiles.csv (read with the csv module, not with the code under test)."
    import csv
    out = {}
    with open(root / "tiles.csv", newline="") as f:
        for r in csv.DictReader(f):
            if split is None or r["split"] == split: out[r["source"]] = out.get(r["source"], 0) + 1
    return out


def test_shared_roads_dir_matches_fixture(shared_roads):
    assert shared_roads_dir() == shared_roads


def test_tile_table_counts(shared_roads):
    COUNTS = _index(shared_roads); TOTAL = sum(COUNTS.values())
    tab = tile_table(shared_roads)
    assert list(tab.columns) == ["stem", "split", "source"]
    assert len(tab) == TOTAL and tab.stem.is_unique
    assert tab.source.value_counts().to_dict() == COUNTS
    assert set(tab.split) == {"train", "val", "test"}


def test_every_shared_tile_loads(shared_roads):
    """Iterate the whole dataset: shapes, dtypes, value ranges, per-source counts, and masks with road in them."""
    COUNTS = _index(shared_roads); TOTAL = sum(COUNTS.values())
    ds = RoadTiles(shared_roads)
    assert len(ds) == TOTAL
    seen, road = {}, {}
    for i in range(len(ds)):
        it = ds[i]
        img, msk = it["image"], it["mask"]
        assert img.dtype == torch.float32 and msk.dtype == torch.float32, it["stem"]
        assert img.shape == (3, 400, 400) and msk.shape == (1, 400, 400), it["stem"]
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.01, it["stem"]
        assert set(msk.unique().tolist()) <= {0.0, 1.0}, it["stem"]
        seen[it["source"]] = seen.get(it["source"], 0) + 1
        road[it["source"]] = road.get(it["source"], 0) + msk.mean().item()
    assert seen == COUNTS
    for src, n in COUNTS.items():                         # masks binarised sensibly: a few % road on average, not 0 or 1
        assert 0.01 < road[src] / n < 0.5, (src, road[src] / n)


def test_shared_mask_threshold_matches_raw_values(shared_roads):
    """The 0/255 PNG masks binarise to exactly their nonzero pixels (JPEG never touches masks)."""
    from PIL import Image
    for r in RoadTiles(shared_roads).records[::50]:
        raw = np.asarray(Image.open(r["mask"]))
        assert set(np.unique(raw)) <= {0, 255}
        assert np.array_equal(load_mask(r["mask"]), raw > 127)
        assert load_image(r["image"]).shape == (400, 400, 3)


def test_shared_splits_and_training_crops(shared_roads):
    val = RoadTiles(shared_roads, split="val")
    assert len(val) == sum(_index(shared_roads, "val").values()) and {r["split"] for r in val.records} == {"val"}
    ds = RoadTiles(shared_roads, split="train", size=256, augment=True, seed=0)
    a, b = ds[5], ds[5]
    assert a["image"].shape == (3, 256, 256) and torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    big = RoadTiles(shared_roads, split="test", size=512)[0]
    assert big["image"].shape == (3, 512, 512) and big["mask"].sum() > 0


def test_bundled_samples():
    root = samples_dir()
    if not (root / "tiles.csv").exists():
        pytest.skip(f"{root / 'tiles.csv'} not generated yet (nbs/04_synthetic.ipynb writes it)")
    ds = RoadTiles(root)
    assert len(ds) >= 1
    it = ds[0]
    assert it["image"].shape[0] == 3 and it["image"].shape[1:] == it["mask"].shape[1:]
    assert it["source"] == "synthetic" and it["mask"].sum() > 0


@pytest.fixture
def own_folder(shared_roads, tmp_path):
    """A folder of your own: 40 real tiles copied into images/ + masks/, with no tiles.csv."""
    import shutil
    root = tmp_path / "my_tiles"
    (root / "images").mkdir(parents=True); (root / "masks").mkdir()
    for r in RoadTiles(shared_roads).records[::22][:40]:
        shutil.copy(r["image"], root / "images"); shutil.copy(r["mask"], root / "masks")
    return root


def test_own_folder_without_index_serves_every_split(own_folder, capsys):
    """No tiles.csv: train/val are a fixed ~85/15 split by stem (disjoint, covering, the same on every call, said once);
    test and all are every tile; an unknown split names the choices."""
    tr, va = RoadTiles(own_folder, split="train"), RoadTiles(own_folder, split="val")
    note = capsys.readouterr().out
    assert note.count("\n") == 1 and "no tiles.csv index" in note and f"'val' the other {len(va)}" in note
    stems = lambda ds: {r["stem"] for r in ds.records}
    assert stems(tr).isdisjoint(stems(va)) and len(stems(tr) | stems(va)) == 40
    assert 2 <= len(va) <= 12                                          # about 15% of 40
    assert [r["stem"] for r in find_tiles(own_folder, "train", verbose=False)] == [r["stem"] for r in tr.records]
    assert all(hash_split([r["stem"]])[r["stem"]] == r["split"] for r in tr.records + va.records)  # per stem, not per folder
    assert len(RoadTiles(own_folder, split="test")) == len(RoadTiles(own_folder, split="all")) == 40
    assert "split test means all 40 tiles" in capsys.readouterr().out
    with pytest.raises(ValueError, match="use train or val"):
        find_tiles(own_folder, "validation")
    assert tr[0]["image"].shape == (3, 400, 400) and va[0]["mask"].shape == (1, 400, 400)


def test_split_all_on_an_index(shared_roads):
    assert len(find_tiles(shared_roads, "all")) == sum(_index(shared_roads).values()) == len(find_tiles(shared_roads))


def test_hash_split_share():
    side = hash_split([f"tile_{k:05d}" for k in range(20_000)])
    assert abs(sum(v == "val" for v in side.values()) / len(side) - SPLIT_VAL) < 0.01


# One mask rule (roadgie.data.as_mask) wherever a mask goes in: each kind of input the old validators treated
# differently (0/255, probabilities, 0/1 ints, torch, NaN, logits, wrong ndim) behaves the same through every reader.
_ROAD = np.zeros((16, 16), bool); _ROAD[6:10, 2:14] = True          # one road, one 8-connected component
_ACCEPTED = {"bool": _ROAD, "int64 0/1": _ROAD.astype(np.int64), "uint8 0/1": _ROAD.astype(np.uint8),
             "uint8 0/255": _ROAD.astype(np.uint8) * 255, "uint8 grey 100/200": np.where(_ROAD, 200, 100).astype(np.uint8),
             "float probabilities": np.where(_ROAD, 0.9, 0.2), "0.5 is background": np.where(_ROAD, 0.51, 0.5),
             "torch float 0/1": torch.from_numpy(_ROAD.astype(np.float32)), "torch bool": torch.from_numpy(_ROAD)}
_REFUSED = {"wrong ndim": (_ROAD[None], r"expected an \(H,W\) mask"), "NaN": (np.where(_ROAD, np.nan, 0.0), "NaN/inf"),
            "logits": (np.where(_ROAD, 3.0, -3.0), r"expected a bool mask or values in \[0,1\]"),
            "int64 0/255": (_ROAD.astype(np.int64) * 255, "divide 0..255 values that are not uint8 by 255"),
            "float 0/255": (_ROAD * 255.0, "divide 0..255 values that are not uint8 by 255"),
            "strings": (np.where(_ROAD, "r", "b"), "got dtype <U1")}


def _save_load(a):
    import tempfile
    from roadgie.data import save_mask
    with tempfile.TemporaryDirectory() as d:
        save_mask(f"{d}/m.png", a); return load_mask(f"{d}/m.png")


def _readers() -> dict:
    "Every place a mask goes in, as a function of the mask (outputs compared with the same call on the bool mask)."
    from roadgie import data, prompts, metrics, instantiation
    return {"data.as_mask": data.as_mask, "prompts.as_mask": prompts.as_mask, "instantiation.check_mask": instantiation.check_mask,
            "data.save_mask+load_mask": _save_load, "prompts.largest_component": prompts.largest_component,
            "prompts.simulate_prompt": lambda a: prompts.simulate_prompt(a, "bezier", np.random.default_rng(0)),
            "metrics.dice(pred)": lambda a: metrics.dice(a, _ROAD), "metrics.iou(gt)": lambda a: metrics.iou(_ROAD, a),
            "metrics.betti_numbers": metrics.betti_numbers,
            "instantiation.regularise": lambda a: instantiation.regularise(a, 0, 0, 0)}


def test_the_old_names_are_the_one_rule():
    from roadgie import data, prompts, instantiation
    assert prompts.as_mask is data.as_mask and instantiation.check_mask is data.as_mask
    assert "as_mask" in prompts.__all__ and "check_mask" in instantiation.__all__


@pytest.mark.parametrize("case", list(_ACCEPTED))
@pytest.mark.parametrize("reader", list(_readers()))
def test_mask_rule_accepts_everywhere(reader, case):
    f = _readers()[reader]
    np.testing.assert_array_equal(f(_ACCEPTED[case]), f(_ROAD))


@pytest.mark.parametrize("case", list(_REFUSED))
@pytest.mark.parametrize("reader", list(_readers()))
def test_mask_rule_refuses_everywhere(reader, case):
    a, msg = _REFUSED[case]
    with pytest.raises(ValueError, match=msg):
        _readers()[reader](a)


def test_prompt_channels_follow_the_mask_rule():
    from roadgie.instantiation import as_prompt_masks
    for a in (_ACCEPTED["uint8 0/255"], _ACCEPTED["float probabilities"]):
        pos, neg = as_prompt_masks(np.stack([a, np.zeros_like(a)]), _ROAD.shape)
        np.testing.assert_array_equal(pos, _ROAD); assert not neg.any()
    with pytest.raises(ValueError, match=r"prompts \(positive\): expected a bool mask or values in \[0,1\]"):
        as_prompt_masks(np.stack([_REFUSED["logits"][0]] * 2), _ROAD.shape)
