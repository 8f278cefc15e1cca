"""Invariants of the shared toolkit: boxes, crops/pastes, compositing, warps, RLE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgen.core import boxes as B
from maskgen.core.compositing import (
    composite,
    composite_torch,
    occlude,
    occluded_fraction,
    occluders,
    visibility_weights,
    visibility_weights_torch,
    visible_masks,
)
from maskgen.core.masks import (
    connected_components,
    convex_hull,
    crop_mask,
    crop_masks,
    largest_component,
    paste_mask,
    touches_border,
)
from maskgen.core.rle import decode_segmentation, encode_polygons, encode_rle, rle_area
from maskgen.core.warp import box_to_box_theta, invert_theta, translation_theta, warp


def test_mask_to_box_is_half_open():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:7] = True  # rows 2..4, cols 3..6
    assert B.mask_to_box(m).tolist() == [3, 2, 7, 5]
    with pytest.raises(ValueError):
        B.mask_to_box(np.zeros((4, 4), bool))


def test_box_conversions_and_iou():
    xyxy = B.xywh_to_xyxy([1, 2, 3, 4])
    assert xyxy.tolist() == [1, 2, 4, 6]
    assert B.xyxy_to_xywh(xyxy).tolist() == [1, 2, 3, 4]
    # Two 2x2 boxes overlapping in a 1x2 strip: inter 2, union 6.
    assert B.box_iou(np.array([0, 0, 2, 2.0]), np.array([1, 0, 3, 2.0])) == pytest.approx(2 / 6)
    assert B.box_iou(np.array([0, 0, 1, 1.0]), np.array([5, 5, 6, 6.0])) == 0.0


def test_relative_box_round_trip():
    frame = np.array([10, 20, 30, 60.0])
    inner = np.array([5, 25, 40, 70.0])
    rel = B.relative_box(inner, frame)
    assert rel.tolist() == pytest.approx([-0.25, 0.125, 1.5, 1.25])
    assert B.absolute_box(rel, frame).tolist() == pytest.approx(inner.tolist())
    assert B.relative_box(frame, frame).tolist() == pytest.approx([0, 0, 1, 1])


def test_square_box_keeps_centre():
    sq = B.square_box(np.array([0, 0, 10, 4.0]), scale=1.5)
    assert sq.tolist() == pytest.approx([-2.5, -5.5, 12.5, 9.5])


def test_crop_is_exact_when_box_matches_grid():
    rng = np.random.default_rng(0)
    m = np.zeros((40, 50), bool)
    m[6:34, 11:39] = rng.random((28, 28)) > 0.5
    box = np.array([11, 6, 39, 34.0])
    crop = crop_mask(m, box, 28)
    np.testing.assert_array_equal(crop, m[6:34, 11:39].astype(np.float32))
    back = paste_mask(crop, box, 40, 50)
    np.testing.assert_array_equal(back, m.astype(np.float32))


def test_crop_paste_round_trip_on_a_resampled_shape():
    yy, xx = np.mgrid[:120, :160]
    m = ((xx - 70) ** 2 / 45**2 + (yy - 60) ** 2 / 30**2) <= 1
    box = B.mask_to_box(m)
    back = paste_mask(crop_mask(m, box, 28), box, 120, 160) > 0.5
    inter = (back & m).sum()
    union = (back | m).sum()
    assert inter / union > 0.97
    assert not back[:, :20].any()  # nothing written outside the box


def test_batched_crops_equal_single_crops_including_boxes_leaving_the_image():
    rng = np.random.default_rng(3)
    masks = rng.random((4, 37, 53)) > 0.6
    boxes = np.array(
        [
            [3.2, 4.7, 20.9, 30.1],
            [-6.0, -3.5, 12.0, 9.0],
            [40.5, 20.0, 61.0, 44.0],
            [0, 0, 53, 37.0],
        ]
    )
    which = np.array([2, 0, 3, 1])
    crops, others = crop_masks(masks, boxes, 16, which=which, count=masks.sum(0))
    for n, (k, box) in enumerate(zip(which, boxes, strict=True)):
        np.testing.assert_allclose(crops[n], crop_mask(masks[k], box, 16), atol=1e-5)
        union_of_others = np.delete(masks, k, axis=0).any(0)
        np.testing.assert_allclose(others[n], crop_mask(union_of_others, box, 16), atol=1e-5)
    singles = np.stack([crop_mask(m, b, 16) for m, b in zip(masks, boxes, strict=True)])
    np.testing.assert_allclose(crop_masks(masks, boxes, 16), singles, atol=1e-5)  # which = all
    with pytest.raises(ValueError, match="positive width"):
        crop_masks(masks[:1], np.array([[5, 5, 5, 9.0]]), 8)


def test_paste_clips_boxes_leaving_the_image():
    crop = np.ones((28, 28), np.float32)
    out = paste_mask(crop, np.array([-10, -10, 10, 10.0]), 20, 20)
    assert out[:10, :10].all() and not out[10:, :].any() and not out[:, 10:].any()


def test_components_hull_border():
    m = np.zeros((20, 20), bool)
    m[2:5, 2:5] = True
    m[10:18, 10:18] = True
    labels, n = connected_components(m)
    assert n == 2 and labels.max() == 2
    assert largest_component(m).sum() == 64
    ring = np.zeros((20, 20), bool)
    ring[5:15, 5] = ring[5:15, 14] = ring[5, 5:15] = ring[14, 5:15] = True
    assert convex_hull(ring).sum() == 100
    assert not touches_border(m)
    m[0, 7] = True
    assert touches_border(m)


def test_visible_masks_and_occluders():
    a = np.zeros((3, 6, 6), bool)
    a[0, 0:4, 0:4] = True  # back
    a[1, 2:6, 2:6] = True  # middle, covers a[0] in 2:4,2:4
    a[2, 0:2, 0:2] = True  # front, covers a[0] in 0:2,0:2
    vis = visible_masks(a)
    assert vis[2].sum() == 4 and vis[1].sum() == 16
    assert vis[0].sum() == 16 - 4 - 4
    assert occluders(a) == [[1, 2], [], []]
    np.testing.assert_array_equal(occlude(a[0], a[1:]), vis[0])
    assert occluded_fraction(a[0], vis[0]) == pytest.approx(0.5)
    np.testing.assert_array_equal(visibility_weights(a) > 0.5, vis)


def test_composite_matches_paper_recursion():
    # x_i = I_i * m_i + x_{i-1} * (1 - m_i), x_0 = background
    rng = np.random.default_rng(1)
    colors = rng.random((3, 4, 5, 3)).astype(np.float32)
    alphas = rng.random((3, 4, 5)).astype(np.float32)
    bg = rng.random((4, 5, 3)).astype(np.float32)
    x = bg
    for i in range(3):
        x = colors[i] * alphas[i][..., None] + x * (1 - alphas[i][..., None])
    np.testing.assert_allclose(composite(colors, alphas, bg), x, rtol=1e-6)
    # The composite equals the visibility-weighted sum of layers plus transmitted background.
    w = visibility_weights(alphas)
    transmit = np.prod(1 - alphas, axis=0)
    np.testing.assert_allclose(
        (w[..., None] * colors).sum(0) + transmit[..., None] * bg, x, rtol=1e-5, atol=1e-6
    )
    t = composite_torch(
        torch.from_numpy(colors).permute(0, 3, 1, 2)[None],
        torch.from_numpy(alphas)[None, :, None],
        torch.from_numpy(bg).permute(2, 0, 1)[None],
    )
    np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy(), x, rtol=1e-5, atol=1e-6)
    wt = visibility_weights_torch(torch.from_numpy(alphas)[None, :, None])
    np.testing.assert_allclose(wt[0, :, 0].numpy(), w, rtol=1e-5, atol=1e-6)


def test_box_to_box_theta_inverts_and_moves_content():
    src = torch.tensor([[0.0, 0.0, 28.0, 28.0], [3.0, 1.0, 20.0, 30.0]])
    dst = torch.tensor([[7.0, 7.0, 21.0, 21.0], [0.0, 0.0, 25.0, 25.0]])
    t = box_to_box_theta(src, dst)
    torch.testing.assert_close(invert_theta(t), box_to_box_theta(dst, src))
    # A square occupying exactly dst inside the src frame fills the whole dst frame.
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 7:21, 7:21] = 1
    out = warp(img, t[:1], mode="nearest")
    assert out.min() == 1.0


def test_warp_round_trip_restores_interior():
    img = torch.rand(2, 3, 32, 32)
    t = translation_theta(torch.tensor([0.25, -0.125]), torch.tensor([0.0, 0.25]))
    back = warp(warp(img, t, mode="nearest"), invert_theta(t), mode="nearest")
    # Interior pixels that never left the frame come back exactly.
    torch.testing.assert_close(back[0, :, 4:28, 0:20], img[0, :, 4:28, 0:20])


def test_translation_moves_right():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, :, 2] = 1
    out = warp(img, translation_theta(torch.tensor([0.5]), torch.tensor([0.0])), mode="nearest")
    # 0.5 normalised units = a quarter of the width = 2 pixels.
    assert out[0, 0, :, 4].min() == 1 and out[0, 0, :, 2].max() == 0


def test_rle_and_polygon_round_trips():
    m = np.zeros((30, 40), bool)
    m[5:20, 8:30] = True
    m[10:12, 12:14] = False
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [30, 40]
    np.testing.assert_array_equal(decode_segmentation(rle, 30, 40), m)
    assert rle_area(rle) == m.sum()
    solid = np.zeros((30, 40), bool)
    solid[5:20, 8:30] = True
    polys = encode_polygons(solid)
    assert len(polys) == 1
    # A rectangle is traced along its pixel edges, so it comes back exactly.
    np.testing.assert_array_equal(decode_segmentation(polys, 30, 40), solid)
    # Holes are dropped (COCO polygons cannot hold them); separate parts stay separate.
    holed = m.copy()
    holed[0:3, 0:3] = True
    polys = encode_polygons(holed)
    assert len(polys) == 2
    assert decode_segmentation(polys, 30, 40).sum() == solid.sum() + 9
    with pytest.raises(ValueError, match="disagrees"):
        decode_segmentation(rle, 31, 40)
    with pytest.raises(ValueError):
        decode_segmentation([[1.0, 2.0, 3.0]], 30, 40)
    with pytest.raises(ValueError):
        decode_segmentation("nope", 30, 40)
    # Run lengths that overrun the mask are refused before pycocotools sees them.
    with pytest.raises(ValueError, match="add up"):
        decode_segmentation({"size": [30, 40], "counts": "0k<0k<0k<"}, 30, 40)
    with pytest.raises(ValueError, match="add up"):
        decode_segmentation({"size": [2, 2], "counts": [1, 9]}, 2, 2)
