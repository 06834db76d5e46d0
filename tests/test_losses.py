"Fault and contract tests for roadgie.losses (fast, CPU)."
import numpy as np, pytest, torch
from roadgie.losses import RoadGIELoss, skeleton_tube, batch_tubes, skeleton_recall_loss


def _road(size=48):
    m = np.zeros((size, size), bool); m[size // 2 - 4: size // 2 + 5, 3:-3] = True
    return m


def test_contract_signature_and_logs():
    gt = torch.from_numpy(_road()[None, None].astype(np.float32))
    tube = batch_tubes(gt)
    lg = torch.randn(1, 1, 48, 48, requires_grad=True)
    total, logs = RoadGIELoss(focal=1.0, dice=1.0, skeleton=1.0, cldice=0.5, gamma=2.0)(lg, gt, tube, None)
    assert set(logs) == {"focal", "dice", "skeleton", "cldice", "total"}
    assert all(isinstance(v, float) for v in logs.values())
    assert abs(logs["total"] - (logs["focal"] + logs["dice"] + logs["skeleton"] + 0.5 * logs["cldice"])) < 1e-5
    total.backward()
    assert torch.isfinite(lg.grad).all() and lg.grad.abs().sum() > 0


@pytest.mark.parametrize("bad,msg", [
    (torch.zeros(3, 48, 48), "expected logits of shape (B,1,H,W), got (3, 48, 48)"),
    (np.zeros((1, 1, 48, 48)), "torch tensor"),
])
def test_bad_logits(bad, msg):
    z = torch.zeros(1, 1, 48, 48)
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        RoadGIELoss()(bad, z, z)


def test_skeleton_term_bounds_and_prompt_range():
    gt = _road(); T = torch.from_numpy(skeleton_tube(gt))[None, None]
    for lg in (torch.full_like(T, -40.), torch.full_like(T, 40.), torch.randn_like(T)):
        v = skeleton_recall_loss(lg, T).item()
        assert 0 <= v <= 1
    with pytest.raises(ValueError, match="prompt_mask values in"):
        skeleton_recall_loss(T, T, prompt_mask=-T)


def test_skeleton_tube_bad_input():
    with pytest.raises(ValueError, match=r"expected mask of shape \(H,W\)"):
        skeleton_tube(np.zeros((2, 3, 4)))
    assert skeleton_tube(np.zeros((4, 4), bool)).dtype == np.float32
