"""Fault and contract tests for roadgie.model: budgets, odd sizes, ONNX agreement, damaged weight files."""
import json

import numpy as np
import pytest
import torch

from roadgie.model import (MODELS, Predictor, build_model, count_flops, load_model, load_pretrained, make_input,
                           save_model)


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return build_model("lite").eval()


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_budgets(lite):
    assert abs(n_params(build_model("paper")) - 3_774_249) <= 0.01 * 3_774_249
    assert n_params(lite) <= 3_700_000


def test_lite_flop_budget(lite):
    assert count_flops(lite, 512) <= 4e9  # FlopCounterMode, 1 MAC = 2 FLOP


@pytest.mark.parametrize("name", ["lite", "paper"])
@pytest.mark.parametrize("hw", [(400, 400), (333, 517)])
def test_odd_sizes(name, hw):
    m = build_model(name).eval()
    if name == "paper": hw = (hw[0] // 8 + 1, hw[1] // 8 + 1)  # the paper network is slow on a CPU: same oddness, smaller
    with torch.inference_mode():
        y = m(torch.rand(1, 6, *hw))
    assert y.shape == (1, 1, *hw) and y.dtype == torch.float32


def test_bad_inputs(lite):
    with pytest.raises(ValueError, match="got shape"): lite(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="dtype torch.float16"): lite(torch.rand(1, 6, 32, 32).half())
    with pytest.raises(ValueError, match="got dtype uint8"): make_input(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="unknown model"): build_model("big")


def test_eval_determinism(lite):
    x = torch.rand(1, 6, 96, 80)
    with torch.inference_mode():
        assert torch.equal(lite(x), lite(x))


def test_onnx_agrees_with_torch(lite):
    p, t = Predictor(lite, backend="onnx"), Predictor(lite, backend="torch")
    rng = np.random.default_rng(1)
    img, pr = rng.random((333, 517, 3), dtype=np.float32), (rng.random((2, 333, 517)) > 0.99).astype(np.float32)
    a, b = p.predict(img, pr), t.predict(img, pr)
    assert a.shape == (333, 517) and a.dtype == np.float32
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max())


def test_weight_round_trip_and_damage(tmp_path):
    lite = build_model("lite").eval()  # fresh: a Predictor turns its model channels_last, which changes rounding
    path = save_model(lite, tmp_path / "w.safetensors")
    x = torch.rand(1, 6, 40, 40)
    with torch.inference_mode():
        assert torch.equal(load_model(path)(x), lite(x))
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="w.safetensors: not a readable safetensors"): load_model(path)
    path.write_bytes(raw)
    cfg = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**cfg, "config": {**cfg["config"], "widths": [8, 16, 32, 64]}}))
    with pytest.raises(ValueError, match="shape mismatch"): load_model(path)
    path.with_suffix(".json").write_text(json.dumps({**cfg, "name": "paper", "config": MODELS["paper"]}))
    with pytest.raises(ValueError, match="weights are for 'lite'"): load_model(path)
    with pytest.raises(FileNotFoundError, match="weights file not found"): load_model(tmp_path / "missing.safetensors")


def test_load_pretrained_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="roadgie-train"):
        load_pretrained(tmp_path / "roadgie-lite.safetensors")
