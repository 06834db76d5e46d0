"""roadgie.geo on a 2000x1500 synthetic georeferenced scene (EPSG:32633, 1 m pixels): stitching, outputs, centrelines, bad input."""
import json
import warnings

import numpy as np
import pytest
from scipy import ndimage

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin
from rasterio.warp import transform_geom

from roadgie.data import RoadTiles
from roadgie.centrelines import cut_tiles, fuse_with_prediction, graph_centrelines, rasterize_centrelines
from roadgie.geo import Scene, geojson_on_mask, open_scene, predict_scene, segment_scene, window_cores, write_geotiff
from roadgie.metrics import iou
from roadgie.interactive import cover_span
from roadgie.synthetic import make_world

H, W = 1500, 2000
T = from_origin(500_000, 5_000_000, 1.0, 1.0)
CRS = "EPSG:32633"


@pytest.fixture(scope="module")
def world():
    return make_world(seed=7, size=(H, W))


@pytest.fixture(scope="module")
def scene(world, tmp_path_factory):
    return write_geotiff(tmp_path_factory.mktemp("geo") / "scene.tif", world.image, CRS, T)


@pytest.fixture(scope="module")
def stored(scene):
    with open_scene(scene) as sc: return sc.read((0, H, 0, W))[0]


@pytest.fixture(scope="module")
def net():
    import torch
    from roadgie.interactive import as_predictor
    from roadgie.model import build_model
    torch.manual_seed(0)
    return as_predictor(build_model("lite"))  # untrained: stitching does not depend on quality


def blur_model(size):
    "A toy model with a `size` px receptive field (box blur of a greyness score, zero padded at the window border)."
    def f(image, prompts, prev=None):
        g = 1 - 20 * np.abs(image - image.mean(-1, keepdims=True)).sum(-1)
        return (ndimage.uniform_filter(g, size, mode="constant") * 8).astype(np.float32)
    return f


def test_stitched_equals_full_with_bounded_context(scene, stored):
    """Receptive field 31 px (reach 15 px) < the 16 px outer quarter of a 64 px overlap, which gets weight 1e-6: the
    stitched logits equal one full-image pass everywhere away from the scene border, seams included, within float16
    storage precision (tolerance 1e-3 relative)."""
    f = blur_model(31)
    res = predict_scene(scene, model=f, window=512, overlap=64, progress=False)
    full = f(stored, None)
    inner = np.zeros((H, W), bool); inner[16:-16, 16:-16] = True
    inner &= res.valid  # (one pure-black pixel of the synthetic image counts as no data)
    assert inner.sum() > 0.95 * H * W
    d = np.abs(res.logits.astype(np.float32) - full)
    assert (d[inner] <= 1e-3 * np.maximum(1, np.abs(full[inner]))).all(), d[inner].max()
    assert (res.mask[inner] == (full > 0)[inner]).all()


def test_seams_visible_when_context_exceeds_overlap(scene, stored):
    "The check above can fail: with a 201 px receptive field (more than the overlap) the seams differ from one pass."
    f = blur_model(201)
    res = predict_scene(scene, model=f, window=512, overlap=64, progress=False)
    full = f(stored, None)
    d = np.abs(res.logits.astype(np.float32) - full)
    cov = window_cores(res.windows, (H, W))
    far = ndimage.distance_transform_cdt(cov == 1, "chessboard") > 110  # > 110 px from any overlap
    far[:110] = far[-110:] = False; far[:, :110] = far[:, -110:] = False
    far &= res.valid
    assert far.sum() > 10_000 and d[far].max() <= 1e-3 * np.abs(full[far]).max()  # exact where the context is whole
    assert d[cov > 1].max() > 0.5  # ... but not at the seams


def test_untrained_lite_stitching(scene, stored, net):
    """Untrained lite network (seed 0): in window cores the stitched mask is exactly the per-window prediction; the stitched
    logits match a single full-image prediction within 2% of the logit range everywhere (measured: ~1e-3 of it)."""
    res = predict_scene(scene, model=net, window=512, overlap=64, progress=False)
    cov = window_cores(res.windows, (H, W))
    for k in (0, 7, len(res.windows) - 1):
        y0, y1, x0, x1 = res.windows[k]
        one = net(stored[y0:y1, x0:x1].copy(), np.zeros((2, y1 - y0, x1 - x0), np.float32), None)
        core = (cov[y0:y1, x0:x1] == 1) & res.valid[y0:y1, x0:x1]  # (a pure-black pixel is no data: logit NODATA_LOGIT)
        assert core.sum() > 20_000
        np.testing.assert_array_equal(res.mask[y0:y1, x0:x1][core], (one > 0)[core])
    full = net(stored, np.zeros((2, H, W), np.float32), None)
    v = res.valid  # (one pure-black pixel of the synthetic image counts as no data)
    d = np.abs(res.logits.astype(np.float32) - full)[v]
    assert d.max() <= 0.02 * np.ptp(full), (d.max(), np.ptp(full))
    # no seam artefact: the mask disagrees with the full-image mask on a vanishing fraction of pixels
    assert (res.mask != (full > 0))[v].mean() < 1e-3


def test_segment_scene_outputs(scene, tmp_path):
    def road_model(image, prompts, prev=None):  # grey road paint -> positive logits
        return (2 - 40 * np.abs(image - image.mean(-1, keepdims=True)).sum(-1)).astype(np.float32)
    out = segment_scene(scene, tmp_path / "out", model=road_model, progress=False)
    with rasterio.open(scene) as src, rasterio.open(out["mask"]) as m:
        assert (m.crs, m.transform, m.shape, m.dtypes[0]) == (src.crs, src.transform, src.shape, "uint8")
        assert m.compression.value == "LZW"
        mask = m.read(1)
        assert set(np.unique(mask)) <= {0, 255}
    fc = json.loads(out["geojson"].read_text())
    assert fc["features"] and all(f["geometry"]["type"] == "LineString" for f in fc["features"])
    assert all(f["properties"]["crs"] == CRS for f in fc["features"])
    for f in fc["features"][:20]:  # 1 m pixels: metres == pixels
        assert abs(f["properties"]["length_m"] - f["properties"]["length_px"]) < 1e-6 * max(1, f["properties"]["length_px"])
    xy = np.array([c for f in fc["features"] for c in f["geometry"]["coordinates"]])
    assert 500_000 <= xy[:, 0].min() and xy[:, 0].max() <= 500_000 + W and 5_000_000 - H <= xy[:, 1].min()
    with open_scene(scene) as sc:
        assert geojson_on_mask(fc, mask == 255, sc) == 1.0  # every vertex maps back onto the mask (2 px tolerance)
    summary = json.loads(out["summary"].read_text())
    assert summary["crs"] == CRS and summary["windows"] == 4 * 5


def test_centrelines_reproduce_mask(world):
    cl = graph_centrelines(world.graph, T, CRS)
    ras = rasterize_centrelines(cl, (H, W), T, crs=CRS)
    assert iou(ras, world.mask) >= 0.9
    # the same centrelines in WGS84 are reprojected onto the UTM grid
    cl84 = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:4326"}},
            "features": [{**f, "geometry": transform_geom(CRS, "EPSG:4326", f["geometry"])} for f in cl["features"]]}
    # EPSG:4326 is lat/lon in authority order, but GeoJSON (and transform_geom with EPSG:4326) are lon/lat
    assert iou(rasterize_centrelines(cl84, (H, W), T, crs=CRS), world.mask) >= 0.9


def test_centreline_crs_refused_and_assumed(world):
    cl = graph_centrelines(world.graph, T, CRS)
    with pytest.raises(ValueError, match="scene has no CRS"):
        rasterize_centrelines(cl, (H, W), None)
    bare = {"type": "FeatureCollection", "features": cl["features"]}
    with pytest.warns(UserWarning, match="assuming the scene's"):
        rasterize_centrelines(bare, (H, W), T, crs=CRS)
    with pytest.raises(ValueError, match="unsupported GeoJSON geometry"):
        rasterize_centrelines({"type": "Foo", "coordinates": []}, (H, W), T, crs=CRS, vector_crs=CRS)


def test_fuse_and_tiles(world, scene, tmp_path):
    cl = graph_centrelines(world.graph, T, CRS)
    band = rasterize_centrelines(cl, (H, W), T, crs=CRS, widths_m={k: 2.0 for k in ("default", "motorway", "residential")})
    fused = fuse_with_prediction(band, world.mask, buffer_px=10)
    assert iou(fused, world.mask) > iou(band, world.mask)
    rows = cut_tiles(scene, fused, tmp_path / "ds", tile=512, source="utm", split={"train": 0.7, "val": 0.3})
    assert len(rows) == 3 * 4
    ds = RoadTiles(tmp_path / "ds")
    assert len(ds) == 12 and ds[0]["image"].shape == (3, 512, 512)
    stem = "utm_r000988_c001488"  # the bottom-right tile, shifted back to end at the scene's edge
    rec = next(i for i, r in enumerate(ds.records) if r["stem"] == stem)
    np.testing.assert_array_equal(ds[rec]["mask"][0].numpy() > 0.5, fused[988:, 1488:])


def test_plain_png_pixel_mode(world, tmp_path):
    from roadgie.data import save_image
    png = tmp_path / "scene.png"; save_image(png, world.image[:600, :700])
    with pytest.warns(UserWarning, match="no CRS"):
        out = segment_scene(png, tmp_path / "o", model=blur_model(3), window=256, overlap=32, progress=False)
    fc = json.loads(out["geojson"].read_text())
    assert all(f["properties"]["crs"] is None and f["properties"]["length_m"] is None for f in fc["features"])
    with rasterio.open(out["mask"]) as m:
        assert m.crs is None and m.shape == (600, 700)


def test_empty_and_nodata_scenes(tmp_path):
    calls = []
    def spy(image, prompts, prev=None):
        calls.append(1); return np.full(image.shape[:2], 5.0, np.float32)  # "road everywhere"
    z = write_geotiff(tmp_path / "zeros.tif", np.zeros((600, 700, 3), np.uint8), CRS, T)
    out = segment_scene(z, tmp_path / "z", model=spy, window=256, overlap=32, progress=False)
    with rasterio.open(out["mask"]) as m:
        assert m.read(1).max() == 0 and m.dataset_mask().max() == 0
    assert calls == [] and json.loads(out["geojson"].read_text())["features"] == []
    img = np.full((600, 700, 3), 120, np.uint8); img[:, :300] = 7
    nd = write_geotiff(tmp_path / "nd.tif", img, CRS, T, nodata=7)  # left part is nodata (value 7 in every band)
    res = predict_scene(nd, model=spy, window=256, overlap=32, progress=False)
    assert not res.mask[:, :300].any() and res.mask[:, 300:].all() and not res.valid[:, :300].any()


def test_prompts_map_coordinates(scene):
    "A positive scribble in map coordinates reaches every window it crosses, and only those."
    gj = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"width": 3},
          "geometry": {"type": "LineString", "coordinates": [[500_010.5, 4_999_200.5], [501_990.5, 4_999_200.5]]}}]}
    seen = []
    def f(image, prompts, prev=None):
        seen.append(prompts[0].sum() > 0); return (20 * prompts[0] - 10).astype(np.float32)
    res = predict_scene(scene, model=f, prompts=gj, window=512, overlap=64, progress=False)
    assert res.mask[799, 10:1991].all() and res.mask.sum() < 3 * 2100
    ys = cover_span(0, H, H, 512, 64)
    assert sum(seen) == sum(a - 3 <= 799 < b + 3 for a, b in ys) * len(cover_span(0, W, W, 512, 64))


def test_segment_drops_short_pieces_and_says_what_it_is(scene, tmp_path):
    """A speckled prediction: with the default --min-length (10 m on this 1 m grid) every connected piece of the written
    network is at least 10 m long, the specks are gone from mask.tif too, the summary counts them and says that a
    no-prompt run is a first draft; min_length=0 keeps them. quicklook.png is the scene downsampled, titled."""
    import networkx as nx
    from PIL import Image
    def speckled(image, prompts, prev=None):  # grey road paint -> road, plus every 7th pixel block as a speck
        g = 2 - 40 * np.abs(image - image.mean(-1, keepdims=True)).sum(-1)
        yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
        return np.where((yy % 41 < 3) & (xx % 37 < 3), 5.0, g).astype(np.float32)
    out = segment_scene(scene, tmp_path / "a", model=speckled, progress=False)
    raw = segment_scene(scene, tmp_path / "b", model=speckled, progress=False, min_length=0)
    s, s0 = json.loads(out["summary"].read_text()), json.loads(raw["summary"].read_text())
    assert (s["min_length"], s["min_length_unit"], s0["pieces_dropped"]) == (10.0, "m", 0)
    assert s["pieces_dropped"] > 100 and s["n_roads"] < s0["n_roads"] and "first draft" in s["note"]
    fc = json.loads(out["geojson"].read_text())
    g = nx.Graph()
    for f in fc["features"]: g.add_edge(f["properties"]["u"], f["properties"]["v"], length=f["properties"]["length_m"])
    assert min(g.subgraph(c).size(weight="length") for c in nx.connected_components(g)) >= 10.0
    with rasterio.open(out["mask"]) as a, rasterio.open(raw["mask"]) as b:
        kept, every = a.read(1) > 0, b.read(1) > 0
    assert (kept <= every).all() and kept.sum() < every.sum()
    assert ndimage.label(kept, np.ones((3, 3)))[1] < ndimage.label(every, np.ones((3, 3)))[1]
    im = Image.open(out["quicklook"])
    assert im.format == "PNG" and max(im.size) <= 1300 and min(im.size) >= 300
