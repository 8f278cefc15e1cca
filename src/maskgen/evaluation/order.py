"""Occlusion-order evaluation (docs/design.md, "Evaluation"): direction accuracy, pair precision / recall / F1, and
three baselines on the same ground-truth pairs.

Ground truth (:func:`gt_pairs`), per image, as ``(front id, back id)`` annotation-id pairs:

- **COCOA**: the ``depth_constraint`` pairs (``Instance.occluded_by``), as annotated;
- **KINS and the built-in scenes** (amodal masks known): ``(a, b)`` when ``b``'s amodal mask meets
  ``a``'s visible mask -- ``a`` hides part of ``b``. Should both directions hold (interlocking
  objects, possible in real data, never in layered scenes), the depth decides: ``Instance.depth``
  or else ``ico_id`` (the built-in scenes write the layer index there, larger is nearer; KINS
  releases differ in what it means, so geometry comes first).

Metrics over all images (:func:`evaluate_order`): **direction accuracy** = share of ground-truth
pairs listed by the method in the right direction (a pair left out counts as wrong); **pair
precision** = share of listed pairs that are ground-truth pairs in the right direction; **recall**
= direction accuracy; F1 of the two. Baselines (:func:`baseline_front`) decide the direction of
each ground-truth pair only (they list exactly those pairs, so their precision equals their
accuracy): lower bottom edge in front (y-axis), larger visible area in front, convex-hull
intrusion (the instance whose visible hull reaches more into the other's visible pixels is
behind). A baseline tie counts half (a coin flip's expectation), and the number of ties is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from maskgen.data.types import ImageRecord

__all__ = ["BASELINES", "OrderScores", "baseline_front", "evaluate_order", "gt_pairs"]

BASELINES = ("y-axis", "area", "convex-hull")


def _depth(inst: object) -> float | None:
    d = getattr(inst, "depth", None)
    if d is None:
        d = getattr(inst, "extra", {}).get("ico_id")
    return None if d is None else float(d)


def gt_pairs(rec: ImageRecord) -> list[tuple[int, int]]:
    """Ground-truth occluded ``(front id, back id)`` pairs of one image (module docstring)."""
    insts = rec.instances
    if any(i.occluded_by is not None for i in insts):  # COCOA depth constraints
        ids = {int(i.id) for i in insts}
        return sorted(
            (int(f), int(i.id)) for i in insts for f in (i.occluded_by or []) if int(f) in ids
        )
    if any(i.amodal_segm is None for i in insts):
        return []
    vis = [rec.visible_mask(i) for i in insts]
    amo = [rec.amodal_mask(i) for i in insts]
    out = []
    for a in range(len(insts)):
        for b in range(a + 1, len(insts)):
            a_front = bool((amo[b] & vis[a]).any())
            b_front = bool((amo[a] & vis[b]).any())
            if a_front and b_front:
                da, db = _depth(insts[a]), _depth(insts[b])
                if da is not None and db is not None and da != db:
                    a_front, b_front = da > db, db > da
                else:  # no depth: the direction that hides more pixels
                    a_front = (amo[b] & vis[a]).sum() >= (amo[a] & vis[b]).sum()
                    b_front = not a_front
            if a_front:
                out.append((int(insts[a].id), int(insts[b].id)))
            elif b_front:
                out.append((int(insts[b].id), int(insts[a].id)))
    return out


def baseline_front(name: str, va: np.ndarray, vb: np.ndarray) -> float:
    """Baseline verdict for a pair: 1.0 when ``a`` is in front, 0.0 when ``b``, 0.5 on a tie.

    Args:
        name: one of :data:`BASELINES`.
        va, vb: ``H x W`` bool visible masks of the two instances.
    """
    if name == "y-axis":  # lower bottom edge (larger row index) in front
        sa, sb = _bottom(va), _bottom(vb)
    elif name == "area":
        sa, sb = int(va.sum()), int(vb.sum())
    elif name == "convex-hull":  # reaching into the other's pixels means being behind it
        from maskgen.editing.order import convex_hulls

        ha, hb = convex_hulls(np.stack([va, vb]))
        sa, sb = int((hb & va).sum()), int((ha & vb).sum())
    else:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    return 0.5 if sa == sb else float(sa > sb)


def _bottom(m: np.ndarray) -> int:
    rows = np.flatnonzero(m.any(axis=1))
    return int(rows[-1]) if rows.size else -1


@dataclass
class OrderScores:
    """Order metrics over a set of images."""

    gt_pairs: int = 0
    listed_pairs: int = 0
    correct: int = 0
    baseline_correct: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(BASELINES, 0.0)
    )
    baseline_ties: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BASELINES, 0))

    @property
    def accuracy(self) -> float:
        return self.correct / self.gt_pairs if self.gt_pairs else 0.0

    @property
    def precision(self) -> float:
        return self.correct / self.listed_pairs if self.listed_pairs else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.accuracy
        return 2 * p * r / (p + r) if p + r else 0.0

    def baseline_accuracy(self, name: str) -> float:
        return self.baseline_correct[name] / self.gt_pairs if self.gt_pairs else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "gt_pairs": self.gt_pairs,
            "listed_pairs": self.listed_pairs,
            "direction_accuracy": round(self.accuracy, 4),
            "pair_precision": round(self.precision, 4),
            "pair_recall": round(self.accuracy, 4),
            "pair_f1": round(self.f1, 4),
            "baselines": {
                n: {"direction_accuracy": round(self.baseline_accuracy(n), 4), "ties": t}
                for n, t in self.baseline_ties.items()
            },
        }


def evaluate_order(
    records: Iterable[ImageRecord],
    predicted: dict[int, Sequence[Sequence[int]]],
    baselines: bool = True,
) -> OrderScores:
    """Score predicted ``(front id, back id)`` pairs per image id against :func:`gt_pairs`.

    Args:
        records: ground-truth images (an image missing from ``predicted`` lists no pair).
        predicted: image id -> listed pairs (the ``pairs`` of an ``amodal order`` output).
        baselines: also score the three baselines on the ground-truth pairs.
    """
    sc = OrderScores()
    for rec in records:
        gt = gt_pairs(rec)
        pred = {(int(f), int(b)) for f, b in predicted.get(int(rec.id), [])}
        sc.gt_pairs += len(gt)
        sc.listed_pairs += len(pred)
        sc.correct += len(set(gt) & pred)
        if not baselines or not gt:
            continue
        vis = {int(i.id): rec.visible_mask(i) for i in rec.instances}
        for f, b in gt:
            for name in BASELINES:
                v = baseline_front(name, vis[f], vis[b])
                sc.baseline_correct[name] += v
                sc.baseline_ties[name] += int(v == 0.5)
    return sc
