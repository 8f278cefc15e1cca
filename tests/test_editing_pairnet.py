"""The pairwise occlusion-order classifier (maskgen.editing.pairnet): inputs, antisymmetry,
synthetic pairs, ``amodal order-train`` (tiny: train, finished, resume, bad input), its cue in
``occlusion_order``, and the layers' revealable mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _amodal_tiny import tiny_scenes
from _cli import check_bad_input, run_cli
from maskgen.amodal.predictor import Completion
from maskgen.editing.erase import revealable_mask
from maskgen.editing.order import convex_hulls, occlusion_order
from maskgen.editing.pairnet import (
    PairData,
    PairOrderNet,
    front_logits,
    load_shipped_pairnet,
    pair_inputs,
    synthetic_batch,
)


def two_squares() -> np.ndarray:
    """40 x 40: square 0 (rows/cols 8:28) partly hidden by square 1 in front (14:34, 18:38)."""
    v = np.zeros((2, 40, 40), bool)
    v[0, 8:28, 8:28] = True
    v[1, 14:34, 18:38] = True
    v[0] &= ~v[1]
    return v


def test_inputs_and_antisymmetry() -> None:
    v = two_squares()
    x = pair_inputs(v, [(0, 1), (1, 0)], size=16)
    assert x.shape == (2, 6, 16, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0][[1, 0, 2, 4, 3, 5]], x[1])  # swapping the pair
    torch.manual_seed(0)
    net = PairOrderNet().eval()
    z = front_logits(net, v, [(0, 1), (1, 0)])
    assert z[0] == pytest.approx(-z[1], abs=1e-5) and abs(z[0]) > 0
    plain = front_logits(net, v, [(0, 1)], flips=False)
    with torch.inference_mode():
        t = torch.from_numpy(pair_inputs(v, [(0, 1)]))
        one = float(net(t))
        flipped = [float(net(t.flip(d))) for d in ((-1,), (-2,), (-2, -1))]
    assert plain[0] == pytest.approx(one, abs=1e-5)
    assert z[0] == pytest.approx((one + sum(flipped)) / 4, abs=1e-5)


def test_synthetic_pairs_are_labelled_by_construction() -> None:
    lab = np.full((40, 40), -1, np.int16)
    lab[10:30, 5:20] = 0
    shape = np.ones((12, 12), bool)
    data = PairData([lab], [shape])
    x, y = synthetic_batch(np.random.default_rng(0), data, 40, size=16)
    assert x.shape == (40, 6, 16, 16) and set(np.unique(y)) == {0.0, 1.0}
    x2, y2 = synthetic_batch(np.random.default_rng(0), data, 40, size=16)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # two rectangles: the occludee's visible hull reaches into the occluder, never the
    # reverse, so wherever the hull cue is clear it must agree with the label
    clear = 0
    for xi, yi in zip(x, y, strict=True):
        a, b = xi[3] > 0.5, xi[4] > 0.5
        ha, hb = convex_hulls(np.stack([a, b]))
        into_b, into_a = int((ha & b).sum()), int((hb & a).sum())
        if abs(into_b - into_a) > 3:
            clear += 1
            assert (into_a > into_b) == (yi == 1.0)
    assert clear >= 5


def test_shipped_classifier_orders_two_squares() -> None:
    z = front_logits(load_shipped_pairnet(), two_squares(), [(1, 0)])
    assert z[0] > 0  # square 1 is in front


class FakeNet(torch.nn.Module):
    """Says the pair's first instance is in front when its visible area is the smaller one."""

    cfg = type("C", (), {"crop_size": 16})()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * (x[:, 4].sum((1, 2)) - x[:, 3].sum((1, 2)))


def _comps(v: np.ndarray) -> list[Completion]:
    h, w = v.shape[1:]
    return [
        Completion((h, w), (0, 0, w, h), m, m, np.where(m, 0.9, 0.01).astype(np.float32),
                   np.zeros((0, h, w), bool), np.zeros(0), np.zeros(4), np.zeros(4), "supplied",
                   0.5, 1.0, np.zeros(8, np.float32), np.ones(8, np.float32))
        for m in v
    ]  # fmt: skip


def test_classifier_cue_decides_with_its_weight() -> None:
    v = two_squares()  # 0 has the smaller visible area: FakeNet says 0 is in front
    order = occlusion_order(v, _comps(v), weights={"pairnet": 1.0}, pairnet=FakeNet())
    assert order.pairs == [(0, 1)] and order.evidence.front[0, 1] > 0
    order = occlusion_order(v, _comps(v), weights={"pairnet": 0.0, "area": -1.0}, pairnet=None)
    assert order.pairs == [(1, 0)] and order.evidence.front is None


def test_pairs_follow_the_ranking_through_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    v = np.zeros((3, 30, 30), bool)  # three touching bars
    v[0, 0:10, 0:20], v[1, 10:20, 0:20], v[2, 0:20, 20:30] = True, True, True
    table = {(0, 1): 3.0, (1, 2): 2.0, (0, 2): -1.0}  # 0 before 1 before 2, yet 2 before 0

    def logits(net, vm, pairs, flips=True):  # noqa: ANN001, ANN202
        return np.array([table[(a, b)] if (a, b) in table else -table[(b, a)] for a, b in pairs])

    monkeypatch.setattr("maskgen.editing.pairnet.front_logits", logits)
    w = {"pairnet": 1.0}
    own = occlusion_order(v, _comps(v), w, pairnet=FakeNet(), follow_ranking=False)
    assert set(own.pairs) == {(0, 1), (1, 2), (2, 0)}
    ranked = occlusion_order(v, _comps(v), w, pairnet=FakeNet())
    assert ranked.ranking == [0, 1, 2] and set(ranked.pairs) == {(0, 1), (1, 2), (0, 2)}


def test_revealable_mask_joins_mode_and_samples() -> None:
    m = np.zeros((10, 10), bool)
    m[2:5, 2:5] = True
    s = np.zeros((8, 6, 6), bool)
    s[0, 0, 0] = s[1, 5, 5] = s[2, 5, 5] = True  # (7, 7) in 2 of 8 samples, (2, 2) in the mode
    s[3, 0, 5] = True  # (2, 7) in 1 of 8: too few
    c = Completion((10, 10), (2, 2, 8, 8), m[2:8, 2:8], m[2:8, 2:8], None, s, np.ones(8),
                   np.zeros(4), np.zeros(4), "supplied", 0.5, 1.0, np.zeros(8, np.float32),
                   np.ones(8, np.float32))  # fmt: skip
    r = revealable_mask(c)
    assert r.sum() == 9 + 1 and r[7, 7] and r[2, 2] and not r[2, 7] and not r[0, 0]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=6, seed=5)


def _train(scenes: Path, out: Path, *extra: str) -> list[str]:
    data = scenes / "annotations/test_coco.json"
    return ["amodal", "order-train", "--data", str(data), "--out", str(out), "--preset", "tiny",
            "--quiet", "--threads", "1", "--checkpoint-every", "1", *extra]  # fmt: skip


def test_order_train_resume_and_finished(scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    rc, _, err = run_cli(_train(scenes, tmp_path / "a"), capsys)
    assert rc == 0, err
    net = PairOrderNet.from_folder(tmp_path / "a")
    rc, _, err = run_cli(_train(scenes, tmp_path / "b", "--stop-after", "2"), capsys)
    assert rc == 0 and not (tmp_path / "b/model").exists(), err
    rc, _, err = run_cli(_train(scenes, tmp_path / "b"), capsys)
    assert rc == 0, err
    other = PairOrderNet.from_folder(tmp_path / "b")
    for (k, a), b in zip(net.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    before = (tmp_path / "a/model/model.safetensors").read_bytes()
    rc, _, _ = run_cli(_train(scenes, tmp_path / "a"), capsys)  # finished: not retrained
    assert rc == 0 and (tmp_path / "a/model/model.safetensors").read_bytes() == before


def test_order_train_bad_input(scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    check_bad_input(
        ["amodal", "order-train", "--data", str(tmp_path / "none.json"), "--out",
         str(tmp_path / "r")], capsys, "none.json",
    )  # fmt: skip
    assert not (tmp_path / "r").exists()
    check_bad_input(_train(scenes, tmp_path / "r", "--crop-size", "12"), capsys, "--crop-size")
    check_bad_input(_train(scenes, tmp_path / "r", "--steps", "0"), capsys, "--steps")
    check_bad_input(
        ["amodal", "order", "--masks", str(scenes / "annotations/test_coco.json"), "--images",
         str(scenes / "images/test"), "--out", str(tmp_path / "o.json"), "--pair-net",
         str(tmp_path / "nowhere")], capsys, "nowhere",
    )  # fmt: skip
