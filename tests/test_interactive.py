"""InteractiveSession (roadgie.interactive): idempotent predict, bit-exact undo/redo, bounded memory and flat cost per stroke."""
import time

import numpy as np
import pytest

from roadgie.interactive import InteractiveSession, SessionPrompts, benchmark_history
from roadgie.prompts import PromptState


def drift(image, prompts, prev_logits):
    "A model that feeds half its previous output back: every prediction changes every logit, so replays would drift."
    return (0.5 * prev_logits + 4 * prompts[0] - 4 * prompts[1] - 1).astype(np.float32)


class Counting:
    "Wrap a model and count its calls."
    def __init__(self, f): self.f, self.calls = f, 0
    def __call__(self, *a):
        self.calls += 1
        return self.f(*a)


def shown(s):
    "What the session shows: copies of mask, logits, prompt channels and the number of prompts."
    return s.mask.copy(), s.logits.copy(), s.prompts.pos.copy(), s.prompts.neg.copy(), s.n_prompts


def assert_shows(s, state):
    mask, logits, pos, neg, n = state
    assert s.n_prompts == n
    assert np.array_equal(s.mask, mask) and np.array_equal(s.logits, logits)
    assert np.array_equal(s.prompts.pos, pos) and np.array_equal(s.prompts.neg, neg)


def test_predict_twice_is_idempotent_and_calls_the_model_once():
    m = Counting(lambda im, pr, prev: prev + 1)
    s = InteractiveSession(np.zeros((16, 16)), model=m)
    s.add_click(3, 3)
    m1 = s.predict(); l1 = s.logits.copy()
    m2 = s.predict(); m3 = s.predict()
    assert m.calls == 1 and s.n_predictions == 1 and s.last_windows == []
    assert np.array_equal(m1, m2) and np.array_equal(m1, m3) and np.array_equal(s.logits, l1)
    s.add_click(8, 8); s.predict(); s.predict()
    assert m.calls == 2 and np.array_equal(s.logits, np.full((16, 16), 2.0))


def test_first_predict_without_prompts_runs_once():
    m = Counting(lambda im, pr, prev: np.full(prev.shape, -3.0, np.float32))
    s = InteractiveSession(np.zeros((16, 16)), model=m)
    s.predict(); s.predict()
    assert m.calls == 1 and (s.logits == -3).all()


def test_predict_idempotent_on_windowed_large_tile():
    m = Counting(drift)
    s = InteractiveSession(np.zeros((1100, 1100), np.uint8), model=m, window=512)
    s.add_scribble([(100, 100), (1000, 900)]); s.predict()
    n, before = m.calls, s.logits.copy()
    assert n > 1   # several windows
    s.predict()
    assert m.calls == n and np.array_equal(s.logits, before)


def test_undo_redo_restore_exact_states():
    s = InteractiveSession(np.zeros((40, 60)), model=drift)
    seen = [shown(s)]
    strokes = [((5, 10), (50, 12), True), ((30, 2), (31, 35), True), ((10, 30), (55, 30), False),
               ((20, 20), (40, 25), True), ((2, 38), (58, 2), False)]
    for a, b, pos in strokes:
        s.add_scribble([a, b], positive=pos); s.predict(); seen.append(shown(s))
    n = s.n_predictions
    s.undo(); assert_shows(s, seen[4]); s.predict(); assert_shows(s, seen[4])
    s.undo(); s.undo(); assert_shows(s, seen[2])                       # undo after undo
    s.redo(); assert_shows(s, seen[3]); s.predict(); assert_shows(s, seen[3])
    s.undo(); assert_shows(s, seen[2])                                 # undo after redo
    s.redo(); s.redo(); s.redo(); assert_shows(s, seen[5]); assert not s.redo()
    while s.undo(): pass
    assert_shows(s, seen[0])
    for i in range(1, 6):
        assert s.redo(); assert_shows(s, seen[i])
    assert s.n_predictions == n                                        # undo and redo never ran the model


def test_clear_undo_redo_exact():
    s = InteractiveSession(np.zeros((40, 60)), model=drift)
    s.add_scribble([(5, 10), (50, 12)]); s.predict(); s.add_click(20, 20, positive=False); s.predict()
    before = shown(s)
    s.clear(); s.predict(); cleared = shown(s)
    assert s.n_prompts == 0 and len(s.prompts.history) == 0
    s.undo(); assert_shows(s, before)
    s.redo(); assert_shows(s, cleared)
    s.undo(); s.undo(); s.redo(); assert_shows(s, before)


def test_stale_state_predicted_after_undo_then_redo_is_exact():
    s = InteractiveSession(np.zeros((40, 60)), model=drift)
    s.add_scribble([(5, 10), (50, 12)]); s.predict()
    s.add_scribble([(30, 2), (31, 35)]); stale = shown(s)              # shown before a prediction
    s.add_click(40, 30, positive=False); s.predict(); after = shown(s)
    s.undo(); assert_shows(s, stale)
    s.predict(); predicted = shown(s)
    assert not np.array_equal(predicted[1], stale[1])
    s.redo(); assert_shows(s, after)
    s.undo(); assert_shows(s, predicted)                               # as it was last shown


class Reference:
    "The obvious session: full copies of everything for every undo step; prompts rasterised from scratch."
    def __init__(self, shape, model, max_history):
        self.shape, self.model, self.cap = shape, model, max_history
        self.prompts, self.logits, self.dirty, self.undos, self.redos = [], np.zeros(shape, np.float32), True, [], []

    def state(self): return list(self.prompts), self.logits.copy(), self.dirty
    def set(self, st): self.prompts, self.logits, self.dirty = list(st[0]), st[1].copy(), st[2]
    def push(self):
        self.undos.append(self.state()); self.redos.clear()
        del self.undos[:max(len(self.undos) - self.cap, 0)]
    def add(self, m, pos): self.push(); self.prompts.append((m, pos)); self.dirty = True
    def clear(self): self.push(); self.prompts, self.logits, self.dirty = [], np.zeros(self.shape, np.float32), True
    def predict(self):
        if self.dirty:
            ch = PromptState.from_history(self.shape, self.prompts).to_channels().numpy()
            self.logits = np.asarray(self.model(None, ch, self.logits), np.float32); self.dirty = False
    def undo(self):
        if not self.undos: return False
        self.redos.append(self.state()); self.set(self.undos.pop()); return True
    def redo(self):
        if not self.redos: return False
        self.undos.append(self.state()); self.set(self.redos.pop()); return True


@pytest.mark.parametrize("max_history,seed", [(100, 0), (100, 1), (4, 2), (1, 3)])
def test_random_session_matches_full_snapshot_reference(max_history, seed):
    rng = np.random.default_rng(seed)
    H, W = 48, 64
    s = InteractiveSession(np.zeros((H, W)), model=drift, max_history=max_history)
    ref = Reference((H, W), drift, max_history)
    ops = rng.choice(["add", "add", "predict", "predict", "undo", "undo", "redo", "clear"], size=400,
                     p=[.2, .1, .2, .1, .15, .05, .15, .05])
    for op in ops:
        if op == "add":
            pts = np.clip(rng.uniform(0, [W - 1, H - 1], (2, 2)), 0, [W - 1, H - 1]); pos = bool(rng.random() < 0.7)
            rec = s.add_scribble(pts, positive=pos, width=int(rng.integers(1, 5)))
            ref.add(rec.full((H, W)), pos)
        else:
            got, want = getattr(s, op)(), getattr(ref, op)()
            if op in ("undo", "redo"): assert got == want
        assert s.n_prompts == len(ref.prompts)
        assert np.array_equal(s.logits, ref.logits)
        assert np.array_equal(s.mask, ref.logits > 0)
        want_ch = PromptState.from_history((H, W), ref.prompts)
        assert np.array_equal(s.prompts.pos, want_ch.pos) and np.array_equal(s.prompts.neg, want_ch.neg)
        assert len(s._undo) <= max_history and len(s._undo) == len(ref.undos) and len(s._redo) == len(ref.redos)


def test_history_is_strokes_and_reads_as_prompt_state():
    s = InteractiveSession(np.zeros((512, 512)), model="dilation")
    s.add_scribble([(10, 10), (60, 40)]); s.add_click(300, 300, positive=False); s.predict()
    m = np.zeros((512, 512), bool); m[100:104, 200:260] = True
    s.add_prompt_mask(m); s.predict()
    assert isinstance(s.prompts, PromptState) and isinstance(s.prompts, SessionPrompts)
    assert [r.patch.shape for r in s.records] == [(r.bbox[1] - r.bbox[0], r.bbox[3] - r.bbox[2]) for r in s.records]
    assert all(r.nbytes < 10_000 for r in s.records)
    hist = s.prompts.history                                    # what simulate_user and old callers read
    assert len(hist) == s.prompts.n_prompts == 3 and [p for _, p in hist] == [True, False, True]
    assert hist[2][0].shape == (512, 512) and np.array_equal(hist[2][0] > 0, m)
    assert sum(pos for _, pos in hist) == 2
    cp = s.prompts.copy()
    assert type(cp) is PromptState and np.array_equal(cp.pos, s.prompts.pos) and np.array_equal(cp.neg, s.prompts.neg)
    with pytest.raises(TypeError, match="through the InteractiveSession"): s.prompts.add(m)
    assert s.history_nbytes() < 3 * 2**20


def test_large_tile_undo_keeps_only_the_changed_window():
    s = InteractiveSession(np.zeros((1536, 1536), np.uint8), model="dilation", window=512)
    s.add_scribble([(100, 100), (1400, 1300)]); s.predict(); first = shown(s)
    s.add_click(1300, 1208, positive=False); s.predict(); second = shown(s)
    patch = s._undo[-1].patches[-1]
    y0, y1, x0, x1 = patch.box
    assert (y1 - y0) * (x1 - x0) <= 512 * 512 and patch.crop.nbytes <= 512 * 512 * 4   # at most one window
    s.undo(); assert_shows(s, first)
    s.redo(); assert_shows(s, second)


def test_thousand_strokes_bounded_memory_and_flat_time(capsys):
    t0 = time.perf_counter()
    r = benchmark_history(1000, size=512, model="dilation")
    wall = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n1000 strokes on 512x512: first 50 median {r['first_ms']:.1f} ms, last 50 {r['last_ms']:.1f} ms, "
              f"stroke 1 {r['stroke_ms'][0]:.1f} ms, stroke 1000 {r['stroke_ms'][-1]:.1f} ms; "
              f"memory +{r['growth_mb']:.2f} MB ({r['kb_per_stroke']:.2f} KB/stroke), wall {wall:.1f} s")
    assert r["growth_mb"] < 100 and r["kb_per_stroke"] < 50
    assert r["last_ms"] < 60
    assert r["last_ms"] < 2 * r["first_ms"] + 5       # loose: a shared CI machine is noisy
    assert wall < 50
