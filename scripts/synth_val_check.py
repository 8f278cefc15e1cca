"""A quick check of a mask-synthesis model on held-out unoccluded instances (for choosing settings).

    python scripts/synth_val_check.py MODEL [MODEL ...] [--data VAL.json --images DIR] [--n 150]
        [--texture none,transfer] [--texture-patch 5,9] [--texture-sigma 1,2]
        [--texture-guide 0,1] [--texture-seam cut,straight] [--texture-seed 0]
        [--record [--section NAME]]

For each unoccluded instance (the stage-1 rule) of the given split -- by default the built-in
scenes' **validation** split (the test split is the re-shape benchmark's) -- with full mask ``M``:
the visible pixels are ``M & D`` for a random deformation ``D`` of ``M`` (drawn in the instance's
window, as in training) and the new mask is ``M``, so the truth inside the new mask is known.
Prints, for each model, the mean-colour fill (the visible pixels' mean) and the coarse fill
(push-pull, what an untrained generator returns): the mean absolute error (0-255) inside the new
mask and on its hidden part (``M & ~D``), and on the hidden part the texture measures of
:mod:`maskgen.synthesis.texture` -- high-frequency energy (the truth's printed beside it) and the
patch sliced Wasserstein distance to the truth (means over the instances where they are defined).
``MODEL`` is a model or run folder, or ``builtin``; each model runs with every combination of
the texture settings given (comma lists; :class:`maskgen.synthesis.transfer.TextureOptions`,
``none`` once), with its CPU milliseconds per instance (the whole ``synthesize`` call).
``--record`` writes the table to benchmarks/RESULTS.md as section ``--section`` (default
``reshape-texture-val``).

Choosing the texture default (fixed before looking at test numbers; printed as "Chosen"): per
``transfer`` setting (patch, sigma, guide, seam) the means over the texture seeds given; the lowest
mean patch SWD wins; it becomes the default only if its SWD is below the smooth (``none``)
synthesis' and its HF energy closer to the truth's.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from maskgen.data.loader import load_dataset
from maskgen.inpainting.samplers import complete_instances, cut, instance_window
from maskgen.synthesis import MaskSynthesizer, load_synthesizer
from maskgen.synthesis.data import random_deformation
from maskgen.synthesis.model import SpadeGenerator, SynthNetConfig
from maskgen.synthesis.texture import hf_energy, patch_swd, texture_region
from maskgen.synthesis.transfer import TextureOptions

REPO = Path(__file__).resolve().parent.parent


def cases(data: str, images: str, n: int, seed: int):
    """``(image, visible, new)`` per held-out instance (at most ``n``)."""
    from maskgen.core.io import read_image

    rng = np.random.default_rng(seed)
    ds = load_dataset(data, image_root=images)
    out = []
    for rec in ds.images:
        vis = [rec.visible_mask(i) for i in rec.instances]
        for m, ok in zip(vis, complete_instances(vis), strict=True):
            if not ok:
                continue
            win = instance_window(m)
            local = cut(m, win)
            d = random_deformation(rng, local)
            full = np.zeros_like(m)
            x0, y0, x1, y1 = win
            h, w = m.shape
            ya, yb, xa, xb = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
            full[ya:yb, xa:xb] = d[ya - y0 : yb - y0, xa - x0 : xb - x0]
            visible = m & full
            if visible.sum() < 0.15 * m.sum() or (m & ~visible).sum() < 10:
                continue
            out.append((read_image(f"{images}/{rec.file_name}"), visible, m))
            if len(out) >= n:
                return out
    return out


def mae(pred: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(pred[where].astype(np.float64) - truth[where]).mean())


def variants(args: argparse.Namespace) -> list[TextureOptions]:
    """Every combination of the texture settings' comma lists (``none`` once)."""
    out = []
    if "none" in args.texture.split(","):
        out.append(TextureOptions(texture="none"))
    if "transfer" in args.texture.split(","):
        lists = [
            [int(v) for v in args.texture_patch.split(",")],
            [float(v) for v in args.texture_sigma.split(",")],
            [float(v) for v in args.texture_guide.split(",")],
            [int(v) for v in args.texture_seed.split(",")],
            args.texture_seam.split(","),
        ]
        for p, s, g, seed, seam in itertools.product(*lists):
            out.append(TextureOptions("transfer", p, s, g, seed, seam))
    return out


def label(opts: TextureOptions) -> str:
    if opts.texture == "none":
        return "none"
    return (
        f"transfer p{opts.texture_patch} s{opts.texture_sigma:g} g{opts.texture_guide:g} "
        f"{opts.texture_seam} seed{opts.texture_seed}"
    )


def score(fn, data) -> tuple[float, float, float, float, float]:  # noqa: ANN001
    """``(MAE in the new mask, MAE on its hidden part, HF, SWD, CPU ms per instance)``."""
    full, hidden, hf, swd = [], [], [], []
    t0 = time.process_time()
    preds = [fn(image, visible, new) for image, visible, new in data]
    ms = 1000 * (time.process_time() - t0) / max(len(data), 1)
    for pred, (image, visible, new) in zip(preds, data, strict=True):
        region = texture_region(new, visible)
        full.append(mae(pred, image, new))
        hidden.append(mae(pred, image, region))
        hf.append(hf_energy(pred, region))
        swd.append(patch_swd(pred, image, region))
    hf_m = float(np.mean([v for v in hf if v is not None]))
    swd_m = float(np.mean([v for v in swd if v is not None]))
    return float(np.mean(full)), float(np.mean(hidden)), hf_m, swd_m, ms


def choose(
    spec: str, scores: dict[str, tuple[float, ...]], opts: list[TextureOptions], truth_hf: float
) -> list[str]:
    """The module docstring's rule: per transfer setting the means over its seeds; the lowest
    mean SWD is chosen; it beats ``none`` when its SWD is lower and its HF closer to the truth."""
    groups: dict[tuple, list[tuple[float, ...]]] = {}
    for o in opts:
        if o.texture == "transfer":
            key = (o.texture_patch, o.texture_sigma, o.texture_guide, o.texture_seam)
            groups.setdefault(key, []).append(scores[f"{spec}, texture {label(o)}"])
    if not groups:
        return []
    lines = [
        f"{spec}, transfer settings, means over the texture seeds:",
        "",
        "| patch | sigma | guide | seam | seeds | MAE new mask | MAE hidden | HF | SWD |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    means = {k: np.mean(v, axis=0) for k, v in groups.items()}
    for (p, s, g, seam), m in means.items():
        lines.append(
            f"| {p} | {s:g} | {g:g} | {seam} | {len(groups[(p, s, g, seam)])} | {m[0]:.2f} | "
            f"{m[1]:.2f} | "
            f"{m[2]:.2f} | {m[3]:.2f} |"
        )
    best = min(means, key=lambda k: means[k][3])
    m = means[best]
    verdict = ""
    none = scores.get(f"{spec}, texture none")
    if none is not None:
        wins = m[3] < none[3] and abs(m[2] - truth_hf) < abs(none[2] - truth_hf)
        verdict = f"; against no texture (HF {none[2]:.2f}, SWD {none[3]:.2f}): " + (
            "better on both, so the default" if wins else "NOT better on both"
        )
    return lines + [
        "",
        f"Chosen (lowest mean SWD): patch {best[0]}, sigma {best[1]:g}, guide {best[2]:g}, "
        f"seam {best[3]} -- "
        f"HF {m[2]:.2f} (truth {truth_hf:.2f}), SWD {m[3]:.2f}, MAE hidden {m[1]:.2f}{verdict}.",
    ]


def main(argv: list[str] | None = None) -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--data", default="benchmarks/data/scenes/annotations/val_coco.json")
    p.add_argument("--images", default="benchmarks/data/scenes/images/val")
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture", default="none,transfer")
    p.add_argument("--texture-patch", default=str(TextureOptions.texture_patch))
    p.add_argument("--texture-sigma", default=str(TextureOptions.texture_sigma))
    p.add_argument("--texture-guide", default=str(TextureOptions.texture_guide))
    p.add_argument("--texture-seed", default=str(TextureOptions.texture_seed))
    p.add_argument("--texture-seam", default=TextureOptions.texture_seam)
    p.add_argument("--record", action="store_true", help="record the table in RESULTS.md")
    p.add_argument("--section", default="reshape-texture-val", help="its section name")
    args = p.parse_args(argv)
    data = cases(args.data, args.images, args.n, args.seed)
    none = TextureOptions(texture="none")
    coarse = MaskSynthesizer(SpadeGenerator(SynthNetConfig()), texture=none)  # the coarse fill

    def mean_colour(image: np.ndarray, visible: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[new & ~visible] = image[visible].mean(axis=0).round()
        return out

    methods = {"mean-colour fill": mean_colour, "coarse fill (push-pull)": coarse.synthesize}
    for spec in args.models:
        for opts in variants(args):
            methods[f"{spec}, texture {label(opts)}"] = load_synthesizer(
                spec, texture=opts
            ).synthesize
    truth_hf = [hf_energy(image, texture_region(new, visible)) for image, visible, new in data]
    truth_hf = np.mean([v for v in truth_hf if v is not None])
    lines = [
        f"{len(data)} held-out unoccluded instances of {args.data} (visible part: the instance "
        f"cut by a random deformation of its mask, seed {args.seed}; the new mask: the whole "
        f"instance). MAE (0-255) inside the new mask and on its hidden part; on the hidden part: "
        f"HF energy (truth **{truth_hf:.2f}**; closer is better) and patch SWD to the truth "
        "(lower is better); CPU ms per instance (whole call; machine shared).",
        "",
        "| method | MAE new mask | MAE hidden | HF | SWD | CPU ms / instance |",
        "|---|---|---|---|---|---|",
    ]
    scores = {}
    for name, fn in methods.items():
        scores[name] = f, h, hf, swd, ms = score(fn, data)
        lines.append(f"| {name} | {f:.2f} | {h:.2f} | {hf:.2f} | {swd:.2f} | {ms:.0f} |")
        print(lines[-1], flush=True)
    for spec in args.models:
        lines += ["", *choose(spec, scores, variants(args), float(truth_hf))]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    command = "python scripts/synth_val_check.py " + " ".join(argv or sys.argv[1:])
    publish(args.section, lines, command, None, args.record)


if __name__ == "__main__":
    main()
