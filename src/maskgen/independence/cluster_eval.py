"""Evaluate a cluster model against an instance label map of its training image.

The paper (Dai et al., AAAI 2019, Fig. 8-11) shows results qualitatively only. We measure three
things, each defined here once and named in every report:

1. **single-object rate**: the share of generated layers whose mask ``alpha > 0.5`` is *exactly
   one connected object of plausible size*: after dropping specks smaller than 5 % of ``A_ref``,
   exactly one 8-connected component remains and its area lies in
   ``[PLAUSIBLE_LOW * A_ref, PLAUSIBLE_HIGH * A_ref]``. ``A_ref`` is the 90th percentile of the
   ground-truth instance areas (instances not touching the image border, visible masks, scaled to
   the patch resolution) -- a robust stand-in for the area of an unoccluded instance, since most
   instances in a dense cluster are partly hidden. The upper bound (1.6) rejects two objects
   merged into one blob (~2 ``A_ref``); the lower (0.3) rejects fragments.
2. **best-match IoU**: for each generated mask, the highest IoU with any ground-truth instance
   shape (visible masks of instances not touching the border, at patch resolution, and at least
   ``PLAUSIBLE_LOW * A_ref`` px large), both masks translated so that their centroids coincide
   (integer shifts on a ``2P x 2P`` canvas); the mean over generated layers (a layer with an
   empty mask scores 0). The size floor drops the small visible fragments of mostly hidden
   instances: in a dense pile some fragment matches *any* small blob (without the floor a
   speck-sized disk can score IoU 1.0), and a fragment is no object shape.
3. **count**: objects in the image estimated as ``foreground area / mean generated mask area``
   (areas in image pixels: generated areas are scaled by ``(window / P)^2``), vs the number of
   labels. Foreground area **without labels**: Otsu's threshold on the luminance, foreground =
   the brighter class (``foreground="bright"``; ``"dark"`` for dark objects on a bright ground;
   ``"all"`` for a dense cluster that hides its background). The count from the label map's own
   foreground (``labels > 0``) is reported beside it, separating the two error sources. Both
   ignore overlap (hidden parts of instances), so they tend to under-count dense clusters.
4. **shape variety**: the mean IoU over pairs of generated masks, all centred
   (:func:`mean_pairwise_iou`, first :data:`PAIRWISE_SAMPLES` masks); near 1 means one shape
   for every ``z``.
5. **best centred disk**: the best-match IoU (2.) that a single centred disk of the best radius
   would score (:func:`best_disk`). High best-match IoU on compact objects is easy for a blob of
   the right size; only a generator that *beats* this reference has learned something of the
   objects' shape (``beats_best_disk``). The disk's score is a maximum over hundreds of
   instances (the most disk-like one), so this bar is strict.
6. **coverage IoU** ("recall"): for each GT shape (as in 2.), the best IoU with any generated
   mask, centred, averaged over the GT shapes (:func:`coverage_iou`). Its blob reference is a
   generator of centred disks of every radius (:func:`disk_family_coverage`): it matches every
   instance's size but none of its shape, so a generator above it (``beats_disk_coverage``)
   matches the instances' shapes better than their sizes alone would. Read it with 1.: varied
   fragments raise coverage too.

Measured values: ``benchmarks/RESULTS.md``, sections ``cluster-synthetic*``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.errors import MaskgenError

PLAUSIBLE_LOW = 0.3
PLAUSIBLE_HIGH = 1.6
SPECK_FRACTION = 0.05
REF_PERCENTILE = 90
#: Generated masks compared pairwise for shape variety (metric 4): 64 -> 4032 ordered pairs.
PAIRWISE_SAMPLES = 64


#: A label map's neighbouring pixels mostly share a label (0.8-0.95 on the built-in clusters);
#: a photo's rarely share a colour (0.04-0.27 on the same images, shading and noise).
MIN_NEIGHBOUR_AGREEMENT = 0.5


def neighbour_agreement(a: np.ndarray) -> float:
    """Share of horizontally / vertically adjacent pixel pairs with identical values."""
    a = a.reshape(a.shape[0], a.shape[1], -1)
    pairs = []
    if a.shape[1] > 1:
        pairs.append((a[:, 1:] == a[:, :-1]).all(-1).ravel())
    if a.shape[0] > 1:
        pairs.append((a[1:] == a[:-1]).all(-1).ravel())
    return float(np.concatenate(pairs).mean()) if pairs else 1.0


def read_label_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an instance label map (``H x W``; 0 = background, ``k > 0`` instance ``k``).

    Accepts 8/16/32-bit grey PNGs, palette images (palette indices) and colour-coded RGB(A)
    maps (each distinct colour an instance, black the background). Returns ``H x W`` int64.

    Raises:
        MaskgenError: a missing file or a folder, an unreadable image, or an image that is a
            photo rather than a label map (neighbouring pixels rarely share a value).
    """
    from PIL import Image, UnidentifiedImageError

    from maskgen.core.io import require_file

    path = require_file(path, "label map")
    try:
        with Image.open(path) as im:
            mode = im.mode
            raw = np.asarray(im.convert("RGB") if mode in ("RGB", "RGBA") else im)
    except (UnidentifiedImageError, OSError) as e:
        raise MaskgenError(f"{path}: cannot read label map ({e.__class__.__name__})") from None
    if raw.ndim not in (2, 3):
        raise MaskgenError(f"{path}: a label map must be a single image, got shape {raw.shape}")
    agree = neighbour_agreement(raw)
    if agree < MIN_NEIGHBOUR_AGREEMENT:
        raise MaskgenError(
            f"{path}: looks like a photo, not an instance label map (only {agree:.0%} of "
            "neighbouring pixels share a value); pass the label map (e.g. labels.png)"
        )
    if raw.ndim == 3:
        a = raw[..., :3].astype(np.int64)
        code = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
        uniq, inv = np.unique(code, return_inverse=True)
        ids = np.arange(len(uniq))
        if uniq[0] != 0:  # no black: every colour is an instance
            ids = ids + 1
        return ids[inv].reshape(code.shape)
    return raw.astype(np.int64)


def gt_shapes(labels: np.ndarray, scale: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Ground-truth instance shapes at patch resolution.

    Args:
        labels: ``H x W`` int label map.
        scale: patch pixels per image pixel (``P / window``).

    Returns:
        (list of tight ``h x w`` bool masks of instances not touching the image border, scaled
        by ``scale``; ``(K,)`` float array of their areas in patch pixels).
    """
    import cv2
    from scipy import ndimage

    h, w = labels.shape
    objs = ndimage.find_objects(labels.astype(np.int32))
    shapes, areas = [], []
    for k, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        ys, xs = sl
        if ys.start == 0 or xs.start == 0 or ys.stop == h or xs.stop == w:
            continue
        m = (labels[sl] == k).astype(np.float32)
        nh, nw = max(1, round(m.shape[0] * scale)), max(1, round(m.shape[1] * scale))
        r = (
            cv2.resize(m, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            > 0.5
        )
        if r.any():
            shapes.append(r)
            areas.append(float(r.sum()))
    return shapes, np.asarray(areas, dtype=np.float64)


def centred(mask: np.ndarray, canvas: int) -> np.ndarray:
    """Paste a bool mask on a ``canvas x canvas`` grid with its centroid at the centre."""
    out = np.zeros((canvas, canvas), bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return out
    cy, cx = ys.mean(), xs.mean()
    oy = int(round(canvas / 2 - 0.5 - cy))
    ox = int(round(canvas / 2 - 0.5 - cx))
    ty, tx = ys + oy, xs + ox
    keep = (ty >= 0) & (ty < canvas) & (tx >= 0) & (tx < canvas)
    out[ty[keep], tx[keep]] = True
    return out


def matching_shapes(shapes: list[np.ndarray], areas: np.ndarray, a_ref: float) -> list[np.ndarray]:
    """The GT shapes that generated masks are matched against (metric 2): those of at least
    ``PLAUSIBLE_LOW * a_ref`` px, i.e. no small visible fragments of mostly hidden instances."""
    return [s for s, a in zip(shapes, areas, strict=True) if a >= PLAUSIBLE_LOW * a_ref]


def single_object_flags(masks: np.ndarray, a_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """For ``M x P x P`` bool masks: (is exactly one plausible object, number of components)."""
    from scipy import ndimage

    ok = np.zeros(len(masks), bool)
    ncomp = np.zeros(len(masks), np.int64)
    speck = SPECK_FRACTION * a_ref
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(0)
        big = sizes[sizes >= speck]
        ncomp[i] = len(big)
        ok[i] = len(big) == 1 and PLAUSIBLE_LOW * a_ref <= big[0] <= PLAUSIBLE_HIGH * a_ref
    return ok, ncomp


def centred_iou_matrix(a: Any, b: Any, canvas: int, empty: float = 0.0) -> np.ndarray:
    """IoU of every mask of ``a`` with every mask of ``b``, both centred on ``canvas``.

    Args:
        a, b: sequences of bool masks (any size each).
        canvas: side of the centring canvas (``2 P``).
        empty: the IoU given to a pair of empty masks.

    Returns:
        ``len(a) x len(b)`` float array.
    """
    am = np.stack([centred(m, canvas) for m in a]).reshape(len(a), -1).astype(np.float32)
    bm = np.stack([centred(m, canvas) for m in b]).reshape(len(b), -1).astype(np.float32)
    inter = am @ bm.T
    union = am.sum(1)[:, None] + bm.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), empty)


def best_match_iou(masks: np.ndarray, shapes: list[np.ndarray], canvas: int) -> np.ndarray:
    """Per generated mask, the best IoU over GT shapes with both centred on ``canvas``."""
    if not shapes:
        return np.zeros(len(masks))
    return centred_iou_matrix(masks, shapes, canvas).max(1)


def coverage_iou(masks: np.ndarray, shapes: list[np.ndarray], canvas: int) -> np.ndarray:
    """Per GT shape, the best IoU over generated masks, both centred (metric 6, "recall").

    Best-match IoU (:func:`best_match_iou`) asks whether each generated mask looks like *some*
    instance; a generator that draws one blob scores well there if a few instances are
    blob-like. Coverage asks the converse -- is each instance's shape among the generated
    ones -- which only a generator whose masks vary like the objects' shapes can raise.
    """
    if not len(masks) or not shapes:
        return np.zeros(len(shapes))
    return centred_iou_matrix(masks, shapes, canvas).max(0)


def mean_pairwise_iou(masks: np.ndarray, canvas: int) -> float:
    """Shape variety: mean IoU over all pairs of masks, each centred on ``canvas`` (metric 4).

    Args:
        masks: ``M x P x P`` bool generated masks (``M >= 2``).
        canvas: side of the centring canvas (``2 P``, as for :func:`best_match_iou`).

    Returns:
        the mean over the ``M (M - 1)`` ordered pairs; 1 = every mask the same shape (a
        generator that ignores ``z`` for its mask). A pair of empty masks counts as identical.
    """
    if len(masks) < 2:
        raise MaskgenError("mean pairwise IoU needs at least two masks")
    iou = centred_iou_matrix(masks, masks, canvas, empty=1.0)
    off = ~np.eye(len(masks), dtype=bool)
    return float(iou[off].mean())


def centred_disks(patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred disks on ``P x P`` of radius 1 to ``P / 2`` px in 0.5 px steps.

    Returns ``(radii (R,), R x P x P bool disks)``.
    """
    c = (patch - 1) / 2.0
    yy, xx = np.mgrid[0:patch, 0:patch]
    r2 = (yy - c) ** 2 + (xx - c) ** 2
    radii = np.arange(1.0, patch / 2 + 0.01, 0.5)
    return radii, r2[None] <= (radii * radii)[:, None, None]


def best_disk(shapes: list[np.ndarray], patch: int, canvas: int) -> tuple[float, float]:
    """The best centred disk (metric 5): a reference that a learned *shape* must beat.

    Every generated mask equal to one centred disk of radius ``r`` scores the mean best-match
    IoU ``best_match_iou(disk_r, shapes)``; this searches ``r`` on a 0.5 px grid from 1 to
    ``patch / 2``. A generator whose best-match IoU does not exceed it has learned no more
    than an object-sized blob, however high its IoU.

    Args:
        shapes: GT instance shapes (bool, any size), as from :func:`gt_shapes`.
        patch: the patch side ``P`` (disks are drawn on ``P x P``).
        canvas: centring canvas side (``2 P``).

    Returns:
        ``(radius in patch px, best-match IoU of that disk)``.
    """
    radii, disks = centred_disks(patch)
    per_disk = centred_iou_matrix(disks, shapes, canvas).max(1)
    i = int(np.argmax(per_disk))
    return float(radii[i]), float(per_disk[i])


def disk_family_coverage(shapes: list[np.ndarray], patch: int, canvas: int) -> float:
    """Coverage IoU (metric 6) of a generator that draws centred disks of *every* radius.

    The blob reference for coverage: each GT shape is matched by the disk of its best radius,
    so only masks that follow the objects' shapes (elongation, orientation, parts) -- not
    their sizes alone -- score above it.
    """
    _, disks = centred_disks(patch)
    return float(coverage_iou(disks, shapes, canvas).mean())


def foreground_area(image: np.ndarray, mode: str = "bright") -> float:
    """Foreground pixels of an RGB image without labels (see module docstring, item 3)."""
    if mode == "all":
        return float(image.shape[0] * image.shape[1])
    from maskgen.independence.cluster_patches import LUMA, otsu_threshold

    grey = image[..., :3].astype(np.float64) @ np.array(LUMA)
    t = otsu_threshold(grey)
    if t == math.inf:
        return 0.0
    if mode == "bright":
        return float((grey > t).sum())
    if mode == "dark":
        return float((grey <= t).sum())
    raise MaskgenError(f"unknown foreground mode {mode!r}; choose bright, dark or all")


def load_eval_inputs(
    predictor: Any,
    labels_path: str | os.PathLike[str],
    image_path: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The label map (and image) to evaluate ``predictor`` against, checked before any work.

    Raises:
        MaskgenError: a label map that is missing, a photo, empty, or of another size than the
            model's training image or ``image_path``; an image that is a label map.
    """
    labels = read_label_map(labels_path)
    if labels.ndim != 2:
        raise MaskgenError(f"{labels_path}: a label map must be a single-channel image")
    trained_hw = predictor.image_size
    if trained_hw is not None and list(labels.shape) != list(trained_hw):
        raise MaskgenError(
            f"{labels_path}: label map is {labels.shape[1]}x{labels.shape[0]} px but the model was "
            f"trained on a {trained_hw[1]}x{trained_hw[0]} px image"
        )
    image = None
    if image_path is not None:
        from maskgen.independence.cluster_patches import load_cluster_image

        image = load_cluster_image(image_path)
        if image.shape[:2] != labels.shape:
            raise MaskgenError(
                f"{labels_path}: label map is {labels.shape[1]}x{labels.shape[0]} px but "
                f"{image_path} is {image.shape[1]}x{image.shape[0]} px"
            )
    if labels.max() <= 0:
        raise MaskgenError(f"{labels_path}: label map holds no instances")
    return labels, image


def shape_metrics(masks: np.ndarray, labels: np.ndarray, patch: int, scale: float, where: str):
    """Metrics 1, 2, 4, 5 and 6 of the module docstring for ``M x P x P`` bool masks."""
    shapes, areas = gt_shapes(labels, scale)
    if len(shapes) == 0:
        raise MaskgenError(f"{where}: no instance lies inside the image (all touch the border)")
    a_ref = float(np.percentile(areas, REF_PERCENTILE))
    ok, ncomp = single_object_flags(masks, a_ref)
    shapes = matching_shapes(shapes, areas, a_ref)
    canvas = 2 * patch
    ious = best_match_iou(masks, shapes, canvas=canvas)
    disk_r, disk_iou = best_disk(shapes, patch, canvas=canvas)
    coverage = float(coverage_iou(masks, shapes, canvas=canvas).mean())
    disk_coverage = disk_family_coverage(shapes, patch, canvas=canvas)
    return {
        "gt_instances_used": len(shapes),
        "a_ref_patch_px": a_ref,
        "plausible_area_patch_px": [PLAUSIBLE_LOW * a_ref, PLAUSIBLE_HIGH * a_ref],
        "single_object_rate": float(ok.mean()),
        "components_histogram": {
            str(k): int((ncomp == k).sum()) for k in range(int(ncomp.max()) + 1)
        },
        "best_match_iou_mean": float(ious.mean()),
        "best_match_iou_median": float(np.median(ious)),
        "best_disk_radius_patch_px": disk_r,
        "best_disk_iou": disk_iou,
        "beats_best_disk": bool(float(ious.mean()) > disk_iou),
        "coverage_iou_mean": coverage,
        "disk_family_coverage_iou": disk_coverage,
        "beats_disk_coverage": bool(coverage > disk_coverage),
        "mean_pairwise_iou": mean_pairwise_iou(masks[:PAIRWISE_SAMPLES], canvas=canvas),
    }


def evaluate_cluster(
    model: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    image_path: str | os.PathLike[str] | None = None,
    num_samples: int = 256,
    seed: int = 0,
    foreground: str = "bright",
) -> dict[str, Any]:
    """Compute the metrics of the module docstring; returns a JSON-ready dict.

    ``num_samples`` generated layers (seed ``seed``) of the model folder ``model`` are compared
    with the instances of the label map ``labels_path`` (the model's training image's size);
    ``image_path`` adds the label-free count. Every input is checked before the metrics run.
    """
    from maskgen.independence.cluster import ClusterPredictor

    pred = ClusterPredictor.from_folder(model)
    if num_samples < 2:
        raise MaskgenError(
            f"--num {num_samples}: must be at least 2 (shape variety compares pairs)"
        )
    pred.check_count(num_samples)
    labels, image = load_eval_inputs(pred, labels_path, image_path)
    P, window = pred.patch_size, pred.window
    scale = P / window
    inst = pred.instances(num_samples, seed=seed)
    masks = (inst[:, 3] > 0.5).numpy()
    shape = shape_metrics(masks, labels, P, scale, str(labels_path))
    gen_area_img = float(masks.sum((1, 2)).mean()) / scale**2
    fg_labels = float((labels > 0).sum())
    result: dict[str, Any] = {
        "model": str(model),
        "labels": str(labels_path),
        "num_generated": int(num_samples),
        "seed": seed,
        "patch_size": P,
        "window": window,
        **shape,
        "mean_generated_mask_area_image_px": gen_area_img,
        "mean_soft_mask_area_image_px": float(inst[:, 3].sum((1, 2)).mean()) / scale**2,
        "true_count": int(len(np.unique(labels[labels > 0]))),
        # None when every generated mask is empty (no instance size learned).
        "count_from_label_foreground": fg_labels / gen_area_img if gen_area_img > 0 else None,
        "definitions": "see maskgen.independence.cluster_eval module docstring",
    }
    if image is not None:
        fg = foreground_area(image, foreground)
        result["foreground_mode"] = foreground
        result["foreground_area_px"] = fg
        result["count_estimate"] = fg / gen_area_img if gen_area_img > 0 else None
    return result


def estimate_count(
    model: str | os.PathLike[str],
    image: np.ndarray,
    foreground: str = "bright",
    num_samples: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Object count of an image without labels: foreground area / mean generated mask area."""
    from maskgen.independence.cluster import ClusterPredictor

    pred = ClusterPredictor.from_folder(model)
    scale = pred.patch_size / pred.window
    inst = pred.instances(num_samples, seed=seed)
    area = float((inst[:, 3] > 0.5).sum((1, 2)).float().mean()) / scale**2
    fg = foreground_area(image, foreground)
    return {
        "foreground_area_px": fg,
        "mean_generated_mask_area_image_px": area,
        "count_estimate": fg / area if area > 0 else None,
    }


#: Files of ``cluster sample``'s output folder; ``layers.png`` marks an earlier result.
SAMPLE_FILES = ("appearances.png", "masks.png", "carved.png", "composites.png", "layers.png")


def write_samples(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    num: int = 16,
    seed: int = 0,
    image: np.ndarray | None = None,
    force: bool = False,
) -> list[Path]:
    """Picture grids and single RGBA instances of a trained cluster model.

    Writes into ``out`` (missing, empty, or with ``force`` an earlier result of this function):

    - ``appearances.png``: learned instance appearances (the generator's RGB), ``num`` of them;
    - ``masks.png``: their soft masks (alpha); ``carved.png``: RGB x alpha over grey;
    - ``composites.png``: ``num`` generated composite patches (``L`` layers each, the
      training layout, over disk backgrounds of ``image`` when given, else black);
    - ``layers.png``: the paper's appendix figures 9-11: one column per composite; rows 1..L the
      carved instances of each composition layer after layout (back to front), then the
      composite, then a learned appearance and its soft mask;
    - ``instances/instance_NNN.png``: ``num`` single generated instances as RGBA PNGs.

    Every input is checked before anything is written. Returns the written paths.
    """
    import torch

    from maskgen.core.io import prepare_out_dir, write_image
    from maskgen.engine import save_image_grid
    from maskgen.independence.cluster import ClusterPredictor

    out = prepare_out_dir(out, force, marker="layers.png")
    pred = ClusterPredictor.from_folder(model)
    pred.check_count(num, layers=True)
    r = pred.render(num, seed, image)
    inst, comp, placed = r["instances"], r["composite"], r["layers"]
    nrow = min(num, 8)
    rgb, a = inst[:, :3], inst[:, 3:4]
    out.mkdir(parents=True, exist_ok=True)
    files = [
        save_image_grid(out / "appearances.png", rgb, nrow),
        save_image_grid(out / "masks.png", a, nrow),
        save_image_grid(out / "carved.png", rgb * a + 0.5 * (1 - a), nrow),
        save_image_grid(out / "composites.png", comp, nrow),
    ]
    k = min(num, 8)
    rows = [placed[:k, i, :3] * placed[:k, i, 3:4] for i in range(pred.config.layers)]
    rows += [comp[:k], rgb[:k], a[:k].expand(-1, 3, -1, -1)]
    files.append(save_image_grid(out / "layers.png", torch.cat(rows), k))
    idir = out / "instances"
    idir.mkdir(exist_ok=True)
    for stale in idir.glob("instance_*.png"):  # an earlier, larger --num (only with --force)
        stale.unlink()
    arr = (inst.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    for i in range(num):
        p = idir / f"instance_{i:03d}.png"
        write_image(p, arr[i])
        files.append(p)
    return files


__all__ = [
    "PLAUSIBLE_HIGH",
    "PLAUSIBLE_LOW",
    "best_disk",
    "best_match_iou",
    "centred",
    "estimate_count",
    "evaluate_cluster",
    "foreground_area",
    "gt_shapes",
    "load_eval_inputs",
    "matching_shapes",
    "mean_pairwise_iou",
    "neighbour_agreement",
    "read_label_map",
    "write_samples",
    "single_object_flags",
]
