"""Issue 12 ablation of application 1: the small-data GAN pieces, over training seeds, on the
photo segmentation sets, against GrabCut and an area-matched centred circle.

Usage::

    python benchmarks/independence_ablation.py --out DIR --work WORK [--jobs 15] [--quick]
        [--no-record] [--runs photo-holdout:cpu:0,... | --sets A,B --configs x,y --seeds 0,1,2]
    python benchmarks/independence_ablation.py --out DIR --from-results   # re-record only
    python benchmarks/independence_ablation.py --out DIR --from-results --add-refine --work WORK
    python benchmarks/independence_ablation.py --out DIR --work WORK --curve 1000,2000,...
        --sets photo --configs cpu --seeds 0,1 --section independence-tuning-steps

Each run (set, configuration, training seed) is one single-thread process: ``segment train``
(default steps of the configuration) -> ``segment distill`` (600 steps) -> predict the set's
test crops with teacher and student -> fg IoU; plus the label-free realism of the teacher
(:mod:`maskgen.independence.selection`) on its unlabelled training crops, so the table shows
whether the label-free score agrees with the labelled one. Runs go ``--jobs`` at a time. The
default list is 15 runs, one wave on a 16-core machine (each about 8.5 CPU minutes of the
2-core EPYC this project is developed on): the 2 x 2 of two mild pieces (``cpu``,
``cpu-translate``, ``cpu-entropy``, ``mild``) x 3 seeds on the reporting-only photo set, and
``cpu`` x 3 seeds on the texture set.

References on the same test crops: GrabCut from the box (inset 3) and, per crop, a centred
disk with the ground truth's area ("area-matched circle", an oracle on size only).

Outputs, all under ``--out`` (at most 5 files): ``summary.json`` (every run's numbers, the
command, the machine), ``ablation.md`` (the section text; both rewritten as each run ends, so
a stopped benchmark still leaves its finished runs), ``grid-<set>.png`` per data set. Work files
(sets, run folders; thousands of files) go to ``--work`` (default ``<out>-work``); a rerun reuses
finished runs. ``--from-results`` trains nothing: it rebuilds the section from
``--out/summary.json`` (the folder may be read-only) and records it, copying the grids to
``benchmarks/figures``; with ``--add-refine --work WORK`` it first adds the ``segment predict
--refine`` numbers of every run from its saved models (no training; also done for new runs and
for finished runs a rerun finds) and redraws the grids. Writes section ``--section`` (default
``independence-ablation``) of ``benchmarks/RESULTS.md`` unless ``--no-record`` (``--quick``
never records).

``--curve STEPS`` (the tuning trials): teachers only, each trained to the largest step and
paused at every listed step, where its EMA weights are scored on the set's test crops under
each label-free binarisation (0.5, the area-matched threshold, each with and without flip
test-time augmentation); finished points are reused, so rerunning the command rebuilds the
section without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parent.parent

#: name -> (preset, overrides). Leave-one-out rows switch one piece of ``shapes`` off.
CONFIGS: dict[str, tuple[str, dict]] = {
    "cpu": ("cpu", {}),
    "shapes": ("shapes", {}),
    "shapes-plus-augment": ("shapes", {"augment": "color,translation,cutout"}),
    "shapes-no-r1": ("shapes", {"r1_weight": 0.0}),
    "shapes-target-area": ("shapes", {"area_penalty": "target"}),
    "shapes-no-binary": ("shapes", {"binary_weight": 0.0}),
    "shapes-no-shift": ("shapes", {"fg_shift": 0.0}),
    "shapes-no-ema": ("shapes", {"ema_decay": 0.0}),
    "shapes-restarts3": ("shapes", {"restarts": 3, "restart_steps": 300}),
    # one piece on top of the default preset (milder settings than in "shapes")
    "cpu-translate": ("cpu", {"augment": "translation", "augment_p": 0.3}),
    "cpu-shift": ("cpu", {"fg_shift": 0.06}),
    "cpu-bounds": ("cpu", {"area_penalty": "both"}),
    "cpu-entropy": (
        "cpu",
        {"binary_kind": "entropy", "binary_schedule": "ramp", "binary_weight": 0.3},
    ),
    "cpu-r1": ("cpu", {"r1_weight": 0.1}),
    "cpu-disc": ("cpu", {"disc": "app1-cpu"}),
    "cpu-restarts3": ("cpu", {"restarts": 3, "restart_steps": 300}),
    # the candidate: two mild pieces together (translation-only DiffAugment at p 0.3, and a
    # late, weak entropy binarisation against the teacher's soft, blurred masks)
    "mild": (
        "cpu",
        {
            "augment": "translation",
            "augment_p": 0.3,
            "binary_kind": "entropy",
            "binary_schedule": "ramp",
            "binary_weight": 0.3,
        },
    ),
    # issue 12 follow-up (tuned on the photo tuning set, section independence-tuning-steps):
    # longer training and flip test-time augmentation, spelt out so the row keeps its meaning
    # whatever the preset's defaults are
    "cpu-3000-none": ("cpu", {"steps": 3000, "tta": "none"}),
    "cpu-6000-flip": ("cpu", {"steps": 6000, "tta": "flip"}),
    "cpu-6000-ema999": ("cpu", {"steps": 6000, "tta": "flip", "ema_decay": 0.999}),
}

#: The default run list (one wave of 15): the 2 x 2 of the two mild pieces, 3 seeds each, on the
#: reporting-only set, and the default preset on the texture set (its student vs GrabCut).
DEFAULT_RUNS = [
    ("photo-holdout", c, s)
    for c in ("cpu", "cpu-translate", "cpu-entropy", "mild")
    for s in (0, 1, 2)
] + [("texture", "cpu", s) for s in (0, 1, 2)]
QUICK_RUNS = [("photo", "cpu", 0), ("photo", "shapes", 0)]

SET_SEED = 0
SECTION = "independence-ablation"
DISTILL_STEPS = 600
SCORE_STEPS = 200


def make_set(name: str, d: Path, quick: bool) -> None:
    from maskgen.data.segmentation_sets import make_segmentation_set

    if (d / "info.json").is_file():
        return
    # full size: the built-in sets as `maskgen data segmentation-set` writes them (texture:
    # 2000 / 200 / 2000, the set of the `segment` section; photo sets: 400 / 100 / 400)
    n = dict(n_train=24, n_test=8, n_backgrounds=24, size=32) if quick else {}
    make_segmentation_set(d, variant=name, seed=SET_SEED, **n)


def _predict_eval(model: Path, d: Path, out: Path, refine: bool = False) -> float:
    """fg IoU of ``segment predict`` (``--refine`` with the default settings when ``refine``)
    of ``model`` on the set's test crops; the prediction folder ``out`` is reused."""
    from maskgen.data.segmentation_sets import load_mask_folder
    from maskgen.independence.predict import evaluate_masks, predict_folder
    from maskgen.independence.refine import RefineConfig

    cfg = RefineConfig(refine=refine)
    js = out / "predict.json"
    want = dataclasses.asdict(cfg) if refine else None
    if not js.is_file() or json.loads(js.read_text()).get("refine") != want:
        predict_folder(model, d / "test/images", out, force=True, refine=cfg)
    pred = load_mask_folder(out / "binary", what="prediction folder", strict=False)
    res = evaluate_masks(pred, load_mask_folder(d / "test/masks"), str(out))
    return float(res["dataset"]["fg_iou"])


def add_refined(res: dict, w: Path, tag: str) -> dict:
    """``res`` plus the fg IoU of teacher and student with ``--refine`` (GrabCut seeded by the
    soft mask, default settings): a post-process of the saved models, no training; kept apart
    from the unrefined numbers. Runs without saved models are returned unchanged."""
    d = w / res["set"]
    for stage in ("teacher", "student"):
        key, model = f"{stage}_refined_fg_iou", w / "runs" / f"{tag}-{stage}" / "model"
        if key not in res and model.is_dir():
            pred = w / "pred" / f"{tag}-{stage}-refine"
            res[key] = _predict_eval(model, d, pred, refine=True)
    return res


def _cached(done: Path, w: Path, tag: str) -> dict:
    """A finished run's numbers, with the refined ones added (and saved) if it predates them."""
    res = json.loads(done.read_text())
    if "student_refined_fg_iou" not in res:
        res = add_refined(res, w, tag)
        done.write_text(json.dumps(res, indent=2) + "\n")
    return res


def _teacher_config(d: Path, conf: str, seed: int, quick: bool, **over: object) -> object:
    """The ``SegmentConfig`` of configuration ``conf`` on the set in ``d`` at training seed
    ``seed``: the configuration's overrides, then ``over``; ``quick`` shrinks the networks."""
    from maskgen.engine import make_config
    from maskgen.independence.segmentation import SegmentConfig

    preset, conf_over = CONFIGS[conf]
    over = {**conf_over, **over}
    if quick:
        over.update(unet_widths=(8, 16, 16), disc="tiny", batch_size=8)
    return make_config(
        SegmentConfig,
        preset,
        images=str(d / "train/images"),
        backgrounds=str(d / "backgrounds"),
        seed=seed,
        **over,
    )


def run_one(spec: tuple[str, str, int], work: str, quick: bool) -> dict:
    """One (set, configuration, seed): train, distill, evaluate, score (single thread)."""
    import torch

    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    from maskgen.engine import RunOptions, make_config
    from maskgen.independence.distillation import DistillConfig, distill
    from maskgen.independence.predict import Segmenter
    from maskgen.independence.segmentation import (
        load_backgrounds,
        load_training_images,
        sec_per_iter,
        train_segmentation,
    )
    from maskgen.independence.selection import background_patches, segmenter_realism

    set_name, conf, seed = spec
    w, d = Path(work), Path(work) / set_name
    tag = f"{set_name}-{conf}-s{seed}"
    done = w / "results" / f"{tag}.json"
    if done.is_file():
        return _cached(done, w, tag)
    over = {}
    if quick:
        over["steps"] = 4
        if CONFIGS[conf][1].get("restarts", 1) > 1:
            over["restart_steps"] = 2
    cfg = _teacher_config(d, conf, seed, quick, **over)
    opts = RunOptions(threads=1, quiet=True, log_every=2 if quick else 100)
    t0 = time.process_time()
    teacher, student = w / "runs" / f"{tag}-teacher", w / "runs" / f"{tag}-student"
    train_segmentation(cfg, teacher, opts)
    t_train = time.process_time() - t0
    dcfg = make_config(
        DistillConfig,
        "tiny" if quick else "cpu",
        teacher=str(teacher),
        seed=seed,
        steps=4 if quick else DISTILL_STEPS,
    )
    distill(dcfg, student, opts)
    res = {
        "set": set_name,
        "config": conf,
        "seed": seed,
        "teacher_fg_iou": _predict_eval(teacher / "model", d, w / "pred" / f"{tag}-teacher"),
        "student_fg_iou": _predict_eval(student / "model", d, w / "pred" / f"{tag}-student"),
        "sec_per_iter": sec_per_iter(teacher / "metrics.jsonl"),
        "train_cpu_s": t_train,
    }
    imgs, crop, _ = load_training_images(cfg.images, cfg.size)
    bgs = load_backgrounds(cfg.backgrounds, crop)
    bg = background_patches(bgs, cfg.size, crop, n=min(256, len(imgs)), seed=12345)
    model = Segmenter.from_folder(teacher / "model")
    sc = segmenter_realism(model, imgs, bg, steps=20 if quick else SCORE_STEPS, seed=12345)
    res.update(realism=sc["realism"], cpu_s=time.process_time() - t0)
    add_refined(res, w, tag)  # after cpu_s: the post-process is not part of a run's cost
    sel = teacher / "selection.json"
    if sel.is_file():
        res["selection"] = json.loads(sel.read_text())
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(res, indent=2) + "\n")
    return res


def _crops(folder: Path) -> tuple[list[str], np.ndarray]:
    """Names and ``N x H x W x 3`` uint8 crops of a folder of equal-size images."""
    import numpy as np

    from maskgen.core.io import read_image
    from maskgen.data.segmentation_sets import list_images

    files = list_images(folder)
    return [f.stem for f in files], np.stack([read_image(f, "RGB") for f in files])


def _soft(model, crops: np.ndarray, flip: bool) -> np.ndarray:
    """Soft masks ``N x H x W`` of ``crops``; with ``flip`` the mean with the mirrored crops'."""
    from maskgen.independence.predict import SegmentPredictor

    pred = SegmentPredictor(model, "cpu")
    soft = pred.predict(crops)
    if flip:
        soft = 0.5 * (soft + pred.predict(crops[:, :, ::-1].copy())[:, :, ::-1])
    return soft


def area_threshold(soft: np.ndarray, area: float) -> float:
    """The threshold at which a share ``area`` of the pixels of ``soft`` (any shape) is
    ``>=`` it: the ``1 - area`` quantile."""
    import numpy as np

    return float(np.clip(np.quantile(np.asarray(soft, np.float64), 1.0 - area), 0.0, 1.0))


def binarisations(model, d: Path, area: float) -> dict[str, float]:
    """Teacher fg IoU on the set's test crops under each label-free binarisation (no labels
    choose anything: the area-matched threshold comes from the unlabelled training crops and
    the area target ``area`` the GAN was trained with), plus diagnostics of mask areas (the
    ground-truth area is read for the diagnosis only)."""
    import numpy as np

    from maskgen.data.segmentation_sets import load_mask_folder
    from maskgen.independence.predict import evaluate_masks

    names, test = _crops(d / "test/images")
    _, train = _crops(d / "train/images")
    gt = load_mask_folder(d / "test/masks")
    out: dict[str, float] = {}
    for flip in (False, True):
        soft = _soft(model, test, flip)
        t_area = area_threshold(_soft(model, train, flip), area)
        pre = "flip " if flip else ""
        for rule, thr in (("0.5", 0.5), ("area", t_area)):
            masks = {n: soft[i] >= thr for i, n in enumerate(names)}
            out[pre + rule] = float(evaluate_masks(masks, gt)["dataset"]["fg_iou"])
        out[pre + "area threshold"] = t_area
        if not flip:
            out["test soft area"] = float(soft.mean())
            out["test area at 0.5"] = float((soft >= 0.5).mean())
    out["test true area"] = float(np.mean([m.mean() for m in gt.values()]))
    return out


def _ckpt_step(run: Path) -> int:
    """The step of ``run``'s newest checkpoint (0 when it has none)."""
    cks = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    return int(cks[-1].stem.split("-")[1]) if cks else 0


def _ema_at(run: Path, cfg) -> tuple[int, object]:
    """The step of ``run``'s newest checkpoint and the EMA (else raw) UNet in it."""
    import torch

    from maskgen.independence.predict import Segmenter

    ck = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(ck, map_location="cpu", weights_only=True)
    model = Segmenter(cfg.unet())
    objs = state["objects"]
    model.load_state_dict(objs["ema"] if objs.get("ema") is not None else objs["unet"])
    return int(state["step"]), model.eval()


def curve_one(spec: tuple[str, str, int], work: str, points: list[int], quick: bool) -> dict:
    """One teacher trained to ``max(points)`` steps, paused at each point to score its EMA
    weights under every binarisation of :func:`binarisations` (no distillation). The
    ``cpu`` preset's schedules do not depend on ``steps`` (area warm-up 300 steps, no noise,
    no binarisation ramp), so the point at 3000 is the default 3000-step teacher."""
    import torch

    torch.set_num_threads(1)
    from maskgen.engine import RunOptions
    from maskgen.independence.segmentation import train_segmentation

    set_name, conf, seed = spec
    w, d = Path(work), Path(work) / set_name
    steps = max(points)
    tag = f"{set_name}-{conf}-s{seed}-curve{steps}"
    done = w / "results" / f"{tag}.json"
    res = json.loads(done.read_text()) if done.is_file() else {"points": {}, "cpu_s": {}}
    cfg = _teacher_config(d, conf, seed, quick, steps=steps)
    run = w / "runs" / f"{tag}-teacher"
    for k in sorted(points):
        if str(k) in res["points"]:
            continue
        t0 = time.process_time()
        if _ckpt_step(run) < k:  # (a pause at k resumed with stop_after k would step past k)
            stop = None if k == steps else k
            opts = RunOptions(threads=1, quiet=True, log_every=2 if quick else 100, stop_after=stop)
            train_segmentation(cfg, run, opts)
        at, model = _ema_at(run, cfg)
        if at != k:  # resumed past this point (an earlier, longer pause): no score for it
            continue
        res["points"][str(k)] = binarisations(model, d, cfg.area_target)
        res["cpu_s"][str(k)] = res["cpu_s"].get("total", 0.0) + time.process_time() - t0
        res["cpu_s"]["total"] = res["cpu_s"][str(k)]
        res.update(set=set_name, config=conf, seed=seed, steps=steps)
        done.parent.mkdir(parents=True, exist_ok=True)
        _write(done, json.dumps(res, indent=2) + "\n")
        print(f"+ {tag} step {k}: {res['points'][str(k)]}", file=sys.stderr, flush=True)
    return res


RULES = ("0.5", "area", "flip 0.5", "flip area")


def curve_lines(results: list[dict], refs: dict) -> list[str]:
    """The ``--curve`` table: teacher fg IoU per (set, configuration, seed, step) under each
    binarisation, mask areas, and the mean over the seeds per step."""
    lines = [
        "| set | configuration | seed | step | "
        + " | ".join(f"fg IoU, {r}" for r in RULES)
        + " | area threshold | test soft area | test area at 0.5 | true area |",
        "|---|---|---|---|" + "---|" * (len(RULES) + 4),
    ]
    order = {c: i for i, c in enumerate(CONFIGS)}
    rs = sorted(results, key=lambda r: (r["set"], order.get(r["config"], 99), r["seed"]))
    for r in rs:
        for k in sorted(r["points"], key=int):
            v = r["points"][k]
            lines.append(
                f"| {r['set']} | {r['config']} | {r['seed']} | {k} | "
                + " | ".join(f"{v[x]:.3f}" for x in RULES)
                + f" | {v['area threshold']:.3f} | {v['test soft area']:.3f} | "
                f"{v['test area at 0.5']:.3f} | {v['test true area']:.3f} |"
            )
    lines += ["", "Mean over the seeds (every seed has the step):", ""]
    lines += ["| set | configuration | step | seeds | " + " | ".join(RULES) + " |"]
    lines += ["|---|---|---|---|" + "---|" * len(RULES)]
    for s, c in dict.fromkeys((r["set"], r["config"]) for r in rs):
        group = [r for r in rs if (r["set"], r["config"]) == (s, c)]
        steps = sorted(set.intersection(*(set(r["points"]) for r in group)), key=int)
        for k in steps:
            means = [sum(r["points"][k][x] for r in group) / len(group) for x in RULES]
            lines.append(
                f"| {s} | {c} | {k} | {','.join(str(r['seed']) for r in group)} | "
                + " | ".join(f"{m:.3f}" for m in means)
                + " |"
            )
    refs_txt = "; ".join(
        f"{s}: GrabCut {v['grabcut']:.3f}, area-matched circle {v['circle']:.3f} "
        f"(circle + 0.15 = {v['circle'] + 0.15:.3f})"
        for s, v in refs.items()
    )
    return [*lines, "", f"References on the same test crops: {refs_txt}."]


def run_curves(a: argparse.Namespace, runs: list, work: Path, cmd: str) -> list[str]:
    """``--curve``: :func:`curve_one` for every run, one after the other (single thread);
    finished points are reused. Returns the section's lines."""
    points = sorted({int(x) for x in a.curve.split(",")})
    for s in sorted({r[0] for r in runs}):
        make_set(s, work / s, a.quick)
    if a.from_results:  # no training: the points scored so far (a run may have been stopped)
        files = [work / "results" / f"{s}-{c}-s{k}-curve{max(points)}.json" for s, c, k in runs]
        results = [json.loads(f.read_text()) for f in files if f.is_file()]
    else:
        results = [curve_one(r, str(work), points, a.quick) for r in runs]
    import cv2

    cv2.setNumThreads(1)
    refs = {s: references(work / s) for s in sorted({r[0] for r in runs})}
    refs = {s: {k: v for k, v in r.items() if not k.startswith("_")} for s, r in refs.items()}
    head = (
        f"Teacher checkpoints (EMA weights) on each set's test crops: {len(results)} teacher "
        f"runs trained towards {max(points)} steps, paused at steps "
        f"{', '.join(map(str, points))} (a row per point reached). "
        "Binarisations, all label-free: `0.5` (the paper's), `area` (one threshold per model, "
        "the quantile of the unlabelled training crops' soft masks at which the binary area "
        "equals the GAN's area target), `flip ...` (soft masks averaged with those of the "
        "mirrored crops first). The true area column is read for the diagnosis only."
    )
    return [head, "", *curve_lines(results, refs)]


def references(d: Path) -> dict:
    """GrabCut and the area-matched centred circle on the set's test crops."""
    import numpy as np

    from maskgen.data.segmentation_sets import load_mask_folder
    from maskgen.independence.predict import evaluate_masks, grabcut_folder

    gt = load_mask_folder(d / "test/masks")
    gc = grabcut_folder(d / "test/images", inset=3)
    circ = {}
    for k, m in gt.items():
        h, w = m.shape
        r = np.sqrt(m.sum() / np.pi)
        yy, xx = np.mgrid[:h, :w]
        circ[k] = (yy - h / 2 + 0.5) ** 2 + (xx - w / 2 + 0.5) ** 2 <= r * r
    return {
        "grabcut": float(evaluate_masks(gc, gt, "grabcut")["dataset"]["fg_iou"]),
        "circle": float(evaluate_masks(circ, gt, "circle")["dataset"]["fg_iou"]),
        "_grabcut_masks": gc,
    }


def grid(d: Path, work: Path, rows: dict[str, str], gc: dict, out_png: Path, n: int = 10) -> None:
    """Input, ground truth, GrabCut, then one row per named prediction: its soft masks, or its
    binary masks for a ``--refine`` prediction (tag ending in ``-refine``)."""
    import numpy as np
    import torch

    from maskgen.core.io import read_image
    from maskgen.engine import save_image_grid

    names = sorted(p.stem for p in (d / "test/images").glob("*.png"))
    pick = names[:: max(1, len(names) // n)][:n]

    def grey(a):
        return np.repeat(np.asarray(a, np.float32)[..., None], 3, 2)

    ims = [[read_image(d / "test/images" / f"{k}.png") / 255.0 for k in pick]]
    ims.append([grey(read_image(d / "test/masks" / f"{k}.png", "L") / 255.0) for k in pick])
    ims.append([grey(gc[k]) for k in pick])
    for tag in rows.values():
        folder = work / "pred" / tag / ("binary" if tag.endswith("-refine") else "soft")
        if folder.is_dir():
            ims.append([grey(read_image(folder / f"{k}.png", "L") / 255.0) for k in pick])
    x = torch.tensor(np.stack([im for r in ims for im in r]), dtype=torch.float32)
    save_image_grid(out_png, x.permute(0, 3, 1, 2), nrow=len(pick))


def _mm(vals: list[float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{min(vals):.3f}-{max(vals):.3f}"


def _per_seed(vals: list[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in vals)


def table(results: list[dict], refs: dict) -> list[str]:
    """Per (set, configuration): min-max over seeds, every seed's value, and how many seeds meet
    the issue's two targets (student >= GrabCut; teacher >= circle + 0.15)."""
    lines = [
        "| set | configuration | seeds | teacher fg IoU | teacher per seed | student fg IoU | "
        "student per seed | student >= GrabCut | teacher >= circle + 0.15 | GrabCut | "
        "area-matched circle | label-free realism | s/iter | CPU min/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, c, rs in _groups(results):
        t, st = [r["teacher_fg_iou"] for r in rs], [r["student_fg_iou"] for r in rs]
        gc, circ = refs[s]["grabcut"], refs[s]["circle"]
        lines.append(
            f"| {s} | {c} | {','.join(str(r['seed']) for r in rs)} | {_mm(t)} | {_per_seed(t)} "
            f"| {_mm(st)} | {_per_seed(st)} | {sum(v >= gc for v in st)} of {len(rs)} | "
            f"{sum(v >= circ + 0.15 for v in t)} of {len(rs)} | {gc:.3f} | {circ:.3f} | "
            f"{_mm([r['realism'] for r in rs])} | {_mm([r['sec_per_iter'] or 0 for r in rs])} | "
            f"{_mm([r['cpu_s'] / 60 for r in rs])} |"
        )
    return lines


def _groups(results: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """(set, configuration, its runs by seed), in set then CONFIGS order."""
    order = {c: i for i, c in enumerate(CONFIGS)}
    rs_all = sorted(results, key=lambda r: (r["set"], order.get(r["config"], 99), r["seed"]))
    keys = dict.fromkeys((r["set"], r["config"]) for r in rs_all)
    return [(s, c, [r for r in rs_all if (r["set"], r["config"]) == (s, c)]) for s, c in keys]


def _verdict(ok: int, n: int) -> str:
    if n < 3:
        return f"{ok} of {n} seeds (fewer than 3 seeds: no claim)"
    return f"{'MET' if ok == n else 'NOT MET'} ({ok} of {n} seeds)"


def targets(results: list[dict], refs: dict) -> list[str]:
    """The issue's app-1 targets per (set, configuration), unrefined masks only: student >=
    GrabCut on every set (on texture: 'keeps its lead'); teacher >= circle + 0.15 on the photo
    sets. Met = at every seed, with at least 3 seeds."""
    lines = []
    for s, c, rs in _groups(results):
        gc, circ = refs[s]["grabcut"], refs[s]["circle"]
        n = len(rs)
        parts = [
            f"student >= GrabCut {gc:.3f}: "
            + _verdict(sum(r["student_fg_iou"] >= gc for r in rs), n)
        ]
        if s != "texture":
            ok = sum(r["teacher_fg_iou"] >= circ + 0.15 for r in rs)
            parts.append(f"teacher >= circle + 0.15 = {circ + 0.15:.3f}: " + _verdict(ok, n))
        lines.append(f"- {s}, `{c}`: " + "; ".join(parts))
    return lines


def refine_table(results: list[dict], refs: dict) -> list[str]:
    """The ``--refine`` post-process, apart: refined teacher and student fg IoU beside the
    unrefined student and GrabCut (runs recorded before ``--refine`` existed are left out)."""
    lines = [
        "| set | configuration | seeds | teacher + refine | per seed | student + refine | "
        "per seed | student + refine >= GrabCut | student unrefined | GrabCut |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, c, rs in _groups(results):
        rs = [r for r in rs if "student_refined_fg_iou" in r and "teacher_refined_fg_iou" in r]
        if not rs:
            continue
        t = [r["teacher_refined_fg_iou"] for r in rs]
        st = [r["student_refined_fg_iou"] for r in rs]
        gc = refs[s]["grabcut"]
        lines.append(
            f"| {s} | {c} | {','.join(str(r['seed']) for r in rs)} | {_mm(t)} | {_per_seed(t)} "
            f"| {_mm(st)} | {_per_seed(st)} | {sum(v >= gc for v in st)} of {len(rs)} | "
            f"{_mm([r['student_fg_iou'] for r in rs])} | {gc:.3f} |"
        )
    return lines if len(lines) > 2 else []


def agreement(results: list[dict]) -> str:
    """Spearman correlation of the label-free realism with teacher fg IoU, per data set (the
    score compares runs on one set; the sets differ in difficulty)."""
    import numpy as np

    parts = []
    for s in sorted({r["set"] for r in results}):
        rs = [r for r in results if r["set"] == s]
        if len(rs) < 3:
            continue
        a = np.array([r["realism"] for r in rs]).argsort().argsort()
        b = np.array([r["teacher_fg_iou"] for r in rs]).argsort().argsort()
        rho = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        parts.append(f"{s}: rho = {rho:.2f} over {len(rs)} runs")
    if not parts:
        return "Label-free score vs teacher fg IoU: too few runs for a correlation."
    return (
        "Label-free realism vs teacher fg IoU, Spearman rank correlation per set: "
        + "; ".join(parts)
        + " (positive = the score ranks runs as the labelled metric does)."
    )


def _write(path: Path, text: str) -> None:
    """Write atomically (a benchmark stopped by ``timeout`` leaves the previous version)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def parse_runs(text: str | None, quick: bool) -> list[tuple[str, str, int]]:
    if not text:
        return list(QUICK_RUNS if quick else DEFAULT_RUNS)
    out = []
    for item in text.split(","):
        s, c, seed = item.split(":")
        if c not in CONFIGS:
            raise SystemExit(f"--runs {item}: unknown configuration {c} ({', '.join(CONFIGS)})")
        out.append((s, c, int(seed)))
    return out


def cross_runs(sets: str, configs: str, seeds: str) -> list[tuple[str, str, int]]:
    """``--sets A,B --configs x,y --seeds 0,1,2`` -> every (set, configuration, seed)."""
    cs = [c.strip() for c in configs.split(",")]
    bad = [c for c in cs if c not in CONFIGS]
    if bad:
        raise SystemExit(f"--configs: unknown configuration {bad[0]} ({', '.join(CONFIGS)})")
    return [(s.strip(), c, int(k)) for s in sets.split(",") for c in cs for k in seeds.split(",")]


def describe(confs: list[str]) -> list[str]:
    """One line per configuration: its preset and overrides."""
    out = []
    for c in confs:
        preset, over = CONFIGS[c]
        extra = ", ".join(f"{k}={v}" for k, v in over.items()) or "no overrides"
        out.append(f"- `{c}`: preset `{preset}`, {extra}")
    return out


def _refine_lines(results: list[dict], refs: dict) -> list[str]:
    rows = refine_table(results, refs)
    if not rows:
        return []
    from maskgen.independence.refine import RefineConfig

    c = RefineConfig()
    return [
        "With `segment predict --refine` (optional post-process, reported apart; every target "
        "above is judged without it): GrabCut seeded with the model's soft mask (definite where "
        f">= {c.refine_sure_fg} / <= {c.refine_sure_bg}, eroded {c.refine_erode} px; probable "
        f"fg/bg at the threshold; {c.refine_iterations} iterations; the defaults, chosen on the "
        "photo tuning set), on the same saved models, no retraining:",
        "",
        *rows,
        "",
    ]


def section_lines(summary: dict, grids: list[str], section: str = SECTION) -> list[str]:
    """The section text from a ``summary.json`` (fresh, or read back with --from-results)."""
    results, refs = summary["runs"], summary["references"]
    order = {c: i for i, c in enumerate(CONFIGS)}
    confs = sorted({r["config"] for r in results}, key=lambda c: order.get(c, 99))
    rows = summary.get("grid_rows", {})
    if isinstance(rows, list):  # summaries written before rows were per set
        rows = {"all sets": rows}
    return [
        f"Application 1, issue 12 pieces: {len(results)} runs, {summary['jobs']} at once, one "
        f"thread each, wall {summary['wall_s'] / 60:.1f} min, on: {summary['machine']}. "
        "fg IoU on each set's test crops (min-max over the seeds).",
        "",
        *table(results, refs),
        "",
        "Issue 12 targets, unrefined masks (met = at every seed, at least 3 seeds):",
        *targets(results, refs),
        "",
        agreement(results),
        "",
        *_refine_lines(results, refs),
        "Configurations (cpu = the default preset; shapes = cpu + lazy R1, area bounds 0.1-0.5 "
        "instead of the exact area target, entropy binarisation ramped over 30-80 % of the "
        "steps, fg-vs-bg shift 6 %):",
        *describe(confs),
        "",
        *[f"![{g}](figures/{section}_{g}.png)" for g in grids],
        "Grid rows: input, ground truth, GrabCut, then soft masks (binary for + refine; training seed "
        f"{summary.get('grid_seed', 0)}): "
        + "; ".join(f"{s}: {', '.join(r)}" for s, r in rows.items())
        + ".",
    ]


def _summary(
    a: argparse.Namespace, results: list, refs: dict, wall: float, rows: list, cmd: str
) -> dict:
    import re

    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import machine_line

    return {
        "runs": results,
        "references": {
            s: {k: v for k, v in r.items() if not k.startswith("_")} for s, r in refs.items()
        },
        "wall_s": wall,
        "jobs": a.jobs,
        "machine": re.sub(r"torch threads \d+", "1 torch thread per run", machine_line()),
        "grid_rows": rows,
        "grid_seed": min((r["seed"] for r in results), default=0),
        "command": cmd,
    }


def grid_plan(runs: list, grid_arg: str | None) -> tuple[dict, dict]:
    """Which configurations each set's grid draws (training seed: the lowest), and the grid
    rows' names: ``({set: [config, ...]}, {set: [row name, ...]})``."""
    confs = list(dict.fromkeys(r[1] for r in runs))
    picked = [c.strip() for c in grid_arg.split(",")] if grid_arg else confs[:2]
    seed0 = min(r[2] for r in runs)
    here = {
        s: [c for c in picked if (s, c, seed0) in runs] or [next(r[1] for r in runs if r[0] == s)]
        for s in sorted({r[0] for r in runs})
    }
    rows = {
        s: [f"teacher {c}" for c in cs] + [f"student {cs[-1]}", f"student {cs[-1]} + refine"]
        for s, cs in here.items()
    }
    return here, rows


def draw_grids(runs: list, here: dict, work: Path, refs: dict, out: Path) -> None:
    """``out/grid-<set>.png`` per set, from the predictions under ``work/pred``."""
    seed0 = min(r[2] for r in runs)
    for s, cs in here.items():
        tags = {c: f"{s}-{c}-s{seed0}-teacher" for c in cs}
        tags["student"] = f"{s}-{cs[-1]}-s{seed0}-student"
        tags["refined"] = f"{s}-{cs[-1]}-s{seed0}-student-refine"
        grid(work / s, work, tags, refs[s]["_grabcut_masks"], out / f"grid-{s}.png")


def add_refine_to(summary: dict, a: argparse.Namespace, out: Path) -> dict:
    """``--from-results --add-refine``: the ``--refine`` numbers of every run from its saved
    models under ``--work`` (no training; the training runs' wall time and CPU minutes are
    kept), the grids redrawn with the refined row; ``summary.json`` rewritten."""
    import cv2

    cv2.setNumThreads(1)
    work = Path(a.work)
    for r in summary["runs"]:
        add_refined(r, work, f"{r['set']}-{r['config']}-s{r['seed']}")
    runs = [(r["set"], r["config"], r["seed"]) for r in summary["runs"]]
    here, summary["grid_rows"] = grid_plan(runs, a.grid)
    refs = {s: references(work / s) for s in here}
    draw_grids(runs, here, work, refs, out)
    _write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def train_all(a: argparse.Namespace, runs: list, out: Path, work: Path, cmd: str) -> dict:
    """Make the sets, run every (set, configuration, seed) ``--jobs`` at a time, draw the grids;
    returns the summary. ``summary.json`` and ``ablation.md`` are rewritten as each run ends, so
    a run stopped early (e.g. by ``timeout``) still leaves the table of the finished ones."""
    import multiprocessing as mp
    from concurrent.futures import as_completed

    sets = sorted({r[0] for r in runs})
    for s in sets:
        print(f"+ set {s}", file=sys.stderr, flush=True)
        make_set(s, work / s, a.quick)
    here, rows = grid_plan(runs, a.grid)
    t0 = time.time()
    results: list[dict] = []
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=mp.get_context("spawn")) as ex:
        futs = {ex.submit(run_one, r, str(work), a.quick): r for r in runs}
        import cv2

        cv2.setNumThreads(1)  # the references share the machine with the --jobs runs
        refs = {s: references(work / s) for s in sets}
        for f in as_completed(futs):
            r = futs[f]
            try:
                results.append(f.result())
            except Exception as e:  # one broken run must not lose the others' numbers
                print(f"+ FAILED {r}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                continue
            print(f"+ done {r}: {results[-1]['teacher_fg_iou']:.3f}", file=sys.stderr, flush=True)
            summary = _summary(a, results, refs, time.time() - t0, rows, cmd)
            _write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            _write(out / "ablation.md", "\n".join(section_lines(summary, [])) + "\n")
    summary = _summary(a, results, refs, time.time() - t0, rows, cmd)
    draw_grids(runs, here, work, refs, out)
    _write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for summary.json, ablation.md, grids")
    p.add_argument("--work", default=None, help="work folder (default: <out>-work)")
    p.add_argument("--jobs", type=int, default=15, help="runs at once (one thread each)")
    p.add_argument("--runs", default=None, help="set:config:seed,... (default: the 15-run list)")
    p.add_argument("--sets", default=None, help="with --configs/--seeds: the cross product")
    p.add_argument("--configs", default=None, help="comma-separated names from CONFIGS")
    p.add_argument("--seeds", default="0,1,2", help="training seeds for --sets/--configs")
    p.add_argument(
        "--grid", default=None, help="configurations drawn in the grids (default: the first 2)"
    )
    p.add_argument(
        "--from-results",
        action="store_true",
        help="no training: rebuild ablation.md (and the RESULTS section) from --out/summary.json",
    )
    p.add_argument(
        "--add-refine",
        action="store_true",
        help="with --from-results and --work: add the --refine numbers from the saved models "
        "(no training) and redraw the grids",
    )
    p.add_argument(
        "--note",
        default=None,
        help="a line added under the section (e.g. 'the machine was shared')",
    )
    p.add_argument(
        "--curve",
        default=None,
        help="steps, e.g. 1000,2000,3000: train teachers only, to the largest, and score each "
        "pause under every label-free binarisation (section --section)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 runs, no record")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--section", default=SECTION, help=f"RESULTS.md section (default: {SECTION})")
    a = p.parse_args(argv)
    out = Path(a.out)
    if a.curve:
        return main_curve(a, argv)
    if a.from_results:
        if not (out / "summary.json").is_file():
            raise SystemExit(f"--from-results: {out / 'summary.json'} not found")
        summary = json.loads((out / "summary.json").read_text())
        cmd = summary.get("command", "python benchmarks/independence_ablation.py")
        cmd += f" (section rebuilt with --from-results from {out.name}/summary.json)"
        if a.add_refine:
            if not a.work:
                raise SystemExit("--add-refine: needs --work (the runs' saved models)")
            summary = add_refine_to(summary, a, out)
            cmd += " --add-refine (--refine numbers from the saved models, no training)"
    else:
        work = Path(a.work) if a.work else out.parent / (out.name + "-work")
        if a.sets or a.configs:
            if a.runs or not (a.sets and a.configs):
                raise SystemExit("--sets and --configs go together, without --runs")
            runs = cross_runs(a.sets, a.configs, a.seeds)
        else:
            runs = parse_runs(a.runs, a.quick)
        out.mkdir(parents=True, exist_ok=True)
        cmd = _command(argv)
        summary = train_all(a, runs, out, work, cmd)
    grids = sorted(p.stem for p in out.glob("grid-*.png"))
    lines = section_lines(summary, grids, a.section)
    if not a.from_results or a.add_refine:  # --from-results may read a read-only folder
        _write(out / "ablation.md", "\n".join(lines) + "\n")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    record = not (a.no_record or a.quick)
    if record:
        import shutil

        for g in grids:
            shutil.copyfile(out / f"{g}.png", REPO / "benchmarks/figures" / f"{a.section}_{g}.png")
    publish(a.section, lines, command=cmd, note=a.note, record=record)
    return 0


def _command(argv: list[str] | None) -> str:
    """The command line as recorded: the arguments without ``--note TEXT`` (the note is
    printed under the section already)."""
    args = list(argv if argv is not None else sys.argv[1:])
    if "--note" in args:
        i = args.index("--note")
        del args[i : i + 2]
    args = [x for x in args if not x.startswith("--note=")]
    return ("python benchmarks/independence_ablation.py " + " ".join(args)).strip()


def main_curve(a: argparse.Namespace, argv: list[str] | None) -> int:
    """``--curve``: the teacher checkpoint table, written to ``--out/curve.md`` and recorded."""
    if not (a.sets and a.configs):
        raise SystemExit("--curve: needs --sets and --configs (and --seeds)")
    out = Path(a.out)
    work = Path(a.work) if a.work else out.parent / (out.name + "-work")
    out.mkdir(parents=True, exist_ok=True)
    cmd = _command(argv)
    lines = run_curves(a, cross_runs(a.sets, a.configs, a.seeds), work, cmd)
    _write(out / "curve.md", "\n".join(lines) + "\n")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    record = not (a.no_record or a.quick)
    publish(a.section, lines, command=cmd, note=a.note, record=record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
