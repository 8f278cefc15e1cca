"""Amodal-VAE training time: all three stages on the built-in scenes' training split.

    python benchmarks/amodal_train_time.py [--scenes DIR] [--out RUN] [--threads N]
                                           [--from-run RUN] [--no-record] [--note TEXT]

Runs ``maskgen amodal train`` with the **default config** (``--preset cpu``) on
``SCENES/annotations/train_coco.json`` (visible masks only) with ``--val
SCENES/annotations/val_coco.json`` into a fresh run folder, then reports the per-stage times from
the run's ``summary.json`` (data preparation, stage 1-3, threshold tuning) and the wall time of
the whole command, against the target (issue 3): <= 15 minutes. ``--from-run`` reports an
existing finished run instead of training (e.g. the run that produced the shipped model; its
summary must come from one uninterrupted invocation). Records section ``amodal-train-time`` of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENES = "benchmarks/data/scenes"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default=DEFAULT_SCENES)
    p.add_argument("--out", default="runs/amodal_train_time", help="run folder (replaced)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the run")
    p.add_argument("--from-run", default=None, help="report this finished run instead")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)

    scenes = Path(args.scenes)
    cmd = [
        "maskgen", "amodal", "train",
        "--data", str(scenes / "annotations" / "train_coco.json"),
        "--val", str(scenes / "annotations" / "val_coco.json"),
        "--out", str(args.out),
    ]  # fmt: skip
    wall = None
    if args.from_run:
        run = Path(args.from_run)
    else:
        run = Path(args.out)
        if run.exists():
            shutil.rmtree(run)
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "maskgen", *cmd[1:]], env=env)
        wall = time.monotonic() - t
        if r.returncode != 0:
            print(f"training failed with exit status {r.returncode}", file=sys.stderr)
            return 1
    s = json.loads((run / "summary.json").read_text())
    if args.from_run:
        cmd = [
            "maskgen",
            "amodal",
            "train",
            "--data",
            s["data"],
            "--val",
            s["val"],
            "--out",
            str(run),
        ]
    st = s["stages"]
    if set(st) != {"stage1", "stage2", "stage3"}:
        print(f"{run}: summary does not hold all three stages from one invocation", file=sys.stderr)
        return 1
    total = s["total_seconds_this_invocation"]
    rows = [
        ("data preparation (decode, crops, complete rule)", s["data_seconds"], ""),
        *(
            (k, v["seconds"], f"{v['steps']} steps, {1000 * v['seconds'] / v['steps']:.0f} ms/step")
            for k, v in st.items()
        ),
        ("threshold tuning (validation synthetic occlusion)", s["threshold_seconds"], ""),
        ("**total (train function)**", total, ""),
    ]
    v = s["validation"]
    lines = [
        f"Command: `{' '.join(cmd)}` (default config: preset `{s['preset']}`, batch size from "
        f"the preset); {s['instances']} training instances, {s['complete_instances']} complete.",
        "",
        "| part | seconds | note |",
        "|---|---:|---|",
        *(f"| {a} | {b:.0f} | {c} |" for a, b, c in rows),
    ]
    if wall is not None:
        lines.append(f"| whole command (incl. start-up, reading JSON) | {wall:.0f} | |")
    minutes = (wall or total) / 60
    lines += [
        "",
        f"Target <= 15 min: **{'met' if minutes <= 15 else 'NOT met'}** ({minutes:.1f} min).",
        "",
        f"Validation (synthetic occlusion of held-out complete masks, region frame, prediction "
        f"restricted to occluders and OR-ed with the visible mask): threshold "
        f"{v['threshold']:.2f}; full IoU {v['at_threshold']['full_iou']:.3f}, invisible IoU "
        f"{v['at_threshold']['invisible_iou']:.3f}; at the paper's t = 0.1: "
        f"{v['at_paper_0.1']['full_iou']:.3f} / {v['at_paper_0.1']['invisible_iou']:.3f}; box "
        f"head mean box IoU {v['box_iou']:.3f} (the visible box alone: "
        f"{v.get('box_iou_of_visible_box', float('nan')):.3f}); with the true amodal box "
        f"{v['true_box_at_threshold']['full_iou']:.3f} / "
        f"{v['true_box_at_threshold']['invisible_iou']:.3f}.",
    ]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    command = "python benchmarks/amodal_train_time.py" + (
        f" --from-run {args.from_run}" if args.from_run else ""
    )
    publish("amodal-train-time", lines, command, note=args.note, record=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
