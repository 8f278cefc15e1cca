"""Learned inpainter (supplementary §3.3) vs OpenCV Telea: mean absolute error inside holes.

    python benchmarks/inpaint_quality.py [--scenes DIR] [--split test] [--inpainter builtin]
                                         [--cases 200] [--seed 0] [--no-record] [--note TEXT]

Held-out images (``SCENES/images/SPLIT``, visible masks of ``SCENES/annotations/SPLIT_coco.json``;
the built-in test scenes use shapes never seen in training) get synthetic holes of both kinds,
built at the image's own scale as the training samplers build them
(:mod:`maskgen.inpainting.samplers`):

- **background**: a random instance mask of the split, placed at a random position, dilated by
  5-25 px (at 256 px); error on ``hole & background`` (what lies under objects is unknown), known
  pixels = background outside the hole;
- **instance**: a complete instance (the stage-1 rule), occluded by another instance's mask
  placed over it; error on ``hole = occluder & instance``, known = the rest of the instance.

Hole pixels of the input are overwritten with grey, so no inpainter can read the truth. Both
inpainters get the same cases. MAE in 0-255 units, over hole pixels and channels (per case, then
the mean over cases), also split into flat-colour and textured regions, with three oracle
fills that know the hidden pixels as a yardstick. The targets (issue 13, measured later on edit
cases): learned/Telea <= 0.75 on erased background, <= 0.6 on revealed-object pixels. Records
section ``inpaint-quality``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
TARGETS = {"background": 0.75, "instance": 0.6}
FLAT_STD = 6.0  # known pixels with a smaller mean channel std count as a flat colour


def _cases(scenes: Path, split: str, n: int, seed: int) -> list[dict]:
    """``n`` cases of each kind: dicts with image, hole, known, (amodal, label), kind."""
    from maskgen.core.io import read_image
    from maskgen.core.masks import dilate
    from maskgen.data.loader import load_dataset
    from maskgen.inpainting.samplers import (
        MIN_INSTANCE_PIXELS,
        complete_instances,
        mask_box,
        place_shape,
    )

    ds = load_dataset(scenes / "annotations" / f"{split}_coco.json")
    rng = np.random.default_rng(seed)
    recs = [r for r in ds.images if r.instances]
    loaded, shapes, complete = [], [], []
    for r in recs:
        img = read_image(scenes / "images" / split / r.file_name)
        vis = [r.visible_mask(i) for i in r.instances]
        loaded.append((img, vis))
        for v, inst, ok in zip(vis, r.instances, complete_instances(vis), strict=True):
            if v.sum() >= MIN_INSTANCE_PIXELS:
                x0, y0, x1, y1 = mask_box(v)
                shapes.append(v[y0:y1, x0:x1])
            if ok:
                complete.append((len(loaded) - 1, v, int(inst.category_id)))
    out: list[dict] = []
    while sum(c["kind"] == "background" for c in out) < n:
        img, vis = loaded[int(rng.integers(len(loaded)))]
        h, w = img.shape[:2]
        bg = ~np.any(vis, axis=0)
        shape = shapes[int(rng.integers(len(shapes)))]
        hole = place_shape(
            rng, shape, max(shape.shape), (h, w), (rng.uniform(0, w), rng.uniform(0, h))
        )
        hole = dilate(hole, int(round(rng.uniform(5, 25) * min(h, w) / 256)))
        if (hole & bg).sum() >= 100 and (bg & ~hole).sum() >= 100:
            out.append(
                dict(kind="background", image=img, hole=hole, known=bg & ~hole, truth=hole & bg)
            )
    while sum(c["kind"] == "instance" for c in out) < n and complete:
        i, m, label = complete[int(rng.integers(len(complete)))]
        img = loaded[i][0]
        ys, xs = np.nonzero(m)
        k = int(rng.integers(len(ys)))
        side = max(mask_box(m)[2] - mask_box(m)[0], mask_box(m)[3] - mask_box(m)[1])
        side *= rng.uniform(0.3, 1.0)
        centre = (xs[k] + rng.uniform(-0.5, 0.5) * side, ys[k] + rng.uniform(-0.5, 0.5) * side)
        occ = place_shape(rng, shapes[int(rng.integers(len(shapes)))], side, m.shape, centre)
        hole = occ & m
        if 0.1 <= hole.sum() / m.sum() <= 0.6:
            out.append(
                dict(
                    kind="instance",
                    image=img,
                    hole=hole,
                    known=m & ~hole,
                    amodal=m,
                    label=label,
                    truth=hole,
                )
            )
    return out


def _run(inpainter, case: dict) -> tuple[float, float]:
    """(MAE on the case's truth pixels, seconds) of one call."""
    img = case["image"].copy()
    img[case["hole"]] = 128  # nobody may read the truth
    t = time.perf_counter()
    if case["kind"] == "background":
        out = inpainter.inpaint_background(img, case["hole"], case["known"])
    else:
        out = inpainter.inpaint_instance(
            img, case["hole"], case["known"], case["amodal"], case["label"]
        )
    dt = time.perf_counter() - t
    return _mae(out, case), dt


def _mae(out: np.ndarray, case: dict) -> float:
    sel = case["truth"]
    return float(np.abs(out[sel].astype(np.float64) - case["image"][sel].astype(np.float64)).mean())


def _oracle(case: dict, sigma: float) -> float:
    """MAE of a fill that knows the truth: its hole pixels blurred by a Gaussian of ``sigma`` px
    (normalised over the hole), or their per-channel median when ``sigma`` is 0."""
    import cv2

    sel, out = case["truth"], case["image"].copy()
    if sigma == 0:
        out[sel] = np.median(case["image"][sel], axis=0)
    else:
        w = sel.astype(np.float32)
        num = cv2.GaussianBlur(case["image"].astype(np.float32) * w[..., None], (0, 0), sigma)
        den = np.maximum(cv2.GaussianBlur(w, (0, 0), sigma), 1e-6)[..., None]
        out[sel] = (num / den)[sel].round().clip(0, 255)
    return _mae(out, case)


def _flat(case: dict) -> bool:
    """Whether the known pixels look like a flat colour with noise (mean channel std < 6)."""
    return float(case["image"][case["known"]].astype(np.float64).std(axis=0).mean()) < FLAT_STD


def _kind_rows(kind: str, sub: list[dict], learned, telea) -> list[str]:  # noqa: ANN001
    a = np.array([_run(learned, c) for c in sub])
    b = np.array([_run(telea, c) for c in sub])
    flat = np.array([_flat(c) for c in sub])
    rows = [("learned", a[:, 0], 1e3 * a[:, 1].mean()), ("Telea", b[:, 0], 1e3 * b[:, 1].mean())]
    for name, sigma in (("oracle: best constant colour", 0), ("oracle: truth blurred, 8 px", 8),
                        ("oracle: truth blurred, 4 px", 4)):  # fmt: skip
        rows.append((name, np.array([_oracle(c, sigma) for c in sub]), None))
    tel = b[:, 0].mean()
    out = []
    for name, e, ms in rows:
        target = ""
        if name == "learned":
            ok = "met" if e.mean() / tel <= TARGETS[kind] else "not met"
            target = f"<= {TARGETS[kind]} ({ok})"
        out.append(
            f"| {kind} | {name} | {e.mean():.2f} | {e[flat].mean():.2f} | {e[~flat].mean():.2f} | "
            f"{e.mean() / tel:.3f} | {target} | {'' if ms is None else f'{ms:.1f}'} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="benchmarks/data/scenes")
    p.add_argument("--split", default="test")
    p.add_argument("--inpainter", default="builtin", help="builtin or a model/run folder")
    p.add_argument("--cases", type=int, default=200, help="cases of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)

    import torch
    from _record import publish

    from maskgen.inpainting import TeleaInpainter, load_inpainter

    torch.set_num_threads(args.threads)
    learned, telea = load_inpainter(args.inpainter), TeleaInpainter()
    cases = _cases(Path(args.scenes), args.split, args.cases, args.seed)
    n_flat = {k: sum(_flat(c) for c in cases if c["kind"] == k) for k in TARGETS}
    lines = [
        f"Inpainter `{args.inpainter}` vs Telea on {args.split} images of `{args.scenes}`, "
        f"{args.cases} synthetic holes of each kind (seed {args.seed}); MAE in 0-255 units inside "
        f"the hole, also split into flat-colour regions (known pixels' std < {FLAT_STD}: "
        f"{n_flat['background']} background, {n_flat['instance']} instance cases) and textured "
        "ones. The oracle rows know the hidden pixels (a yardstick, not a method): the best "
        "single colour, and the truth blurred by a Gaussian of 8 or 4 px -- how much detail a "
        "fill must recover to reach a ratio.",
        "",
        "| hole | fill | MAE | MAE flat | MAE textured | / Telea | target | ms/call |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in TARGETS:
        lines += _kind_rows(kind, [c for c in cases if c["kind"] == kind], learned, telea)
    cmd = "python benchmarks/inpaint_quality.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    publish("inpaint-quality", lines, cmd.strip(), args.note or None, not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
