"""Scene-editing benchmark (issue 13): occlusion order, erase quality against exact ground truth,
and interactive speed, on the built-in scenes with the shipped model.

    python benchmarks/editing_bench.py [--sections order,edits,speed] [--inpainter telea|RUN,...]
                                       [--scenes DIR] [--model DIR] [--fit] [--figures DIR]
                                       [--max-cases N] [--no-record]

Data: ``--scenes`` (default ``benchmarks/data/scenes``, git-ignored) is generated when missing
with ``maskgen data scenes --num-images-train 0 --num-images-val 100 --num-images-test 250``
(the test images and ids do not depend on the other splits' sizes).

- **order** (section ``editing-order``): ``maskgen.editing.order`` on every test image against
  the ground-truth occluded pairs (:mod:`maskgen.evaluation.order`): direction accuracy, pair
  precision / recall / F1; the completion-only weights as an ablation; the three baselines on the
  same pairs. ``--fit`` refits the direction weights on the val split first (logistic regression)
  and prints them (the shipped ``DEFAULT_WEIGHTS`` came from it).
- **edits** (section ``editing-edits``): every edit case of the test split
  (:mod:`maskgen.data.edit_cases`): decompose, erase, render; against the exact target, MAE
  (0-255, mean over RGB) and PSNR inside the erased region, split into revealed-object and
  revealed-background pixels, and the revealed-object IoU with the right instance (a pixel counts
  when the instance shown there is the true one); OpenCV Telea over the whole erased region as
  the baseline; ``--inpainter a,b`` compares several inpainters on the same completions, and the
  erased region's error is split by what the layers show (right instance / background, both
  inpainted, or a wrong layer). ``--figures`` writes the before/after pictures of the first
  eight cases.
- **speed** (section ``editing-speed``): the test images with the most instances (up to 10),
  one torch thread: decomposition (completion, order, inpainting) and each edit operation
  (the operation and a render) -- medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCENES_CMD = [
    "data", "scenes", "--num-images-train", "0", "--num-images-val", "100",
    "--num-images-test", "250",
]  # fmt: skip
OWNED = ("right instance, inpainted", "background, inpainted", "wrong layer")
FIGURE_CASES = 8  # before/after pictures of the first cases by id


def ensure_scenes(scenes: Path) -> None:
    if not (scenes / "summary.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "maskgen", *SCENES_CMD, "--out", str(scenes)], check=True
        )


def load_predictor(model: str, refit=None):  # noqa: ANN001, ANN201
    from maskgen.amodal.io import SHIPPED_MODEL
    from maskgen.amodal.predictor import AmodalPredictor

    return AmodalPredictor.from_folder(model or SHIPPED_MODEL, refit=refit)


# ------------------------------------------------------------------------------ order


def fit_weights(scenes: Path, predictor, pairnet: bool = True) -> dict[str, float]:  # noqa: ANN001
    """Logistic regression of "i is behind j" on the cue differences, ground-truth occluded
    pairs of the val split (no intercept: the score must be antisymmetric); with ``pairnet``
    the shipped pairwise classifier's logit is one more cue."""
    from maskgen.amodal.completion import decode_visible
    from maskgen.data.loader import load_dataset
    from maskgen.editing.order import pair_evidence
    from maskgen.editing.pairnet import load_shipped_pairnet
    from maskgen.evaluation.order import gt_pairs

    names = ("llr", "hull", "uncertainty", "area") + (("pairnet",) if pairnet else ())
    feats, ys = [], []
    for rec in load_dataset(scenes / "annotations/val_kins2020.json").images:
        if len(rec.instances) < 2:
            continue
        vm, _ = decode_visible(rec)
        ev = pair_evidence(vm, predictor.complete_image(vm, return_probability=True))
        idx = {int(i.id): k for k, i in enumerate(rec.instances)}
        if pairnet:
            pairs = [(idx[f], idx[b]) for f, b in gt_pairs(rec)]
            ev.add_front_logits(vm, load_shipped_pairnet(), pairs)
        for f, b in gt_pairs(rec):
            i, j = idx[b], idx[f]  # i is behind j
            for s, (p, q) in ((1.0, (i, j)), (0.0, (j, i))):
                w = {n: 0.0 for n in names}
                row = []
                for n in names:
                    w[n] = 1.0
                    row.append(float(ev.direction_scores(w)[p, q]))
                    w[n] = 0.0
                feats.append(row)
                ys.append(s)
    x, y = np.asarray(feats), np.asarray(ys)
    w = np.zeros(x.shape[1])
    for _ in range(5000):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        w -= 0.5 * (x.T @ (p - y) / len(y) + 1e-3 * w)
    return {n: round(float(v), 3) for n, v in zip(names, w, strict=True)}


def _order_scores(scenes: Path, split: str, predictor, weights, net, **kw):  # noqa: ANN001, ANN003, ANN202
    """``(OrderScores, seconds)`` of ``order_records`` on one split against its ground truth."""
    from maskgen.data.loader import load_dataset
    from maskgen.editing.order import order_records
    from maskgen.evaluation.order import evaluate_order

    gt = load_dataset(scenes / f"annotations/{split}_kins2020.json")
    visible = load_dataset(scenes / f"annotations/{split}_coco.json")
    pred = {}
    t0 = time.perf_counter()
    for rec, ids, order in order_records(visible.images, predictor, weights, pairnet=net, **kw):
        pred[int(rec.id)] = [[ids[f], ids[b]] for f, b in order.pairs] if order else []
    secs = time.perf_counter() - t0
    return evaluate_order(gt.images, pred), secs


def bench_order(scenes: Path, predictor, weights: dict | None) -> list[str]:  # noqa: ANN001
    from maskgen.editing.order import (
        COMPLETION_ONLY_WEIGHTS,
        DEFAULT_MAX_PATH,
        DEFAULT_MIN_FAR_SCORE,
        DEFAULT_WEIGHTS,
        NO_PAIRNET_WEIGHTS,
    )
    from maskgen.evaluation.order import BASELINES

    w0 = weights or DEFAULT_WEIGHTS
    # the ablations without the classifier are the previous method: pairs keep their own
    # decisions, touching or claimed pairs only
    previous = {"follow_ranking": False, "max_path": 0}
    variants = [
        ("amodal-vae order + pair classifier (default)", "test", w0, "shipped", {}),
        ("the default on the val split (where its settings were chosen)", "val", w0, "shipped",
         {}),
        ("ablation: default without the non-touching pairs", "test", w0, "shipped",
         {"max_path": 0}),
        ("ablation: without the pair classifier", "test", NO_PAIRNET_WEIGHTS, None, previous),
        ("ablation: completion cues only", "test", COMPLETION_ONLY_WEIGHTS, None, previous),
    ]  # fmt: skip
    rows, first = [], None
    for label, split, w, net, kw in variants:
        sc, secs = _order_scores(scenes, split, predictor, w, net, **kw)
        if first is None:
            first = sc
        rows.append(
            f"| {label} | {sc.accuracy:.3f} | {sc.precision:.3f} | {sc.accuracy:.3f} | "
            f"{sc.f1:.3f} | {sc.listed_pairs} | {secs:.1f} s |"
        )
    for name in BASELINES:
        acc = first.baseline_accuracy(name)
        rows.append(
            f"| baseline: {name} (ties {first.baseline_ties[name]}, count half) | {acc:.3f} | "
            f"{acc:.3f} | {acc:.3f} | {acc:.3f} | {first.gt_pairs} (the GT pairs) | |"
        )
    hull = first.baseline_accuracy("convex-hull")
    return [
        f"Built-in test split, 250 images, {first.gt_pairs} ground-truth occluded "
        "pairs (back amodal meets front visible); shipped model, GT visible masks. A pair left "
        "out counts as wrong; baselines decide the direction of the GT pairs only. The val row "
        "is the split the weights and the non-touching-pair settings were chosen on.",
        "",
        "| method | direction accuracy | pair precision | pair recall | pair F1 | pairs listed "
        "| time |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Targets (issue 13): direction accuracy >= 0.92 and >= convex hull + 0.10 "
        f"(= {hull + 0.10:.3f}); pair F1 >= 0.88. Met: accuracy "
        f"{'yes' if first.accuracy >= max(0.92, hull + 0.10) else 'no'}, F1 "
        f"{'yes' if first.f1 >= 0.88 else 'no'}.",
        f"Weights: `{w0}`; non-touching pairs: path <= {DEFAULT_MAX_PATH} steps, "
        f"|score| >= {DEFAULT_MIN_FAR_SCORE}.",
    ]


# ------------------------------------------------------------------------------ edits


class _Acc:
    """Sums of absolute errors, squared errors and pixel counts for one pixel set."""

    def __init__(self) -> None:
        self.abs = self.sq = 0.0
        self.n = 0

    def add(self, out: np.ndarray, target: np.ndarray, mask: np.ndarray) -> None:
        d = out[mask].astype(np.float64) - target[mask].astype(np.float64)
        self.abs += float(np.abs(d).sum())
        self.sq += float((d**2).sum())
        self.n += int(mask.sum()) * 3

    def mae(self) -> float:
        return self.abs / self.n if self.n else float("nan")

    def psnr(self) -> float:
        mse = self.sq / self.n if self.n else float("nan")
        return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def telea_erase(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The baseline: the whole erased region inpainted by Telea from every other pixel."""
    from maskgen.inpainting.base import inpaint_from

    out = image.copy()
    out[region] = inpaint_from(image, ~region, region)
    return out


class _CachedCompletions:
    """The predictor with ``complete_image`` remembered for the current case, so each inpainter
    decomposes the same completions (computed once)."""

    def __init__(self, predictor) -> None:  # noqa: ANN001
        self.predictor, self.key, self.value = predictor, None, None

    def complete_image(self, vm: np.ndarray, **kw):  # noqa: ANN003, ANN201
        key = (vm.tobytes(), tuple(sorted(kw.items())))
        if key != self.key:
            self.key, self.value = key, self.predictor.complete_image(vm, **kw)
        return self.value


class _Oracle:
    """The predictor given the truth of the current case (``--oracle``, an upper bound):
    ``box`` supplies each instance's true amodal box (the tight box of its true amodal mask,
    cut at the image border), ``mask`` replaces each completion's mask by the true amodal mask
    and drops its samples while keeping the model's probabilities (so the order is the model's
    own, decided from the same evidence as without the oracle)."""

    def __init__(self, predictor, kind: str, truth: dict) -> None:  # noqa: ANN001
        self.predictor, self.kind, self.truth = predictor, kind, truth
        self.amodal: dict[bytes, np.ndarray] = {}

    def set_case(self, case, amodal: dict[int, np.ndarray]) -> None:  # noqa: ANN001
        """Remember the true amodal mask of each visible mask of ``case`` (keyed by its bytes)."""
        self.amodal = {case.visible[i].tobytes(): amodal[i] for i in case.visible}

    def complete_image(self, vm: np.ndarray, **kw):  # noqa: ANN003, ANN201
        from maskgen.core.boxes import mask_to_box

        true = [self.amodal[m.tobytes()] | m for m in vm]
        if self.kind == "box":
            boxes = np.stack([mask_to_box(a) for a in true]).astype(np.float64)
            return self.predictor.complete_image(vm, amodal_boxes=boxes, **kw)
        return [_with_mask(c, a) for c, a in zip(self.predictor.complete_image(vm, **kw), true,
                                                   strict=True)]  # fmt: skip


def _with_mask(c, amodal: np.ndarray):  # noqa: ANN001, ANN202
    """Completion ``c`` with its mask replaced by ``amodal`` (whole-image region, no samples)."""
    from maskgen.amodal.predictor import Completion

    h, w = amodal.shape
    prob = c.probability
    return Completion(
        (h, w), (0, 0, w, h), amodal, amodal, prob, np.zeros((0, h, w), bool), np.zeros(0),
        c.visible_box, c.amodal_box, "oracle", c.uncertainty, c.consistency, c.mu, c.sigma,
    )  # fmt: skip


def _true_amodal(scenes: Path, split: str) -> dict[int, dict[int, np.ndarray]]:
    """image id -> annotation id -> ``H x W`` bool true amodal mask."""
    from maskgen.data.loader import load_dataset

    gt = load_dataset(scenes / f"annotations/{split}_kins2020.json")
    return {int(r.id): {int(i.id): r.amodal_mask(i) for i in r.instances} for r in gt.images}


def bench_edits(scenes: Path, predictor, inpainters: dict, args) -> list[str]:  # noqa: ANN001
    """Every edit case of ``args.split`` with each inpainter of ``inpainters`` (name ->
    inpainter); the IoU and the pictures come from the first one (the owner map does not depend
    on the inpainter). ``args.oracle`` (``box`` / ``mask``) gives the completion the truth."""
    from maskgen.data.edit_cases import DEFAULT_MIN_HIDDEN, edit_cases
    from maskgen.editing.scene import Scene

    names = [*inpainters, "telea-whole"]
    acc = {(m, r): _Acc() for m in names for r in ("object", "background", "all")}
    owned = {(m, r): _Acc() for m in inpainters for r in OWNED}  # by what shows a pixel
    inter = union = 0
    per_case_iou = []
    parts = dict.fromkeys(("right instance", "wrong instance", "object, truly background",
                           "background, truly object"), 0)  # fmt: skip
    n = 0
    oracle = None
    if args.oracle != "none":
        truth = _true_amodal(scenes, args.split)
        predictor = oracle = _Oracle(predictor, args.oracle, truth)
    cached = _CachedCompletions(predictor)
    for case in edit_cases(scenes, args.split, max_cases=args.max_cases):
        if oracle is not None:
            oracle.set_case(case, oracle.truth[case.image_id])
        ids = sorted(case.visible)
        vm = np.stack([case.visible[i] for i in ids])
        outs = {}
        for name, inpainter in inpainters.items():
            scene = Scene.from_image(case.image, vm, cached, inpainter, ids=ids)
            scene.erase(ids.index(case.erase_id))
            outs[name] = scene.render()
            if len(outs) == 1:
                owner = scene.owner()
        outs["telea-whole"] = base = telea_erase(case.image, case.revealed)
        obj, rev = case.revealed_object, case.revealed
        for m, img in outs.items():
            acc[(m, "object")].add(img, case.target, obj)
            acc[(m, "background")].add(img, case.target, rev & ~obj)
            acc[(m, "all")].add(img, case.target, rev)
        # revealed-object IoU with the right instance, inside the erased region
        true_owner = np.full(rev.shape, -1)
        for i, m in case.new_visible.items():
            true_owner[m & rev] = ids.index(i)
        pred_obj, true_obj = rev & (owner >= 0), rev & (true_owner >= 0)
        right_obj = obj & (owner >= 0) & (owner == true_owner)
        right_bg = rev & ~obj & (owner < 0)
        shown = (right_obj, right_bg, rev & ~right_obj & ~right_bg)
        for name in inpainters:
            for r, m in zip(OWNED, shown, strict=True):
                owned[(name, r)].add(outs[name], case.target, m)
        i_c = int((pred_obj & true_obj & (owner == true_owner)).sum())
        u_c = int((pred_obj | true_obj).sum())
        inter, union = inter + i_c, union + u_c
        both = pred_obj & true_obj
        parts["right instance"] += i_c
        parts["wrong instance"] += int(both.sum()) - i_c
        parts["object, truly background"] += int((pred_obj & ~true_obj).sum())
        parts["background, truly object"] += int((~pred_obj & true_obj).sum())
        if u_c:
            per_case_iou.append(i_c / u_c)
        if args.figures and case.case_id < FIGURE_CASES:
            _figure(Path(args.figures), case, outs[names[0]], base, owner, ids)
        n += 1
    lines = _edit_lines(acc, names, inter, union, per_case_iou, n, DEFAULT_MIN_HIDDEN, args)
    total = max(sum(parts.values()), 1)
    split = ", ".join(f"{k} {v / total:.3f}" for k, v in parts.items())
    n_rev = max(sum(owned[(names[0], r)].n for r in OWNED), 1)
    shares = ", ".join(f"{r} {owned[(names[0], r)].n / n_rev:.1%}" for r in OWNED)
    by_owner = "; ".join(
        f"layers ({m}): " + ", ".join(f"{owned[(m, r)].mae():.1f}" for r in OWNED)
        for m in inpainters
    )
    return [
        *lines,
        "",
        f"Where the union of predicted and true object pixels goes: {split}.",
        "",
        f"The erased region by what the layers show there ({shares} of its pixels; the inpainter "
        "fills the first two, completion and order decide the third) -- MAE on each: "
        f"{by_owner}.",
    ]


def _figure(folder: Path, case, out, base, owner, ids) -> None:  # noqa: ANN001
    from maskgen.cli.amodal_edit import before_after
    from maskgen.core.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    gained = np.stack([(owner == k) & case.revealed for k in range(len(ids))])
    fig = before_after(case.image, out, case.revealed[None], gained)
    gap = np.full((fig.shape[0], 8, 3), 255, np.uint8)
    s = fig.shape[0] // case.image.shape[0]
    tgt = np.repeat(np.repeat(case.target, s, axis=0), s, axis=1)
    tel = np.repeat(np.repeat(base, s, axis=0), s, axis=1)
    write_image(
        folder / f"case{case.case_id:02d}_image{case.image_id}_erase{case.erase_id}.png",
        np.concatenate([fig, gap, tel, gap, tgt], axis=1),
    )


def _edit_lines(acc, names, inter, union, per_case, n, min_hidden, args) -> list[str]:  # noqa: ANN001
    rows = []
    for m in names:
        label = "Telea, whole region" if m == "telea-whole" else f"layers ({m})"
        cells = [f"{acc[(m, r)].mae():.1f} / {acc[(m, r)].psnr():.2f}" for r in
                 ("object", "background", "all")]  # fmt: skip
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    iou = inter / union if union else float("nan")
    return [
        *(
            [
                f"**Oracle `{args.oracle}`** (an upper bound, not a method): the completion is given "
                f"the true amodal {'boxes' if args.oracle == 'box' else 'masks'}.",
                "",
            ]
            if args.oracle != "none"
            else []
        ),
        f"{n} edit cases of the built-in {args.split} split (every annotated instance hiding >= "
        f"{min_hidden} px of annotated instances is erased once; exact targets re-drawn from the "
        "seed). Inside the erased region: MAE (0-255, over RGB) / PSNR (dB) against the target.",
        "",
        "| method | revealed-object pixels | revealed-background pixels | whole erased region |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Revealed-object IoU with the right instance (erased region; a pixel counts when the "
        f"instance shown is the true one): **{iou:.3f}** over all pixels, "
        f"{statistics.mean(per_case):.3f} mean per case (target >= 0.6).",
    ]


# ------------------------------------------------------------------------------ speed


def bench_speed(scenes: Path, predictor, inpainter, images: int) -> list[str]:  # noqa: ANN001
    from maskgen.amodal.completion import decode_visible
    from maskgen.core.io import read_image
    from maskgen.data.loader import load_dataset

    recs = load_dataset(scenes / "annotations/test_coco.json").images
    recs = sorted(recs, key=lambda r: (-len(r.instances), r.id))[:images]
    times: dict[str, list[float]] = {}
    for rec in recs:
        vm, _ = decode_visible(rec)
        image = read_image(scenes / "images/test" / rec.file_name)
        _speed_one(image, vm, predictor, inpainter, times)
    rows = [
        f"| {name} | {1000 * statistics.median(v):.1f} | {1000 * max(v):.1f} |"
        for name, v in times.items()
    ]
    sizes = sorted({len(r.instances) for r in recs})
    return [
        f"{len(recs)} built-in test scenes of 256x256 with the most instances ({sizes[0]}-"
        f"{sizes[-1]}), shipped model, one torch thread, {type(inpainter).__name__}.",
        "",
        "| step | median ms | max ms |",
        "|---|---|---|",
        *rows,
        "",
        "Targets (issue 13): decomposition <= 1 s and each edit <= 100 ms (median).",
    ]


def _speed_one(image, vm, predictor, inpainter, times: dict[str, list[float]]) -> None:  # noqa: ANN001
    """Time one decomposition and each operation (with the render that shows it)."""
    from maskgen.editing.scene import Scene

    def timed(name: str, fn, *a):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        r = fn(*a)
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return r

    sc = timed(
        "decompose (complete + order + inpaint), 8 samples kept",
        Scene.from_image, image, vm, predictor, inpainter, None, None, 8,
    )  # fmt: skip
    k = len(vm)
    timed("render", sc.render)
    for name, op, a in (
        ("erase", sc.erase, (k - 1,)),
        ("move", sc.move, (0, 12, -7)),
        ("bring to front", sc.bring_to_front, (1,)),
        ("send back", sc.send_back, (1,)),
        ("use sample (re-inpaints one layer)", sc.use_sample, (0, 3)),
    ):
        timed(f"{name} + render", lambda op=op, a=a: (op(*a), sc.render()))


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="benchmarks/data/scenes")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument(
        "--inpainter",
        default="telea",
        help="telea, builtin or a learned inpainter's run; several, comma-separated, are "
        "compared on the same completions in the edits section (speed uses the first)",
    )
    p.add_argument("--sections", default="order,edits,speed")
    p.add_argument("--fit", action="store_true", help="refit the order weights on val first")
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--split", default="test", choices=("val", "test"), help="edit cases' split")
    p.add_argument(
        "--oracle",
        default="none",
        choices=("none", "box", "mask"),
        help="edits: give the completion the true amodal boxes or masks (an upper bound)",
    )
    p.add_argument("--speed-images", type=int, default=10)
    p.add_argument("--figures", default=None, help="write the first 8 cases' pictures here")
    p.add_argument("--no-record", action="store_true")
    from maskgen.amodal.refit import RefitConfig
    from maskgen.engine.config import add_config_arguments, config_from_args

    add_config_arguments(p, RefitConfig)
    args = p.parse_args(argv)

    from maskgen.cli.amodal_edit import make_inpainter

    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    scenes = REPO / args.scenes
    ensure_scenes(scenes)
    refit = config_from_args(RefitConfig, args)
    print(f"latent refit: {refit}")
    predictor = load_predictor(args.model, refit)
    inpainters = {name: make_inpainter(name) for name in args.inpainter.split(",")}
    inpainter = next(iter(inpainters.values()))
    command = "python benchmarks/editing_bench.py " + " ".join(argv or sys.argv[1:])
    sections = args.sections.split(",")
    weights = None
    if args.fit:
        weights = fit_weights(scenes, predictor)
        print(f"fitted weights (val split): {weights}")
    note = (
        f"Latent refit (maskgen.amodal.refit): {refit.refit_steps} steps, lr {refit.refit_lr}, "
        f"posterior weight {refit.refit_posterior}, prior weight {refit.refit_prior}"
        if refit.enabled
        else "Latent refit: off"
    )
    if "order" in sections:
        lines = bench_order(scenes, predictor, weights)
        publish("editing-order", lines, command.strip(), note, not args.no_record)
    if "edits" in sections:
        lines = bench_edits(scenes, predictor, inpainters, args)
        section = "editing-edits" + ("" if args.split == "test" else f"-{args.split}")
        section += "" if args.oracle == "none" else f"-oracle-{args.oracle}"
        publish(section, lines, command.strip(), note, not args.no_record)
    if "speed" in sections:
        lines = bench_speed(scenes, predictor, inpainter, args.speed_images)
        publish("editing-speed", lines, command.strip(), note, not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
