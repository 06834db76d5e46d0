"""roadgie.data on real tiles: the full sweep over the 552 shared tiles, and the bundled samples."""
import numpy as np
import pytest
import torch

from roadgie.data import RoadTiles, load_image, load_mask, samples_dir, shared_roads_dir, tile_table

COUNTS = {"massachusetts": 308, "epfl_cil2018": 100, "eth_cil2022": 144}


def test_shared_roads_dir_matches_fixture(shared_roads):
    assert shared_roads_dir() == shared_roads


def test_tile_table_counts(shared_roads):
    tab = tile_table(shared_roads)
    assert list(tab.columns) == ["stem", "split", "source"]
    assert len(tab) == 552 and tab.stem.is_unique
    assert tab.source.value_counts().to_dict() == COUNTS
    assert set(tab.split) == {"train", "val", "test"}


def test_every_shared_tile_loads(shared_roads):
    """Iterate the whole dataset: shapes, dtypes, value ranges, per-source counts, and masks with road in them."""
    ds = RoadTiles(shared_roads)
    assert len(ds) == 552
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
    assert len(val) == 64 and {r["split"] for r in val.records} == {"val"}
    ds = RoadTiles(shared_roads, split="train", size=256, augment=True, seed=0)
    a, b = ds[5], ds[5]
    assert a["image"].shape == (3, 256, 256) and torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    big = RoadTiles(shared_roads, split="test", size=512)[0]
    assert big["image"].shape == (3, 512, 512) and big["mask"].sum() > 0


def test_bundled_samples():
    root = samples_dir()
    if not (root / "tiles.csv").exists():
        pytest.skip(f"{root / 'tiles.csv'} not generated yet (nbs/01_synthetic.ipynb writes it)")
    ds = RoadTiles(root)
    assert len(ds) >= 1
    it = ds[0]
    assert it["image"].shape[0] == 3 and it["image"].shape[1:] == it["mask"].shape[1:]
    assert it["source"] == "synthetic" and it["mask"].sum() > 0
