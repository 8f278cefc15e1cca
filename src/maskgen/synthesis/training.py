"""Training the §3.4 synthesis GAN on the one engine loop (``maskgen synth train``).

Each step draws one batch of pairs (:mod:`maskgen.synthesis.data`), updates the discriminator
once and the generator (with its style encoder) once, GauGAN's alternation.

Losses (GauGAN, with its weights as defaults): hinge adversarial loss; feature matching
(``lambda_feat`` 10, L1 between the discriminator's features of real and generated crops,
averaged over layers and scales); KL of the style code (``kl_weight``, GauGAN's 0.05). The
generated crop is composited as ``output x new + real x (1 - new)`` before the discriminator sees
it: outside the new mask the output is irrelevant. Deviation: GauGAN's VGG perceptual loss needs
ImageNet weights (a download; nothing is downloaded here), so an **L1 reconstruction loss inside
the new mask** (``l1_weight``) stands in -- it is also what pixel accuracy needs. L1 alone pulls
the hidden pixels to their blurry mean, where a texture cannot be predicted pixel by pixel; the
**texture loss** (``style_weight``; :class:`~maskgen.synthesis.texture.RandomFeatureStyle`: Gram
matrices of a fixed random-weight conv net's features over the new mask's hidden part) asks for
the truth's texture statistics there instead (``style_margin``: only on hidden pixels that far
inside the hidden part, whose statistics the region's edges do not dominate), and the
generator's **noise inputs** (``noise``, :class:`~maskgen.synthesis.model.SpadeGenerator`) give it
the randomness to make them. Both are off by default (GauGAN has neither): in 600 CPU steps they
add some grain on held-out instances at an unchanged pixel error, too little to make the default
without the seeds to show it (the shipped model's README has the numbers).

Presets: ``cpu`` (default; 64-px crops, 2 discriminator scales, Adam ``betas (0.5, 0.999)``,
one learning rate) trains within the 20-minute CPU budget on the built-in scenes;
``paper`` has GauGAN's settings (256-px crops, 3 scales, TTUR: generator ``1e-4``,
discriminator ``4e-4``, Adam ``betas (0, 0.999)``, width 64); ``tiny`` is for tests.

Layout of a run folder (:class:`~maskgen.engine.RunFolder`, kind ``mask-synth``): ``config.json``,
``metrics.jsonl``, ``checkpoints/``, ``samples.png`` (a grid, refreshed at each logging tick:
per row the real crop, the visible pixels, the new mask, the synthesis), ``model/``, ``DONE``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from maskgen.data.loader import load_visible_training_set
from maskgen.engine import (
    DistContext,
    RunFolder,
    RunOptions,
    barrier,
    config_to_dict,
    finish_run,
    init_distributed,
    param,
    resume_key,
    run_summary,
    save_image_grid,
    save_model_folder,
    seed_everything,
    shutdown_distributed,
    training_loop,
    wrap_ddp,
)
from maskgen.errors import MaskgenError
from maskgen.inpainting.model import count_parameters
from maskgen.synthesis.data import SynthBatch, SynthData, load_synth_data, synth_batch
from maskgen.synthesis.model import MultiscaleDiscriminator, SpadeGenerator, SynthNetConfig
from maskgen.synthesis.texture import RandomFeatureStyle

MODEL_KIND = "mask-synth"
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", "samples.png", "model", "DONE")


@dataclasses.dataclass
class SynthConfig:
    """Settings of ``maskgen synth train`` (one flag each; presets are tables of overrides).

    See the module docstring for the presets and losses.
    """

    PRESETS = {  # noqa: RUF012
        "cpu": {},
        "paper": {
            "crop_size": 256,
            "width": 64,
            "style_dim": 256,
            "spade_hidden": 128,
            "d_width": 64,
            "d_scales": 3,
            "d_layers": 4,
            "lr": 1e-4,
            "d_lr": 4e-4,
            "beta1": 0.0,
            "batch_size": 16,
            "steps": 200000,
        },
        "tiny": {
            "crop_size": 32,
            "width": 4,
            "style_dim": 4,
            "spade_hidden": 4,
            "d_width": 4,
            "batch_size": 2,
            "steps": 4,
        },
    }
    preset: str = param("cpu", "preset name", flag=False)
    data: str = param("", "visible instance masks (COCO, KINS or COCOA JSON)", role="path")
    images: str = param("", "folder holding the images named in --data", role="path")
    seed: int = param(0, "random seed", low=0)
    steps: int = param(600, "training steps (one discriminator + one generator update)", low=1)
    batch_size: int = param(16, "pairs per step", low=1, high=4096)
    crop_size: int = param(
        64, "instance crop side, px; a multiple of 4 (§3.4 GauGAN: 256)", low=16, high=1024
    )
    width: int = param(16, "generator channels at full resolution", low=2, high=512)
    style_dim: int = param(32, "style code length (GauGAN: 256)", low=1, high=1024)
    spade_hidden: int = param(16, "SPADE hidden channels (GauGAN: 128)", low=1, high=512)
    d_width: int = param(
        16, "discriminator channels of the first layer (GauGAN: 64)", low=2, high=512
    )
    d_scales: int = param(2, "discriminator scales (GauGAN: 3)", low=1, high=5)
    d_layers: int = param(3, "discriminator strided layers (GauGAN: 4)", low=1, high=6)
    lr: float = param(
        5e-4, "generator Adam learning rate (GauGAN TTUR: 1e-4)", low=0, low_open=True, high=1
    )
    d_lr: float = param(
        1e-3, "discriminator Adam learning rate (GauGAN TTUR: 4e-4)", low=0, low_open=True, high=1
    )
    beta1: float = param(0.5, "Adam beta1 (GauGAN with TTUR: 0)", low=0, high=1, high_open=True)
    gan_weight: float = param(
        1.0, "weight of the hinge adversarial loss (0: no discriminator)", low=0
    )
    feat_weight: float = param(10.0, "weight of the feature matching loss (GauGAN: 10)", low=0)
    l1_weight: float = param(
        10.0, "weight of the L1 loss inside the new mask (stands in for VGG)", low=0
    )
    kl_weight: float = param(0.05, "weight of the style code's KL term (GauGAN: 0.05)", low=0)
    style_weight: float = param(
        0.0,
        "weight of the texture loss: Gram matrices of a fixed random conv net's features over "
        "the new mask's hidden part (GauGAN: 0, it has VGG's perceptual loss)",
        low=0,
    )
    style_margin: int = param(
        0,
        "texture loss only on hidden pixels at least this far (px) inside the hidden part, so "
        "that the region's edges (the same in both crops) do not dominate its statistics",
        low=0,
        high=16,
    )
    noise: bool = param(
        False, "per-pixel noise inputs scaled by the style code (GauGAN: off)", role="model"
    )
    completion_iou: float = param(
        0.0,
        "also require the Amodal-VAE completion of a training instance to match its visible mask "
        "with this IoU (0: the stage-1 rule alone; on the built-in val scenes the median is 0.76 "
        "for unoccluded, 0.58 for occluded instances)",
        low=0,
        high=1,
    )
    amodal_model: str = param(
        "builtin", "Amodal-VAE model folder for --completion-iou ('builtin': the shipped one)"
    )
    samples: int = param(8, "rows of the samples.png grid (0: none)", low=0, high=64, role="run")

    def check(self) -> None:
        """Cross-field rules."""
        if self.crop_size % 4:
            raise MaskgenError(f"--crop-size {self.crop_size}: must be a multiple of 4")
        if self.crop_size < 2 ** (self.d_scales + 2):
            raise MaskgenError(
                f"--d-scales {self.d_scales}: too many for --crop-size {self.crop_size}"
            )

    def net_config(self) -> SynthNetConfig:
        return SynthNetConfig(
            width=self.width,
            style_dim=self.style_dim,
            spade_hidden=self.spade_hidden,
            crop_size=self.crop_size,
            noise=self.noise,
        )


def masked_l1(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels of ``mask`` (``B x 1 x H x W``), 0 when empty."""
    return ((pred - truth).abs() * mask).sum() / (3.0 * mask.sum()).clamp_min(1.0)


def make_batch(cfg: SynthConfig, data: SynthData, step: int, rank: int = 0) -> SynthBatch:
    """The batch of ``step`` on process ``rank``, drawn from a generator seeded by
    ``(seed, step, rank)`` only, so a resumed run draws what an uninterrupted one would."""
    rng = np.random.default_rng([int(cfg.seed), int(step), int(rank)])
    return synth_batch(rng, data, cfg.batch_size)


def _feature_matching(
    fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]
) -> torch.Tensor:
    """GauGAN's feature matching: L1 between intermediate features, mean over layers, summed
    over scales divided by the number of scales."""
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real, strict=True):
        layers = list(zip(f_scale[:-1], r_scale[:-1], strict=True))
        for f, r in layers:
            total = total + F.l1_loss(f, r.detach()) / max(len(layers), 1)
    return total / len(fake)


class SynthTrainer:
    """GauGAN's alternation on the engine loop (see the module docstring)."""

    def __init__(self, cfg: SynthConfig, data: SynthData, ctx: DistContext) -> None:
        self.cfg, self.data, self.ctx = cfg, data, ctx
        device = self.device = ctx.device
        self.gen = SpadeGenerator(cfg.net_config()).to(device)
        self.disc = MultiscaleDiscriminator(cfg.d_width, cfg.d_scales, cfg.d_layers).to(device)
        betas = (cfg.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr, betas=betas)
        self.gen_ddp, self.disc_ddp = wrap_ddp(self.gen, ctx), wrap_ddp(self.disc, ctx)
        # fixed random weights (a seeded constant, not trained, not checkpointed)
        self.texture = RandomFeatureStyle().to(device) if cfg.style_weight > 0 else None
        self.state: dict[str, Any] = {"seed": int(cfg.seed)}
        self.resumable = {
            "gen": self.gen,
            "disc": self.disc,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "state": self.state,
        }
        self.run: RunFolder | None = None
        self._last: dict[str, torch.Tensor] = {}

    def _tensors(self, b: SynthBatch) -> dict[str, torch.Tensor]:
        d = dataclasses.asdict(b)
        return {k: torch.from_numpy(v).to(self.device) for k, v in d.items()}

    def _generate(self, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, kl)`` with a sampled style code (GauGAN's reparameterisation)."""
        fake, mu, logvar = self.gen_ddp(t["coarse"], t["visible"], t["new"], sample=True)
        kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
        return fake, kl

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One discriminator update, one generator update."""
        cfg = self.cfg
        t = self._tensors(make_batch(cfg, self.data, step, self.ctx.rank))
        new, real = t["new"], t["image"]
        self.gen.train()
        fake, kl = self._generate(t)
        comp = fake * new + real * (1 - new)
        metrics: dict[str, torch.Tensor] = {}
        use_gan = cfg.gan_weight > 0 or cfg.feat_weight > 0
        if use_gan:
            d_fake = self.disc_ddp(comp.detach(), new)
            d_real = self.disc_ddp(real, new)
            loss_d = sum(
                F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean()
                for r, f in zip(d_real, d_fake, strict=True)
            ) / len(d_real)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            metrics["loss_d"] = loss_d.detach()
        l1 = masked_l1(fake, real, new)
        loss_g = cfg.l1_weight * l1 + cfg.kl_weight * kl
        hidden = new * (1 - t["visible"])
        if self.texture is not None:
            inner = hidden
            if cfg.style_margin > 0:  # erode: 1 - max-pool of the complement
                k = 2 * cfg.style_margin + 1
                inner = 1 - F.max_pool2d(1 - hidden, k, stride=1, padding=cfg.style_margin)
            style = self.texture(comp, real, inner)
            loss_g = loss_g + cfg.style_weight * style
            metrics["loss_style"] = style.detach()
        if use_gan:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            d_fake = self.disc(comp, new)  # the plain module: D is not updated here
            with torch.no_grad():
                d_real = self.disc(real, new)
            adv = -sum(f[-1].mean() for f in d_fake) / len(d_fake)
            feat = _feature_matching(d_fake, d_real)
            loss_g = loss_g + cfg.gan_weight * adv + cfg.feat_weight * feat
            for p in self.disc.parameters():
                p.requires_grad_(True)
            metrics["loss_g_adv"], metrics["loss_feat"] = adv.detach(), feat.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        metrics.update(
            l1_new=l1.detach(),
            kl=kl.detach(),
            mae_hidden=masked_l1(fake.detach(), real, hidden),
            coarse_mae_hidden=masked_l1(t["coarse"], real, hidden),
        )
        self._last = {k: v.detach() for k, v in t.items()} | {"fake": comp.detach()}
        return metrics

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Refresh ``samples.png`` from the last batch (rows: real, visible, new mask, output)."""
        n = min(self.cfg.samples, len(self._last.get("image", [])))
        if self.run is None or n == 0:
            return
        t = self._last
        shown = (t["coarse"] + 1) / 2 * t["visible"]
        tiles = [(t["image"] + 1) / 2, shown, t["new"].expand(-1, 3, -1, -1), (t["fake"] + 1) / 2]
        grid = torch.stack([x[:n] for x in tiles], dim=1).flatten(0, 1)
        save_image_grid(self.run.path / "samples.png", grid, nrow=4)


def load_training_data(cfg: SynthConfig) -> SynthData:
    """Read and check ``--data`` and ``--images`` (every error before any file is written)."""
    dataset = load_visible_training_set(cfg.data, cfg.images)
    if cfg.completion_iou > 0 and cfg.amodal_model != "builtin":
        from maskgen.engine import resolve_model_folder

        resolve_model_folder(cfg.amodal_model)
    return load_synth_data(dataset, cfg.images, cfg.crop_size, cfg.completion_iou, cfg.amodal_model)


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def check_out(out: Path, force: bool) -> None:
    """``--out``: not a file; with ``--force``, only an earlier ``mask-synth`` run is removed
    (never a folder of other files)."""
    from maskgen.core.io import read_json

    if out.exists() and not out.is_dir():
        raise MaskgenError(f"{out}: exists and is not a folder")
    if not force or not out.is_dir() or not any(out.iterdir()):
        return
    header = read_json(out / "config.json") if (out / "config.json").is_file() else None
    if not isinstance(header, dict) or header.get("kind") != MODEL_KIND:
        raise MaskgenError(
            f"{out}: is not a synth run; --force only replaces an earlier 'maskgen synth train' run"
        )
    extra = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if extra:
        raise MaskgenError(
            f"{out}: holds files a synth run does not write ({extra[0]}); not removed"
        )


def _clear_run(out: Path) -> None:
    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def train_synthesizer(
    cfg: SynthConfig, opts: RunOptions, out: str | os.PathLike[str], force: bool = False
) -> dict[str, Any]:
    """Validate -> RunFolder -> training loop -> model folder -> ``DONE`` (``maskgen synth
    train``). Rerunning after a kill resumes; a finished run is reported, not retrained, unless
    ``force`` (which starts the run over). Runs under torchrun (DDP over both networks).

    Returns:
        ``{"out", "model", "finished", "steps", "last"}``.

    Raises:
        MaskgenError: bad input (before anything is written), or a run folder of another kind
            or config (without ``force``).
    """
    out = Path(out)
    cfg.check()
    check_out(out, force)
    ctx = init_distributed(opts.device)
    try:
        data = load_training_data(cfg)
        quiet = opts.quiet or not ctx.is_main
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        if force and ctx.is_main and out.is_dir():
            _clear_run(out)
        if ctx.world_size > 1:
            barrier()  # every rank sees the cleared folder before RunFolder validates it
        run = RunFolder(out, MODEL_KIND, resume_key(cfg), ctx=ctx)
        model_dir = run.model_dir()
        if run.is_finished():
            _say(f"{out}: already finished; the model is in {model_dir}", quiet)
            return run_summary(run, total_steps=cfg.steps)
        seed_everything(cfg.seed, ctx.rank)
        trainer = SynthTrainer(cfg, data, ctx)
        trainer.run = run
        n_g, n_d = count_parameters(trainer.gen), count_parameters(trainer.disc)
        _say(
            f"synth train: generator {n_g / 1e6:.2f}M, discriminator {n_d / 1e6:.2f}M "
            f"parameters; {len(data.patches)} unoccluded instances of {data.images} images",
            quiet,
        )
        res = training_loop(trainer, run, total_steps=cfg.steps, opts=opts, desc="synth")
        gen = trainer.gen
        return finish_run(
            run,
            res,
            lambda d: save_model_folder(
                d,
                MODEL_KIND,
                gen.cfg.to_dict(),
                gen.state_dict(),
                extra={"training": config_to_dict(cfg)},
            ),
            lambda text: _say(text, quiet),
        )
    finally:
        shutdown_distributed()
