"""Scene layers (maskgen.editing.scene) and occlusion order (maskgen.editing.order) on tiny
hand-made scenes: exact re-composite, layer files round trip, each edit operation, ranking."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from maskgen.amodal.predictor import Completion
from maskgen.core.rle import encode_rle
from maskgen.data.types import ImageRecord, Instance
from maskgen.editing.order import occlusion_order, path_steps, rank_from_pairs
from maskgen.editing.scene import Scene
from maskgen.errors import MaskgenError
from maskgen.evaluation.order import evaluate_order, gt_pairs

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)


def square_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 x 40: a red square (0, rows/cols 8:28) partly hidden by a green one in front (1, rows
    14:34, cols 18:38) on blue. Returns image, visible masks, true amodal masks."""
    img = np.empty((40, 40, 3), np.uint8)
    img[:] = BLUE
    a = np.zeros((2, 40, 40), bool)
    a[0, 8:28, 8:28] = True
    a[1, 14:34, 18:38] = True
    v = a.copy()
    v[0] &= ~a[1]
    img[v[0]], img[v[1]] = RED, GREEN
    return img, v, a


class OraclePredictor:
    """Completes each instance to a given amodal mask (probability 0.9 on it, 0.01 elsewhere),
    with samples = the mask shrunk by one row at the bottom (enough to test use_sample)."""

    def __init__(self, amodal: np.ndarray) -> None:
        self.amodal = amodal

    def complete_image(self, vm, samples=0, seed=0, return_probability=True, **kw):  # noqa: ANN001, ANN201
        h, w = vm.shape[1:]
        out = []
        for k in range(len(vm)):
            a = self.amodal[k] | vm[k]
            p = np.where(a, 0.9, 0.01).astype(np.float32)
            s = np.repeat(a[None], samples, axis=0)
            if samples:
                rows = np.flatnonzero(a.any(axis=1))
                s[:, rows[-1]] = vm[k][rows[-1]]
            out.append(
                Completion(
                    (h, w), (0, 0, w, h), a, a, p, s, np.ones(samples), np.zeros(4),
                    np.zeros(4), "supplied", 0.5, 1.0, np.zeros(8, np.float32),
                    np.ones(8, np.float32),
                )
            )  # fmt: skip
        return out


def test_order_puts_the_occluder_in_front() -> None:
    img, v, a = square_scene()
    comps = OraclePredictor(a).complete_image(v)
    order = occlusion_order(v, comps)
    assert order.pairs == [(1, 0)] and order.ranking == [1, 0]
    assert order.evidence.llr[0, 1] > 10 * max(order.evidence.llr[1, 0], 1e-3)


def test_pair_joined_through_an_occluder_is_found() -> None:
    """A bar (0) runs on under a narrow post (1) into a block (2) in front: the bar's and the
    block's visible masks do not touch, and the bar's completion stops under the post."""
    amodal = np.zeros((3, 30, 40), bool)
    amodal[0, 10:20, 2:24] = True
    amodal[1, 5:25, 12:16] = True
    amodal[2, 5:25, 16:30] = True
    v = amodal.copy()
    v[0] &= ~(amodal[1] | amodal[2])  # visible cols 2:12
    comps = [
        Completion((30, 40), (0, 0, 40, 30), m, m, np.where(m, 0.9, 0.0).astype(np.float32),
                   np.zeros((0, 30, 40), bool), np.zeros(0), np.zeros(4), np.zeros(4),
                   "supplied", 0.5, 1.0, np.zeros(8, np.float32), np.ones(8, np.float32))
        for m in (v[0] | amodal[1] & amodal[0], v[1], v[2])
    ]  # fmt: skip
    steps = path_steps(v, 8)
    assert steps[0, 1] == steps[1, 2] == 1 and steps[0, 2] == steps[2, 0] == 5  # 4 px of post
    assert np.isinf(path_steps(v, 4)[0, 2])
    w = {"llr": 1.0, "area": -1.0}  # the smaller visible area behind: the bar (100 vs 280 px)
    far = occlusion_order(v, comps, w, pairnet=None, max_path=5, min_far_score=0.5)
    assert (2, 0) in far.pairs and far.ranking.index(2) < far.ranking.index(0)
    assert (0, 2) not in far.pairs and (2, 0) not in occlusion_order(
        v, comps, w, pairnet=None, max_path=4, min_far_score=0.5
    ).pairs  # too long a path
    unclear = occlusion_order(v, comps, w, pairnet=None, max_path=5, min_far_score=5.0)
    assert {frozenset(p) for p in unclear.pairs} == {frozenset((0, 1)), frozenset((1, 2))}


def test_ranking_tolerates_cycles() -> None:
    r = rank_from_pairs(4, [(0, 1), (1, 2), (2, 0), (3, 0)], [1.0, 1.0, 0.5, 2.0])
    assert sorted(r) == [0, 1, 2, 3] and r[0] == 3
    assert rank_from_pairs(3, [(2, 1), (1, 0)], [1.0, 1.0]) == [2, 1, 0]


def test_gt_pairs_and_scores() -> None:
    img, v, a = square_scene()
    rec = ImageRecord(1, "x.png", 40, 40, [
        Instance(10, 1, encode_rle(v[0]), encode_rle(a[0])),
        Instance(11, 1, encode_rle(v[1]), encode_rle(a[1])),
    ])  # fmt: skip
    assert gt_pairs(rec) == [(11, 10)]
    sc = evaluate_order([rec], {1: [[11, 10]]})
    assert (sc.accuracy, sc.precision, sc.f1) == (1.0, 1.0, 1.0)
    assert sc.baseline_accuracy("convex-hull") == 1.0  # the red hull reaches into green
    sc = evaluate_order([rec], {1: [[10, 11]]})
    assert sc.accuracy == 0.0 and sc.listed_pairs == 1
    cocoa = ImageRecord(2, "y.png", 40, 40, [
        Instance(1, 1, encode_rle(v[0]), occluded_by=[2]), Instance(2, 1, encode_rle(v[1]))
    ])  # fmt: skip
    assert gt_pairs(cocoa) == [(2, 1)]


@pytest.fixture()
def scene() -> tuple[Scene, np.ndarray, np.ndarray, np.ndarray]:
    img, v, a = square_scene()
    return Scene.from_image(img, v, OraclePredictor(a), ids=[10, 11], samples=2), img, v, a


def test_layers_recomposite_exactly_and_round_trip(scene, tmp_path: Path) -> None:  # noqa: ANN001
    sc, img, v, a = scene
    np.testing.assert_array_equal(sc.render(), img)
    np.testing.assert_array_equal(sc.visible_masks(), v)
    np.testing.assert_array_equal(sc.amodal_masks(), a)
    assert sc.order == [0, 1] and sc.ranking == [1, 0]
    # the plate has no object colour left; the red layer's hidden part is red
    assert np.abs(sc.background.astype(int) - BLUE).max() <= 4
    red = sc.layers[0].full("colour", (40, 40))[a[0] & ~v[0]]
    assert np.abs(red.astype(int) - RED).max() <= 4
    sc.save_layers(tmp_path / "l")
    names = sorted(p.name for p in (tmp_path / "l").iterdir())
    assert names == ["background.png", "layer_10.png", "layer_11.png", "manifest.json"]
    back = Scene.load_layers(tmp_path / "l")
    np.testing.assert_array_equal(back.render(), img)
    assert back.ids == [10, 11] and back.pairs == [(1, 0)]
    back.use_sample(0, 1)  # samples survive the round trip


def test_erase_reveals_the_completed_back_object(scene) -> None:  # noqa: ANN001
    sc, img, v, a = scene
    sc.erase(1)
    out, vis = sc.render(), sc.visible_masks()
    np.testing.assert_array_equal(vis[0], a[0])
    assert not vis[1].any()
    assert np.abs(out[a[0]].astype(int) - RED).max() <= 4
    assert np.abs(out[~a[0]].astype(int) - BLUE).max() <= 4
    with pytest.raises(MaskgenError, match="already erased"):
        sc.move(1, 1, 1)


def test_move_front_back_and_sample(scene) -> None:  # noqa: ANN001
    sc, img, v, a = scene
    sc.move(1, 2, 0)  # green moves right: a 2-px strip of red (its completion) shows
    vis = sc.visible_masks()
    np.testing.assert_array_equal(vis[1], np.roll(v[1], 2, axis=1))
    assert vis[0][20, 18:20].all() and not v[0][20, 18:20].any()
    sc.move(1, -2, 0)
    np.testing.assert_array_equal(sc.render(), img)
    sc.bring_to_front(0)  # red on top: the whole red square shows
    np.testing.assert_array_equal(sc.visible_masks()[0], a[0])
    sc.send_back(0)
    np.testing.assert_array_equal(sc.render(), img)
    sc.bring_to_front(0)
    sc.use_sample(0, 0)  # the sample lacks the square's bottom row
    assert sc.visible_masks()[0].sum() == a[0].sum() - 20 + int(v[0][27].sum())
    with pytest.raises(MaskgenError, match="sample 5 out of range"):
        sc.use_sample(0, 5)


def _broken(order: Sequence[int], pairs: list[tuple[int, int]], weights: list[float]) -> float:
    pos = {k: i for i, k in enumerate(order)}
    return sum(w for (f, b), w in zip(pairs, weights, strict=True) if pos[f] > pos[b])


def test_exact_ranking_is_a_minimum_feedback_arc_set() -> None:
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 6))
        pairs = [(int(a), int(b)) for a, b in rng.integers(0, n, (2 * n, 2)) if a != b]
        weights = rng.uniform(0.1, 1.0, len(pairs)).tolist()
        best = min(_broken(p, pairs, weights) for p in itertools.permutations(range(n)))
        r = rank_from_pairs(n, pairs, weights)
        assert sorted(r) == list(range(n))
        assert _broken(r, pairs, weights) == pytest.approx(best)
