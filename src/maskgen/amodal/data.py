"""Training data for Amodal-VAE, made from *visible* instance masks only.

Amodal labels are never read here: every mask comes from :meth:`ImageRecord.visible_mask`, every
box from that mask (:func:`maskgen.core.boxes.mask_to_box`), so a file's ``amodal_segm`` /
``amodal_box`` fields cannot reach training (``tests/test_amodal_train.py`` proves it by
corrupting them).

What the three stages get (supplementary §3.1; ``docs/design.md``, "Amodal-VAE"):

* **Complete instances** (stage 1 and stage 2): without amodal labels an instance counts as complete
  when its visible mask touches no other instance's visible mask (overlap or 8-neighbour contact)
  and not the image border. They are kept as tight native-resolution crops (``h x w`` bool).
  Stage 1 augments them (horizontal flip, small rotation, scale/aspect jitter; no vertical flip,
  objects keep their up direction) because crowded data has few of them (``docs/design.md``, "Amodal-VAE").
* **Occluder shapes** (stage 2): the tight visible masks of *all* instances.
* **Synthetic occlusion** (stage 2): a complete mask, augmented, is covered by 1-3 occluder
  shapes composited in front with :func:`maskgen.core.compositing.occlude`; the full mask, its
  box and the occluders are known, so q2 and the box head get exact targets.
* **Real instances** (stage 3): every instance's visible crop and context frame plus a *region*
  (``square_box(visible_box, box_context_scale)`` sampled at ``REGION_SIZE`` px) holding three bit
  planes: the instance's visible mask, the other instances' visible masks (where an occluder may
  hide it: unknown pixels) and the inside of the image (outside is unknown too).

Arrays: crops are ``uint8`` (0-255, bilinear samples of the binary masks) to keep memory small;
``as_float`` turns them into ``float32`` in ``[0, 1]``. Crops follow :mod:`maskgen.core.masks`
(the box's ``N x N`` cell centres); boxes are ``(x0, y0, x1, y1)`` half-open float pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskgen.core.boxes import absolute_box, mask_to_box, relative_box, square_box
from maskgen.core.compositing import occlude
from maskgen.core.masks import crop_mask
from maskgen.data.types import Dataset

REGION_SIZE = 84  # px side of the stored region frame (3 x 28: the visible box spans >= 28 px)
BIT_SELF, BIT_OTHERS, BIT_INSIDE = 1, 2, 4


def as_float(a: np.ndarray) -> np.ndarray:
    """``uint8`` crop (0-255) -> ``float32`` in ``[0, 1]``."""
    return a.astype(np.float32) * (1.0 / 255.0)


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def context_crop(
    visible: np.ndarray,
    others: np.ndarray,
    visible_box: np.ndarray,
    scale: float = 3.0,
    size: int = 32,
) -> np.ndarray:
    """The box head's input: ``2 x size x size`` float32 in ``[0, 1]``.

    Args:
        visible: ``H x W`` bool, the instance's visible mask.
        others: ``H x W`` bool, the union of the *other* instances' visible masks in the image.
        visible_box: ``(4,)`` tight box of ``visible``.
        scale, size: the frame is ``square_box(visible_box, scale)`` cropped to ``size`` px
            (``AmodalVAEConfig.box_context_scale`` / ``box_context_size``).
    """
    frame = square_box(visible_box, scale)
    return np.stack([crop_mask(visible, frame, size), crop_mask(others, frame, size)])


def is_complete(visible: list[np.ndarray]) -> list[bool]:
    """Complete-instance rule (no amodal labels): touches no other visible mask, not the border.

    Args:
        visible: one image's ``H x W`` bool visible masks.

    Returns:
        one bool per mask (an empty mask is never complete).
    """
    kernel = np.ones((3, 3), dtype=np.uint8)
    if not visible:
        return []
    count = np.zeros(visible[0].shape, dtype=np.int32)
    for v in visible:
        count += v
    out = []
    for v in visible:
        if not v.any() or v[0].any() or v[-1].any() or v[:, 0].any() or v[:, -1].any():
            out.append(False)
            continue
        grown = cv2.dilate(v.astype(np.uint8), kernel).astype(bool)
        # another mask lies in the grown mask where the count exceeds this mask's own share
        out.append(not bool(((count - v)[grown] > 0).any()))
    return out


def tight(mask: np.ndarray) -> np.ndarray:
    """Tight crop of a non-empty bool mask (``h x w`` bool)."""
    x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
    return np.ascontiguousarray(mask[y0:y1, x0:x1])


def _limit(mask: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale a tight bool mask so its longer side is at most ``max_side``."""
    h, w = mask.shape
    s = max(h, w)
    if s <= max_side:
        return mask
    f = max_side / s
    out = (
        cv2.resize(
            mask.astype(np.float32),
            (max(1, round(w * f)), max(1, round(h * f))),
            interpolation=cv2.INTER_AREA,
        )
        > 0.5
    )
    return out if out.any() else mask[:: int(np.ceil(1 / f)), :: int(np.ceil(1 / f))]


@dataclass
class RealInstances:
    """Every usable instance of a dataset, ready for stage 3 and for box-head context.

    Attributes:
        ids: ``(K,)`` int64 annotation ids.
        image_index: ``(K,)`` int64 index of the image in ``Dataset.images``.
        visible_box: ``(K, 4)`` float64 tight visible boxes, image pixels.
        vis28: ``(K, 28, 28)`` uint8 visible crop at the visible box.
        context: ``(K, 2, S, S)`` uint8 context frame (visible, others).
        region: ``(K, R, R)`` uint8 bit planes (``BIT_SELF``, ``BIT_OTHERS``, ``BIT_INSIDE``) in
            the frame ``square_box(visible_box, box_context_scale)``.
        complete: ``(K,)`` bool, the complete-instance rule.
    """

    ids: np.ndarray
    image_index: np.ndarray
    visible_box: np.ndarray
    vis28: np.ndarray
    context: np.ndarray
    region: np.ndarray
    complete: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def vis_wh(self) -> np.ndarray:
        """``(K, 2)`` float32 visible box (width, height)."""
        return (self.visible_box[:, 2:] - self.visible_box[:, :2]).astype(np.float32)


@dataclass
class InstancePools:
    """What :func:`extract_instances` returns: real instances plus shape pools."""

    real: RealInstances
    complete_shapes: list[np.ndarray]  # tight bool masks of complete instances (stage 1, 2)
    occluder_shapes: list[np.ndarray]  # tight bool visible masks of all instances (stage 2)


def extract_instances(
    dataset: Dataset,
    image_indices: list[int] | None = None,
    crop_size: int = 28,
    context_scale: float = 3.0,
    context_size: int = 32,
    min_visible_pixels: int = 4,
    max_shape_side: int = 128,
) -> InstancePools:
    """Decode the *visible* masks of a dataset once and build all training inputs.

    Only :meth:`ImageRecord.visible_mask` is called: amodal fields are never read.

    Args:
        dataset: any :class:`Dataset` (COCO or the visible part of KINS/COCOA).
        image_indices: the images to use (default all) -- for a train/validation split.
        crop_size: side of the visible crop (28).
        context_scale, context_size: the box head's context frame.
        min_visible_pixels: smaller visible masks are skipped.
        max_shape_side: tight shapes are downscaled to this longer side.
    """
    indices = range(len(dataset.images)) if image_indices is None else image_indices
    ids, img_idx, boxes, vis28, ctx, region, complete = [], [], [], [], [], [], []
    complete_shapes: list[np.ndarray] = []
    occluder_shapes: list[np.ndarray] = []
    for ii in indices:
        im = dataset.images[ii]
        masks = [im.visible_mask(inst) for inst in im.instances]
        keep = [k for k, m in enumerate(masks) if int(m.sum()) >= min_visible_pixels]
        if not keep:
            continue
        masks_k = [masks[k] for k in keep]
        comp = is_complete(masks_k)
        union = np.zeros((im.height, im.width), dtype=np.int32)
        for m in masks_k:
            union += m
        inside = np.ones((im.height, im.width), dtype=np.float32)
        for j, k in enumerate(keep):
            m = masks_k[j]
            mf = m.astype(np.float32)
            others = ((union - m) > 0).astype(np.float32)
            box = mask_to_box(m)
            frame = square_box(box, context_scale)
            ids.append(im.instances[k].id)
            img_idx.append(ii)
            boxes.append(box)
            vis28.append(_u8(crop_mask(mf, box, crop_size)))
            c0 = crop_mask(mf, frame, context_size)
            ctx.append(_u8(np.stack([c0, crop_mask(others, frame, context_size)])))
            r_self = crop_mask(mf, frame, REGION_SIZE) > 0.5
            r_oth = crop_mask(others, frame, REGION_SIZE) > 0.5
            r_in = crop_mask(inside, frame, REGION_SIZE) > 0.5
            region.append(
                (r_self * BIT_SELF + r_oth * BIT_OTHERS + r_in * BIT_INSIDE).astype(np.uint8)
            )
            complete.append(comp[j])
            x0, y0, x1, y1 = (int(v) for v in box)
            t = _limit(np.ascontiguousarray(m[y0:y1, x0:x1]), max_shape_side)
            occluder_shapes.append(t)
            if comp[j]:
                complete_shapes.append(t)
    n = len(ids)
    real = RealInstances(
        ids=np.asarray(ids, dtype=np.int64),
        image_index=np.asarray(img_idx, dtype=np.int64),
        visible_box=np.asarray(boxes, dtype=np.float64).reshape(n, 4),
        vis28=np.asarray(vis28, dtype=np.uint8).reshape(n, crop_size, crop_size),
        context=np.asarray(ctx, dtype=np.uint8).reshape(n, 2, context_size, context_size),
        region=np.asarray(region, dtype=np.uint8).reshape(n, REGION_SIZE, REGION_SIZE),
        complete=np.asarray(complete, dtype=bool),
    )
    return InstancePools(real, complete_shapes, occluder_shapes)


# -- augmentation and synthetic occlusion ---------------------------------------------------------
@dataclass
class AugmentConfig:
    """Augmentation of complete shapes (stage 1 and the full masks of stage 2).

    Attributes:
        flip: probability of a left-right flip.
        max_rotation: degrees, uniform in ``[-max_rotation, max_rotation]``.
        max_aspect: log-uniform aspect jitter factor in ``[1/max_aspect, max_aspect]``.
    """

    flip: float = 0.5
    max_rotation: float = 10.0
    max_aspect: float = 1.15


def augment_shape(
    shape: np.ndarray, rng: np.random.Generator, aug: AugmentConfig, side: int = 64
) -> np.ndarray:
    """Random flip / rotation / aspect jitter of a tight bool mask, rescaled so its longer side
    is about ``side`` px. Returns a tight bool mask (never empty)."""
    m = shape.astype(np.float32)
    h, w = m.shape
    if rng.random() < aug.flip:
        m = m[:, ::-1]
    ang = rng.uniform(-aug.max_rotation, aug.max_rotation) if aug.max_rotation > 0 else 0.0
    a = (
        float(np.exp(rng.uniform(-np.log(aug.max_aspect), np.log(aug.max_aspect))))
        if aug.max_aspect > 1
        else 1.0
    )
    f = side / max(h, w)
    sx, sy = f * a**0.5, f / a**0.5
    pad = int(np.ceil(max(h * sy, w * sx) * 0.75)) + 2
    out_side = 2 * pad
    c = np.cos(np.deg2rad(ang))
    s = np.sin(np.deg2rad(ang))
    lin = np.array([[c, -s], [s, c]]) @ np.diag([sx, sy])
    centre_in = np.array([(w - 1) / 2, (h - 1) / 2])
    centre_out = np.array([(out_side - 1) / 2, (out_side - 1) / 2])
    mat = np.concatenate([lin, (centre_out - lin @ centre_in)[:, None]], axis=1)
    warped = (
        cv2.warpAffine(np.ascontiguousarray(m), mat, (out_side, out_side), flags=cv2.INTER_LINEAR)
        > 0.5
    )
    if not warped.any():
        return shape.copy()
    return tight(warped)


def _resize_tight(shape: np.ndarray, longer: float) -> np.ndarray:
    h, w = shape.shape
    f = longer / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    out = cv2.resize(shape.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR) > 0.5
    return out if out.any() else np.ones((1, 1), dtype=bool)


def _place(
    target: np.ndarray,
    shapes: list[np.ndarray],
    side: float,
    ys: np.ndarray,
    xs: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """OR a random shape (scaled 0.3-1.3 x ``side``, maybe flipped) into ``target`` so that a
    random pixel of it lands on a random pixel ``(ys[p], xs[p])`` of the object."""
    o = shapes[rng.integers(len(shapes))]
    o = _resize_tight(o, side * float(np.exp(rng.uniform(np.log(0.3), np.log(1.3)))))
    if rng.random() < 0.5:
        o = o[:, ::-1]
    oh, ow = o.shape
    p = rng.integers(len(ys))
    oys, oxs = np.nonzero(o)
    q = rng.integers(len(oys))
    h, w = target.shape
    y0 = int(np.clip(ys[p] - oys[q], 0, h - oh))
    x0 = int(np.clip(xs[p] - oxs[q], 0, w - ow))
    target[y0 : y0 + oh, x0 : x0 + ow] |= o


@dataclass
class SyntheticBatch:
    """Synthetic occlusion samples (stage 2 and threshold tuning), all float32.

    Attributes:
        vis28: ``(K, 1, 28, 28)`` visible crop at the visible box.
        full28: ``(K, 1, 28, 28)`` full mask crop at the full (amodal) box.
        context: ``(K, 2, S, S)`` box-head context frame.
        rel_box: ``(K, 4)`` amodal box relative to the visible box.
        vis_wh: ``(K, 2)`` visible box size, px.
        full_region: ``(K, R, R)`` full mask in the region frame (for IoU).
        vis_region: ``(K, R, R)`` visible mask in the region frame.
        occ_region: ``(K, R, R)`` occluders (other instances' visible masks) in the region frame.
        occluded: ``(K,)`` occluded fraction of the full mask.
    """

    vis28: np.ndarray
    full28: np.ndarray
    context: np.ndarray
    rel_box: np.ndarray
    vis_wh: np.ndarray
    full_region: np.ndarray | None
    vis_region: np.ndarray | None
    occluded: np.ndarray
    occ_region: np.ndarray | None = None


def _occlusion_scene(
    complete_shapes: list[np.ndarray],
    occluder_shapes: list[np.ndarray],
    rng: np.random.Generator,
    aug: AugmentConfig,
    shape_side: int,
    unoccluded_fraction: float,
    behind_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic scene on a square canvas: ``(full mask, occluders in front, all other
    shapes)``, bool ``C x C`` each (see :func:`synthetic_occlusion`)."""
    full = augment_shape(complete_shapes[rng.integers(len(complete_shapes))], rng, aug, shape_side)
    fh, fw = full.shape
    side = max(fh, fw)
    canvas = 4 * side + 8
    oy, ox = (canvas - fh) // 2, (canvas - fw) // 2
    fullc = np.zeros((canvas, canvas), bool)
    fullc[oy : oy + fh, ox : ox + fw] = full
    occ = np.zeros_like(fullc)
    ys, xs = np.nonzero(full)
    if rng.random() >= unoccluded_fraction:
        for _ in range(int(rng.integers(1, 4))):
            _place(occ, occluder_shapes, side, ys + oy, xs + ox, rng)
    # Neighbours *behind* the object (it hides them): they show up among the other
    # instances' visible masks but hide nothing, as at test time where depth is unknown.
    others = occ.copy()
    if rng.random() < behind_fraction:
        for _ in range(int(rng.integers(1, 3))):
            _place(others, occluder_shapes, side, ys + oy, xs + ox, rng)
    return fullc, occ, others


def synthetic_occlusion(
    complete_shapes: list[np.ndarray],
    occluder_shapes: list[np.ndarray],
    n: int,
    rng: np.random.Generator,
    aug: AugmentConfig | None = None,
    crop_size: int = 28,
    context_scale: float = 3.0,
    context_size: int = 32,
    unoccluded_fraction: float = 0.15,
    max_occluded: float = 0.85,
    with_region: bool = False,
    shape_side: int = 64,
    behind_fraction: float = 0.5,
) -> SyntheticBatch:
    """Occlude complete shapes with other instances' shapes composited in front (stage 2).

    Each sample: one complete shape (augmented, longer side ``shape_side`` px) on a canvas; with
    probability ``1 - unoccluded_fraction`` 1-3 occluder shapes (scaled 0.3-1.3x) are placed so
    they overlap it and composited in front with :func:`maskgen.core.compositing.occlude`;
    samples whose visible part is under 10 % (or more than ``max_occluded`` hidden) are redrawn.
    With probability ``behind_fraction`` 1-2 more shapes are put *behind* it (overlapping, so it
    hides part of them). The neighbour channel of the context is the union of all other shapes'
    visible parts, as other instances' visible masks are at test time, where depth order is
    unknown: a neighbour may hide the object or be hidden by it.
    """
    aug = aug or AugmentConfig()
    vis28 = np.zeros((n, 1, crop_size, crop_size), np.float32)
    full28 = np.zeros_like(vis28)
    ctx = np.zeros((n, 2, context_size, context_size), np.float32)
    rel = np.zeros((n, 4), np.float32)
    wh = np.zeros((n, 2), np.float32)
    occl = np.zeros((n,), np.float32)
    full_reg = np.zeros((n, REGION_SIZE, REGION_SIZE), np.float32) if with_region else None
    vis_reg = np.zeros_like(full_reg) if with_region else None
    occ_reg = np.zeros_like(full_reg) if with_region else None
    k = 0
    while k < n:
        fullc, occ, others = _occlusion_scene(
            complete_shapes, occluder_shapes, rng, aug, shape_side, unoccluded_fraction,
            behind_fraction,
        )  # fmt: skip
        vis = occlude(fullc, occ[None])
        nv = int(vis.sum())
        nf = int(fullc.sum())
        if nv < max(4, 0.1 * nf) or 1 - nv / nf > max_occluded:
            continue
        fbox = mask_to_box(fullc)
        vbox = mask_to_box(vis)
        frame = square_box(vbox, context_scale)
        vis28[k, 0] = crop_mask(vis, vbox, crop_size)
        full28[k, 0] = crop_mask(fullc, fbox, crop_size)
        ctx[k, 0] = crop_mask(vis, frame, context_size)
        others_vis = others & ~vis  # union of the other instances' visible masks
        ctx[k, 1] = crop_mask(others_vis, frame, context_size)
        rel[k] = relative_box(fbox, vbox)
        wh[k] = vbox[2:] - vbox[:2]
        occl[k] = 1 - nv / nf
        if with_region:
            full_reg[k] = crop_mask(fullc, frame, REGION_SIZE)
            vis_reg[k] = crop_mask(vis, frame, REGION_SIZE)
            occ_reg[k] = crop_mask(others_vis, frame, REGION_SIZE)
        k += 1
    return SyntheticBatch(vis28, full28, ctx, rel, wh, full_reg, vis_reg, occl, occ_reg)


def augmented_complete(
    complete_shapes: list[np.ndarray],
    n: int,
    rng: np.random.Generator,
    aug: AugmentConfig | None = None,
    crop_size: int = 28,
) -> np.ndarray:
    """Stage-1 pool: ``(n, 1, 28, 28)`` float32 crops of augmented complete shapes at their tight
    boxes (the amodal-box frame, since a complete mask's visible box is its amodal box)."""
    aug = aug or AugmentConfig()
    out = np.zeros((n, 1, crop_size, crop_size), np.float32)
    for k in range(n):
        s = complete_shapes[rng.integers(len(complete_shapes))]
        m = augment_shape(s, rng, aug, side=max(crop_size * 2, 56))
        out[k, 0] = crop_mask(m, np.array([0, 0, m.shape[1], m.shape[0]], float), crop_size)
    return out


def visible_box_in_region(vis_wh: np.ndarray, context_scale: float = 3.0) -> np.ndarray:
    """``(K, 4)`` visible boxes in normalised region coordinates (region = ``(0, 0, 1, 1)``).

    The region frame is ``square_box(visible_box, context_scale)``: same centre, side
    ``context_scale * max(w, h)``.
    """
    wh = np.asarray(vis_wh, dtype=np.float64)
    half = wh / wh.max(axis=1, keepdims=True) / (2 * context_scale)
    return np.concatenate([0.5 - half, 0.5 + half], axis=1)


def known_pixel_targets(
    region: np.ndarray,
    amodal_rel: np.ndarray,
    vis_wh: np.ndarray,
    context_scale: float = 3.0,
    crop_size: int = 28,
) -> tuple[np.ndarray, np.ndarray]:
    """Stage-3 targets in the (predicted) amodal-box frame (known pixels only; ``docs/design.md``, "Amodal-VAE").

    Args:
        region: ``(K, R, R)`` uint8 bit planes of :class:`RealInstances`.
        amodal_rel: ``(K, 4)`` amodal boxes relative to the visible box (visible = (0,0,1,1)).
        vis_wh: ``(K, 2)`` visible box sizes (only the aspect ratio matters).
        context_scale: the region frame is ``square_box(visible_box, context_scale)``.

    Returns:
        ``(target, known)`` each ``(K, 1, 28, 28)`` float32: target = the visible mask; known = 1
        on the instance's visible pixels and on visible background inside the image, 0 under
        other instances' visible masks (possible occluders) and outside the image or region.
    """
    k = len(region)
    target = np.zeros((k, 1, crop_size, crop_size), np.float32)
    known = np.zeros_like(target)
    r = REGION_SIZE
    vis_in_region = visible_box_in_region(vis_wh, context_scale)
    boxes = absolute_box(np.asarray(amodal_rel, np.float64), vis_in_region) * r
    for i in range(k):
        reg = region[i]
        self_m = (reg & BIT_SELF) > 0
        bg = (reg & (BIT_OTHERS | BIT_SELF | BIT_INSIDE)) == BIT_INSIDE
        t = crop_mask(self_m, boxes[i], crop_size)
        target[i, 0] = t
        known[i, 0] = np.clip(t + crop_mask(bg, boxes[i], crop_size), 0, 1)
    return target, known
