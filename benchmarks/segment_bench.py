"""Application 1 benchmark: adversarial teacher, distilled student and GrabCut on box crops.

    python benchmarks/segment_bench.py [--work benchmarks/data/segment] [--sets texture,flat,pedestrians]
        [--train-steps N] [--distill-steps N] [--speed] [--no-record]

For each set it (1) makes the data (``make_segmentation_set`` / ``make_pedestrian_set``, as
``maskgen data ...`` does) when missing, (2) trains the teacher with ``train_segmentation``
(default ``cpu`` preset) and distils it with ``distill`` -- the library's trainers on the one
training loop; both resume, so finished runs are reused --, (3) predicts the test crops with
teacher and student (``predict_folder``) and scores them and GrabCut with ``evaluate_masks``
(foreground IoU, background IoU, 2-class mIoU, pixel accuracy; dataset level = counts summed over
all test pixels; per-image mean beside it), and (4) draws a picture grid (input / GrabCut / raw
teacher / distilled student) under ``benchmarks/figures/``. ``--speed`` also times a few
iterations of the ``cpu`` and ``paper`` presets. Results go to section ``segment`` of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from maskgen.data.segmentation_sets import (
    find_vtest,
    load_mask_folder,
    make_pedestrian_set,
    make_segmentation_set,
)
from maskgen.engine import RunOptions, make_config
from maskgen.independence.distillation import DistillConfig, distill
from maskgen.independence.predict import evaluate_masks, grabcut_folder, predict_folder
from maskgen.independence.segmentation import SegmentConfig, train_segmentation

REPO = Path(__file__).resolve().parent.parent
FIG = REPO / "benchmarks" / "figures"
THREADS = 1  # the set runs; one thread, so CPU time ~ wall time on an idle core


def make_set(name: str, d: Path) -> None:
    if (d / "info.json").is_file():
        return
    print(f"+ data {name} -> {d}", file=sys.stderr, flush=True)
    if name == "pedestrians":
        video = find_vtest()
        if video is None:
            raise SystemExit("vtest.avi not found (install Debian's opencv-doc)")
        make_pedestrian_set(video, d, force=True)
    else:
        make_segmentation_set(d, variant=name, force=True)


def train_time(run: Path) -> float | None:
    """Sum of the run's wall time over its invocations (from metrics.jsonl 'time' resets)."""
    f = run / "metrics.jsonl"
    if not f.is_file():
        return None
    total, last = 0.0, 0.0
    for line in f.read_text().splitlines():
        t = json.loads(line)["time"]
        if t < last:
            total += last
        last = t
    return total + last


def median_spi(run: Path) -> float | None:
    vals = [
        json.loads(s).get("sec_per_iter") for s in (run / "metrics.jsonl").read_text().splitlines()
    ]
    vals = sorted(v for v in vals if v is not None)
    return vals[len(vals) // 2] if vals else None


def evaluate(pred: dict | Path, gt: Path, js: Path, where: str) -> dict:
    """``evaluate_masks`` of a prediction folder (or of GrabCut's masks), cached in ``js``."""
    if not js.is_file():
        if isinstance(pred, Path):
            pred = load_mask_folder(pred / "binary", what="prediction folder", strict=False)
        res = evaluate_masks(pred, load_mask_folder(gt), where)
        js.write_text(json.dumps(res, indent=2) + "\n")
    return json.loads(js.read_text())


def picture_grid(d: Path, preds: dict[str, Path], out_png: Path, n: int = 10) -> None:
    import numpy as np
    import torch

    from maskgen.core.io import read_image
    from maskgen.engine import save_image_grid

    names = sorted(p.stem for p in (d / "test" / "images").glob("*.png"))
    step = max(1, len(names) // n)
    pick = names[::step][:n]
    rows = [[read_image(d / "test" / "images" / f"{k}.png") / 255.0 for k in pick]]
    for folder in preds.values():
        rows.append(
            [np.repeat(read_image(folder / f"{k}.png", "L")[..., None] / 255.0, 3, 2) for k in pick]
        )
    x = torch.tensor(np.stack([im for r in rows for im in r]), dtype=torch.float32).permute(
        0, 3, 1, 2
    )
    save_image_grid(out_png, x, nrow=len(pick))


def train_pair(d: Path, teacher: Path, student: Path, train_steps, distill_steps) -> None:
    """Teacher and student runs (resumed or reused when already there)."""
    imgs, bgs = str(d / "train/images"), str(d / "backgrounds")
    cfg = make_config(SegmentConfig, "cpu", images=imgs, backgrounds=bgs, steps=train_steps)
    print(f"+ segment train -> {teacher}", file=sys.stderr, flush=True)
    train_segmentation(cfg, teacher, RunOptions(threads=THREADS))
    dcfg = make_config(DistillConfig, "cpu", teacher=str(teacher), steps=distill_steps)
    print(f"+ segment distill -> {student}", file=sys.stderr, flush=True)
    distill(dcfg, student, RunOptions(threads=THREADS))


def save_grabcut(masks: dict, folder: Path) -> None:
    from maskgen.core.io import write_image

    if not folder.is_dir():
        for n, m in masks.items():
            write_image(folder / f"{n}.png", m.astype("uint8") * 255)


def bench_set(name: str, work: Path, train_steps: int | None, distill_steps: int | None) -> dict:
    d = work / name
    make_set(name, d)
    teacher, student = work / f"{name}-teacher", work / f"{name}-student"
    train_pair(d, teacher, student, train_steps, distill_steps)
    res: dict = {
        "train_s": train_time(teacher),
        "distill_s": train_time(student),
        "train_spi": median_spi(teacher),
    }
    gt = d / "test" / "masks"
    for tag, run in (("teacher", teacher), ("student", student)):
        pred = work / f"{name}-pred-{tag}"
        if not (pred / "binary").is_dir():
            predict_folder(run, d / "test/images", pred, force=True)
        res[tag] = evaluate(pred, gt, work / f"{name}-eval-{tag}.json", str(pred / "binary"))
    gc = work / f"{name}-grabcut"
    js = work / f"{name}-eval-grabcut.json"
    if not js.is_file():
        masks = grabcut_folder(d / "test/images", inset=3)
        save_grabcut(masks, gc)
        evaluate(masks, gt, js, f"{d / 'test/images'} (grabcut)")
    res["grabcut"] = json.loads(js.read_text())
    FIG.mkdir(parents=True, exist_ok=True)
    picture_grid(
        d,
        {
            "grabcut": gc,
            "teacher": work / f"{name}-pred-teacher" / "soft",
            "student": work / f"{name}-pred-student" / "soft",
        },
        FIG / f"segment_{name}.png",
    )
    return res


def speed(work: Path) -> dict[str, float]:
    """Seconds per training iteration of the cpu and paper presets (a few steps each)."""
    out = {}
    d = work / "texture"
    make_set("texture", d)
    for preset, steps in (("cpu", 30), ("paper", 4)):
        run = work / f"speed-{preset}"
        cfg = make_config(
            SegmentConfig,
            preset,
            images=str(d / "train/images"),
            backgrounds=str(d / "backgrounds"),
            steps=steps,
        )
        every = steps // 2 if preset == "paper" else steps // 3
        t = time.monotonic()
        train_segmentation(cfg, run, RunOptions(log_every=every))
        print(f"speed {preset}: {time.monotonic() - t:.0f} s", file=sys.stderr)
        recs = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        out[preset] = min(r["sec_per_iter"] for r in recs[1:] or recs)  # skip the warm-up tick
    return out


def fmt(m: dict) -> str:
    a, b = m["dataset"], m["per_image_mean"]
    return f"{a['fg_iou']:.3f} | {a['bg_iou']:.3f} | {a['miou']:.3f} | {a['pixel_acc']:.3f} | {b['fg_iou']:.3f} | {b['miou']:.3f}"


NOTES = """
**What we learned about stability** (exploratory runs on the texture set, one CPU thread each while
other jobs shared the 2 cores; numbers from `/tmp` runs of `train_segmentation`, not re-run here):

- At 64x64 (UNet 16-32-64-64-64, D `app1-small`, batch 16) nothing localised within 600-1000
  steps: the soft mask sat at a uniform grey equal to the area target (the penalty with
  lambda = 1000 is satisfied by alpha = 0.25 everywhere) and the fg IoU of the top-27 % pixels was
  at chance (0.16). Variations that did not fix it in that budget: instance noise 0.1 (it hides
  the ghosting a grey mask causes from D), D lr 4e-4, hinge loss, the wider `app1-cpu` D, a
  binarisation term 2 * mean(alpha (1 - alpha)), and straight-through hard composites.
- A D-only probe explained why: an SN discriminator trained 300 steps to tell the real crops from
  crops with a random ellipse pasted from another crop onto another background stayed near
  D(real) 0.5 / D(fake) 0.45 on the texture set. D's learning, not G's, is the bottleneck.
- Training at 32x32 (4x fewer pixels, batch 32, 3000 steps) localised objects within a few
  hundred steps on all three sets; this is the `cpu` preset's resolution (it now trains
  6000 steps with flip test-time augmentation: RESULTS `independence-tuning-steps`). Masks are resized back to the crop
  size for evaluation. Kept from the stabilisers: a 300-step linear warm-up of lambda and an EMA
  (0.99) of the UNet for the saved teacher; instance noise is off by default.
- Pedestrians: D wins early (D(real) ~0.8, D(fake) ~0.2 throughout), yet G still learns person
  shapes; `detect_collapse` only fires when D(real) > 0.97 and D(fake) < 0.03 for 5 ticks.
- Distilling into a 64x64 student (the crops' own size; the 32x32 teacher's soft masks are
  upsampled) is what lifts quality: every set gains 0.13-0.25 fg IoU over its teacher. The
  composites' boundaries are exact at any resolution, so the student learns where a pasted
  region ends rather than copying the teacher's blur. A 400-step student of the 2000-step
  texture teacher already reached 0.669 fg IoU (teacher 0.455).
- The paper's settings stay one flag away: `--preset paper` (Table 1 nets at 128x128, batch 64,
  no warm-up, noise, EMA or extra terms).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="benchmarks/data/segment")
    ap.add_argument("--sets", default="texture,flat,pedestrians")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--distill-steps", type=int, default=None)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args(argv)
    work = (REPO / a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[1]
    results = {
        s: bench_set(s, work, a.train_steps, a.distill_steps) for s in a.sets.split(",") if s
    }
    load_after = os.getloadavg()[1]
    lines = [
        "Foreground segmentation from box crops (independence prior, application 1). Test crops of each set;",
        "fixed polarity (foreground = predicted mask, never flipped); **dataset** = counts summed over all test",
        "pixels, **mean** = per-image mean. Teacher = adversarially trained UNet (EMA), student = after data",
        "distillation (eq. 8), GrabCut = OpenCV GrabCut from a rectangle 3 px inside the crop.",
        "Pedestrian masks are a rough background-subtraction reference, not ground truth.",
        "",
        "| set | method | fg IoU | bg IoU | mIoU (2-class) | pixel acc | fg IoU (mean) | mIoU (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s, r in results.items():
        for tag in ("grabcut", "teacher", "student"):
            lines.append(f"| {s} | {tag} | {fmt(r[tag])} |")
    lines += [
        "",
        "Paper (Caltech-UCSD birds, after distillation): mIoU 0.78 -- different data; shown for scale only.",
        "",
    ]
    lines += ["| target | set | value | met |", "|---|---|---|---|"]
    for s_, r in results.items():
        st, te, gc = (r[k]["dataset"]["fg_iou"] for k in ("student", "teacher", "grabcut"))
        if s_ != "pedestrians":
            met = "yes" if st >= gc else "no"
            lines.append(f"| student fg IoU >= GrabCut's | {s_} | {st:.3f} vs {gc:.3f} | {met} |")
        met = "yes" if st > te else "no"
        lines.append(
            f"| distillation improves on the teacher | {s_} | {st:.3f} vs {te:.3f} | {met} |"
        )
    lines += [
        "",
        f"Timings: the set runs use {THREADS} torch thread; 5-minute load average "
        f"{load_before:.1f} before them and {load_after:.1f} after (above {THREADS} means other "
        "jobs shared the cores and wall times are inflated). The `--speed` rows use torch's "
        "default threads.",
        "",
        "| set | train wall (s) | distill wall (s) | train s/iter (median tick) |",
        "|---|---|---|---|",
    ]
    for s, r in results.items():
        lines.append(
            f"| {s} | {r['train_s'] or 0:.0f} | {r['distill_s'] or 0:.0f} | {r['train_spi'] or 0:.3f} |"
        )
    if a.speed:
        sp = speed(work)
        lines += [
            "",
            "| preset | s/iter (cpu: batch 32 at 32x32; paper: batch 64 at 128x128) |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.3f} |" for k, v in sp.items()]
    lines += [""] + [f"![{s}](figures/segment_{s}.png)" for s in results]
    lines.append(
        "Rows of each figure: input, GrabCut, raw teacher (soft), distilled student (soft)."
    )
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    cmd = "python benchmarks/segment_bench.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    publish("segment", lines, command=cmd.strip(), note=NOTES, record=not a.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
