"""Re-shape benchmark (issue 14): an instance's appearance rendered into a new mask, against the
exact targets of the built-in test scenes (:mod:`maskgen.data.reshape_cases`).

    python benchmarks/reshape_bench.py [--scenes DIR] [--synth builtin|MODEL|none]
                                       [--texture transfer|none] [--texture-patch P ...]
                                       [--model AMODAL_MODEL] [--max-instances N]
                                       [--figures DIR] [--no-record]

Cases: every eligible instance of the test split (truly unoccluded, off the border, apart from
other shapes) re-shaped by each kind: non-rigid ``shape`` (another shape of its class),
``tps`` (thin-plate deformation of its mask), ``sample`` (its first Amodal-VAE posterior sample
that differs from its mask, shipped model, seed 0); rigid ``scale``, ``rotate``, ``flip``.

Methods (:mod:`maskgen.editing.reshape`), each compared with the target inside the new shape's
visible pixels (``new_visible``): MAE (0-255, mean over RGB; mean over cases) and PSNR (dB, from
each case's MSE; mean over cases): **synthesis** (``--synth``, as the editor uses it: the
instance's own pixels kept where the new mask covers them, with the ``--texture*`` settings of
:class:`maskgen.synthesis.transfer.TextureOptions`, by default the exemplar texture transfer),
**smooth synthesis** (the same with ``--texture none``: the generator's own output, shown when
the synthesis has texture transfer), **generator only** (the synthesis with ``keep_visible``
off, when it has that switch), **mean fill**, **warp**
(outline thin-plate for non-rigid, the exact affine map for rigid), and the reference
**known + mean** (the image's pixels where the new mask overlaps the old one, mean elsewhere:
exact where the material does not move, which only a method that is told so can use), and
**push-pull** (the same with a smooth fill of the visible colours: the synthesizer's coarse
input, so the gap to it is what the generator adds). The
target: synthesis MAE <= 0.8 x min(mean fill, warp) over the non-rigid cases. Rigid cases are
reported with the editor's pick (warp).

Texture (:mod:`maskgen.synthesis.texture`), on the pixels where a method must invent the
appearance -- the new shape's visible pixels minus the old visible ones, where kept pixels cannot
help -- because MAE rewards a smooth fill there: **HF energy** (std of the grey Laplacian; the
**truth**'s beside the methods', closer is better) and **patch SWD** (sliced Wasserstein
distance between the method's and the truth's mean-removed 5 x 5 patches: texture, not colour;
0 for the truth). Means over the cases where the region is big enough for them. The CPU
milliseconds per ``synthesize`` call (one instance, the shipped model's 64 px crops; texture
transfer at image resolution) are given for the synthesis and the smooth synthesis.

Figures (``--figures``, default benchmarks/figures): ``reshape_one_instance.png`` (one instance
re-shaped every way, a shape from the Amodal-VAE prior included: rows truth, synthesis, smooth
synthesis, warp, mean fill) and
``reshape_restyle.png`` (several instances re-styled into one mask: rows the instance, truth,
synthesis, smooth synthesis).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
METHODS = (
    "synthesis", "smooth synthesis", "generator only", "mean fill", "warp", "known + mean",
    "push-pull",
)  # fmt: skip
KIND_ORDER = ("shape", "tps", "sample", "scale", "rotate", "flip")
NONRIGID = ("shape", "tps", "sample")
FIGURE_MIN_AREA = 1200  # px: the one-instance figure shows the first textured instance this big


def errors(out: np.ndarray, target: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """``(MAE, PSNR)`` of ``out`` against ``target`` on the pixels of ``m``."""
    d = out[m].astype(np.float64) - target[m].astype(np.float64)
    mse = float((d**2).mean())
    return float(np.abs(d).mean()), 10 * np.log10(255.0**2 / max(mse, 1e-10))


def texture_scores(
    outs: dict[str, np.ndarray], case: Any
) -> tuple[float | None, dict[str, tuple[float | None, float | None]]]:
    """``(truth HF energy, {method: (HF energy, patch SWD)})`` on the case's texture region
    (``None`` where it is too small for the measure)."""
    from maskgen.synthesis.texture import hf_energy, patch_swd, texture_region

    region = texture_region(case.new_visible, case.visible)
    scores = {
        name: (hf_energy(out, region), patch_swd(out, case.target, region))
        for name, out in outs.items()
    }
    return hf_energy(case.target, region), scores


def run_methods(
    case: Any, synth: Any, smooth: Any = None, clock: dict[str, list[float]] | None = None
) -> dict[str, np.ndarray]:
    """Every method's output on ``case``; ``smooth`` the synthesizer without texture transfer
    (None: not run); ``clock`` collects the CPU seconds of the synthesis calls."""
    from maskgen.editing.reshape import known_plus_mean, mean_fill, push_pull_fill, warp_fill

    out = {
        "mean fill": mean_fill(case.image, case.visible, case.new_mask),
        "warp": warp_fill(case.image, case.visible, case.new_mask, case.transform),
        "known + mean": known_plus_mean(case.image, case.visible, case.new_mask),
        "push-pull": push_pull_fill(case.image, case.visible, case.new_mask),
    }
    for name, syn in (("synthesis", synth), ("smooth synthesis", smooth)):
        if syn is not None:
            t0 = time.process_time()
            out[name] = np.asarray(syn.synthesize(case.image, case.visible, case.new_mask))
            if clock is not None:
                clock[name].append(time.process_time() - t0)
    if synth is not None and getattr(synth, "keep_visible", False):  # its own pixels everywhere
        synth.keep_visible = False
        try:
            out["generator only"] = np.asarray(
                synth.synthesize(case.image, case.visible, case.new_mask)
            )
        finally:
            synth.keep_visible = True
    return out


def posterior_source(predictor: Any):  # noqa: ANN201
    """``samples(annotated, k)`` for :func:`reshape_cases`: instance ``k``'s posterior samples
    (4, seed 0, not restricted to occluders: an unoccluded instance's restricted samples are its
    own mask), one completion call per image."""
    cache: list = [None, None]  # (the image's masks, their completions)

    def samples(annotated: np.ndarray, k: int) -> list[np.ndarray]:
        if cache[0] is not annotated:
            comps = predictor.complete_image(
                annotated, samples=4, seed=0, restrict_to_occluders=False
            )
            cache[:] = [annotated, comps]
        return list(cache[1][k].samples)

    return samples


def bench(
    args: argparse.Namespace, synth: Any, predictor: Any, smooth: Any = None
) -> tuple[list[str], list]:
    from maskgen.data.reshape_cases import KINDS, reshape_cases

    mae: dict[tuple[str, str], list[float]] = defaultdict(list)
    psnr: dict[tuple[str, str], list[float]] = defaultdict(list)
    tex: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    clock: dict[str, list[float]] = defaultdict(list)
    keep: list = []  # the cases of the figure's instance
    figure_key = None
    ann_seen: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    source = posterior_source(predictor) if predictor is not None else None
    for case in reshape_cases(args.scenes, "test", KINDS, samples=source):
        key = (case.image_id, case.ann_id)
        if key not in ann_seen:
            if args.max_instances is not None and len(ann_seen) >= args.max_instances:
                break
            ann_seen.append(key)
        outs = run_methods(case, synth, smooth, clock)
        for name, out in outs.items():
            e = errors(out, case.target, case.new_visible)
            mae[(case.kind, name)].append(e[0])
            psnr[(case.kind, name)].append(e[1])
        truth_hf, scores = texture_scores(outs, case)
        if truth_hf is not None:
            tex[(case.kind, "truth", "hf")].append(truth_hf)
        for name, (hf, swd) in scores.items():
            if hf is not None:
                tex[(case.kind, name, "hf")].append(hf)
            if swd is not None:
                tex[(case.kind, name, "swd")].append(swd)
        textured = case.extra.get("material") == "texture"
        if figure_key is None and textured and case.visible.sum() >= FIGURE_MIN_AREA:
            figure_key = key  # the first large textured instance
        if key == figure_key:
            keep.append((case, outs))
    seconds = time.perf_counter() - t0
    lines = table(mae, psnr, synth is not None, len(ann_seen), seconds)
    speed = [
        f"{name}: {1000 * np.mean(clock[name]):.0f} CPU ms per instance"
        for name in ("synthesis", "smooth synthesis")
        if clock[name]
    ]
    tail = ["", "Speed (machine shared): " + "; ".join(speed) + "."] if speed else []
    return lines + [""] + texture_table(tex) + tail, keep


def table(mae, psnr, with_synth: bool, n_inst: int, seconds: float) -> list[str]:  # noqa: ANN001
    methods = [m for m in METHODS if mae[("tps", m)] or mae[("flip", m)]]
    lines = [
        f"{n_inst} test instances; {seconds / 60:.1f} min for cases + methods.",
        "",
        "| kind | cases | " + " | ".join(f"{m} MAE / PSNR" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]

    def row(label: str, kinds: tuple[str, ...]) -> str:
        n = sum(len(mae[(k, "mean fill")]) for k in kinds)
        cells = []
        for m in methods:
            a = [v for k in kinds for v in mae[(k, m)]]
            p = [v for k in kinds for v in psnr[(k, m)]]
            cells.append(f"{np.mean(a):.2f} / {np.mean(p):.1f}" if a else "-")
        return f"| {label} | {n} | " + " | ".join(cells) + " |"

    for k in KIND_ORDER:
        if mae[(k, "mean fill")]:
            lines.append(row(k, (k,)))
    nonrigid = tuple(k for k in NONRIGID if mae[(k, "mean fill")])
    rigid = tuple(k for k in KIND_ORDER if k not in NONRIGID and mae[(k, "mean fill")])
    lines.append(row("**all non-rigid**", nonrigid))
    lines.append(row("**all rigid**", rigid))
    base = min(
        np.mean([v for k in nonrigid for v in mae[(k, "mean fill")]]),
        np.mean([v for k in nonrigid for v in mae[(k, "warp")]]),
    )
    lines.append("")
    if with_synth:
        s = np.mean([v for k in nonrigid for v in mae[(k, "synthesis")]])
        verdict = "met" if s <= 0.8 * base else "NOT met"
        lines.append(
            f"Non-rigid: synthesis MAE / min(mean fill, warp) = {s:.2f} / {base:.2f} = "
            f"**{s / base:.2f}** (target <= 0.8: {verdict}); the editor synthesises these."
        )
        if mae[("tps", "smooth synthesis")]:
            g = np.mean([v for k in nonrigid for v in mae[(k, "smooth synthesis")]])
            lines.append(
                f"The smooth synthesis (no texture transfer): {g:.2f} / {base:.2f} = "
                f"{g / base:.2f}."
            )
        if mae[("tps", "generator only")]:
            g = np.mean([v for k in nonrigid for v in mae[(k, "generator only")]])
            lines.append(
                f"The generator alone (its own pixels also where the new mask covers the "
                f"visible ones): {g:.2f} / {base:.2f} = {g / base:.2f}."
            )
    r_warp = np.mean([v for k in rigid for v in mae[(k, "warp")]]) if rigid else float("nan")
    r_syn = (
        np.mean([v for k in rigid for v in mae[(k, "synthesis")]])
        if with_synth and rigid
        else float("nan")
    )
    lines.append(
        f"Rigid: the editor warps (MAE {r_warp:.2f}"
        + (f"; synthesis would give {r_syn:.2f}" if with_synth else "")
        + ")."
    )
    return lines


def texture_table(tex: dict[tuple[str, str, str], list[float]]) -> list[str]:
    """The texture measures per kind and over the non-rigid / rigid kinds (module docstring)."""
    methods = [m for m in METHODS if any(tex[(k, m, "swd")] for k in KIND_ORDER)]
    lines = [
        "Texture where the new shape leaves the old visible pixels (HF energy: truth's and each "
        "method's, closer to the truth is better; patch SWD to the truth: lower is better; "
        "cases: where the region is big enough for the SWD's 5 x 5 patches):",
        "",
        "| kind | cases | truth HF | " + " | ".join(f"{m} HF / SWD" for m in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]

    def cell(kinds: tuple[str, ...], m: str, what: str) -> float:
        vals = [v for k in kinds for v in tex[(k, m, what)]]
        return float(np.mean(vals)) if vals else float("nan")

    groups = [(k, (k,)) for k in KIND_ORDER if tex[(k, "mean fill", "swd")]]
    nonrigid = tuple(k for k in NONRIGID if tex[(k, "mean fill", "swd")])
    rigid = tuple(k for k in KIND_ORDER if k not in NONRIGID and tex[(k, "mean fill", "swd")])
    groups += [("**all non-rigid**", nonrigid), ("**all rigid**", rigid)]
    for label, kinds in groups:
        n = sum(len(tex[(k, "mean fill", "swd")]) for k in kinds)
        cells = [f"{cell(kinds, m, 'hf'):.2f} / {cell(kinds, m, 'swd'):.2f}" for m in methods]
        lines.append(
            f"| {label} | {n} | {cell(kinds, 'truth', 'hf'):.2f} | " + " | ".join(cells) + " |"
        )
    return lines


# ------------------------------------------------------------------------------ figures


def _crop_box(masks: list[np.ndarray], margin: int = 6) -> tuple[slice, slice]:
    u = np.any(np.stack(masks), axis=0)
    ys, xs = np.nonzero(u)
    h, w = u.shape
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 + 2 * margin
    cy, cx = (ys.max() + ys.min()) // 2, (xs.max() + xs.min()) // 2
    y0 = int(np.clip(cy - side // 2, 0, max(h - side, 0)))
    x0 = int(np.clip(cx - side // 2, 0, max(w - side, 0)))
    return slice(y0, y0 + side), slice(x0, x0 + side)


def _tile(img: np.ndarray, sl: tuple[slice, slice], size: int = 112) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(img[sl]), (size, size), interpolation=cv2.INTER_NEAREST)


def _grid(rows: list[list[np.ndarray]], labels: list[str], cols: list[str], path: Path) -> None:
    import cv2

    size = rows[0][0].shape[0]
    pad, left, top = 4, 96, 22
    h = top + len(rows) * (size + pad)
    w = left + len(rows[0]) * (size + pad)
    canvas = np.full((h, w, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = top + r * (size + pad)
        cv2.putText(
            canvas, labels[r], (4, y + size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
        )
        for c, t in enumerate(row):
            x = left + c * (size + pad)
            canvas[y : y + size, x : x + size] = t
    for c, name in enumerate(cols):
        cv2.putText(canvas, name, (left + c * (size + pad) + 2, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)  # fmt: skip
    from maskgen.core.io import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, canvas)


def _scene_of(scenes: str, image_id: int, ann_id: int) -> tuple[Any, int]:
    """The re-drawn test scene of ``image_id`` and the layer of annotation ``ann_id``."""
    from maskgen.data.edit_cases import _redraw

    for _, scene, rec in _redraw(Path(scenes), "test"):
        if rec.id == image_id:
            return scene, next(int(i.depth) for i in rec.instances if int(i.id) == ann_id)
    raise KeyError(image_id)


def figure_one(
    keep: list, synth: Any, predictor: Any, scenes: str, path: Path, smooth: Any = None
) -> None:
    """One instance re-shaped every way (module docstring). Every method's picture shows the
    truth outside the new mask (the scene without the old shape), so only its own pixels differ."""
    from maskgen.data.builtin import texture_images
    from maskgen.data.reshape_cases import reshape_target
    from maskgen.editing.reshape import mean_fill, prior_mask, warp_fill

    if not keep:
        return
    case0 = keep[0][0]
    entries = [(c.kind, c.new_mask, c.target, outs) for c, outs in keep]
    if predictor is not None:
        ys, xs = np.nonzero(case0.visible)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        pm = prior_mask(predictor, box, 1, case0.visible.shape)
        if pm.any():
            scene, layer = _scene_of(scenes, case0.image_id, case0.ann_id)
            target, _ = reshape_target(scene, layer, pm, list(texture_images().values()))
            outs = {
                "warp": warp_fill(case0.image, case0.visible, pm),
                "mean fill": mean_fill(case0.image, case0.visible, pm),
            }
            for name, syn in (("synthesis", synth), ("smooth synthesis", smooth)):
                if syn is not None:
                    outs[name] = syn.synthesize(case0.image, case0.visible, pm)
            entries.append(("prior", pm, target, outs))
    sl = _crop_box([case0.visible] + [e[1] for e in entries])
    blank = np.full_like(_tile(case0.image, sl), 255)
    cols = ["input"] + [e[0] for e in entries]
    rows, labels = [], []
    keys = [("truth", None), ("synthesis", "synthesis")]
    if smooth is not None:
        keys.append(("no texture", "smooth synthesis"))
    for label, key in [*keys, ("warp", "warp"), ("mean fill", "mean fill")]:
        row = [_tile(case0.image, sl) if label == "truth" else blank]
        for _, new, target, outs in entries:
            img = target if key is None else outs.get(key)
            if img is not None and key is not None:
                img = np.where(new[..., None], img, target)
            row.append(blank if img is None else _tile(img, sl))
        rows.append(row)
        labels.append(label)
    _grid(rows, labels, cols, path)


def figure_restyle(
    args: argparse.Namespace, synth: Any, path: Path, n: int = 6, smooth: Any = None
) -> None:
    """Several instances re-styled into one mask (module docstring)."""
    from maskgen.core.deform import centroid
    from maskgen.data.builtin import texture_images
    from maskgen.data.edit_cases import _redraw
    from maskgen.data.reshape_cases import eligible_layers, reshape_target

    textures = list(texture_images().values())
    picked, common = [], None
    for _, scene, rec in _redraw(Path(args.scenes), "test"):
        for _, layer in eligible_layers(scene, rec):
            if scene.amodal[layer].sum() < 900:
                continue
            if common is None:
                common = scene.amodal[layer]
                continue
            kinds = [s.materials[k].kind for s, k, _ in picked]
            if kinds.count(scene.materials[layer].kind) >= n // 2:
                continue  # half flat, half textured
            picked.append((scene, layer, rec))
            break
        if len(picked) >= n:
            break
    if common is None or not picked:
        return
    cx, cy = centroid(common)
    methods = [synth] + ([smooth] if smooth is not None else [])
    tiles: list[list[np.ndarray]] = [[] for _ in range(2 + len(methods))]
    for scene, layer, _ in picked:
        a = scene.amodal[layer]
        x, y = centroid(a)
        mask = np.roll(common, (int(round(y - cy)), int(round(x - cx))), axis=(0, 1))
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            continue
        target, _ = reshape_target(scene, layer, mask, textures)
        sl = _crop_box([a, mask])
        tiles[0].append(_tile(scene.image, sl))
        tiles[1].append(_tile(target, sl))
        for row, syn in enumerate(methods, start=2):
            out = syn.synthesize(scene.image, a, mask) if syn is not None else target * 0 + 255
            tiles[row].append(_tile(np.where(mask[..., None], out, target), sl))  # truth's bg
    labels = ["instance", "truth", "synthesis", "no texture"][: len(tiles)]
    if tiles[0]:
        _grid(tiles, labels, [f"#{i}" for i in range(len(tiles[0]))], path)


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="benchmarks/data/scenes")
    p.add_argument("--synth", default="builtin", help="builtin, a model folder, or none")
    p.add_argument("--model", default=None, help="Amodal-VAE folder (default: shipped)")
    p.add_argument("--no-samples", action="store_true", help="skip the posterior-sample kind")
    p.add_argument("--max-instances", type=int, default=None)
    p.add_argument("--figures", default="benchmarks/figures")
    p.add_argument("--no-record", action="store_true")
    from maskgen.engine import add_config_arguments, config_from_args, config_to_dict
    from maskgen.synthesis.transfer import TextureOptions

    add_config_arguments(p, TextureOptions)
    args = p.parse_args(argv)
    texture = config_from_args(TextureOptions, args)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    from maskgen.amodal.io import SHIPPED_MODEL
    from maskgen.amodal.predictor import AmodalPredictor

    args.scenes = str(REPO / args.scenes) if not Path(args.scenes).is_absolute() else args.scenes
    synth = smooth = None
    if args.synth != "none":
        from maskgen.cli.amodal_edit import load_synth

        synth = load_synth(args.synth, texture)
        if texture.texture != "none":
            smooth = synth.with_texture(TextureOptions(texture="none"))
    predictor = (
        None if args.no_samples else AmodalPredictor.from_folder(args.model or SHIPPED_MODEL)
    )
    lines, keep = bench(args, synth, predictor, smooth)
    fig = Path(args.figures)
    figure_one(keep, synth, predictor, args.scenes, fig / "reshape_one_instance.png", smooth)
    figure_restyle(args, synth, fig / "reshape_restyle.png", smooth=smooth)
    settings = ", ".join(f"{k} {v}" for k, v in config_to_dict(texture).items())
    note = (
        f"Synthesizer: {args.synth} ({settings}); Amodal-VAE: {args.model or 'shipped'}. "
        "The texture settings are the defaults chosen on the validation split (RESULTS "
        "`reshape-texture-val`), never on these test cases."
    )
    command = "python benchmarks/reshape_bench.py " + " ".join(argv or sys.argv[1:])
    publish("reshape", lines, command.strip(), note, not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
