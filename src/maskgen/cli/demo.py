"""``maskgen demo``: the README's main job end to end on built-in data, in a few minutes on a CPU.

1. generate a small set of built-in scenes (test-split style: shapes from the test pool, never
   seen in training) with exact visible and amodal ground truth;
2. complete every instance from its *visible* mask only with the shipped Amodal-VAE (posterior
   mode plus ``--samples`` samples each, occluder restriction on);
3. evaluate the completions and the two classical baselines (raw visible mask, convex hull)
   against the amodal ground truth with every metric variant;
4. write ``summary.md`` (one table, then the per-occlusion tables), overlay pictures and a grid of
   posterior samples into ``--out`` and print where they are.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO_SEED = 2026
DEMO_FILES = ("summary.md", "results.json", "samples_grid.png")
DEMO_MARKER = ".maskgen-demo"  # written first, so a demo stopped half-way can be replaced
MAX_IMAGES = 10000
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 4096
MAX_DEMO_SAMPLES = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    from maskgen.amodal.io import SHIPPED_MODEL

    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo: built-in scenes -> amodal completion -> evaluation table and pictures",
        description=(
            "Generate a few built-in scenes, complete every instance from its visible mask with "
            "the shipped Amodal-VAE (with samples), evaluate it against the raw-visible and "
            "convex-hull baselines, and write summary.md, overlays and a samples grid into --out."
        ),
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="replace an earlier demo in --out")
    p.add_argument(
        "--model", default=str(SHIPPED_MODEL), help="model folder (default: the shipped model)"
    )
    p.add_argument("--num-images", type=int, default=40, help="scenes to generate (default 40)")
    p.add_argument("--image-size", type=int, default=256, help="scene side in px (default 256)")
    p.add_argument(
        "--samples", type=int, default=8, help="posterior samples per instance (default 8)"
    )
    p.add_argument("--overlays", type=int, default=8, help="overlay pictures to write (default 8)")
    p.add_argument(
        "--seed", type=int, default=DEMO_SEED, help=f"scene and sampling seed (default {DEMO_SEED})"
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run_demo)


def _check_args(args: argparse.Namespace) -> Path:
    """Every flag and path checked before anything is read or written; the output folder.

    ``--out`` may be missing or empty; with ``--force`` an earlier demo folder (finished, with
    ``summary.md``, or stopped half-way, with the marker written at the start) is replaced.
    """
    from maskgen.cli.amodal_checks import check_model, check_range, check_seed
    from maskgen.core.io import prepare_out_dir

    check_range("--num-images", args.num_images, 1, MAX_IMAGES)
    check_range("--image-size", args.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    check_range("--samples", args.samples, 0, MAX_DEMO_SAMPLES)
    check_range("--overlays", args.overlays, 0, MAX_IMAGES)
    check_seed("--seed", args.seed)
    check_model(args.model, args.device)
    out = Path(args.out)
    marker = DEMO_MARKER if (out / DEMO_MARKER).is_file() else "summary.md"
    return prepare_out_dir(out, args.force, marker=marker)


def _make_scenes(args: argparse.Namespace, out: Path) -> tuple[Path, Any]:
    """Step 1: the built-in test-split scenes under ``out/scenes``; ``(folder, SceneConfig)``."""
    from maskgen.data.scenes import SceneConfig, generate_scenes

    scenes = out / "scenes"
    max_shape = min(120, args.image_size - 4)
    cfg = SceneConfig(
        image_size=args.image_size,
        num_images={"train": 0, "val": 0, "test": args.num_images},
        min_shape_size=min(24, max(8, max_shape // 3)),
        max_shape_size=max_shape,
        seed=args.seed,
    )
    generate_scenes(scenes, cfg=cfg, force=True, progress=None)
    return scenes, cfg


def _complete(
    args: argparse.Namespace, predictor: Any, scenes: Path, out: Path
) -> tuple[dict[int, Any], dict[str, Any], dict[str, Any], Path]:
    """Step 2: complete every visible mask; ``(per-image kept items, stats, protocol, results)``."""
    from maskgen.amodal.completion import check_images, complete_dataset, protocol_info
    from maskgen.data.loader import load_dataset
    from maskgen.data.results import write_results

    masks = scenes / "annotations" / "test_coco.json"
    visible = load_dataset(masks)
    check_images(visible, scenes / "images" / "test", str(masks))
    kept: dict[int, tuple[Any, Any, list[Any], list[Any]]] = {}

    def on_image(rec, item, insts, comps):  # noqa: ANN001
        kept[rec.id] = (rec, item, insts, comps)

    anns, stats = complete_dataset(
        predictor,
        visible,
        masks_path=str(masks),
        samples=args.samples,
        seed=args.seed,
        on_image=on_image,
    )
    info = protocol_info(
        predictor,
        masks_path=str(masks),
        restrict=True,
        box_mode="predicted",
        samples=args.samples,
        seed=args.seed,
        visible_source="gt",
    )
    results = out / "results.json"
    write_results(results, anns, info)
    return kept, stats, info, results


def _evaluate(scenes: Path, results: Path, out: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Step 3: Amodal-VAE and the two baselines against the amodal GT; ``(gt, reports)``."""
    from maskgen.data.loader import load_dataset
    from maskgen.evaluation import (
        BASELINES,
        baseline_protocol,
        evaluate_predictions,
        evaluate_results_file,
        write_report,
    )

    gt = load_dataset(scenes / "annotations" / "test_kins2020.json")
    evals = {"amodal-vae": evaluate_results_file(gt, results, progress=False)}
    for name in ("raw", "convex-hull"):
        evals[name] = evaluate_predictions(
            gt, BASELINES[name], baseline_protocol(name), progress=False
        )
    for name, res in evals.items():
        write_report(res, out / "eval" / name, force=True)
    return gt, evals


def _overlays(kept: dict[int, Any], gt: Any, images: Path, out: Path, n: int) -> list[Path]:
    """Step 4a: image | GT | prediction panels of the ``n`` most occluded scenes."""
    from maskgen.amodal.completion import overlay_image
    from maskgen.core.io import read_image, write_image

    gt_by_image = {rec.id: rec for rec in gt.images}
    hidden = {
        g.id: sum(int((g.amodal_mask(i) & ~g.visible_mask(i)).sum()) for i in g.instances)
        for g in gt.images
    }
    files = []
    for rec_id in sorted(kept, key=lambda r: (-hidden.get(r, 0), r))[:n]:
        rec, item, _insts, comps = kept[rec_id]
        if not comps:
            continue
        image = read_image(images / rec.file_name)
        sel = item.complete if item.complete is not None else slice(None)
        ov = overlay_image(image, item.visible_masks[sel], comps)
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        panel = np.concatenate([image, gap, _gt_panel(image, gt_by_image[rec.id]), gap, ov], 1)
        path = out / "overlays" / f"{Path(rec.file_name).stem}.png"
        write_image(path, panel)
        files.append(path)
    return files


def _command(out: Path) -> str:
    if sys.argv[1:2] == ["demo"]:
        return "maskgen demo " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    return "maskgen demo --out " + shlex.quote(str(out))


def run_demo(args: argparse.Namespace) -> int:
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.core.io import write_text
    from maskgen.evaluation.report import markdown_report

    out = _check_args(args)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    predictor = AmodalPredictor.from_folder(args.model, device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / DEMO_MARKER, "written by maskgen demo; --force may replace this folder\n")
    for stale in ("overlays", "eval"):
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)

    t = time.perf_counter()
    scenes, cfg = _make_scenes(args, out)
    times["scenes"] = time.perf_counter() - t
    _say(f"[1/4] generated {args.num_images} scenes in {times['scenes']:.1f} s -> {scenes}")

    t = time.perf_counter()
    kept, stats, info, results = _complete(args, predictor, scenes, out)
    times["complete"] = time.perf_counter() - t
    _say(
        f"[2/4] completed {stats['n_instances']} instances ({args.samples} samples each) in "
        f"{times['complete']:.1f} s -> {results}"
    )

    t = time.perf_counter()
    gt, evals = _evaluate(scenes, results, out)
    times["evaluate"] = time.perf_counter() - t
    _say(
        f"[3/4] evaluated Amodal-VAE and 2 baselines in {times['evaluate']:.1f} s -> {out / 'eval'}"
    )

    t = time.perf_counter()
    images = scenes / "images" / "test"
    overlay_files = _overlays(kept, gt, images, out, args.overlays)
    grid_path = out / "samples_grid.png"
    gt_by_image = {rec.id: rec for rec in gt.images}
    n_grid = _samples_grid(kept, gt_by_image, images, grid_path, args.samples)
    times["pictures"] = time.perf_counter() - t
    total = time.perf_counter() - t_start
    summary = _summary(
        args,
        evals,
        stats,
        info,
        times,
        total,
        overlay_files,
        n_grid,
        out,
        _command(out),
        markdown_report,
        cfg.min_shape_size,
        cfg.max_shape_size,
    )
    write_text(out / "summary.md", summary)
    _say(
        f"[4/4] wrote {len(overlay_files)} overlays and a samples grid in {times['pictures']:.1f} s"
    )
    _print_result(evals, out, total, grid_path)
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def _print_result(evals: dict[str, Any], out: Path, total: float, grid_path: Path) -> None:
    print()
    print(_main_table(evals))
    print()
    print(f"demo finished in {total:.0f} s. Open {out / 'summary.md'}")
    print(f"  overlays: {out / 'overlays'}  (left: image, middle: GT, right: prediction)")
    print(f"  samples grid: {grid_path}")
    print(f"  evaluation reports: {out / 'eval'}/{{amodal-vae,raw,convex-hull}}/metrics.md")


VISIBLE_RGB = np.array([40, 140, 255], np.float32)
HIDDEN_RGB = np.array([255, 80, 40], np.float32)


def _gt_panel(image: np.ndarray, rec: Any) -> np.ndarray:
    """The image with the GT visible parts (blue) and GT hidden parts (red) of every instance."""
    out = image.astype(np.float32).copy()
    vis = np.zeros(image.shape[:2], bool)
    hid = np.zeros(image.shape[:2], bool)
    for inst in rec.instances:
        v = rec.visible_mask(inst)
        vis |= v
        hid |= rec.amodal_mask(inst) & ~v
    only = vis & ~hid
    out[only] = 0.45 * out[only] + 0.55 * VISIBLE_RGB
    out[hid] = 0.45 * out[hid] + 0.55 * HIDDEN_RGB
    return np.clip(out, 0, 255).astype(np.uint8)


def _samples_grid(
    kept: dict[int, Any],
    gt_by_image: dict[int, Any],
    images: Path,
    path: Path,
    k: int,
    rows: int = 6,
) -> int:
    """A grid: per row one occluded instance -- image crop, GT, mode, then its samples (with
    their consistency scores). Returns the number of rows drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskgen.core.boxes import box_union, mask_to_box
    from maskgen.core.io import read_image

    cands = []
    for rec_id, (_rec, _item, insts, comps) in kept.items():
        g = gt_by_image[rec_id]
        ginst = {i.id: i for i in g.instances}
        for inst, c in zip(insts, comps, strict=True):
            gi = ginst.get(inst.id)
            if gi is None:
                continue
            a = g.amodal_mask(gi)
            v = g.visible_mask(gi)
            occ = 1 - v.sum() / max(a.sum(), 1)
            if 0.2 < occ < 0.8 and a.sum() > 300:
                cands.append((occ, rec_id, inst.id, c, a, v))
    if not cands:
        return 0
    cands.sort(key=lambda x: -x[0])
    step = max(len(cands) // rows, 1)
    picked = cands[::step][:rows]
    ncols = 3 + min(k, 8)
    fig, axes = plt.subplots(
        len(picked), ncols, figsize=(1.6 * ncols, 1.7 * len(picked)), squeeze=False
    )
    for r, (occ, rec_id, _iid, c, a, v) in enumerate(picked):
        rec = kept[rec_id][0]
        image = read_image(images / rec.file_name)
        box = box_union(mask_to_box(a), c.amodal_box)
        h, w = a.shape
        x0, y0 = max(int(box[0]) - 4, 0), max(int(box[1]) - 4, 0)
        x1, y1 = min(int(np.ceil(box[2])) + 4, w), min(int(np.ceil(box[3])) + 4, h)
        crop = image[y0:y1, x0:x1]

        def show(ax, mask, title, crop=crop, v=v, y0=y0, y1=y1, x0=x0, x1=x1):  # noqa: ANN001
            panel = crop.astype(np.float32) * 0.35
            m = mask[y0:y1, x0:x1]
            vv = v[y0:y1, x0:x1]
            panel[m & vv] = VISIBLE_RGB
            panel[m & ~vv] = HIDDEN_RGB
            ax.imshow(panel.astype(np.uint8))
            ax.set_title(title, fontsize=7)

        axes[r, 0].imshow(crop)
        axes[r, 0].set_title(f"image ({100 * occ:.0f}% hidden)", fontsize=7)
        show(axes[r, 1], a, "ground truth")
        show(axes[r, 2], c.amodal_mask, f"mode (cons. {c.consistency:.2f})")
        samples = c.samples
        for s in range(min(k, 8)):
            show(axes[r, 3 + s], samples[s], f"sample {s + 1} ({c.sample_consistency[s]:.2f})")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "Amodal-VAE completions: blue = visible input, red = completed hidden part", fontsize=9
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return len(picked)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _main_table(evals: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| method | full IoU (dataset) | full IoU (per-instance) | invisible IoU (dataset) | invisible IoU (per-instance, occluded) |",
        "|---|---|---|---|---|",
    ]
    names = {
        "raw": "raw visible mask (baseline)",
        "convex-hull": "convex hull (baseline)",
        "amodal-vae": "**Amodal-VAE** (mode)",
    }
    for key in ("raw", "convex-hull", "amodal-vae"):
        o = evals[key]["overall"]
        lines.append(
            f"| {names[key]} | {_pct(o['full_iou_dataset'])} | {_pct(o['full_iou_mean'])} | "
            f"{_pct(o['invisible_iou_dataset'])} | {_pct(o['invisible_iou_mean'])} |"
        )
    return "\n".join(lines)


def _summary(  # noqa: ANN001
    args,
    evals,
    stats,
    info,
    times,
    total,
    overlay_files,
    n_grid,
    out,
    cmd,
    markdown_report,
    cfg_min,
    cfg_max,
) -> str:
    n_occ = evals["amodal-vae"]["overall"]["n_occluded"]
    lines = [
        "# maskgen demo: amodal completion on built-in scenes",
        "",
        f"Command: `{cmd}`",
        "",
        f"{args.num_images} built-in scenes ({args.image_size} px, test-split shapes, seed {args.seed}), "
        f"{stats['n_instances']} instances of which {n_occ} are occluded. Every method sees only the "
        "ground-truth *visible* masks; IoU in percent against the amodal ground truth.",
        "",
        _main_table(evals),
        "",
        "Protocol of the Amodal-VAE row: posterior mode of q2 decoded and thresholded at the model's "
        f"tuned threshold ({info['threshold']:.2f}); predicted invisible pixels kept only under other "
        "instances' visible masks (`--no-restrict` turns this off); visible mask OR-ed in; amodal box "
        f"from the model's box head; model `{info['model']}`. Dataset-level IoU = Σ intersection / "
        "Σ union; per-instance invisible IoU averages occluded instances only.",
        "",
        "## Pictures",
        "",
        f"- `overlays/` ({len(overlay_files)} files): image | ground truth | prediction; blue = visible, "
        "red = hidden part (GT) or completed part (prediction), white outline = predicted amodal mask.",
        f"- `samples_grid.png` ({n_grid} occluded instances): mode and {min(args.samples, 8)} posterior "
        "samples with their consistency with the visible evidence (1 = covers every visible pixel and "
        "spills onto no visible background).",
        "- `eval/*/iou_vs_visible.png`: per-instance IoU against visible ratio, per method.",
        "",
        "## By occlusion",
        "",
    ]
    for key in ("amodal-vae", "convex-hull", "raw"):
        body = markdown_report(evals[key], title=key)
        lines += [body, ""]
    lines += [
        "## Reproduce step by step",
        "",
        "```",
        f"maskgen data scenes --out {out}/scenes --num-images-train 0 --num-images-val 0 --num-images-test {args.num_images} --image-size {args.image_size} --min-shape-size {cfg_min} --max-shape-size {cfg_max} --seed {args.seed} --force",
        f"maskgen amodal complete --masks {out}/scenes/annotations/test_coco.json --images {out}/scenes/images/test --out {out}/results.json --samples {args.samples} --seed {args.seed} --visible-source gt --force",
        f"maskgen amodal evaluate --gt {out}/scenes/annotations/test_kins2020.json --pred {out}/results.json --out {out}/eval/amodal-vae --force",
        f"maskgen amodal evaluate --gt {out}/scenes/annotations/test_kins2020.json --method convex-hull --out {out}/eval/convex-hull --force",
        "```",
        "",
        "Times: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        + f"; total {total:.1f} s.",
        "",
    ]
    return "\n".join(lines)
