"""A quick check of a mask-synthesis model on held-out unoccluded instances (for choosing settings).

    python scripts/synth_val_check.py MODEL [MODEL ...] [--data VAL.json --images DIR] [--n 150]

For each unoccluded instance (the stage-1 rule) of the given split -- by default the built-in
scenes' **validation** split (the test split is the re-shape benchmark's) -- with full mask ``M``:
the visible pixels are ``M & D`` for a random deformation ``D`` of ``M`` (drawn in the instance's
window, as in training) and the new mask is ``M``, so the truth inside the new mask is known.
Prints, for each model, the mean-colour fill (the visible pixels' mean) and the coarse fill
(push-pull, what an untrained generator returns): the mean absolute error (0-255) inside the new
mask and on its hidden part (``M & ~D``), and on the hidden part the texture measures of
:mod:`maskgen.synthesis.texture` -- high-frequency energy (the truth's printed beside it) and the
patch sliced Wasserstein distance to the truth (means over the instances where they are defined).
``MODEL`` is a model or run folder, or ``builtin``.
"""

from __future__ import annotations

import argparse

import numpy as np

from maskgen.data.loader import load_dataset
from maskgen.inpainting.samplers import complete_instances, cut, instance_window
from maskgen.synthesis import MaskSynthesizer, load_synthesizer
from maskgen.synthesis.data import random_deformation
from maskgen.synthesis.model import SpadeGenerator, SynthNetConfig
from maskgen.synthesis.texture import hf_energy, patch_swd, texture_region


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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--data", default="benchmarks/data/scenes/annotations/val_coco.json")
    p.add_argument("--images", default="benchmarks/data/scenes/images/val")
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = cases(args.data, args.images, args.n, args.seed)
    coarse = MaskSynthesizer(SpadeGenerator(SynthNetConfig()))  # zero residual: the coarse fill
    methods = {"coarse fill (push-pull)": coarse.synthesize}
    for spec in args.models:
        methods[spec] = load_synthesizer(spec).synthesize

    def mean_colour(image: np.ndarray, visible: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[new & ~visible] = image[visible].mean(axis=0).round()
        return out

    methods = {"mean-colour fill": mean_colour} | methods
    truth_hf = [hf_energy(image, texture_region(new, visible)) for image, visible, new in data]
    truth_hf = np.mean([v for v in truth_hf if v is not None])
    print(
        f"{len(data)} held-out instances; MAE (0-255) inside the new mask / on its hidden part; "
        f"on the hidden part: HF energy (truth {truth_hf:.2f}) and patch SWD to the truth"
    )
    for name, fn in methods.items():
        full, hidden, hf, swd = [], [], [], []
        for image, visible, new in data:
            pred = fn(image, visible, new)
            region = texture_region(new, visible)
            full.append(mae(pred, image, new))
            hidden.append(mae(pred, image, region))
            hf.append(hf_energy(pred, region))
            swd.append(patch_swd(pred, image, region))
        hf_m = np.mean([v for v in hf if v is not None])
        swd_m = np.mean([v for v in swd if v is not None])
        print(
            f"  {name:40s} {np.mean(full):6.2f} / {np.mean(hidden):6.2f}   "
            f"HF {hf_m:6.2f}  SWD {swd_m:6.2f}"
        )


if __name__ == "__main__":
    main()
