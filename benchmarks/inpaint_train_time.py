"""Seconds per training step of ``maskgen inpaint train`` (default config) on the CPU.

    python benchmarks/inpaint_train_time.py [--scenes DIR] [--threads 1,2] [--steps 10]
                                            [--preset cpu] [--no-record] [--note TEXT]

Loads the built-in scenes' training split (visible masks only) once, then for each torch thread
count times ``--steps`` steps of :class:`~maskgen.inpainting.training.InpaintTrainer` after two
warm-up steps (each step: one background and one instance batch, sampling included), and
projects the whole default run (``steps`` of the preset) against the issue's budget of 20 CPU
minutes. Data loading is timed separately. Records section ``inpaint-train-time``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="benchmarks/data/scenes")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--steps", type=int, default=10, help="timed steps per thread count")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)

    import torch
    from _record import publish

    from maskgen.engine import make_config
    from maskgen.inpainting.training import InpaintConfig, InpaintTrainer, load_training_data

    scenes = Path(args.scenes)
    cfg = make_config(
        InpaintConfig,
        args.preset,
        data=str(scenes / "annotations" / "train_coco.json"),
        images=str(scenes / "images" / "train"),
    )
    t = time.perf_counter()
    data = load_training_data(cfg)
    load_s = time.perf_counter() - t
    lines = [
        f"`maskgen inpaint train --preset {args.preset}` on `{scenes}` (train split: "
        f"{len(data.images)} images, {len(data.patches)} complete instances, {len(data.shapes)} "
        f"hole shapes; data loading {load_s:.1f} s). Width {cfg.width}, background crops "
        f"{cfg.crop_size} px, instance crops {cfg.instance_size} px, batch {cfg.batch_size} per "
        f"net, {cfg.steps} steps.",
        "",
        "| torch threads | s/step | projected run (min) | budget 20 min |",
        "| --- | --- | --- | --- |",
    ]
    for n in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(n)
        torch.manual_seed(0)
        trainer = InpaintTrainer(cfg, data, torch.device("cpu"))
        for s in range(2):
            trainer.step(s)
        t = time.perf_counter()
        for s in range(args.steps):
            trainer.step(2 + s)
        per = (time.perf_counter() - t) / args.steps
        total = (per * cfg.steps + load_s) / 60
        ok = "met" if total <= 20 else "not met"
        lines.append(f"| {n} | {per:.3f} | {total:.1f} | {ok} |")
    cmd = "python benchmarks/inpaint_train_time.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    publish("inpaint-train-time", lines, cmd.strip(), args.note or None, not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
