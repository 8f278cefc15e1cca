"""Training of application 1: foreground segmentation of box-cropped images by adversarial
compositing (Dai et al., AAAI 2019, "Foreground Segmentation on Category-specific Images").

Generator: the foreground provider (UNet alpha over the image's own colours) is composited over
a real background patch (alpha 1), background first, foreground on top, layout ``Δr = 0``
(paper eq. 4-5). Discriminator: SN-GAN (Table 1). Losses: eq. 6-7 with ``λ = 1000, a = 0.25``
(Table 3). Adam ``β = (0.5, 0.999)``, lr 2e-4 (D) / 4e-4 (G).

The settings live in :class:`SegmentConfig` (presets ``cpu``, ``paper``, ``tiny`` as tables of
overrides; the CLI flags are generated from it). :class:`SegmentTrainer` is one iteration made of
the named phases ``generate`` -> ``discriminator_step`` -> ``generator_step``
(:mod:`maskgen.independence.gan`); :func:`train_segmentation` runs it on the engine's
:func:`~maskgen.engine.training_loop` in a run folder of kind ``"segment"`` (automatic resume)
and writes the teacher as a :class:`~maskgen.independence.predict.Segmenter` model folder.

Stability additions (all switchable; ``preset="paper"`` turns them off): a linear warm-up of the
area weight, instance noise on D's inputs annealed to 0, an EMA of the UNet used for the saved
model, a binarisation term, straight-through hard composites, and flip test-time augmentation of
the saved model (``tta``, :mod:`~maskgen.independence.tta`). What they changed:
``benchmarks/RESULTS.md``, sections ``segment`` and (``tta``, the 6000 default steps)
``independence-tuning-steps``.

Small-data pieces (issue 12; off in ``cpu``/``paper``, on in the ``shapes`` preset, each one
flag): DiffAugment of D's inputs (``augment``, :mod:`~maskgen.independence.augment`), lazy R1
(``r1_weight``), area bounds instead of / beside eq. 7 (``area_penalty``, ``area_bounds``), a
binarisation term with a late ramp or the binary entropy (``binary_kind``,
``binary_schedule``; :mod:`~maskgen.independence.regularizers`), a random shift of the cut-out
against the background (``fg_shift``) and label-free restarts (``restarts``,
:mod:`~maskgen.independence.restarts`). Their contribution: section ``independence-ablation``.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.engine.config import param
from maskgen.engine.loop import RunOptions
from maskgen.errors import MaskgenError
from maskgen.independence.composition import compose
from maskgen.independence.gan import (
    area_weight_at,
    detect_collapse,
    discriminator_step,
    ema_update,
    generator_step,
)
from maskgen.independence.layout import identity_layout
from maskgen.independence.predict import MODEL_KIND, Segmenter
from maskgen.independence.providers import BackgroundPatchProvider, UNetConfig
from maskgen.independence.tta import TTA_CHOICES

RUN_KIND = "segment"
#: Discriminator presets of application 1 (:data:`~maskgen.independence.discriminator.
#: DISCRIMINATOR_PRESETS`).
DISC_CHOICES = ("app1-small", "app1-cpu", "app1-paper", "tiny")
#: Largest ``batch_size * size * size`` accepted (a batch of that many pixels, ~3 GiB of
#: activations per UNet layer at float32, is far beyond any machine this runs on).
MAX_BATCH_PIXELS = 2**26


@dataclasses.dataclass
class SegmentConfig:
    """Every setting of ``segment train`` (stored in the run folder; model and path fields are
    the resume check). ``cpu`` (default): 32x32 narrow nets, stabilised, 6000 steps, flip
    test-time augmentation of the saved model, sized for a 2-core CPU (about 10 CPU minutes
    with distillation); ``paper``: Table 1 networks at 128x128 and the paper's plain training; ``shapes``: ``cpu``
    plus the issue-12 small-data pieces (experimental: in the first measurement, photo-holdout
    seed 0, it gave centred blobs and scored below ``cpu``; DiffAugment, the largest loss on
    the tuning set, is therefore left out of it; see the ablation section);
    ``tiny``: tests."""

    PRESETS = {  # noqa: RUF012
        "cpu": {},
        "paper": dict(
            size=128,
            unet_widths=(64, 128, 256, 512, 512, 512),
            last_kernel=2,
            upsample="deconv",
            disc="app1-paper",
            batch_size=64,
            steps=20000,
            area_warmup=0,
            ema_decay=0.0,
            tta="none",
        ),
        "shapes": dict(
            # DiffAugment stays off: on the photo tuning set (seed 0) it cost 0.11 teacher IoU
            r1_weight=1.0,
            area_penalty="bounds",
            binary_kind="entropy",
            binary_schedule="ramp",
            binary_weight=1.0,
            fg_shift=0.06,
        ),
        "tiny": dict(
            unet_widths=(8, 16, 16),
            disc="tiny",
            batch_size=8,
            steps=20,
            area_warmup=5,
            instance_noise=0.05,
            ema_decay=0.9,
            binary_weight=1.0,
            hard_composite=True,
        ),
    }
    preset: str = param("cpu", "preset name", flag=False)
    images: str = param(
        "", "folder of box-cropped images (or of full images with --boxes)", role="path"
    )
    backgrounds: str = param(
        "", "folder of background images (each at least the crop size)", role="path"
    )
    boxes: str | None = param(
        None, "COCO JSON with a bbox per annotation to crop --images by", role="path"
    )
    box_margin: float = param(0.1, "box growth per side with --boxes", low=0, high=1)
    size: int = param(32, "UNet input side (images are resized to it)", low=16, high=1024)
    unet_widths: tuple[int, ...] = param(
        (16, 32, 64, 64), "UNet encoder channels, e.g. 16,32,64,64", low=1, high=4096
    )
    last_kernel: int = param(4, "kernel of the innermost UNet conv (Table 1: 2)", choices=(2, 4))
    norm: str = param("batch", "UNet normalisation", choices=("batch", "none"))
    upsample: str = param(
        "bilinear", "UNet decoder upsampling (paper: deconv)", choices=("deconv", "bilinear")
    )
    disc: str = param("app1-small", "discriminator preset", choices=DISC_CHOICES)
    # 6000, not 3000: on the photo tuning set the teacher still gains from 3000 to 6000 steps at
    # both seeds (RESULTS.md, independence-tuning-steps)
    steps: int = param(6000, "training steps", low=1, high=10**8)
    batch_size: int = param(32, "composites per step", low=1, high=4096)
    lr_d: float = param(2e-4, "Adam learning rate of D (paper: 2e-4)", low=0, low_open=True, high=1)
    lr_g: float = param(4e-4, "Adam learning rate of G (paper: 4e-4)", low=0, low_open=True, high=1)
    betas: tuple[float, ...] = param(
        (0.5, 0.999), "Adam betas of D and G (paper: 0.5,0.999)", low=0, high=1, high_open=True
    )
    area_weight: float = param(1000.0, "lambda of eq. 7 (paper: 1000)", low=0)
    area_target: float = param(
        0.25, "a of eq. 7, the target mask area (paper: 0.25)", low=0, high=1
    )
    area_warmup: int = param(300, "steps of linear warm-up of lambda (paper: 0)", low=0)
    instance_noise: float = param(0.0, "std of noise on D's inputs at step 0 (paper: 0)", low=0)
    noise_steps: int | None = param(
        None, "steps over which the instance noise anneals to 0 (None: half of --steps)", low=1
    )
    ema_decay: float = param(
        0.99,
        "EMA decay of the saved UNet (0 = save the raw UNet, as the paper)",
        low=0,
        high=1,
        high_open=True,
    )
    binary_weight: float = param(
        0.0, "weight of mean(alpha * (1 - alpha)) in G's loss (not in the paper; 0 = off)", low=0
    )
    hard_composite: bool = param(
        False, "composite with alpha > 0.5, soft gradient (straight-through; not in the paper)"
    )
    # --- small-data pieces (issue 12; all off in cpu/paper, on in "shapes"; see
    # maskgen.independence.augment / .regularizers)
    augment: str = param(
        "none",
        "DiffAugment policy on D's inputs, real and composite alike: comma-separated "
        "color,translation,cutout, or none (paper: none)",
    )
    augment_p: float = param(1.0, "probability of each augmentation per image", low=0, high=1)
    r1_weight: float = param(
        0.0, "gamma of the R1 penalty on real crops (0 = off, as the paper)", low=0
    )
    r1_every: int = param(4, "apply R1 every this many steps (lazy, strength kept)", low=1)
    area_penalty: str = param(
        "target",
        "target: the paper's (area - a)^2; bounds: zero inside --area-bounds, quadratic "
        "outside; both: the two added",
        choices=("target", "bounds", "both"),
    )
    area_bounds: tuple[float, ...] = param(
        (0.1, 0.5),
        "a_min,a_max of the area bounds (with --area-penalty bounds|both)",
        low=0,
        high=1,
    )
    binary_kind: str = param(
        "product",
        "binarisation term: alpha(1-alpha) or binary entropy",
        choices=("product", "entropy"),
    )
    binary_schedule: str = param(
        "warmup",
        "warmup: the binarisation weight ramps with --area-warmup; ramp: from 0 at "
        "--binary-ramp start to full at its end (fractions of --steps)",
        choices=("warmup", "ramp"),
    )
    binary_ramp: tuple[float, ...] = param(
        (0.3, 0.8), "start,end of the binarisation ramp as fractions of --steps", low=0, high=1
    )
    fg_shift: float = param(
        0.0,
        "random shift of the cut-out against the background, up to this fraction of the "
        "side (0 = off, as the paper's layout dr = 0)",
        low=0,
        high=0.5,
    )
    restarts: int = param(
        1,
        "short restarts with seeds seed..seed+K-1; the best by the label-free realism score "
        "(maskgen.independence.selection) is trained on to --steps (1 = off)",
        low=1,
        high=16,
    )
    restart_steps: int = param(
        300, "steps of each short restart (with --restarts > 1; below --steps)", low=1
    )
    tta: str = param(
        "flip",
        "test-time augmentation of the saved model: flip (its soft mask is the mean of the "
        "crop's and the mirror image's; not in the paper) or none (one pass, as the paper)",
        choices=TTA_CHOICES,
    )
    loss: str = param("nonsaturating", "adversarial loss", choices=("nonsaturating", "hinge"))
    seed: int = param(0, "RNG seed (same seed, same machine -> same run)", low=0, high=2**31 - 1)

    def check(self) -> None:
        """Cross-field rules (called by ``make_config``)."""
        if not self.images:
            raise MaskgenError("--images: required (a folder of box crops)")
        if not self.backgrounds:
            raise MaskgenError("--backgrounds: required (a folder of background images)")
        check_unet_size(self.size, self.unet_widths)
        if len(self.betas) != 2:
            shown = ",".join(f"{b:g}" for b in self.betas)
            raise MaskgenError(f"--betas {shown}: expected two values, e.g. 0.5,0.999")
        check_batch(self.batch_size, self.size)
        from maskgen.independence.augment import parse_policy

        parse_policy(self.augment)
        check_pair("--area-bounds", self.area_bounds, strict=True)
        check_pair("--binary-ramp", self.binary_ramp, strict=False)
        if self.restarts > 1 and self.restart_steps >= self.steps:
            raise MaskgenError(
                f"--restart-steps {self.restart_steps}: must be below --steps {self.steps} "
                "(the best restart is trained on to --steps)"
            )
        if self.seed + self.restarts - 1 > 2**31 - 1:
            raise MaskgenError(f"--restarts {self.restarts}: seeds past 2**31-1 from --seed")

    def unet(self) -> UNetConfig:
        """The generator's UNet settings."""
        return UNetConfig(
            self.size, tuple(self.unet_widths), self.last_kernel, self.norm, self.upsample
        )

    def noise_at(self, step: int) -> float:
        """Instance-noise std at ``step``: linear from ``instance_noise`` to 0 over
        ``noise_steps`` (default: half of ``steps``)."""
        end = self.noise_steps if self.noise_steps is not None else max(1, self.steps // 2)
        return self.instance_noise * max(0.0, 1.0 - step / end)


def check_unet_size(size: int, widths: tuple[int, ...]) -> None:
    """A UNet of ``len(widths)`` stride-2 levels needs ``size`` divisible by ``2**levels``."""
    if not widths:
        raise MaskgenError("--unet-widths: needs at least one width")
    if size % (2 ** len(widths)):
        raise MaskgenError(
            f"--size {size}: not divisible by 2**{len(widths)} (one halving per UNet level)"
        )


def check_pair(flag: str, pair: tuple[float, ...], strict: bool) -> None:
    """Two increasing values (``strict``: the first below the second)."""
    shown = ",".join(f"{v:g}" for v in pair)
    if len(pair) != 2:
        raise MaskgenError(f"{flag} {shown}: expected two values, e.g. 0.1,0.5")
    if pair[0] > pair[1] or (strict and pair[0] == pair[1]):
        raise MaskgenError(f"{flag} {shown}: the first value must be below the second")


def check_batch(batch_size: int, size: int) -> None:
    """Refuse batches too large for memory before anything is allocated."""
    if batch_size * size * size > MAX_BATCH_PIXELS:
        raise MaskgenError(
            f"--batch-size {batch_size}: {batch_size} images of {size}x{size} per step do not "
            f"fit in memory (at most {MAX_BATCH_PIXELS // (size * size)} at this size)"
        )


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


def load_backgrounds(backgrounds: str, crop: int) -> list[np.ndarray]:
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
    return out


def _to_float(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, torch.float32).permute(0, 3, 1, 2) / 255.0


def _hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


class SegmentTrainer:
    """One adversarial iteration of application 1 per :meth:`step` (engine trainer protocol).

    Args:
        cfg: the settings.
        images: ``N x S x S x 3`` uint8 training crops (``S = cfg.size``).
        crop: the crops' native side (backgrounds are cut at it, then resized to ``S``).
        backgrounds: uint8 RGB arrays, each at least ``crop`` on both sides.
        ctx: the engine's :class:`~maskgen.engine.DistContext`.
        grids: folder for the image grid written at each logging tick (None = no grids).
        quiet: no collapse warnings on stderr.

    Seeds the global RNG (``cfg.seed``) before building the networks, so a run is reproducible.
    """

    def __init__(
        self,
        cfg: SegmentConfig,
        images: np.ndarray,
        crop: int,
        backgrounds: list[np.ndarray],
        ctx: Any,
        grids: Path | None = None,
        quiet: bool = False,
    ) -> None:
        from maskgen.engine import autocast_context, seed_everything, wrap_ddp
        from maskgen.independence.discriminator import SNDiscriminator

        self.cfg, self.ctx, self.grids, self.quiet = cfg, ctx, grids, quiet
        seed_everything(cfg.seed, ctx.rank)
        dev = self.dev = ctx.device
        self.g = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
        self.fg = Segmenter(cfg.unet(), tta=cfg.tta).to(dev)
        self.d = SNDiscriminator(cfg.disc).to(dev)
        self.fg_ema = (
            copy.deepcopy(self.fg).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        )
        self.fg_t, self.d_t = wrap_ddp(self.fg, ctx), wrap_ddp(self.d, ctx)
        self._small_data_pieces(ctx.rank)
        betas = (cfg.betas[0], cfg.betas[1])
        self.opt_g = torch.optim.Adam(self.fg.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=betas)
        self.bg = BackgroundPatchProvider(backgrounds, cfg.size, crop, device=dev)
        self.data = torch.from_numpy(images)  # N x S x S x 3 uint8 (CPU)
        self.autocast = autocast_context(dev)
        self.history: dict[str, Any] = {"ticks": []}
        self.warned: str | None = None
        self.fixed = _to_float(self.data[torch.arange(min(8, len(self.data)))], dev)
        self.fixed_bg, _ = self.bg.sample(
            len(self.fixed), torch.Generator().manual_seed(cfg.seed + 7)
        )
        self.resumable = {
            "unet": self.fg,
            "disc": self.d,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "ema": self.fg_ema,
            "gen": self.g,
            "history": self.history,
        }
        if self.g_aug is not None:
            self.resumable["gen_aug"] = self.g_aug
        self.fg.train()
        self.d.train()

    def _small_data_pieces(self, rank: int) -> None:
        """The D seen by both GAN phases (augmented when ``--augment`` names transforms) and
        the one R1 uses (unwrapped, same augmentation)."""
        from maskgen.independence.augment import AugmentedDiscriminator, parse_policy

        cfg = self.cfg
        policy = parse_policy(cfg.augment)
        need = bool(policy) or cfg.fg_shift > 0
        self.g_aug = torch.Generator().manual_seed(cfg.seed * 1000 + rank + 500) if need else None
        self.d_phase: torch.nn.Module = self.d_t
        self.d_r1: torch.nn.Module = self.d
        if policy:
            self.d_phase = AugmentedDiscriminator(self.d_t, policy, self.g_aug, cfg.augment_p)
            self.d_r1 = AugmentedDiscriminator(self.d, policy, self.g_aug, cfg.augment_p)

    def generate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Phase "generate": real crops, and composites of other crops' cut-outs (identity layout,
        background first, foreground on top). Returns ``(real, fake, alpha)``."""
        cfg, g, n = self.cfg, self.g, len(self.data)
        real = _hflip(
            _to_float(self.data[torch.randint(0, n, (cfg.batch_size,), generator=g)], self.dev), g
        )
        img = _hflip(
            _to_float(self.data[torch.randint(0, n, (cfg.batch_size,), generator=g)], self.dev), g
        )
        bg_rgb, _ = self.bg.sample(cfg.batch_size, g)
        with self.autocast:
            rgb, alpha = self.fg_t(img)
        alpha = self.soft_alpha = alpha.float()
        if cfg.hard_composite:
            alpha = alpha + ((alpha > 0.5).float() - alpha).detach()  # straight-through
        fg_l = identity_layout(torch.cat([rgb, alpha], 1))
        if cfg.fg_shift > 0:
            from maskgen.independence.augment import shift_layer

            fg_l, _ = shift_layer(fg_l, self.g_aug, cfg.fg_shift)
        fake = compose([(fg_l[:, :3], fg_l[:, 3:])], background=bg_rgb)
        return real, fake, alpha

    def step(self, step: int) -> dict[str, Any]:
        """Phases generate -> D -> G (paper eq. 6-7), then the EMA update."""
        from maskgen.engine import unwrap

        cfg = self.cfg
        real, fake, alpha = self.generate()
        noise = cfg.noise_at(step)
        lam = area_weight_at(step, cfg.area_weight, cfg.area_warmup)
        md = discriminator_step(
            self.d_phase,
            self.opt_d,
            real,
            fake,
            loss=cfg.loss,
            instance_noise=noise,
            step=step,
            autocast=self.autocast,
        )
        if cfg.r1_weight > 0 and step % cfg.r1_every == 0:
            from maskgen.independence.regularizers import r1_step

            md["loss_r1"] = r1_step(self.d_r1, self.opt_d, real, cfg.r1_weight, cfg.r1_every)
        extra, parts = self._extra_loss(step, alpha, lam)
        mg = generator_step(
            self.d_phase,
            self.opt_g,
            fake,
            [alpha],
            extra_loss=extra,
            area_weight=lam if cfg.area_penalty != "bounds" else 0.0,
            area_target=cfg.area_target,
            loss=cfg.loss,
            instance_noise=noise,
            step=step,
            autocast=self.autocast,
        )
        if self.fg_ema is not None:
            ema_update(self.fg_ema, unwrap(self.fg), cfg.ema_decay)
        return {**md, **mg, **parts, "lambda": lam, "noise": noise}

    def binary_weight_at(self, step: int) -> float:
        """The binarisation weight at ``step`` (``--binary-schedule``)."""
        from maskgen.independence.regularizers import ramp_weight

        cfg = self.cfg
        if cfg.binary_schedule == "ramp":
            lo, hi = cfg.binary_ramp
            return ramp_weight(step, cfg.steps, cfg.binary_weight, lo, hi)
        return area_weight_at(step, cfg.binary_weight, cfg.area_warmup)

    def _extra_loss(
        self, step: int, alpha: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor | None, dict[str, float]]:
        """G's terms beside eq. 7: the binarisation term and the area bounds (weighted)."""
        from maskgen.independence.regularizers import area_bounds_penalty, binarisation_loss

        cfg, terms, parts = self.cfg, [], {}
        bw = self.binary_weight_at(step)
        if bw > 0:
            # on the soft mask (the straight-through one is already 0/1 in value)
            b = binarisation_loss(self.soft_alpha, cfg.binary_kind)
            terms.append(bw * b)
            parts.update(loss_binary=float(b.detach()), binary_w=bw)
        if cfg.area_penalty in ("bounds", "both"):
            lo, hi = cfg.area_bounds
            ab = area_bounds_penalty([alpha], lo, hi)
            terms.append(lam * ab)
            parts["loss_bounds"] = float(ab.detach())
        return (sum(terms) if terms else None), parts

    def final_model(self) -> Segmenter:
        """The model to save: the EMA copy when there is one, else the raw UNet."""
        from maskgen.engine import unwrap

        return self.fg_ema if self.fg_ema is not None else unwrap(self.fg)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Image grid and collapse diagnosis at each logging tick (rank 0)."""
        from maskgen.engine import warn

        keys = ("mask_area", "d_real", "d_fake", "loss_d", "loss_g")
        self.history["ticks"].append({k: metrics[k] for k in keys if k in metrics})
        if self.grids is not None:
            save_grid(
                self.grids / f"grid-{step:08d}.png", self.final_model(), self.fixed, self.fixed_bg
            )
        msg = detect_collapse(self.history["ticks"])
        if msg and msg != self.warned and not self.quiet:
            warn(f"step {step}: {msg}")
        self.warned = msg


def train_segmentation(cfg: SegmentConfig, out: str | Path, opts: RunOptions | None = None) -> Path:
    """Train the foreground provider against an SN discriminator (paper eq. 6-7).

    Validates the device and reads the data before the run folder ``out`` is created or opened
    (an existing ``segment`` run with the same model and path settings resumes). Returns the run
    folder; its ``model/`` is the trained :class:`Segmenter` (kind ``segment-unet``, stage
    ``teacher``), written with ``DONE`` once all ``cfg.steps`` are done.
    """
    from maskgen.engine import RunFolder, init_distributed, resume_key, sayer, training_loop

    opts = opts or RunOptions()
    ctx = init_distributed(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    imgs, crop, notes = load_training_images(cfg.images, cfg.size, cfg.boxes, cfg.box_margin)
    bgs = load_backgrounds(cfg.backgrounds, crop)
    # Everything that can fail is built before the run folder is created or opened, so a
    # failed start leaves nothing that blocks the corrected command.
    trainer = SegmentTrainer(cfg, imgs, crop, bgs, ctx, Path(out) / "grids", opts.quiet)
    run = RunFolder(out, kind=RUN_KIND, config=resume_key(cfg), ctx=ctx)
    say = sayer(opts, ctx)
    for n in notes:
        say(f"note: {n}")
    if run.is_finished():
        say(f"{run.path}: training already finished (model in {run.model_dir()})")
        return run.path
    if cfg.restarts > 1:
        from maskgen.independence.restarts import select_restart

        best = select_restart(cfg, run, opts, (imgs, crop, bgs), say)
        if best is None:  # paused (time budget / stop_after) during the restarts
            return run.path
        if best != cfg.seed:
            cfg = dataclasses.replace(cfg, seed=best)
            trainer = SegmentTrainer(cfg, imgs, crop, bgs, ctx, Path(out) / "grids", opts.quiet)
    res = training_loop(trainer, run, total_steps=cfg.steps, opts=opts, desc="segment train")
    if res.finished:
        trainer.final_model().save_folder(
            run.model_dir(), stage="teacher", trained_steps=cfg.steps, run=str(run.path)
        )
        run.mark_finished()
        say(f"model written to {run.model_dir()}")
    return run.path


@torch.no_grad()
def save_grid(path: Path, model: Segmenter, images: torch.Tensor, bgs: torch.Tensor) -> None:
    """Rows: input, soft mask, cut-out composited on a new background."""
    from maskgen.engine import save_image_grid

    was = model.training
    model.eval()
    alpha = model.alpha(images)
    model.train(was)
    comp = compose([(images, alpha)], background=bgs)
    grid = torch.cat([images, alpha.expand(-1, 3, -1, -1), comp])
    save_image_grid(path, grid, nrow=images.shape[0])


def sec_per_iter(history_file: Path) -> float | None:
    """Median seconds per iteration over the logging ticks of a run's metrics.jsonl."""
    import json

    vals = []
    for line in Path(history_file).read_text().splitlines():
        rec = json.loads(line)
        if "sec_per_iter" in rec:
            vals.append(rec["sec_per_iter"])
    return float(np.median(vals)) if vals else None


__all__ = [
    "MODEL_KIND",
    "RUN_KIND",
    "SegmentConfig",
    "SegmentTrainer",
    "load_backgrounds",
    "load_training_images",
    "train_segmentation",
]
