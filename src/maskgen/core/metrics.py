"""Mask metrics, one definition each (docs/design.md, "Evaluation"). Every report names the variant it shows.

Masks are ``H x W`` numpy arrays, ``bool`` or anything whose non-zero pixels are the mask.

Public API::

    instance_counts(pred, gt_amodal, gt_visible) -> InstanceCounts        # dense H x W masks
    instance_counts_rle(pred_rle, amodal_rle, visible_rle) -> InstanceCounts   # no decoding
    to_rle(segm, height, width) -> pycocotools RLE (polygons / RLE / None)
    InstanceCounts: full_inter, full_union, inv_inter, inv_union, visible_area, amodal_area,
        occluded_area, pred_area; .full_iou, .invisible_iou (None if unoccluded),
        .occlusion_ratio, .visible_ratio, .bucket
    occlusion_bucket(occluded_area, amodal_area) -> "0" | "(0,25]" | "(25,50]" | "(50,100]"
    AmodalAccumulator(keep_instances=True): .add(counts, instance_id), .add_masks(p, a, v, id),
        .summary() -> {"overall": {...}, "buckets": {...}}, .instances (per-instance records)
    foreground_counts(pred, gt) -> {"tp", "fp", "fn", "tn"}
    foreground_metrics(pred, gt) -> {"fg_iou", "bg_iou", "miou", "pixel_acc"}
    ForegroundAccumulator(): .add(pred, gt) (H x W or N x H x W),
        .summary() -> {"n_images", "dataset": {...}, "per_image_mean": {...}}

Amodal completion (one instance: prediction ``P``, GT amodal ``A``, GT visible ``V``)
--------------------------------------------------------------------------------------
- **full IoU**: ``|P ∩ A| / |P ∪ A|``.
- **invisible IoU**: the same on the pixels outside the GT visible mask, ``P' = P \\ V`` against
  ``A' = A \\ V``: ``|P' ∩ A'| / |P' ∪ A'|``.
- **dataset-level** (``*_dataset``): ``Σ intersection / Σ union`` over instances. For invisible
  IoU every instance contributes (an unoccluded one adds only its false positives to the union).
- **per-instance mean** (``*_mean``): the mean of per-instance IoUs. Full IoU averages over all
  instances; invisible IoU averages over *occluded* instances only (``A' ≠ ∅``).
- **occlusion ratio** ``r = |A \\ V| / |A|`` (equal to ``1 − |V| / |A|`` since GT ``V ⊆ A``);
  visible ratio ``1 − r``. **Buckets** (closed on the right, exact integer arithmetic):
  ``"0"``: ``r == 0``; ``"(0,25]"``: ``0 < r ≤ 0.25``; ``"(25,50]"``: ``0.25 < r ≤ 0.5``;
  ``"(50,100]"``: ``r > 0.5``.
- Where a union is empty the IoU is undefined and reported as ``None`` (dataset level) or the
  instance is left out of the mean; a per-instance full IoU always exists (``A ≠ ∅``).

Foreground segmentation (independence prior, application 1), fixed polarity
-----------------------------------------------------------------------------
``foreground_metrics(pred, gt)``: foreground IoU ``|P ∩ G| / |P ∪ G|``, background IoU
``|¬P ∩ ¬G| / |¬P ∪ ¬G|``, their mean ``miou`` (2-class mIoU) and pixel accuracy. An empty union
(both masks empty, or both full for the background) counts as IoU 1 (perfect agreement).
Never the better of the mask and its inverse. :class:`ForegroundAccumulator` gives both the
dataset level (summed counts) and the per-image mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "OCCLUSION_BUCKETS",
    "occlusion_bucket",
    "InstanceCounts",
    "instance_counts",
    "instance_counts_rle",
    "to_rle",
    "AmodalAccumulator",
    "foreground_counts",
    "foreground_metrics",
    "ForegroundAccumulator",
]

OCCLUSION_BUCKETS: tuple[str, ...] = ("0", "(0,25]", "(25,50]", "(50,100]")


def occlusion_bucket(occluded_area: int, amodal_area: int) -> str:
    """Bucket name of an instance from ``|A \\ V|`` and ``|A|`` (integers; exact boundaries)."""
    if amodal_area <= 0:
        raise ValueError("amodal area must be positive")
    if occluded_area <= 0:
        return "0"
    if 4 * occluded_area <= amodal_area:
        return "(0,25]"
    if 2 * occluded_area <= amodal_area:
        return "(25,50]"
    return "(50,100]"


def _iou(inter: int, union: int) -> float | None:
    return inter / union if union > 0 else None


@dataclass
class InstanceCounts:
    """Raw pixel counts of one amodal prediction (all ``int``); reusable for best-of-K analyses.

    Attributes:
        full_inter, full_union: ``|P ∩ A|``, ``|P ∪ A|``.
        inv_inter, inv_union: ``|P' ∩ A'|``, ``|P' ∪ A'|`` with ``X' = X \\ V``.
        visible_area: ``|V|``; amodal_area: ``|A|``; occluded_area: ``|A \\ V|``;
        pred_area: ``|P|``.
    """

    full_inter: int
    full_union: int
    inv_inter: int
    inv_union: int
    visible_area: int
    amodal_area: int
    occluded_area: int
    pred_area: int

    @property
    def full_iou(self) -> float:
        """Per-instance full IoU (1.0 when both masks are empty, which GT forbids)."""
        return self.full_inter / self.full_union if self.full_union > 0 else 1.0

    @property
    def occluded(self) -> bool:
        return self.occluded_area > 0

    @property
    def invisible_iou(self) -> float | None:
        """Per-instance invisible IoU, ``None`` for an unoccluded instance."""
        if not self.occluded:
            return None
        return self.inv_inter / self.inv_union

    @property
    def occlusion_ratio(self) -> float:
        """``|A \\ V| / |A|`` in ``[0, 1]``."""
        return self.occluded_area / self.amodal_area

    @property
    def visible_ratio(self) -> float:
        return 1.0 - self.occlusion_ratio

    @property
    def bucket(self) -> str:
        return occlusion_bucket(self.occluded_area, self.amodal_area)


def instance_counts(
    pred: np.ndarray, gt_amodal: np.ndarray, gt_visible: np.ndarray
) -> InstanceCounts:
    """Pixel counts of one instance's amodal prediction against its ground truth.

    Args:
        pred: ``H x W`` predicted amodal mask (non-zero = inside).
        gt_amodal: ``H x W`` GT amodal mask; must not be empty.
        gt_visible: ``H x W`` GT visible mask.

    Raises:
        ValueError: shapes differ or the GT amodal mask is empty.
    """
    p = np.asarray(pred).astype(bool, copy=False)
    a = np.asarray(gt_amodal).astype(bool, copy=False)
    v = np.asarray(gt_visible).astype(bool, copy=False)
    if not (p.shape == a.shape == v.shape):
        raise ValueError(f"mask shapes differ: pred {p.shape}, amodal {a.shape}, visible {v.shape}")
    amodal_area = int(a.sum())
    if amodal_area == 0:
        raise ValueError("GT amodal mask is empty")
    pv = p & ~v
    av = a & ~v
    return InstanceCounts(
        full_inter=int((p & a).sum()),
        full_union=int((p | a).sum()),
        inv_inter=int((pv & av).sum()),
        inv_union=int((pv | av).sum()),
        visible_area=int(v.sum()),
        amodal_area=amodal_area,
        occluded_area=int(av.sum()),
        pred_area=int(p.sum()),
    )


def to_rle(segm: Any, height: int, width: int) -> dict[str, Any]:
    """Any COCO segmentation (polygons, compressed or uncompressed RLE, ``None`` = empty) as a
    pycocotools RLE (``counts`` bytes), without decoding compressed RLE."""
    from pycocotools import mask as mask_utils

    if segm is None or (isinstance(segm, list) and not segm):
        return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    if isinstance(segm, list):
        return mask_utils.merge(
            mask_utils.frPyObjects([list(map(float, p)) for p in segm], height, width)
        )
    counts = segm["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(segm, height, width)
    return {
        "size": [int(segm["size"][0]), int(segm["size"][1])],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def instance_counts_rle(
    pred: dict[str, Any], gt_amodal: dict[str, Any], gt_visible: dict[str, Any]
) -> InstanceCounts:
    """:func:`instance_counts` on pycocotools RLEs (see :func:`to_rle`), never decoding a mask.

    Uses ``|P' ∩ A'| = |P ∩ A| − |P ∩ A ∩ V|`` and ``|P' ∪ A'| = |P ∪ A| − |(P ∪ A) ∩ V|``
    (``X' = X \\ V``). Much faster than the dense version on large images.

    Raises:
        ValueError: sizes differ or the GT amodal mask is empty.
    """
    from pycocotools import mask as mask_utils

    if not (list(pred["size"]) == list(gt_amodal["size"]) == list(gt_visible["size"])):
        raise ValueError(
            f"mask sizes differ: pred {pred['size']}, amodal {gt_amodal['size']}, visible {gt_visible['size']}"
        )
    area = mask_utils.area
    merge = mask_utils.merge
    amodal_area = int(area(gt_amodal))
    if amodal_area == 0:
        raise ValueError("GT amodal mask is empty")
    p_and_a = merge([pred, gt_amodal], intersect=True)
    p_or_a = merge([pred, gt_amodal], intersect=False)
    full_inter = int(area(p_and_a))
    full_union = int(area(p_or_a))
    pav = int(area(merge([p_and_a, gt_visible], intersect=True)))
    uv = int(area(merge([p_or_a, gt_visible], intersect=True)))
    av = int(area(merge([gt_amodal, gt_visible], intersect=True)))
    return InstanceCounts(
        full_inter=full_inter,
        full_union=full_union,
        inv_inter=full_inter - pav,
        inv_union=full_union - uv,
        visible_area=int(area(gt_visible)),
        amodal_area=amodal_area,
        occluded_area=amodal_area - av,
        pred_area=int(area(pred)),
    )


@dataclass
class _Group:
    n: int = 0
    n_occluded: int = 0
    full_inter: int = 0
    full_union: int = 0
    inv_inter: int = 0
    inv_union: int = 0
    full_iou_sum: float = 0.0
    inv_iou_sum: float = 0.0

    def add(self, c: InstanceCounts) -> None:
        self.n += 1
        self.full_inter += c.full_inter
        self.full_union += c.full_union
        self.inv_inter += c.inv_inter
        self.inv_union += c.inv_union
        self.full_iou_sum += c.full_iou
        if c.occluded:
            self.n_occluded += 1
            self.inv_iou_sum += c.inv_inter / c.inv_union

    def summary(self) -> dict[str, Any]:
        return {
            "n_instances": self.n,
            "n_occluded": self.n_occluded,
            "full_iou_dataset": _iou(self.full_inter, self.full_union),
            "full_iou_mean": self.full_iou_sum / self.n if self.n else None,
            "invisible_iou_dataset": _iou(self.inv_inter, self.inv_union),
            "invisible_iou_mean": self.inv_iou_sum / self.n_occluded if self.n_occluded else None,
        }


@dataclass
class AmodalAccumulator:
    """Accumulates :class:`InstanceCounts` overall and per occlusion bucket.

    ``keep_instances=True`` also keeps one small record per instance (for plots of IoU against
    visible ratio): ``(id, visible_ratio, full_iou, invisible_iou or None, bucket)``.
    """

    keep_instances: bool = True
    overall: _Group = field(default_factory=_Group)
    buckets: dict[str, _Group] = field(
        default_factory=lambda: {b: _Group() for b in OCCLUSION_BUCKETS}
    )
    instances: list[dict[str, Any]] = field(default_factory=list)

    def add(self, counts: InstanceCounts, instance_id: int | None = None) -> None:
        self.overall.add(counts)
        self.buckets[counts.bucket].add(counts)
        if self.keep_instances:
            self.instances.append(
                {
                    "id": instance_id,
                    "visible_ratio": counts.visible_ratio,
                    "full_iou": counts.full_iou,
                    "invisible_iou": counts.invisible_iou,
                    "bucket": counts.bucket,
                }
            )

    def add_masks(
        self,
        pred: np.ndarray,
        gt_amodal: np.ndarray,
        gt_visible: np.ndarray,
        instance_id: int | None = None,
    ) -> InstanceCounts:
        """Count one instance (see :func:`instance_counts`) and add it; returns the counts."""
        c = instance_counts(pred, gt_amodal, gt_visible)
        self.add(c, instance_id)
        return c

    def summary(self) -> dict[str, Any]:
        """``{"overall": {...}, "buckets": {name: {...}}}``; each group holds ``n_instances``,
        ``n_occluded``, ``full_iou_dataset``, ``full_iou_mean``, ``invisible_iou_dataset``,
        ``invisible_iou_mean`` (floats in [0, 1] or None where undefined)."""
        return {
            "overall": self.overall.summary(),
            "buckets": {b: g.summary() for b, g in self.buckets.items()},
        }


# --------------------------------------------------------------------------------------------
# Foreground segmentation


def foreground_counts(pred: np.ndarray, gt: np.ndarray) -> dict[str, int]:
    """Confusion counts ``tp, fp, fn, tn`` of a binary ``H x W`` prediction (foreground = 1)."""
    p = np.asarray(pred).astype(bool, copy=False)
    g = np.asarray(gt).astype(bool, copy=False)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: pred {p.shape}, gt {g.shape}")
    tp = int((p & g).sum())
    fp = int((p & ~g).sum())
    fn = int((~p & g).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(p.size) - tp - fp - fn}


def _fg_from_counts(c: dict[str, int]) -> dict[str, float]:
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    fg_union = tp + fp + fn
    bg_union = tn + fp + fn
    fg = tp / fg_union if fg_union else 1.0
    bg = tn / bg_union if bg_union else 1.0
    n = tp + fp + fn + tn
    return {
        "fg_iou": fg,
        "bg_iou": bg,
        "miou": (fg + bg) / 2,
        "pixel_acc": (tp + tn) / n if n else 1.0,
    }


def foreground_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """``fg_iou``, ``bg_iou``, ``miou`` (their mean) and ``pixel_acc`` of one ``H x W`` mask.

    Fixed polarity: ``pred`` non-zero means foreground, never swapped for its inverse.
    """
    return _fg_from_counts(foreground_counts(pred, gt))


@dataclass
class ForegroundAccumulator:
    """Foreground-segmentation metrics over many images.

    ``summary()`` returns ``{"n_images", "dataset": {...}, "per_image_mean": {...}}``; the
    dataset level computes the four metrics from counts summed over all pixels of all images,
    the per-image mean averages each image's metrics.
    """

    totals: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
    sums: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("fg_iou", "bg_iou", "miou", "pixel_acc"), 0.0)
    )
    n_images: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Add one ``H x W`` image, or a batch ``N x H x W`` (each image counted separately).

        Returns the metrics of the (last) image added.
        """
        p = np.asarray(pred)
        g = np.asarray(gt)
        if p.ndim == 3:
            out: dict[str, float] = {}
            for k in range(p.shape[0]):
                out = self.add(p[k], g[k])
            return out
        c = foreground_counts(p, g)
        for k, v in c.items():
            self.totals[k] += v
        m = _fg_from_counts(c)
        for k, v in m.items():
            self.sums[k] += v
        self.n_images += 1
        return m

    def summary(self) -> dict[str, Any]:
        n = self.n_images
        return {
            "n_images": n,
            "dataset": _fg_from_counts(self.totals) if n else None,
            "per_image_mean": {k: v / n for k, v in self.sums.items()} if n else None,
        }


def counts_dict(c: InstanceCounts) -> dict[str, int]:
    """Plain-dict form of :class:`InstanceCounts` (for JSON)."""
    return asdict(c)
