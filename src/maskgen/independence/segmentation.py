"""Training of application 1: foreground segmentation of box-cropped images by adversarial
compositing (Dai et al., AAAI 2019, "Foreground Segmentation on Category-specific Images").

Generator: the foreground provider (UNet alpha over the image's own colours) is composited over
a real background patch (alpha 1), background first, foreground on top, layout ``Δr = 0``
(paper eq. 4-5). Discriminator: SN-GAN (Table 1). Losses: eq. 6-7 with ``λ = 1000, a = 0.25``
(Table 3). Adam ``β = (0.5, 0.999)``, lr 2e-4 (D) / 4e-4 (G).

:func:`train_segmentation` is one explicit function whose keyword arguments are the config
(edm2 style); one iteration runs the named phases ``generate`` -> ``discriminator_step`` ->
``generator_step`` (:mod:`maskgen.independence.gan`). Runs resume automatically from the run
folder (engine :class:`~maskgen.engine.RunFolder`, kind ``"segment"``).

Stability additions (all switchable; ``preset="paper"`` turns them off): a linear warm-up of the
area weight, instance noise on D's inputs annealed to 0, and an EMA of the UNet used for the
saved model. See ``benchmarks/RESULTS.md`` for what they changed.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.errors import MaskgenError
from maskgen.independence.composition import compose
from maskgen.independence.discriminator import DISCRIMINATOR_PRESETS, SNDiscriminator
from maskgen.independence.gan import (
    area_weight_at,
    detect_collapse,
    discriminator_step,
    ema_update,
    generator_step,
)
from maskgen.independence.layout import identity_layout
from maskgen.independence.providers import (
    UNET_PRESETS,
    BackgroundPatchProvider,
    ForegroundUNetProvider,
    UNetConfig,
)

RUN_KIND = "segment"
MODEL_KIND = "segment-unet"


@dataclass(frozen=True)
class TrainPreset:
    """Defaults a preset sets (every one can be overridden by a keyword/flag)."""

    unet: str
    disc: str
    batch_size: int
    steps: int
    area_warmup: int
    instance_noise: float
    ema: float
    binary_weight: float
    hard_composite: bool


#: ``cpu``: default, sized for the 2-core CPU time target. ``paper``: Table 1 networks at 128x128
#: and the paper's plain training (no warm-up, noise or EMA). ``tiny``: tests only.
TRAIN_PRESETS: dict[str, TrainPreset] = {
    "cpu": TrainPreset("cpu", "app1-small", 32, 3000, 300, 0.0, 0.99, 0.0, False),
    "paper": TrainPreset("paper", "app1-paper", 64, 20000, 0, 0.0, 0.0, 0.0, False),
    "tiny": TrainPreset("tiny", "tiny", 8, 20, 5, 0.05, 0.9, 1.0, True),
}


def load_training_images(
    images: str, size: int, boxes: str | None = None, box_margin: float = 0.1
) -> tuple[np.ndarray, int, list[str]]:
    """Box-cropped training images as ``N x S x S x 3`` uint8, the native crop side, notes.

    ``images`` is a folder of box crops, or with ``boxes`` (COCO JSON) the folder of full images
    to crop from. The native crop side is the images' common side when they are all one square
    size, else ``size`` (backgrounds are then cut at ``size`` too).
    """
    from maskgen.data.segmentation_sets import crop_boxes_from_coco, load_image_folder

    if boxes:
        f = crop_boxes_from_coco(images, boxes, size, margin=box_margin)
    else:
        f = load_image_folder(images, size, "image folder")
    native = f.uniform_native_size
    crop = native[0] if native is not None and native[0] == native[1] else size
    return f.images, int(crop), f.notes


def load_backgrounds(backgrounds: str, crop: int) -> tuple[list[np.ndarray], list[str]]:
    """Background images (any sizes, each at least ``crop`` on both sides) as uint8 RGB arrays.

    Raises:
        MaskgenError: empty/unreadable folder, or a background smaller than the crop.
    """
    from maskgen.core.io import read_image
    from maskgen.data.segmentation_sets import list_images

    out = []
    for p in list_images(backgrounds, "background folder"):
        a = read_image(p, "RGB")
        if min(a.shape[:2]) < crop:
            raise MaskgenError(
                f"{p}: background is {a.shape[1]}x{a.shape[0]}, smaller than the "
                f"{crop}x{crop} crop the images need"
            )
        out.append(a)
    return out, []


def build_models(unet_cfg: UNetConfig, disc: str) -> tuple[ForegroundUNetProvider, SNDiscriminator]:
    if disc not in DISCRIMINATOR_PRESETS:
        raise MaskgenError(
            f"unknown discriminator {disc!r}; choose from {', '.join(DISCRIMINATOR_PRESETS)}"
        )
    return ForegroundUNetProvider(unet_cfg), SNDiscriminator(disc)


def _to_float(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, torch.float32).permute(0, 3, 1, 2) / 255.0


def _hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def train_segmentation(
    *,
    images: str,
    backgrounds: str,
    out: str,
    boxes: str | None = None,
    box_margin: float = 0.1,
    preset: str = "cpu",
    size: int | None = None,
    unet_widths: list[int] | None = None,
    upsample: str | None = None,
    disc: str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    lr_d: float = 2e-4,
    lr_g: float = 4e-4,
    beta1: float = 0.5,
    beta2: float = 0.999,
    area_weight: float = 1000.0,
    area_target: float = 0.25,
    area_warmup: int | None = None,
    instance_noise: float | None = None,
    noise_anneal: float = 0.5,
    ema: float | None = None,
    binary_weight: float | None = None,
    hard_composite: bool | None = None,
    loss: str = "nonsaturating",
    seed: int = 0,
    device: str = "cpu",
    log_every: int = 50,
    ckpt_every: int = 200,
    threads: int | None = None,
    stop_after: int | None = None,
    quiet: bool = False,
) -> Path:
    """Train the foreground provider against an SN discriminator (paper eq. 6-7).

    Args:
        images: folder of box-cropped images, or (with ``boxes``) of full images.
        backgrounds: folder of background images (each at least the crop size).
        out: run folder (created; an existing ``segment`` run with the same config resumes).
        boxes: COCO JSON with ``bbox`` per annotation to crop ``images`` by.
        box_margin: box growth per side when cropping from ``boxes``.
        preset: ``cpu`` (default), ``paper`` (Table 1, 128x128, plain training) or ``tiny``.
        size, unet_widths, upsample, disc, steps, batch_size: override the preset.
        lr_d, lr_g, beta1, beta2: Adam (paper: 2e-4, 4e-4, 0.5, 0.999).
        area_weight, area_target: ``λ`` and ``a`` of eq. 7 (Table 3: 1000, 0.25).
        area_warmup: steps of linear warm-up of ``λ`` (0 = paper).
        instance_noise: std of Gaussian noise on D inputs at step 0, annealed linearly to 0 at
            ``noise_anneal * steps`` (0 = paper).
        ema: decay of the UNet EMA saved as the model (0 = save the raw UNet, as the paper).
        binary_weight: weight of ``mean(alpha * (1 - alpha))`` added to the generator loss
            (pushes soft masks off the uniform-grey saddle; not in the paper, 0 = off), warmed
            up together with the area weight.
        hard_composite: composite with the binarised mask ``alpha > 0.5`` in the forward pass
            and the soft mask's gradient in the backward pass (straight-through estimator), so
            D always sees crisp cut-and-paste composites, never semi-transparent ghosts (not in
            the paper; off in the ``paper`` preset). The area penalty then counts hard pixels.
        loss: ``nonsaturating`` (eq. 6-7) or ``hinge``.
        seed: RNG seed (same seed, same machine -> same run).
        device: ``cpu`` or ``cuda``.
        log_every: steps per logging tick (metrics.jsonl line + image grid PNG).
        ckpt_every: steps per checkpoint.
        threads: torch CPU threads (default: torch's choice).
        stop_after: stop (without finishing) after this step -- for tests of resume.
        quiet: no console lines.

    Returns:
        the run folder; its ``model/`` is the trained model folder (kind ``segment-unet``).
    """
    from maskgen.engine import (
        RunFolder,
        autocast_context,
        capture_rng_state,
        init_distributed,
        load_state_dict_strict,
        progress,
        restore_rng_state,
        save_image_grid,
        save_model_folder,
        seed_everything,
        unwrap,
        wrap_ddp,
    )

    if preset not in TRAIN_PRESETS:
        raise MaskgenError(f"unknown preset {preset!r}; choose from {', '.join(TRAIN_PRESETS)}")
    p = TRAIN_PRESETS[preset]
    base = UNET_PRESETS[p.unet]
    unet_cfg = UNetConfig(
        size=int(size or base.size),
        widths=tuple(unet_widths) if unet_widths else base.widths,
        last_kernel=base.last_kernel,
        norm=base.norm,
        upsample=upsample or base.upsample,
    )
    cfg: dict[str, Any] = {
        "images": str(Path(images).resolve()),
        "backgrounds": str(Path(backgrounds).resolve()),
        "boxes": str(Path(boxes).resolve()) if boxes else None,
        "box_margin": box_margin,
        "preset": preset,
        "unet": unet_cfg.to_dict(),
        "disc": disc or p.disc,
        "steps": int(steps if steps is not None else p.steps),
        "batch_size": int(batch_size or p.batch_size),
        "lr_d": lr_d,
        "lr_g": lr_g,
        "betas": [beta1, beta2],
        "area_weight": area_weight,
        "area_target": area_target,
        "area_warmup": int(area_warmup if area_warmup is not None else p.area_warmup),
        "instance_noise": float(instance_noise if instance_noise is not None else p.instance_noise),
        "noise_anneal": noise_anneal,
        "ema": float(ema if ema is not None else p.ema),
        "binary_weight": float(binary_weight if binary_weight is not None else p.binary_weight),
        "hard_composite": bool(hard_composite if hard_composite is not None else p.hard_composite),
        "loss": loss,
        "seed": seed,
        "log_every": log_every,
        "ckpt_every": ckpt_every,
    }
    if loss not in ("nonsaturating", "hinge"):
        raise MaskgenError(f"unknown loss {loss!r}; choose nonsaturating or hinge")
    if cfg["steps"] < 1 or cfg["batch_size"] < 1:
        raise MaskgenError("--steps and --batch-size must be positive")
    if threads:
        torch.set_num_threads(threads)
    ctx = init_distributed(device)
    say = (lambda *a: None) if quiet or not ctx.is_main else (lambda *a: print(*a, file=sys.stderr))

    # Data first, so bad input fails before a run folder is created.
    imgs, crop, notes = load_training_images(images, unet_cfg.size, boxes, box_margin)
    bgs, _ = load_backgrounds(backgrounds, crop)
    for n in notes:
        say(f"note: {n}")
    run = RunFolder(out, kind=RUN_KIND, config=cfg, ctx=ctx)
    if run.is_finished():
        say(f"{run.path}: training already finished (model in {run.model_dir()})")
        return run.path
    seed_everything(seed, ctx.rank)
    dev = ctx.device
    g = torch.Generator().manual_seed(seed * 1000 + ctx.rank)

    fg, d = build_models(unet_cfg, cfg["disc"])
    fg.to(dev)
    d.to(dev)
    fg_ema = copy.deepcopy(fg).eval().requires_grad_(False) if cfg["ema"] > 0 else None
    fg_t, d_t = wrap_ddp(fg, ctx), wrap_ddp(d, ctx)
    opt_g = torch.optim.Adam(fg.parameters(), lr=lr_g, betas=(beta1, beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_d, betas=(beta1, beta2))
    bg_provider = BackgroundPatchProvider(bgs, unet_cfg.size, crop, device=dev)
    data = torch.from_numpy(imgs)  # N x S x S x 3 uint8 (CPU)
    history: list[dict[str, float]] = []
    start = 0
    state = run.load_latest_checkpoint(map_location=dev)
    if state is not None:
        load_state_dict_strict(unwrap(fg), state["unet"], run.loaded_checkpoint)
        load_state_dict_strict(d, state["disc"], run.loaded_checkpoint)
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if fg_ema is not None:
            load_state_dict_strict(fg_ema, state["ema"], run.loaded_checkpoint)
        g.set_state(state["gen"])
        restore_rng_state(state["rng"])
        history = list(state["history"])
        start = int(state["step"])
        say(f"resuming {run.path} from step {start}")
    autocast = autocast_context(dev)
    total = cfg["steps"]
    bs = cfg["batch_size"]
    n_img = data.shape[0]
    noise_end = max(1, int(noise_anneal * total))
    fixed = _to_float(data[torch.arange(min(8, n_img))], dev)
    fixed_bg, _ = bg_provider.sample(fixed.shape[0], torch.Generator().manual_seed(seed + 7))
    tick: dict[str, list[float]] = {}
    t_tick = time.monotonic()
    warned: str | None = None

    def checkpoint(step: int) -> None:
        run.save_checkpoint(
            step,
            {
                "step": step,
                "unet": unwrap(fg).state_dict(),
                "disc": d.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "ema": fg_ema.state_dict() if fg_ema is not None else {},
                "gen": g.get_state(),
                "rng": capture_rng_state(),
                "history": history,
            },
        )

    fg.train()
    d.train()
    for step in progress(range(start, total), desc="segment train", initial=start, ctx=ctx):
        # Phase "generate": providers -> layout (identity) -> composition (bg first, fg on top).
        real = _hflip(_to_float(data[torch.randint(0, n_img, (bs,), generator=g)], dev), g)
        img = _hflip(_to_float(data[torch.randint(0, n_img, (bs,), generator=g)], dev), g)
        bg_rgb, _ = bg_provider.sample(bs, g)
        with autocast:
            rgb, alpha = fg_t(img)
        alpha = alpha.float()
        if cfg["hard_composite"]:
            alpha = alpha + ((alpha > 0.5).float() - alpha).detach()  # straight-through
        fg_l = identity_layout(torch.cat([rgb, alpha], 1))
        fake = compose([(fg_l[:, :3], fg_l[:, 3:])], background=bg_rgb)
        noise = cfg["instance_noise"] * max(0.0, 1.0 - step / noise_end)
        lam = area_weight_at(step, area_weight, cfg["area_warmup"])
        # Phase "D", then phase "G".
        md = discriminator_step(
            d_t, opt_d, real, fake, loss=loss, instance_noise=noise, step=step, autocast=autocast
        )
        extra = None
        if cfg["binary_weight"] > 0:
            bw = area_weight_at(step, cfg["binary_weight"], cfg["area_warmup"])
            extra = bw * (alpha * (1.0 - alpha)).mean()
        mg = generator_step(
            d_t,
            opt_g,
            fake,
            [alpha],
            extra_loss=extra,
            area_weight=lam,
            area_target=area_target,
            loss=loss,
            instance_noise=noise,
            step=step,
            autocast=autocast,
        )
        if fg_ema is not None:
            ema_update(fg_ema, unwrap(fg), cfg["ema"])
        for k, v in {**md, **mg}.items():
            tick.setdefault(k, []).append(v)
        done = step + 1
        if done % log_every == 0 or done == total:
            rec = {k: float(np.mean(v)) for k, v in tick.items()}
            rec["lambda"] = lam
            rec["noise"] = noise
            rec["sec_per_iter"] = (time.monotonic() - t_tick) / max(1, len(tick.get("loss_d", [1])))
            tick, t_tick = {}, time.monotonic()
            history.append(
                {k: rec[k] for k in ("mask_area", "d_real", "d_fake", "loss_d", "loss_g")}
            )
            run.log(done, **rec)
            if ctx.is_main:
                _save_grid(
                    run.path / "grids" / f"grid-{done:08d}.png",
                    fg_ema or unwrap(fg),
                    fixed,
                    fixed_bg,
                    save_image_grid,
                )
            msg = detect_collapse(history)
            if msg and msg != warned:
                say(f"warning: step {done}: {msg}")
            warned = msg
            say(
                f"step {done}/{total}  loss_d {rec['loss_d']:.3f}  loss_g {rec['loss_g']:.3f}  "
                f"mask_area {rec['mask_area']:.3f}  D(real) {rec['d_real']:.2f}  D(fake) {rec['d_fake']:.2f}"
            )
        if done % ckpt_every == 0 and done < total:
            checkpoint(done)
        if stop_after is not None and done >= stop_after and done < total:
            checkpoint(done)
            return run.path
    final = fg_ema if fg_ema is not None else unwrap(fg)
    save_model_folder(
        run.model_dir(),
        MODEL_KIND,
        {"unet": unet_cfg.to_dict()},
        final.state_dict(),
        extra={"stage": "teacher", "threshold": 0.5, "trained_steps": total, "run": str(run.path)},
    )
    checkpoint(total)
    run.mark_finished()
    say(f"model written to {run.model_dir()}")
    return run.path


@torch.no_grad()
def _save_grid(
    path: Path, model: ForegroundUNetProvider, images: torch.Tensor, bgs: torch.Tensor, save
) -> None:
    """Rows: input, soft mask, cut-out composited on a new background."""
    was = model.training
    model.eval()
    alpha = model.alpha(images)
    model.train(was)
    comp = compose([(images, alpha)], background=bgs)
    grid = torch.cat([images, alpha.expand(-1, 3, -1, -1), comp])
    save(path, grid, nrow=images.shape[0])


def sec_per_iter(history_file: Path) -> float | None:
    """Median seconds per iteration over the logging ticks of a run's metrics.jsonl."""
    import json

    vals = []
    for line in Path(history_file).read_text().splitlines():
        rec = json.loads(line)
        if "sec_per_iter" in rec:
            vals.append(rec["sec_per_iter"])
    return float(np.median(vals)) if vals else None


__all__ = ["MODEL_KIND", "RUN_KIND", "TRAIN_PRESETS", "train_segmentation"]
