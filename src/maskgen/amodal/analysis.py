"""The Amodal-VAE supplementary's analyses, regenerated as plots and numbers.

:func:`analyze` runs all four on a ground-truth file with amodal masks (KINS / COCOA layout, e.g.
the built-in scenes' ``test_kins2020.json``) and writes ``analysis.json`` and PNG plots:

1. **Prior samples** (supplementary Fig. 3): ``z ~ N(0, I)`` decoded to Bernoulli probabilities
   (before binarisation), tiled into ``prior_samples.png``.
2. **Posterior spread vs occlusion** (Fig. 4): ``sigma = exp(logvar / 2)`` of ``q2`` for every
   instance's GT visible mask, averaged per latent within three groups of GT occlusion ratio
   ``r = |A \\ V| / |A|``: ``"0"`` (``r == 0``), ``"1-50"`` (``0 < r <= 0.5``) and ``">50"``
   (``r > 0.5``). The plot shows the ``15`` latents with the smallest mean sigma over all
   instances (as the paper does); the JSON holds all of them. The *finding* is tested on the mean
   sigma over those 15 latents: it must grow from group to group; each gap between consecutive
   groups also gets a 95 % bootstrap interval (``gaps``), and ``finding_significant`` says
   whether both intervals exclude 0.
3. **mIoU vs visible ratio** (Fig. 1): per-instance full IoU of the mode and of the best of ``K``
   (20) posterior samples -- best *by ground truth*, so an analysis, not a user feature -- and of
   the sample a user would pick (highest visible-consistency score), averaged in visible-ratio bins
   of width 0.1. Findings tested: best-of-K mean above the mode's overall, and the gap shrinking
   as visibility grows (the least-squares slope of the per-bin gap against the bin centre,
   weighted by bin counts, is negative).
4. **GT vs corrupted visible masks** (Table 1's question): the same completion run once from GT
   visible masks and once from corrupted ones (:mod:`maskgen.amodal.corruption`, a stand-in for a
   detector's masks), each scored with every metric variant of :mod:`maskgen.core.metrics`
   against the GT amodal *and GT visible* masks; the raw input masks are scored too (Table 1's
   "GT Instance Mask" / "Pred. Mask" rows).

Every completion uses the predictor's default post-processing unless ``restrict=False``
(:mod:`maskgen.amodal.predictor`: invisible pixels only under other instances' visible masks,
visible mask OR-ed in); the protocol is written into ``analysis.json``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.amodal.completion import CROP_CONVENTION, complete_dataset
from maskgen.amodal.corruption import CorruptionConfig, corrupt_masks
from maskgen.amodal.predictor import AmodalPredictor, Completion
from maskgen.core.metrics import AmodalAccumulator, InstanceCounts, instance_counts
from maskgen.data.types import Dataset, ImageRecord

__all__ = [
    "SIGMA_GROUPS",
    "analyze",
    "group_gap_ci",
    "local_counts",
    "prior_samples",
    "sigma_group",
    "write_prior_grid",
]

SIGMA_GROUPS = ("0", "1-50", ">50")
N_PLOTTED_LATENTS = 15
VISIBLE_BINS = np.linspace(0.0, 1.0, 11)


def sigma_group(occluded_area: int, amodal_area: int) -> str:
    """Fig. 4 group of an instance: ``"0"``, ``"1-50"`` (``0 < r <= 0.5``) or ``">50"``."""
    if occluded_area <= 0:
        return "0"
    return "1-50" if 2 * occluded_area <= amodal_area else ">50"


def group_gap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``mean(b) - mean(a)`` with a 95 % bootstrap interval (each group resampled on its own).

    Args:
        a, b: ``(n_a,)``, ``(n_b,)`` float per-instance values of two groups.

    Returns:
        ``{"gap": float | None, "ci95": [lo, hi] | None, "n": [n_a, n_b]}`` (None when a group
        is empty).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return {"gap": None, "ci95": None, "n": [len(a), len(b)]}
    rng = np.random.default_rng(seed)
    boot = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1) - a[
        rng.integers(0, len(a), (n_boot, len(a)))
    ].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "gap": float(b.mean() - a.mean()),
        "ci95": [float(lo), float(hi)],
        "n": [len(a), len(b)],
    }


@torch.inference_mode()
def prior_samples(predictor: AmodalPredictor, n: int = 64, seed: int = 0) -> np.ndarray:
    """Decode ``n`` draws of ``z ~ N(0, I)``: ``n x S x S`` float32 probabilities (Fig. 3)."""
    mu_dim = _latent_dim(predictor)
    z = np.random.default_rng(seed).standard_normal((n, mu_dim)).astype(np.float32)
    return predictor.decode(z)


def _latent_dim(predictor: AmodalPredictor) -> int:
    arch = getattr(predictor.model, "config", None)
    if arch is not None and hasattr(arch, "latent_dim"):
        return int(arch.latent_dim)
    s = predictor.crop_size
    mu, _, _ = predictor.encode(np.zeros((1, s, s), np.float32), boxes=False)
    return int(mu.shape[1])


def write_prior_grid(probs: np.ndarray, path: str | os.PathLike[str], nrow: int = 8) -> None:
    """Tile ``N x S x S`` probabilities into a greyscale PNG (white = 1), upscaled 3x."""
    from maskgen.core.io import write_image
    from maskgen.engine.images import make_image_grid

    grid = make_image_grid(torch.from_numpy(probs[:, None]), nrow=nrow, padding=2, pad_value=0.5)
    grid = np.kron(grid, np.ones((3, 3), dtype=np.uint8)) if grid.ndim == 2 else grid
    write_image(path, grid)


def local_counts(
    comp: Completion, sample: int | None, amodal: np.ndarray, visible: np.ndarray
) -> InstanceCounts:
    """:func:`maskgen.core.metrics.instance_counts` of a completion's mode (``sample=None``) or
    sample, computed on the completion's pixel region (the prediction is empty outside it).

    Args:
        comp: the completion.
        sample: sample index, or None for the post-processed mode.
        amodal, visible: ``H x W`` bool GT amodal and GT visible masks.
    """
    x0, y0, x1, y1 = comp.region
    p = comp.local_mask if sample is None else comp.local_samples[sample]
    a = amodal[y0:y1, x0:x1]
    v = visible[y0:y1, x0:x1]
    a_area = int(np.count_nonzero(amodal))
    occ_area = int(np.count_nonzero(amodal & ~visible))
    p_area = int(np.count_nonzero(p))
    fi = int(np.count_nonzero(p & a))
    pv = p & ~v
    ii = int(np.count_nonzero(pv & a & ~v))
    return InstanceCounts(
        full_inter=fi,
        full_union=p_area + a_area - fi,
        inv_inter=ii,
        inv_union=int(np.count_nonzero(pv)) + occ_area - ii,
        visible_area=int(np.count_nonzero(visible)),
        amodal_area=a_area,
        occluded_area=occ_area,
        pred_area=p_area,
    )


def _bin_table(vis_ratio: np.ndarray, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for lo, hi in zip(VISIBLE_BINS[:-1], VISIBLE_BINS[1:], strict=True):
        sel = (vis_ratio >= lo) & ((vis_ratio < hi) if hi < 1 else (vis_ratio <= hi))
        row: dict[str, Any] = {
            "visible_ratio": [round(float(lo), 2), round(float(hi), 2)],
            "n": int(sel.sum()),
        }
        for k, v in values.items():
            row[k] = float(v[sel].mean()) if sel.any() else None
        rows.append(row)
    return rows


def _weighted_slope(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float | None:
    keep = w > 0
    if keep.sum() < 2:
        return None
    x, y, w = x[keep], y[keep], w[keep]
    xm = np.average(x, weights=w)
    ym = np.average(y, weights=w)
    den = float(np.sum(w * (x - xm) ** 2))
    return float(np.sum(w * (x - xm) * (y - ym)) / den) if den > 0 else None


def analyze(
    predictor: AmodalPredictor,
    gt: Dataset,
    out: str | os.PathLike[str],
    *,
    samples: int = 20,
    seed: int = 0,
    restrict: bool = True,
    corruption: CorruptionConfig | None = None,
    corruption_seed: int = 0,
    prior_count: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the four analyses (module docstring) and write their files into ``out``.

    Args:
        predictor: the model.
        gt: ground truth with amodal masks (checked with
            :func:`maskgen.evaluation.harness.check_amodal_gt`). Instances with empty visible
            masks are skipped (listed in ``analysis.json``).
        out: an existing or new folder; files inside are replaced.
        samples: ``K`` of best-of-K (20 in the paper).
        seed: posterior sampling seed (and prior sampling seed).
        restrict: the predictor's occluder restriction (default on).
        corruption: corruption strengths (defaults of :class:`CorruptionConfig`).
        corruption_seed: corruption seed; instance ``j`` (in file order) uses index ``j``.

    Returns:
        the ``analysis.json`` dict.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskgen.core.io import write_json
    from maskgen.evaluation.harness import check_amodal_gt

    check_amodal_gt(gt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corruption = corruption or CorruptionConfig()
    t0 = time.perf_counter()

    # 1. prior samples (Fig. 3)
    write_prior_grid(prior_samples(predictor, prior_count, seed), out / "prior_samples.png")
    # 2-4, GT half: one pass over the GT visible masks with K samples
    gp, st_gt = _gt_pass(predictor, gt, samples, restrict, seed, progress)
    fig4 = _fig4(gp.sig_rows, seed)
    _plot_fig4(fig4, out / "posterior_sigma.png", plt)
    fig1 = _fig1(gp, samples)
    if fig1["bins"]:
        _plot_fig1(fig1, samples, out / "miou_vs_visible.png", plt)
    # 4. Table 1, corrupted half
    table1 = _table1(predictor, gt, gp, restrict, seed, corruption, corruption_seed, progress)
    _table1_plot(table1, out / "gt_vs_corrupted.png", plt)
    result = {
        "protocol": _protocol(predictor, gt, restrict, samples, seed),
        "n_instances": st_gt["n_instances"],
        "skipped_empty_visible": st_gt["skipped_empty"],
        "fig3_prior_samples": {"n": prior_count, "file": "prior_samples.png"},
        "fig4_posterior_sigma": fig4,
        "fig1_miou_vs_visible_ratio": fig1,
        "table1_gt_vs_corrupted": table1,
        "seconds": round(time.perf_counter() - t0, 2),
        "files": ["analysis.json", "prior_samples.png", "posterior_sigma.png"]
        + (["miou_vs_visible.png"] if fig1["bins"] else [])
        + ["gt_vs_corrupted.png"],
    }
    write_json(out / "analysis.json", result)
    return result


def _protocol(
    predictor: AmodalPredictor, gt: Dataset, restrict: bool, samples: int, seed: int
) -> dict[str, Any]:
    return {
        "model": predictor.source,
        "threshold": predictor.threshold,
        "ground_truth": gt.source,
        "visible_source": "gt (and corrupted gt for Table 1's second half)",
        "crop": CROP_CONVENTION,
        "or_visible": True,
        "restrict_to_occluders": bool(restrict),
        "amodal_boxes": "predicted by the model's box head",
        "samples": samples,
        "seed": seed,
        "metrics": "maskgen.core.metrics (full / invisible IoU, dataset-level and per-instance mean)",
    }


class _GtMasks:
    """Per-image stacks ``(amodal K x H x W, visible K x H x W)``, decoded once and dropped
    after use (each completion pass visits an image once)."""

    def __init__(self) -> None:
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, rec: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
        if rec.id not in self.cache:
            am = np.stack([rec.amodal_mask(i) for i in rec.instances])
            vm = np.stack([rec.visible_mask(i) for i in rec.instances])
            self.cache[rec.id] = (am, vm)
        return self.cache[rec.id]

    def drop(self, rec: ImageRecord) -> None:
        self.cache.pop(rec.id, None)


class _GtPass:
    """What the pass over the GT visible masks collects per instance (Fig. 4, Fig. 1 and the
    GT half of Table 1)."""

    def __init__(self, masks: _GtMasks) -> None:
        self.masks = masks
        self.sig_rows: list[tuple[str, np.ndarray]] = []
        self.mode_iou: list[float] = []
        self.best_iou: list[float] = []
        self.pick_iou: list[float] = []
        self.vis_ratio: list[float] = []
        self.best_inv: list[float] = []
        self.mode_inv: list[float] = []
        self.acc = AmodalAccumulator(keep_instances=False)
        self.acc_raw = AmodalAccumulator(keep_instances=False)

    def on_image(
        self, rec: ImageRecord, item: Any, insts: list[Any], comps: list[Completion]
    ) -> None:
        if not rec.instances:
            return
        am, vm = self.masks.get(rec)
        self.masks.drop(rec)
        index = {inst.id: k for k, inst in enumerate(rec.instances)}
        for inst, c in zip(insts, comps, strict=True):
            k = index[inst.id]
            self._add(inst.id, c, am[k], vm[k])

    def _add(self, inst_id: int, c: Completion, a: np.ndarray, v: np.ndarray) -> None:
        cm = instance_counts(c.amodal_mask, a, v)
        self.acc.add(cm, inst_id)
        self.acc_raw.add(instance_counts(v, a, v), inst_id)
        self.sig_rows.append((sigma_group(cm.occluded_area, cm.amodal_area), c.sigma))
        self.vis_ratio.append(cm.visible_ratio)
        self.mode_iou.append(cm.full_iou)
        self.mode_inv.append(cm.invisible_iou if cm.occluded else np.nan)
        if c.num_samples:
            sc = [local_counts(c, s, a, v) for s in range(c.num_samples)]
            ious = np.array([x.full_iou for x in sc])
            best = int(np.argmax(ious))
            self.best_iou.append(float(ious[best]))
            self.best_inv.append(sc[best].invisible_iou if cm.occluded else np.nan)
            self.pick_iou.append(float(ious[int(np.argmax(c.sample_consistency))]))


def _gt_pass(
    predictor: AmodalPredictor,
    gt: Dataset,
    samples: int,
    restrict: bool,
    seed: int,
    progress: bool,
) -> tuple[_GtPass, dict[str, Any]]:
    """Complete the GT visible masks with ``samples`` samples; ``(collected, stats)``."""
    gp = _GtPass(_GtMasks())
    _, stats = complete_dataset(
        predictor,
        gt,
        samples=samples,
        restrict=restrict,
        seed=seed,
        skip_empty=True,
        on_image=gp.on_image,
        make_annotations=False,
        progress=progress,
    )
    return gp, stats


def _fig4(sig_rows: list[tuple[str, np.ndarray]], seed: int) -> dict[str, Any]:
    """Posterior sigma per latent by occlusion group, the finding and its bootstrap gaps."""
    sig_all = np.stack([s for _, s in sig_rows]) if sig_rows else np.zeros((0, 1))
    groups = np.array([g for g, _ in sig_rows])
    overall_sigma = sig_all.mean(axis=0) if len(sig_all) else np.zeros(0)
    order = np.argsort(overall_sigma)[:N_PLOTTED_LATENTS]
    fig4: dict[str, Any] = {
        "groups": {},
        "plotted_latents": order.tolist(),
        "mean_sigma_all_latents": overall_sigma.tolist(),
    }
    for g in SIGMA_GROUPS:
        sel = groups == g
        per_latent = sig_all[sel].mean(axis=0) if sel.any() else None
        fig4["groups"][g] = {
            "n": int(sel.sum()),
            "mean_sigma_per_latent": None if per_latent is None else per_latent.tolist(),
            "mean_sigma_plotted_latents": None
            if per_latent is None
            else float(per_latent[order].mean()),
            "mean_sigma_all": None if per_latent is None else float(per_latent.mean()),
        }
    present = [
        fig4["groups"][g]["mean_sigma_plotted_latents"]
        for g in SIGMA_GROUPS
        if fig4["groups"][g]["n"]
    ]
    fig4["finding_spread_grows_with_occlusion"] = bool(
        len(present) == 3 and present[0] < present[1] < present[2]
    )
    # How sure is "grows"? Bootstrap CIs of each consecutive group gap of the per-instance mean
    # sigma over the plotted latents (a gap whose CI excludes 0 is not a resampling accident).
    per_instance = sig_all[:, order].mean(axis=1) if len(sig_all) else np.zeros(0)
    fig4["gaps"] = {}
    for a, b in zip(SIGMA_GROUPS[:-1], SIGMA_GROUPS[1:], strict=True):
        gap = group_gap_ci(per_instance[groups == a], per_instance[groups == b], seed=seed)
        fig4["gaps"][f"{a} -> {b}"] = gap
    fig4["finding_significant"] = bool(
        fig4["gaps"]
        and all(g["ci95"] is not None and g["ci95"][0] > 0 for g in fig4["gaps"].values())
    )
    per = [fig4["groups"][g]["mean_sigma_per_latent"] for g in SIGMA_GROUPS]
    fig4["plotted_latents_increasing"] = (
        int(sum(per[0][j] < per[1][j] < per[2][j] for j in order))
        if all(v is not None for v in per)
        else None
    )
    return fig4


def _plot_fig4(fig4: dict[str, Any], path: Path, plt: Any) -> None:
    order = np.asarray(fig4["plotted_latents"], dtype=int)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.27
    colours = {"0": "tab:blue", "1-50": "tab:orange", ">50": "tab:green"}
    for gi, g in enumerate(SIGMA_GROUPS):
        vals = fig4["groups"][g]["mean_sigma_per_latent"]
        if vals is None:
            continue
        ax.bar(
            np.arange(len(order)) + (gi - 1) * width,
            np.asarray(vals)[order],
            width,
            label=f"occlusion {g} % (n={fig4['groups'][g]['n']})",
            color=colours[g],
        )
    ax.set_xticks(np.arange(len(order)), [str(i) for i in order])
    ax.set_xlabel("latent (15 with the smallest mean posterior sigma)")
    ax.set_ylabel("mean posterior sigma")
    ax.set_title("Posterior spread by occlusion (supplementary Fig. 4)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _nanmean_or_none(values: list[float]) -> float | None:
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def _fig1(gp: _GtPass, samples: int) -> dict[str, Any]:
    """Mode vs best-of-K full IoU by visible ratio, and whether the gap shrinks."""
    fig1: dict[str, Any] = {"samples": samples, "bins": []}
    if samples <= 0 or not len(gp.best_iou):
        return fig1
    vr = np.asarray(gp.vis_ratio)
    mi, bi, pi = np.asarray(gp.mode_iou), np.asarray(gp.best_iou), np.asarray(gp.pick_iou)
    rows = _bin_table(vr, {"mode": mi, "best_of_k": bi, "consistency_pick": pi})
    for r in rows:
        r["gap"] = None if r["n"] == 0 else r["best_of_k"] - r["mode"]
    fig1["bins"] = rows
    centres = np.array([(r["visible_ratio"][0] + r["visible_ratio"][1]) / 2 for r in rows])
    gaps = np.array([r["gap"] if r["gap"] is not None else 0.0 for r in rows])
    counts = np.array([r["n"] for r in rows], dtype=np.float64)
    slope = _weighted_slope(centres, gaps, counts)
    fig1["overall"] = {
        "mode_full_iou_mean": float(mi.mean()),
        "best_of_k_full_iou_mean": float(bi.mean()),
        "consistency_pick_full_iou_mean": float(pi.mean()),
        "mode_invisible_iou_mean": _nanmean_or_none(gp.mode_inv),
        "best_of_k_invisible_iou_mean": _nanmean_or_none(gp.best_inv),
        "gap_slope_per_unit_visible_ratio": slope,
        "share_of_best_gain_captured_by_consistency_pick": (
            float((pi.mean() - mi.mean()) / (bi.mean() - mi.mean()))
            if bi.mean() > mi.mean()
            else None
        ),
    }
    fig1["finding_best_of_k_above_mode"] = bool(bi.mean() > mi.mean())
    fig1["finding_gap_shrinks_with_visibility"] = bool(slope is not None and slope < 0)
    return fig1


def _plot_fig1(fig1: dict[str, Any], samples: int, path: Path, plt: Any) -> None:
    rows = fig1["bins"]
    centres = np.array([(r["visible_ratio"][0] + r["visible_ratio"][1]) / 2 for r in rows])
    ok = np.array([r["n"] for r in rows]) > 0
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (
        ("mode", "Amodal-VAE (posterior mode)", "o-"),
        ("best_of_k", f"best of {samples} samples (by GT)", "s-"),
        ("consistency_pick", "sample with best consistency", "^--"),
    ):
        ax.plot(
            centres[ok],
            [r[key] * 100 for r, k in zip(rows, ok, strict=True) if k],
            style,
            label=label,
        )
    ax.set_xlabel("visible ratio |V|/|A|")
    ax.set_ylabel("mIoU (full, per-instance mean), %")
    ax.set_title("mIoU vs visible ratio (supplementary Fig. 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table1(
    predictor: AmodalPredictor,
    gt: Dataset,
    gp: _GtPass,
    restrict: bool,
    seed: int,
    corruption: CorruptionConfig,
    corruption_seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Table 1: completion from GT vs corrupted visible masks (the corrupted pass runs here)."""
    masks = gp.masks
    acc_cor = AmodalAccumulator(keep_instances=False)
    acc_raw_cor = AmodalAccumulator(keep_instances=False)
    offsets: dict[int, int] = {}
    n = 0
    for rec in gt.images:
        offsets[rec.id] = n
        n += len(rec.instances)
    corrupted_cache: dict[int, np.ndarray] = {}

    def corrupted(rec: ImageRecord) -> np.ndarray:
        if rec.id not in corrupted_cache:
            _, vm = masks.get(rec)
            corrupted_cache[rec.id] = corrupt_masks(
                vm, corruption_seed, offsets[rec.id], corruption
            )
        return corrupted_cache[rec.id]

    def on_cor(rec: ImageRecord, item: Any, insts: list[Any], comps: list[Completion]) -> None:
        if not rec.instances:
            return
        am, vm = masks.get(rec)
        cv = corrupted(rec)
        masks.drop(rec)
        del corrupted_cache[rec.id]
        index = {inst.id: k for k, inst in enumerate(rec.instances)}
        for inst, c in zip(insts, comps, strict=True):
            k = index[inst.id]
            acc_cor.add(instance_counts(c.amodal_mask, am[k], vm[k]), inst.id)
            acc_raw_cor.add(instance_counts(cv[k], am[k], vm[k]), inst.id)

    complete_dataset(
        predictor,
        gt,
        samples=0,
        restrict=restrict,
        seed=seed,
        skip_empty=True,
        on_image=on_cor,
        make_annotations=False,
        visible_override=corrupted,
        progress=progress,
    )
    table1 = {
        "gt_visible": {"amodal_vae": gp.acc.summary(), "raw_input_mask": gp.acc_raw.summary()},
        "corrupted_visible": {
            "amodal_vae": acc_cor.summary(),
            "raw_input_mask": acc_raw_cor.summary(),
        },
        "corruption": {
            "config": corruption.to_dict(),
            "seed": corruption_seed,
            "module": "maskgen.amodal.corruption",
        },
    }
    g_all = table1["gt_visible"]["amodal_vae"]["overall"]
    c_all = table1["corrupted_visible"]["amodal_vae"]["overall"]
    table1["drop"] = {
        k: (None if g_all[k] is None or c_all[k] is None else g_all[k] - c_all[k])
        for k in (
            "full_iou_dataset",
            "full_iou_mean",
            "invisible_iou_dataset",
            "invisible_iou_mean",
        )
    }
    return table1


def _table1_plot(table1: dict[str, Any], path: Path, plt: Any) -> None:
    keys = [
        ("full_iou_dataset", "full (dataset)"),
        ("full_iou_mean", "full (per-inst.)"),
        ("invisible_iou_dataset", "invisible (dataset)"),
        ("invisible_iou_mean", "invisible (per-inst.)"),
    ]
    series = [
        ("gt_visible", "amodal_vae", "Amodal-VAE, GT visible"),
        ("corrupted_visible", "amodal_vae", "Amodal-VAE, corrupted visible"),
        ("gt_visible", "raw_input_mask", "raw GT visible mask"),
        ("corrupted_visible", "raw_input_mask", "raw corrupted mask"),
    ]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.2
    for si, (a, b, label) in enumerate(series):
        o = table1[a][b]["overall"]
        vals = [100 * (o[k] or 0.0) for k, _ in keys]
        ax.bar(np.arange(len(keys)) + (si - 1.5) * width, vals, width, label=label)
    ax.set_xticks(np.arange(len(keys)), [lbl for _, lbl in keys])
    ax.set_ylabel("IoU, %")
    ax.set_title("Completion from GT vs corrupted visible masks (supplementary Table 1)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
