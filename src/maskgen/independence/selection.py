"""Label-free model selection: application 1's *fresh-discriminator realism* score, and
application 2's *one object, then variety* rule (:func:`generator_selection_score`,
:func:`rank_generators`; see their docstrings).

Application 1:

A segmenter whose masks are right can cut an object out of its crop and paste it on another
background without leaving a trace: the paste looks like a real crop. A mask that is an
object-sized blob carries a rim of the old background (or drops parts of the object), and the
seam shows. The score measures exactly that, with no ground truth:

1. the candidate's soft masks of ``N`` unlabelled training crops;
2. each crop's cut-and-paste composite on a random background patch, beside the crop itself
   (paired: the discriminator must find the paste, not the object);
3. a *fresh* small SN discriminator (:data:`SCORE_DISC`), the same initial weights and the same
   data split for every candidate, trained for a fixed number of steps to tell the two apart
   (its inputs are random 50 % crops, so it judges seams rather than the global layout);
4. on held-out crops and composites, the ROC AUC of its logits; ``realism = 2 (1 - AUC)``
   clipped to ``[0, 1]`` (1: indistinguishable, 0: always told apart).

Higher is better; :func:`rank_candidates` picks the best. ``tests/test_independence_pieces``
checks on a labelled toy case that the score ranks exact masks above blurred, eroded, dilated
masks and centred disks, and agrees in order with the masks' IoU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: The discriminator preset of the score (small: it must not be able to memorise).
SCORE_DISC = "tiny"


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of scores ``pos`` (should be high) against ``neg`` (ties count half)."""
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    # average ranks of ties
    _, inv, cnt = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / cnt)[inv]
    rp = ranks[: len(pos)].sum()
    return float((rp - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _random_crops(x: torch.Tensor, g: torch.Generator, frac: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = max(8, int(h * frac)), max(8, int(w * frac))
    ys = torch.randint(0, h - ch + 1, (n,), generator=g)
    xs = torch.randint(0, w - cw + 1, (n,), generator=g)
    return torch.stack(
        [x[i, :, y : y + ch, z : z + cw] for i, (y, z) in enumerate(zip(ys, xs, strict=True))]
    )


def _fit_discriminator(
    real: torch.Tensor,
    comp: torch.Tensor,
    g: torch.Generator,
    steps: int,
    batch_size: int,
    seed: int,
) -> torch.nn.Module:
    """A fresh :data:`SCORE_DISC` trained to tell ``real`` crops from ``comp`` pastes."""
    from maskgen.independence.discriminator import SNDiscriminator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        d = SNDiscriminator(SCORE_DISC)
    opt = torch.optim.Adam(d.parameters(), lr=4e-4, betas=(0.5, 0.999))
    k = len(real)
    for _ in range(steps):
        r = real[torch.randint(0, k, (batch_size,), generator=g)]
        f = comp[torch.randint(0, k, (batch_size,), generator=g)]
        lr_ = d(_random_crops(r, g)).mean((1, 2, 3))
        lf = d(_random_crops(f, g)).mean((1, 2, 3))
        loss = F.softplus(-lr_).mean() + F.softplus(lf).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return d.eval()


def composite_realism(
    images: np.ndarray,
    alphas: np.ndarray,
    backgrounds: np.ndarray,
    *,
    steps: int = 300,
    batch_size: int = 32,
    seed: int = 0,
    folds: int = 3,
) -> dict[str, float]:
    """The fresh-discriminator realism of cut-and-paste composites (module docstring).

    Args:
        images: ``N x S x S x 3`` uint8 unlabelled crops (N >= 8).
        alphas: ``N x S x S`` soft masks in ``[0, 1]`` of those crops (the candidate's).
        backgrounds: ``M x S x S x 3`` uint8 background patches.
        steps, batch_size: each fresh discriminator's training budget.
        folds: cross-fitting folds (one discriminator per fold, each scored on the crops it
            did not see; the AUC is over all crops).
        seed: fixes the split, the pairing with backgrounds and D's initial weights -- keep it
            the same for all candidates that are compared.

    Returns:
        ``{"realism": 2 (1 - AUC) clipped to [0, 1], "auc": held-out AUC}``.
    """
    n = len(images)
    if n < 4 * folds or len(alphas) != n or len(backgrounds) < 1:
        raise ValueError(
            "composite_realism needs >= 4 crops per fold, one mask each, >= 1 background"
        )
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    a = torch.from_numpy(np.asarray(alphas, np.float32))[:, None].clamp(0, 1)
    bg = torch.from_numpy(np.ascontiguousarray(backgrounds)).permute(0, 3, 1, 2).float() / 255.0
    perm = torch.randperm(n, generator=g)
    pick = torch.randint(0, len(bg), (n,), generator=g)
    comp = a * x + (1 - a) * bg[pick]
    pr, pf = [], []
    for fold in range(folds):
        test_idx = perm[fold::folds]
        train_idx = perm[torch.arange(n) % folds != fold]
        d = _fit_discriminator(x[train_idx], comp[train_idx], g, steps, batch_size, seed + fold)
        with torch.no_grad():
            pr.append(d(x[test_idx]).mean((1, 2, 3)).numpy())
            pf.append(d(comp[test_idx]).mean((1, 2, 3)).numpy())
    pr, pf = np.concatenate(pr), np.concatenate(pf)
    auc = roc_auc(pr, pf)
    return {"realism": float(np.clip(2 * (1 - auc), 0, 1)), "auc": auc}


def segmenter_realism(
    model: torch.nn.Module,
    images: np.ndarray,
    backgrounds: np.ndarray,
    *,
    steps: int = 300,
    seed: int = 0,
    max_images: int = 256,
) -> dict[str, float]:
    """:func:`composite_realism` of a :class:`~maskgen.independence.predict.Segmenter`'s soft
    masks on (up to ``max_images`` of) the unlabelled training crops."""
    imgs = images[:max_images]
    was = model.training
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255.0
        dev = next(model.parameters()).device
        alpha = torch.cat([model.alpha(x[i : i + 64].to(dev)).cpu() for i in range(0, len(x), 64)])
    model.train(was)
    return composite_realism(imgs, alpha[:, 0].numpy(), backgrounds, steps=steps, seed=seed)


def background_patches(
    backgrounds: list[np.ndarray], size: int, crop: int, n: int, seed: int
) -> np.ndarray:
    """``n x size x size x 3`` uint8 patches drawn like the trainer's background provider."""
    from maskgen.independence.providers import BackgroundPatchProvider

    bg, _ = BackgroundPatchProvider(backgrounds, size, crop).sample(
        n, torch.Generator().manual_seed(seed)
    )
    return (bg.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()


def rank_candidates(scores: list[float]) -> int:
    """Index of the best candidate (highest realism; the first on ties)."""
    return int(np.argmax(np.asarray(scores)))


#: Application 2: the share of one-object layers a candidate needs to be ranked by variety
#: (issue 12's single-object bar).
MIN_SINGLE_OBJECT = 0.8


def generator_selection_score(masks: np.ndarray, area_target: float) -> dict[str, float]:
    """Application 2's label-free numbers of a generator, from ``M x P x P`` bool masks of its
    instances (``alpha > 0.5``).

    - ``single_object``: the share of masks that are one plausible object, by the evaluation's
      rule (:func:`~maskgen.independence.cluster_eval.single_object_flags`) with the reference
      area taken from the user's ``area_target`` (``a P^2``) instead of the labels;
    - ``pairwise``: the mean centred IoU over pairs of masks
      (:func:`~maskgen.independence.cluster_eval.mean_pairwise_iou`; near 1: one shape for every
      ``z``).

    Neither needs ground truth. How they agree with the labelled metrics on saved runs:
    ``benchmarks/RESULTS.md``, section ``cluster-selection``.
    """
    from maskgen.independence.cluster_eval import mean_pairwise_iou, single_object_flags

    p = masks.shape[-1]
    ok, _ = single_object_flags(masks, area_target * p * p)
    return {"single_object": float(ok.mean()), "pairwise": mean_pairwise_iou(masks, 2 * p)}


def rank_generators(candidates: list[dict[str, float]]) -> int:
    """Index of the best application-2 candidate (dicts of :func:`generator_selection_score`):
    among those with at least :data:`MIN_SINGLE_OBJECT` one-object layers, the most varied
    (lowest ``pairwise``); when none reaches it, the most one-object layers. The first on ties.

    Why this order: a run that breaks its layers into fragments is broken whatever else it
    does; among whole-object runs, varied masks are the ones that cover the instances' shapes
    (a blob repeated for every ``z`` covers sizes only).
    """
    ok = [i for i, c in enumerate(candidates) if c["single_object"] >= MIN_SINGLE_OBJECT]
    if ok:
        return min(ok, key=lambda i: (candidates[i]["pairwise"], i))
    return max(range(len(candidates)), key=lambda i: (candidates[i]["single_object"], -i))


__all__ = [
    "MIN_SINGLE_OBJECT",
    "SCORE_DISC",
    "background_patches",
    "composite_realism",
    "generator_selection_score",
    "rank_candidates",
    "rank_generators",
    "roc_auc",
    "segmenter_realism",
]
