"""Amodal-VAE completion quality on the built-in scenes' test split, against the baselines.

    python benchmarks/amodal_quality.py [--model DIR] [--scenes DIR] [--out DIR] [--samples 20]
                                        [--no-record]

Everything is scored by the evaluation harness (:mod:`maskgen.evaluation`) with every metric
variant of docs/design.md, "Evaluation" -- full and invisible IoU, dataset-level (Σ∩/Σ∪) and per-instance mean,
overall and by occlusion bucket -- from the GT *visible* masks of
``SCENES/annotations/test_kins2020.json``:

- baselines: ``raw`` (the visible mask) and ``convex-hull``;
- Amodal-VAE, posterior mode: occluder restriction on / off x predicted / GT amodal boxes;
- Amodal-VAE best of ``K`` samples (``K = 20``; chosen per instance by GT full IoU: an
  analysis, not a method) and the sample with the highest visible-consistency score (what a user
  without GT could pick), both with the default post-processing;
- the supplementary analyses (:func:`maskgen.amodal.analysis.analyze`): posterior spread by
  occlusion (Fig. 4), mIoU vs visible ratio for mode and best-of-K (Fig. 1), GT vs corrupted
  visible masks (Table 1); plots under ``OUT/analysis``.

Targets (issue 3), each printed as pass/fail: invisible IoU >= convex hull + 10 points (dataset
level and per-instance); full IoU above both baselines (dataset level and per-instance);
best-of-K above the mode with the gap shrinking as visibility grows; posterior spread growing
with occlusion. Records section ``amodal-quality`` of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENES = "benchmarks/data/scenes"
KEYS = ("full_iou_dataset", "full_iou_mean", "invisible_iou_dataset", "invisible_iou_mean")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def main(argv: list[str] | None = None) -> int:
    from maskgen.amodal.io import SHIPPED_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument(
        "--scenes", default=DEFAULT_SCENES, help=f"scenes folder (default {DEFAULT_SCENES})"
    )
    p.add_argument("--out", default="runs/amodal_quality", help="report folders (replaced)")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="", help="a line added to the section")
    from maskgen.amodal.refit import add_refit_arguments, refit_from_args

    add_refit_arguments(p, on=False)  # as `maskgen amodal complete`
    args = p.parse_args(argv)

    import numpy as np

    from maskgen.amodal.analysis import analyze, local_counts
    from maskgen.amodal.completion import complete_dataset, protocol_info, skipped_annotation
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.data.loader import load_dataset
    from maskgen.evaluation import BASELINES, baseline_protocol, evaluate_predictions, write_report
    from maskgen.evaluation.harness import predictions_from_results

    scenes = Path(args.scenes) if Path(args.scenes).is_absolute() else REPO / args.scenes
    gt_path = scenes / "annotations" / "test_kins2020.json"
    vis_path = scenes / "annotations" / "test_coco.json"
    if not gt_path.exists():
        print(
            f"{gt_path}: not found; run 'maskgen data scenes --out {DEFAULT_SCENES}'",
            file=sys.stderr,
        )
        return 2
    model_dir = Path(args.model) if args.model else SHIPPED_MODEL
    out = Path(args.out)
    t_all = time.perf_counter()
    refit = refit_from_args(args)
    predictor = AmodalPredictor.from_folder(model_dir, refit=refit)
    gt = load_dataset(gt_path)
    visible = load_dataset(vis_path)  # what a user has: visible masks only
    gt_recs = {r.id: r for r in gt.images}

    evals: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    for name in BASELINES:
        evals[name] = evaluate_predictions(
            gt, BASELINES[name], baseline_protocol(name), progress=False
        )

    def run_variant(name: str, restrict: bool, box_mode: str) -> None:
        t = time.perf_counter()
        src = gt if box_mode == "gt" else visible
        anns, st = complete_dataset(
            predictor,
            src,
            masks_path=str(vis_path),
            restrict=restrict,
            box_mode=box_mode,
            skip_empty=True,
            progress=False,
        )
        info = protocol_info(
            predictor,
            masks_path=str(vis_path),
            restrict=restrict,
            box_mode=box_mode,
            samples=0,
            seed=0,
            visible_source="gt",
        )
        info["method"] = name
        pred = predictions_from_results(gt, {a["id"]: a for a in anns}, name)
        evals[name] = evaluate_predictions(gt, pred, info, progress=False)
        notes[name] = f"{st['n_instances'] / (time.perf_counter() - t):.0f} inst/s incl. evaluation"

    run_variant("amodal-vae", True, "predicted")
    run_variant("amodal-vae --no-restrict", False, "predicted")
    run_variant("amodal-vae, GT amodal boxes", True, "gt")
    run_variant("amodal-vae --no-restrict, GT amodal boxes", False, "gt")

    # best of K by GT, and the consistency pick
    best: dict[int, dict[str, Any]] = {}
    pick: dict[int, dict[str, Any]] = {}

    def on_image(rec, item, insts, comps):  # noqa: ANN001
        g = gt_recs[rec.id]
        ginst = {i.id: i for i in g.instances}
        for inst, c in zip(insts, comps, strict=True):
            gi = ginst[inst.id]
            a, v = g.amodal_mask(gi), g.visible_mask(gi)
            ious = [local_counts(c, s, a, v).full_iou for s in range(c.num_samples)]
            b = int(np.argmax(ious))
            k = int(np.argmax(c.sample_consistency))
            best[inst.id] = {"id": inst.id, "image_id": rec.id, "segmentation": c.rle(b)}
            pick[inst.id] = {"id": inst.id, "image_id": rec.id, "segmentation": c.rle(k)}

    t = time.perf_counter()
    for rec in visible.images:  # instances with empty visible masks stay empty predictions
        for inst in rec.instances:
            best[inst.id] = pick[inst.id] = skipped_annotation(rec, inst)
    complete_dataset(
        predictor,
        visible,
        samples=args.samples,
        seed=args.seed,
        skip_empty=True,
        on_image=on_image,
        make_annotations=False,
        progress=False,
    )
    base_info = protocol_info(
        predictor,
        masks_path=str(vis_path),
        restrict=True,
        box_mode="predicted",
        samples=args.samples,
        seed=args.seed,
        visible_source="gt",
    )
    evals[f"best of {args.samples} (by GT)"] = evaluate_predictions(
        gt,
        predictions_from_results(gt, best, "best"),
        dict(base_info, method=f"best of {args.samples} samples, chosen by GT full IoU (analysis)"),
        progress=False,
    )
    evals[f"most consistent of {args.samples}"] = evaluate_predictions(
        gt,
        predictions_from_results(gt, pick, "pick"),
        dict(base_info, method=f"sample with the best consistency of {args.samples}"),
        progress=False,
    )
    sample_s = time.perf_counter() - t

    for name, res in evals.items():
        write_report(
            res, out / name.replace(" ", "_").replace(",", "").replace("--", ""), force=True
        )

    t = time.perf_counter()
    an = analyze(
        predictor, gt, out / "analysis", samples=args.samples, seed=args.seed, progress=False
    )
    analysis_s = time.perf_counter() - t

    # ---------------------------------------------------------------------- checks
    vae = evals["amodal-vae"]["overall"]
    hull = evals["convex-hull"]["overall"]
    raw = evals["raw"]["overall"]
    checks = []

    def check(label: str, value: float, target: float, fmt: str = "{:.2f}") -> None:
        checks.append((label, fmt.format(value), fmt.format(target), value >= target))

    check(
        "invisible IoU (dataset) >= convex hull + 10",
        100 * vae["invisible_iou_dataset"],
        100 * hull["invisible_iou_dataset"] + 10,
    )
    check(
        "invisible IoU (per-instance) >= convex hull + 10",
        100 * vae["invisible_iou_mean"],
        100 * hull["invisible_iou_mean"] + 10,
    )
    for k, lbl in (("full_iou_dataset", "dataset"), ("full_iou_mean", "per-instance")):
        bar = 100 * max(raw[k], hull[k])
        checks.append(
            (
                f"full IoU ({lbl}) > max(raw, convex hull)",
                f"{100 * vae[k]:.2f}",
                f"> {bar:.2f}",
                100 * vae[k] > bar,
            )
        )
    f1 = an["fig1_miou_vs_visible_ratio"]
    f4 = an["fig4_posterior_sigma"]
    bk = f1.get("overall", {})
    checks.append(
        (
            f"best of {args.samples} above the mode (full IoU, per-instance)",
            f"{100 * bk.get('best_of_k_full_iou_mean', float('nan')):.2f}",
            f"> {100 * bk.get('mode_full_iou_mean', float('nan')):.2f}",
            bool(f1.get("finding_best_of_k_above_mode")),
        )
    )
    slope = bk.get("gap_slope_per_unit_visible_ratio")
    checks.append(
        (
            "best-of-K gap shrinks as visibility grows (weighted slope of gap vs visible ratio)",
            "n/a" if slope is None else f"{100 * slope:.2f} points per unit",
            "< 0",
            bool(f1.get("finding_gap_shrinks_with_visibility")),
        )
    )
    sig = " < ".join(
        f"{v['mean_sigma_plotted_latents']:.4f}" for v in f4["groups"].values() if v["n"]
    )
    checks.append(
        (
            "posterior spread grows with occlusion (mean sigma of 15 tightest latents: 0 / 1-50 / >50 %)",
            sig,
            "increasing",
            bool(f4["finding_spread_grows_with_occlusion"]),
        )
    )
    gaps = "; ".join(
        f"{k}: {100 * v['gap']:+.2f} [{100 * v['ci95'][0]:+.2f}, {100 * v['ci95'][1]:+.2f}]"
        for k, v in f4["gaps"].items()
        if v["gap"] is not None
    )
    checks.append(
        (
            "... and each gap is more than resampling noise (gap in sigma x 100, 95 % bootstrap interval)",
            gaps,
            "both intervals > 0",
            bool(f4["finding_significant"]),
        )
    )

    # ---------------------------------------------------------------------- report
    lines = [
        f"Model: `{model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir}` "
        f"(threshold {predictor.threshold:.2f}); ground truth `{gt_path.relative_to(REPO) if gt_path.is_relative_to(REPO) else gt_path}` "
        f"({len(gt.images)} images, {gt.num_instances()} instances, {raw['n_occluded']} occluded). "
        "All methods get the GT visible masks; IoU in percent. Dataset = Σ∩/Σ∪ over instances "
        "(invisible: pixels outside the GT visible mask); per-instance invisible IoU averages occluded "
        "instances only. Amodal-VAE rows: posterior mode thresholded, visible mask OR-ed in; "
        "'restricted' keeps predicted invisible pixels only under other instances' visible masks "
        "(the default of `maskgen amodal complete`). Latent refit (maskgen.amodal.refit): "
        + (
            f"{refit.refit_steps} steps, lr {refit.refit_lr}, posterior weight "
            f"{refit.refit_posterior}, prior weight {refit.refit_prior} (every Amodal-VAE row, "
            "the samples centred on the refitted latent)."
            if refit.enabled
            else "off."
        ),
        "",
        "| method | restricted | amodal box | full IoU (dataset) | full IoU (per-inst.) | invisible IoU (dataset) | invisible IoU (per-inst.) |",
        "|---|---|---|---|---|---|---|",
    ]
    meta = {
        "raw": ("–", "–"),
        "convex-hull": ("–", "–"),
        "amodal-vae": ("yes", "predicted"),
        "amodal-vae --no-restrict": ("no", "predicted"),
        "amodal-vae, GT amodal boxes": ("yes", "GT"),
        "amodal-vae --no-restrict, GT amodal boxes": ("no", "GT"),
        f"best of {args.samples} (by GT)": ("yes", "predicted"),
        f"most consistent of {args.samples}": ("yes", "predicted"),
    }
    for name, res in evals.items():
        o = res["overall"]
        r, b = meta.get(name, ("?", "?"))
        label = f"**{name}**" if name == "amodal-vae" else name
        lines.append(f"| {label} | {r} | {b} | " + " | ".join(_pct(o[k]) for k in KEYS) + " |")
    lines += [
        "",
        "By occlusion bucket (per-instance mean full IoU / per-instance mean invisible IoU):",
        "",
    ]
    buckets = list(evals["raw"]["buckets"])
    lines.append(
        "| method | "
        + " | ".join(f"{b} % (n={evals['raw']['buckets'][b]['n_instances']})" for b in buckets)
        + " |"
    )
    lines.append("|---|" + "---|" * len(buckets))
    for name, res in evals.items():
        cells = [
            f"{_pct(res['buckets'][b]['full_iou_mean'])} / {_pct(res['buckets'][b]['invisible_iou_mean'])}"
            for b in buckets
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Dataset-level full / invisible IoU by bucket:", ""]
    lines.append("| method | " + " | ".join(f"{b} %" for b in buckets) + " |")
    lines.append("|---|" + "---|" * len(buckets))
    for name, res in evals.items():
        cells = [
            f"{_pct(res['buckets'][b]['full_iou_dataset'])} / {_pct(res['buckets'][b]['invisible_iou_dataset'])}"
            for b in buckets
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Targets:", "", "| target | measured | required | met |", "|---|---|---|---|"]
    for label, val, target, ok in checks:
        lines.append(f"| {label} | {val} | {target} | {'yes' if ok else '**NO**'} |")
    lines += [
        "",
        f"Best-of-{args.samples} vs mode by visible ratio (per-instance mean full IoU, Fig. 1):",
        "",
    ]
    lines.append("| visible ratio | n | mode | best of K | most consistent | gap |")
    lines.append("|---|---|---|---|---|---|")
    for row in f1.get("bins", []):
        if row["n"]:
            lines.append(
                f"| {row['visible_ratio'][0]:.1f}–{row['visible_ratio'][1]:.1f} | {row['n']} | {_pct(row['mode'])} | "
                f"{_pct(row['best_of_k'])} | {_pct(row['consistency_pick'])} | {_pct(row['gap'])} |"
            )
    t1 = an["table1_gt_vs_corrupted"]
    lines += [
        "",
        "GT vs corrupted visible masks (Table 1's question; corruption = "
        f"{t1['corruption']['config']}, seed {t1['corruption']['seed']}, see maskgen.amodal.corruption):",
        "",
        "| input visible masks | method | full IoU (dataset) | full IoU (per-inst.) | invisible IoU (dataset) | invisible IoU (per-inst.) |",
        "|---|---|---|---|---|---|",
    ]
    for src in ("gt_visible", "corrupted_visible"):
        for meth in ("raw_input_mask", "amodal_vae"):
            o = t1[src][meth]["overall"]
            lines.append(
                f"| {src.replace('_', ' ')} | {meth.replace('_', ' ')} | "
                + " | ".join(_pct(o[k]) for k in KEYS)
                + " |"
            )
    total = time.perf_counter() - t_all
    lines += [
        "",
        f"Times: {total:.0f} s in all (best-of-{args.samples} pass {sample_s:.0f} s, analyses {analysis_s:.0f} s). "
        f"Reports: `{args.out}/<method>/metrics.md`, plots in `{args.out}/analysis/`.",
    ]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    command = "python benchmarks/amodal_quality.py " + " ".join(argv or sys.argv[1:])
    section = "amodal-quality" + ("-refit" if refit.enabled else "")
    publish(section, lines, command.strip(), note=args.note, record=not args.no_record)
    return 0 if all(c[3] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
