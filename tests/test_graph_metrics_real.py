"""Graph and metrics on real road masks from ../shared/data/roads (skipped when the data is absent, failed under CI)."""
import numpy as np
import pytest
from PIL import Image
from skimage.morphology import skeletonize

from roadgie.graph import mask_to_graph, graph_length, graph_to_geojson
from roadgie.metrics import evaluate, apls, betti_numbers


def _masks(root, n=3):
    paths = sorted(root.glob("*/masks/*.png"))
    assert paths, f"no masks under {root}"
    step = max(1, len(paths) // n)
    return [(p.name, np.array(Image.open(p)) > 0) for p in paths[::step][:n]]


def test_graph_of_real_tiles(shared_roads):
    for name, m in _masks(shared_roads):
        G = mask_to_graph(m)
        assert G.number_of_edges() > 0, name
        n_sk = skeletonize(m).sum()
        # the graph covers the skeleton: total length within [0.7, 1.3] x skeleton pixel count (diagonals count 1.41)
        assert 0.7 * n_sk < graph_length(G) < 1.3 * n_sk, (name, graph_length(G), n_sk)
        for u, v, d in G.edges(data=True):
            assert np.allclose(d["pts"][0], G.nodes[min(u, v)]["xy"]) and np.allclose(d["pts"][-1], G.nodes[max(u, v)]["xy"])
        assert len(graph_to_geojson(G)["features"]) == G.number_of_edges()


def test_metrics_of_real_tiles(shared_roads):
    for name, m in _masks(shared_roads):
        r = evaluate(m, m)
        assert all(r[k] == 1.0 for k in ("dice", "recall", "precision", "iou", "cldice", "apls")), (name, r)
        assert r["b0_error"] == 0 and r["b1_error"] == 0
        z = evaluate(np.zeros_like(m), m)
        assert z["apls"] == 0 and z["recall"] == 0 and z["b0_error"] == betti_numbers(m)[0]
        assert not any(np.isnan(v) for v in z.values())
        W = m.shape[1]; c = W // 4 + int(np.argmax(m[:, W // 4: 3 * W // 4].sum(0)))   # the column crossing most road
        cut = m.copy(); cut[:, c - 3: c + 3] = False
        assert apls(cut, m) < 1.0, (name, c)


def test_metrics_bad_input():
    m = np.zeros((8, 8), bool)
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate(m, np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match=r"pred: expected an \(H,W\) mask"):
        evaluate(m[None], m[None])
