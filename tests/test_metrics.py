"""Metric values on hand-made masks; the arithmetic is written beside each check."""

from __future__ import annotations

import numpy as np
import pytest

from maskgen.core.metrics import (
    AmodalAccumulator,
    ForegroundAccumulator,
    foreground_metrics,
    instance_counts,
    occlusion_bucket,
)


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_instance_counts_by_hand() -> None:
    # 10x10 image. GT amodal A = rows 0-3, cols 0-4 (4x5 = 20 px).
    # GT visible V = rows 0-1, cols 0-4 (2x5 = 10 px) -> occluded A\V = rows 2-3 (10 px), r = 0.5.
    # Prediction P = rows 0-2, cols 0-5 (3x6 = 18 px).
    a = _rect(10, 10, 0, 4, 0, 5)
    v = _rect(10, 10, 0, 2, 0, 5)
    p = _rect(10, 10, 0, 3, 0, 6)
    c = instance_counts(p, a, v)
    # P∩A = rows 0-2, cols 0-4 = 15; P∪A = 20 + 18 - 15 = 23.
    assert (c.full_inter, c.full_union) == (15, 23)
    # P\V = rows 0-1 col 5 (2) + row 2 cols 0-5 (6) = 8 px; A\V = 10 px.
    # (P\V)∩(A\V) = row 2 cols 0-4 = 5; union = 8 + 10 - 5 = 13.
    assert (c.inv_inter, c.inv_union) == (5, 13)
    assert c.full_iou == pytest.approx(15 / 23)
    assert c.invisible_iou == pytest.approx(5 / 13)
    assert c.occlusion_ratio == pytest.approx(0.5)
    assert c.bucket == "(25,50]"  # r = 0.5 exactly lands in the right-closed bucket
    assert (c.visible_area, c.amodal_area, c.occluded_area, c.pred_area) == (10, 20, 10, 18)


def test_bucket_boundaries_exact() -> None:
    assert occlusion_bucket(0, 100) == "0"
    assert occlusion_bucket(1, 100) == "(0,25]"
    assert occlusion_bucket(25, 100) == "(0,25]"
    assert occlusion_bucket(26, 100) == "(25,50]"
    assert occlusion_bucket(50, 100) == "(25,50]"
    assert occlusion_bucket(51, 100) == "(50,100]"
    assert occlusion_bucket(100, 100) == "(50,100]"
    # 1/3 of 3 pixels: 4*1 <= 3 is false, 2*1 <= 3 true -> (25,50]
    assert occlusion_bucket(1, 3) == "(25,50]"


def test_accumulator_dataset_vs_mean() -> None:
    acc = AmodalAccumulator()
    # Instance 1: unoccluded. A = V = 2x2 = 4 px; P = A plus one extra pixel (5 px).
    a1 = _rect(4, 4, 0, 2, 0, 2)
    p1 = a1.copy()
    p1[0, 2] = True
    c1 = acc.add_masks(p1, a1, a1, 1)
    # full: I=4, U=5. invisible: P\V = 1 px, A\V = 0 -> I=0, U=1 (counts in dataset level only).
    assert (c1.full_inter, c1.full_union, c1.inv_inter, c1.inv_union) == (4, 5, 0, 1)
    assert c1.invisible_iou is None
    # Instance 2: the hand case above: full 15/23, invisible 5/13, bucket (25,50].
    a2 = _rect(10, 10, 0, 4, 0, 5)
    v2 = _rect(10, 10, 0, 2, 0, 5)
    p2 = _rect(10, 10, 0, 3, 0, 6)
    acc.add_masks(p2, a2, v2, 2)
    s = acc.summary()
    o = s["overall"]
    assert o["n_instances"] == 2 and o["n_occluded"] == 1
    # dataset full: (4 + 15) / (5 + 23) = 19/28
    assert o["full_iou_dataset"] == pytest.approx(19 / 28)
    # mean full: (4/5 + 15/23) / 2
    assert o["full_iou_mean"] == pytest.approx((0.8 + 15 / 23) / 2)
    # dataset invisible: (0 + 5) / (1 + 13) = 5/14; mean over occluded only: 5/13
    assert o["invisible_iou_dataset"] == pytest.approx(5 / 14)
    assert o["invisible_iou_mean"] == pytest.approx(5 / 13)
    b0 = s["buckets"]["0"]
    assert b0["n_instances"] == 1 and b0["invisible_iou_mean"] is None
    assert b0["invisible_iou_dataset"] == pytest.approx(0.0)  # I=0, U=1
    assert s["buckets"]["(0,25]"]["n_instances"] == 0
    assert s["buckets"]["(0,25]"]["full_iou_dataset"] is None
    assert s["buckets"]["(25,50]"]["full_iou_mean"] == pytest.approx(15 / 23)
    assert [r["id"] for r in acc.instances] == [1, 2]


def test_instance_counts_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        instance_counts(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        instance_counts(np.zeros((2, 3)), np.ones((2, 2)), np.zeros((2, 2)))


def test_foreground_metrics_by_hand() -> None:
    # 4x4 image (16 px). GT: left half (8 px). Pred: top-left 2x2 plus (3,3) -> 5 px.
    gt = _rect(4, 4, 0, 4, 0, 2)
    pred = _rect(4, 4, 0, 2, 0, 2)
    pred[3, 3] = True
    m = foreground_metrics(pred, gt)
    # tp = 4, fp = 1, fn = 4, tn = 16 - 9 = 7
    assert m["fg_iou"] == pytest.approx(4 / 9)  # tp / (tp + fp + fn)
    assert m["bg_iou"] == pytest.approx(7 / 12)  # tn / (tn + fp + fn)
    assert m["miou"] == pytest.approx((4 / 9 + 7 / 12) / 2)
    assert m["pixel_acc"] == pytest.approx(11 / 16)
    # Fixed polarity: the inverse prediction scores worse, and is not swapped.
    inv = foreground_metrics(~pred, gt)
    assert inv["fg_iou"] == pytest.approx(4 / 15)  # tp=4 (rows 2-3 left), fp=7, fn=4
    assert inv["pixel_acc"] == pytest.approx(5 / 16)


def test_foreground_accumulator_dataset_vs_per_image() -> None:
    acc = ForegroundAccumulator()
    # Image 1 (2x2): perfect, fg 2 px -> fg 1, bg 1, acc 1.
    g1 = np.array([[1, 1], [0, 0]], bool)
    acc.add(g1, g1)
    # Image 2 (2x2): gt fg 1 px at (0,0); pred empty -> tp 0, fp 0, fn 1, tn 3:
    # fg 0, bg 3/4, acc 3/4.
    g2 = np.array([[1, 0], [0, 0]], bool)
    acc.add(np.zeros((2, 2), bool), g2)
    s = acc.summary()
    assert s["n_images"] == 2
    # Summed counts: tp 2, fp 0, fn 1, tn 5 -> fg 2/3, bg 5/6, acc 7/8.
    assert s["dataset"]["fg_iou"] == pytest.approx(2 / 3)
    assert s["dataset"]["bg_iou"] == pytest.approx(5 / 6)
    assert s["dataset"]["pixel_acc"] == pytest.approx(7 / 8)
    assert s["per_image_mean"]["fg_iou"] == pytest.approx(0.5)
    assert s["per_image_mean"]["bg_iou"] == pytest.approx((1 + 0.75) / 2)
    assert s["per_image_mean"]["miou"] == pytest.approx((1 + 0.375) / 2)
    # A batch N x H x W is the same as adding the images one by one.
    acc2 = ForegroundAccumulator()
    acc2.add(np.stack([g1, np.zeros((2, 2), bool)]), np.stack([g1, g2]))
    assert acc2.summary() == s


def test_empty_foreground_counts_as_agreement() -> None:
    z = np.zeros((3, 3), bool)
    m = foreground_metrics(z, z)
    assert m == {"fg_iou": 1.0, "bg_iou": 1.0, "miou": 1.0, "pixel_acc": 1.0}


def test_rle_counts_match_dense_counts() -> None:
    from maskgen.core.metrics import instance_counts_rle, to_rle
    from maskgen.core.rle import encode_rle

    rng = np.random.default_rng(0)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(3, 40, 2))
        a = rng.random((h, w)) < 0.5
        a[0, 0] = True  # never empty
        v = a & (rng.random((h, w)) < rng.random())
        if trial % 5 == 0:
            v = a.copy()  # unoccluded
        p = rng.random((h, w)) < rng.random()
        dense = instance_counts(p, a, v)
        fast = instance_counts_rle(*(to_rle(encode_rle(m), h, w) for m in (p, a, v)))
        assert dense == fast, trial
    # Polygons, uncompressed RLE and None (empty) convert too.
    poly = to_rle([[1, 1, 4, 1, 4, 3, 1, 3]], 5, 6)
    from pycocotools import mask as mask_utils

    assert int(mask_utils.area(poly)) == 6  # cols 1-3 x rows 1-2
    assert int(mask_utils.area(to_rle(None, 5, 6))) == 0
    assert int(mask_utils.area(to_rle({"size": [5, 6], "counts": [7, 3, 20]}, 5, 6))) == 3
