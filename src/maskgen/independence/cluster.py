"""Independence prior, application 2: instance appearances and masks from ONE cluster image.

Dai et al. (AAAI 2019), "Learning Instance Appearances and Masks From One Image of HOC":

- **Foreground providers**: ``N`` providers share one deconvolutional generator
  ``z -> RGBA`` (paper Table 2, :class:`ClusterGenerator`), each with its own independently
  sampled ``z`` ("to guarantee the independence between appearances").
- **Layout**: structure-free -- each generated RGBA layer is zero-padded by ``pad`` px and
  randomly cropped back (:func:`maskgen.independence.layout.pad_and_random_crop`; padding 30 /
  32 / 26 px for the crowd / fruit / seed images, "Layout Details").
- **Background provider**: pure black, or real patches with a black disk of radius ~20 px in the
  centre (:func:`maskgen.independence.cluster_patches.make_backgrounds`, "which work better").
- **Composition**: eq. 5 back to front (:func:`maskgen.independence.composition.compose`).
- **Losses**: SN discriminator (Table 2), adversarial loss (eq. 6-7), mask-area penalty
  ``lambda * E[(1/N) sum_i (|m_i|_1/A - a)^2]`` (eq. 7), and the appendix's "information
  regularization term like InfoGAN" of weight ``beta`` (:class:`LatentPredictor`): a small
  network Q predicts ``z`` back from each generated RGBA instance; G and Q minimise
  ``beta * mean((Q(G(z)) - z)^2)`` (InfoGAN's continuous-code term with a fixed-variance
  Gaussian), which keeps the generator using ``z`` (more diverse instances).

Presets (:data:`PRESETS`): ``crowd``, ``fruit``, ``seed`` follow paper Table 4 (layers 8/10/12,
lambda 1000, dim z 6/5/2, a 0.1/0.25/0.25, beta 50) with Table 2's networks at 64x64; ``cpu``
(the default) is sized for a 2-core CPU: 32x32 patches and narrower networks (see
:data:`PRESETS` for every value and ``docs``/report for what was measured).

Stability (measured on the synthetic clusters, CPU, 32x32, see benchmarks/RESULTS.md): with the
paper's losses only (``--alpha-prior 0 --binary-weight 0``) the masks went *diffuse* within a few
hundred steps -- alpha ~= a everywhere, which satisfies the area penalty while ~10 faint layers
blend into an opaque mush (fruit, 500 steps: 0 % single-object layers, IoU 0.12); a binarisation
term alone (weight 5) did not break that by step 325. Two additions, neither in the paper:

- a centred-disk logit bias on alpha (``alpha_prior=4``, disk area = a) so every provider starts
  as one centred object of the target area (D/G balance healthy: D(real) ~ 0.52, D(fake) ~ 0.46
  instead of 0.97 / 0.05), plus the binarisation term ``mean(alpha (1 - alpha))`` (weight 5);
- a *curriculum* (``prior_anneal``, :func:`prior_scale_at`): the bias decays linearly to 0 over
  the first ``prior_anneal`` steps. It only gets training started; the saved generator carries
  no prior (``prior_scale_final = 0`` in the model's config.json), so evaluation measures the
  generator alone. A *fixed* prior (``--prior-anneal 0``) made the scores mostly the prior's:
  the untrained generator already scored 100 % / IoU 0.887 on the fruit cluster (trained 0.865).

  Measured with the curriculum (``cpu`` preset, 1500 steps, ``a`` 0.2 / 0.09 / 0.08 / 0.05 for
  fruit / cat / horse / giraffe, benchmarks/RESULTS.md): the saved generator *alone* gives 100 %
  single-object layers on all four clusters and best-match IoU 0.849 / 0.782 / 0.619 / 0.509
  at training seed 0 (fruit and cat at seeds 0-2: 0.849-0.857 and 0.721-0.795, 100 % each),
  but its masks are blobs of about the target area that beat the best centred disk on no
  cluster's complete shapes (cat: 0.662-0.677 vs 0.741) -- no silhouette shape was learned.

Why shapes are not learned (diagnosed on the synthetic cat cluster with trial runs of
``benchmarks/cluster_bench.py --no-record``; the recorded sections show the "mask drawn in
background colour" column): the silhouette clusters are *not* DSF-HOC -- 46-73 % of their dark
background is visible -- and a transparent pixel over the black background disk looks exactly
like an opaque pixel painted in the background colour. The generator uses that freedom: with
``a`` = 0.2 (twice the cat's true area, 0.093) a third of each opaque mask was background-coloured
paint around a smaller orange object, i.e. the shape lived in the RGB, not in alpha. With ``a``
at the true area the paint stays (~24 %): 10 layers plus the disk background's real periphery
make composites denser than the image (6.4 objects per patch), and painted dark blobs thin them
out. Matching the density (6-7 layers, disk or black background) removes the paint (0 %), but
then layers break into several fragments (0.8-32 % one object); 8 layers keep one object per
layer with less paint (18 %) but match the shapes worse (IoU 0.676 vs 0.782 with 10). Outline rims on every instance
(``data cluster --rim``) changed nothing; longer runs (2500 steps) varied the masks more but
matched the shapes worse; R1 on D (``--r1-weight 1``) left D unable to tell real from fake
(D(real) ~ 0.51) and the layers a soft grey haze. The paper's setting avoids the ambiguity by
construction: a dense cluster hides its background, so nothing in a real patch is
background-coloured; a dense rimmed cat cluster (``--spacing 0.35 --rim 0.6``, 30 layers to
cover it) cost 2.5x per step and its D could not separate the texture from composites by step
750 (D(real) 0.52), so it was not pursued at this budget.

Where a shape *was* learned (session 3; ``cluster-synthetic-seed*`` in benchmarks/RESULTS.md,
each setting trained at seeds 0, 1, 2): the built-in *seed* cluster (``data cluster --shape seed
--spacing 0.5``: shaded 2.2-2.8 : 1 ellipses, 14 % background visible), far from any disk.

- ``cpu`` preset (10 layers, pad 16), ``--area-target 0.1``: seeds break into 3-4 lobes per
  layer (0 % single-object layers in 3 of 3 runs).
- ``--layers 16 --pad 12`` (fewer lobes needed to fill a patch, objects nearer its centre):
  slightly elongated, squarish blobs (see the figure) that still beat the best centred disk on
  complete shapes (0.638-0.662 vs 0.632) and
  centred disks of every radius on coverage (0.596-0.605 vs 0.566) in 3 of 3 runs; the issue
  targets in 2 of 3 (seed 1: 72 % single-object layers, some layers add a small second blob).
- the same without binarisation (``--binary-weight 0``): more varied masks and the best run,
  clearly elongated ellipses of varied orientation (complete 0.734, coverage 0.653), but 1 of 3 runs meets the targets (38.7 % and 3.9 % single-
  object layers at seeds 1 and 2).

- ``--layers 16 --pad 24 --patch-size 64`` (the paper's patch size with the ``cpu`` networks;
  the seeds are upsampled from 48 px windows, so no new image detail): 3 of 3 runs meet the
  issue targets (100 % single-object layers) and beat both references (complete 0.644-0.676 vs
  0.625, coverage 0.608-0.626 vs 0.568) -- the most reliable setting, at ~21 CPU min per run
  (over the ``cpu`` preset's 20-minute budget). The masks are rounded, partly elongated or
  drop-shaped blobs, not clean ellipses.

Margins are small and 7-13 % of each learned mask is painted in background colour (a dark hole
that makes rendered seeds look like crescents: the paint ambiguity above, smaller). The same
``--layers 16 --pad 12`` on fruit gave one mask shape for every ``z`` (pairwise IoU 1.000,
best-match 0.840 vs 0.849) and on the cat 38 % paint (complete 0.706 vs disk 0.741), so the
``cpu`` preset is unchanged.

Paper presets (``--preset crowd|fruit|seed``) keep both terms at 0; the ``cpu`` preset with the
paper's losses only is ``--alpha-prior 0 --binary-weight 0``.

Tensors: generated instances are ``M x 4 x P x P`` float in ``[0, 1]`` (RGB + alpha, not
premultiplied); composites and real patches ``N x 3 x P x P`` in ``[0, 1]``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskgen.errors import MaskgenError
from maskgen.independence.cluster_config import (  # noqa: F401 (re-exported)
    PRESETS,
    ClusterConfig,
    make_config,
)
from maskgen.independence.cluster_patches import PatchSampler, make_backgrounds
from maskgen.independence.composition import compose
from maskgen.independence.discriminator import ConvSpec, SNDiscriminator
from maskgen.independence.gan import (
    area_weight_at,
    detect_collapse,
    discriminator_step,
    ema_update,
    generator_step,
)
from maskgen.independence.layout import pad_and_random_crop

KIND = "cluster"


# ---------------------------------------------------------------------------------------------
# Configuration and presets
# ---------------------------------------------------------------------------------------------


class ClusterGenerator(nn.Module):
    """Paper Table 2 generator: ``z`` (``M x z_dim``) -> RGBA ``M x 4 x P x P`` in ``[0, 1]``.

    Layers (Table 2, widths ``c0, c1, c2 = g_channels``, base ``b = P / 8``): "1x1 conv" of the
    ``1 x 1 x z`` input to ``b*b*c0`` (a linear layer), BN, lReLU; ``g_base_convs`` x (4x4 conv
    ``c0`` stride 1, BN, lReLU); 4x4 deconv ``c1`` stride 2, BN, lReLU; 4x4 deconv ``c2``
    stride 2, BN, lReLU; 4x4 deconv 4 stride 2, sigmoid. Channel 3 is the soft mask (alpha).
    """

    def __init__(
        self,
        z_dim: int,
        patch_size: int = 64,
        channels=(256, 128, 64),
        base_convs: int = 2,
        negative_slope: float = 0.2,
        alpha_prior: float = 0.0,
        area_target: float = 0.25,
    ) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.z_dim, self.patch_size, self.base = z_dim, patch_size, patch_size // 8
        self.fc = nn.Linear(z_dim, self.base * self.base * c0, bias=False)
        self.bn0 = nn.BatchNorm1d(self.base * self.base * c0)
        act = nn.LeakyReLU(negative_slope, inplace=True)
        body: list[nn.Module] = []
        for _ in range(base_convs):
            # 4x4 stride-1 "same" conv (even kernel: pad 1 before, 2 after).
            body += [
                nn.ZeroPad2d((1, 2, 1, 2)),
                nn.Conv2d(c0, c0, 4, 1, 0, bias=False),
                nn.BatchNorm2d(c0),
                act,
            ]
        body += [nn.ConvTranspose2d(c0, c1, 4, 2, 1, bias=False), nn.BatchNorm2d(c1), act]
        body += [nn.ConvTranspose2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), act]
        body += [nn.ConvTranspose2d(c2, 4, 4, 2, 1)]
        self.body = nn.Sequential(*body)
        self.c0 = c0
        # Fixed (non-trained) logit bias of the alpha channel: alpha_prior * (1 - r^2 / r0^2),
        # clamped to +-alpha_prior, r0 the radius of a centred disk of relative area a.
        r0 = math.sqrt(area_target * patch_size * patch_size / math.pi)
        c = (patch_size - 1) / 2.0
        yy, xx = torch.meshgrid(torch.arange(patch_size), torch.arange(patch_size), indexing="ij")
        r2 = ((yy - c) ** 2 + (xx - c) ** 2).float() / (r0 * r0)
        prior = (alpha_prior * (1.0 - r2)).clamp(-abs(alpha_prior), abs(alpha_prior))
        bias = torch.zeros(1, 4, patch_size, patch_size)
        bias[0, 3] = prior
        self.register_buffer("logit_bias", bias, persistent=False)
        #: multiplier of the fixed bias (set per step by the training loop for an annealed
        #: prior, see :func:`prior_scale_at`; 0 = the generator alone).
        self.prior_scale = 1.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.bn0(self.fc(z)), 0.2)
        h = h.view(z.shape[0], self.c0, self.base, self.base)
        h = self.body(h)
        if self.prior_scale != 0.0:
            h = h + self.prior_scale * self.logit_bias
        return torch.sigmoid(h)


class LatentPredictor(nn.Module):
    """InfoGAN-style Q network: RGBA instance ``M x 4 x P x P`` -> predicted ``z`` ``M x z_dim``.

    The paper only says "an information regularization term like InfoGAN" (appendix); we use a
    small stride-2 conv net (lReLU) and a linear head, trained jointly with G on
    ``mean((Q(G(z)) - z)^2)``.
    """

    def __init__(self, z_dim: int, patch_size: int, channels=(16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 4
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c = ch
        self.net = nn.Sequential(*layers)
        side = patch_size // 2 ** len(channels)
        self.head = nn.Linear(c * side * side, z_dim)

    def forward(self, rgba: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(rgba * 2.0 - 1.0).flatten(1))


def prior_scale_at(step: int, cfg: ClusterConfig) -> float:
    """Multiplier of the centred-disk alpha prior at training step ``step`` (0-based).

    ``prior_anneal > 0``: ``max(0, 1 - step / prior_anneal)`` -- full strength at step 0, exactly
    0 from step ``prior_anneal`` on, so a model trained for ``steps >= prior_anneal`` has no
    prior left and its masks are the generator's own. ``prior_anneal == 0``: 1 throughout (the
    prior stays, as in the earlier ``cpu`` preset). Returns 0 when ``alpha_prior == 0``.
    """
    if cfg.alpha_prior == 0:
        return 0.0
    if cfg.prior_anneal <= 0:
        return 1.0
    return max(0.0, 1.0 - step / cfg.prior_anneal)


def build_networks(cfg: ClusterConfig) -> tuple[ClusterGenerator, SNDiscriminator, LatentPredictor]:
    """Generator, discriminator and Q network for ``cfg``."""
    g = ClusterGenerator(
        cfg.z_dim,
        cfg.patch_size,
        cfg.g_channels,
        cfg.g_base_convs,
        alpha_prior=cfg.alpha_prior,
        area_target=cfg.area_target,
    )
    d = SNDiscriminator(tuple(ConvSpec(*r) for r in cfg.d_specs), in_channels=3)
    q = LatentPredictor(cfg.z_dim, cfg.patch_size, cfg.q_channels)
    return g, d, q


def sample_z(
    n: int, z_dim: int, generator: torch.Generator | None = None, device="cpu"
) -> torch.Tensor:
    """Latent codes ``n x z_dim`` uniform in ``[-1, 1]`` (InfoGAN's continuous codes)."""
    return (torch.rand(n, z_dim, generator=generator) * 2.0 - 1.0).to(device)


def generate_composites(
    g: nn.Module,
    cfg: ClusterConfig,
    n: int,
    background: torch.Tensor,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Generator for scene patches: ``N`` providers -> layout -> composition (paper Fig. 4).

    Args:
        g: the shared instance generator.
        n: composites to make.
        background: ``n x 3 x P x P`` ``x_0``.
        z: ``n x L x z_dim`` codes (drawn when None).

    Returns:
        dict with ``z`` (``n x L x z_dim``), ``instances`` (``n x L x 4 x P x P``, before
        layout), ``layers`` (``n x L x 4 x P x P``, after layout) and ``composite``
        (``n x 3 x P x P``).
    """
    L, P = cfg.layers, cfg.patch_size
    dev = background.device
    if z is None:
        z = sample_z(n * L, cfg.z_dim, generator, dev).view(n, L, cfg.z_dim)
    inst = g(z.reshape(n * L, cfg.z_dim))  # (n*L) x 4 x P x P
    placed = pad_and_random_crop(inst, cfg.pad, generator=generator)
    inst = inst.view(n, L, 4, P, P)
    placed = placed.view(n, L, 4, P, P)
    comp = compose([(placed[:, i, :3], placed[:, i, 3:4]) for i in range(L)], background)
    return {"z": z, "instances": inst, "layers": placed, "composite": comp}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def image_fingerprint(image: np.ndarray) -> str:
    """Short SHA-256 of an image's shape and pixels (a run refuses to resume on another image)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:16]


def regularizers(
    q: nn.Module, out: dict[str, torch.Tensor], cfg: ClusterConfig
) -> dict[str, torch.Tensor]:
    """Application 2's extra generator terms, passed to the shared G phase as ``extra_loss``.

    - InfoGAN-like term (appendix, weight ``beta``): ``mean((Q(G(z)) - z)^2)``. All layers are
      i.i.d., so it is computed on layer 0 of each composite -- an unbiased estimate of the
      all-layer term at ``1/L`` of the cost.
    - Binarisation term (ours, weight ``binary_weight``, 0 in the paper presets):
      ``mean(alpha * (1 - alpha))`` over the generated masks.

    Returns ``{"extra": weighted sum (scalar, attached), "info_loss", "binary_loss"}``.
    """
    zhat = q(out["instances"][:, 0])
    info = F.mse_loss(zhat.float(), out["z"][:, 0].float())
    alphas = out["instances"][:, :, 3:4].float()
    binary = (alphas * (1.0 - alphas)).mean()
    extra = cfg.info_weight * info + cfg.binary_weight * binary
    return {"extra": extra, "info_loss": info.detach(), "binary_loss": binary.detach()}


def r1_step(
    d: nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor, gamma: float, every: int
) -> float:
    """One lazy R1 step on D (not in the paper; Mescheder et al. 2018, ``r1_weight``).

    ``every * (gamma / 2) * mean_n |grad_x D(x_n)|^2`` over real patches ``N x 3 x P x P``
    (the factor ``every`` keeps the average strength when applied every ``every`` steps).
    Returns the unscaled penalty ``mean |grad|^2``.
    """
    x = real.detach().float().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).float().sum(), x, create_graph=True)
    pen = grad.pow(2).flatten(1).sum(1).mean()
    opt_d.zero_grad(set_to_none=True)
    (0.5 * gamma * every * pen).backward()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # ``d`` is the unwrapped module (DDP does not support double backward): average the
        # gradients by hand so every rank takes the same step.
        world = torch.distributed.get_world_size()
        for p in d.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad.div_(world)
    opt_d.step()
    return float(pen.detach())


def preview_grid(out: dict[str, torch.Tensor], real: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Rows: real patches, composites, instance appearances (RGB over grey by alpha), masks."""
    k = min(k, real.shape[0], out["composite"].shape[0])
    inst = out["instances"][:k, 0].detach().float().cpu()
    rgb, a = inst[:, :3], inst[:, 3:4]
    over_grey = rgb * a + 0.5 * (1 - a)
    return torch.cat(
        [
            real[:k].cpu(),
            out["composite"][:k].detach().float().cpu(),
            over_grey,
            a.expand(-1, 3, -1, -1),
        ]
    )


def train_cluster(
    *,
    image: np.ndarray,
    instance_size: float,
    out: str | Path,
    preset: str = "cpu",
    image_name: str = "image",
    device: str = "cpu",
    log_every: int = 50,
    checkpoint_every: int = 200,
    grid_every: int | None = None,
    max_seconds: float | None = None,
    threads: int | None = None,
    **overrides: Any,
) -> Path | None:
    """Train a cluster model on one image; resume automatically from ``out``'s checkpoints.

    Args:
        image: ``H x W x 3`` uint8 RGB (grey/RGBA accepted).
        instance_size: width in pixels of the largest instance in ``image``.
        out: run folder (engine :class:`~maskgen.engine.RunFolder` of kind ``"cluster"``).
        preset: a :data:`PRESETS` name; ``overrides`` (ClusterConfig fields, e.g. ``steps``,
            ``flips``, ``batch_size``) replace preset values.
        device: ``"cpu"`` or ``"cuda"`` (mixed precision there).
        log_every: steps between metrics.jsonl lines; ``grid_every`` between preview grids
            (default: ``log_every``, one grid per logging tick); ``checkpoint_every`` between checkpoints.
        max_seconds: stop (with a checkpoint) after this wall time; the run resumes later.

    Returns:
        the model folder ``out/model`` (``config.json`` + ``model.safetensors``), or None when
        training stopped early (``max_seconds``); rerunning continues it.
    """
    from maskgen.engine import (
        RunFolder,
        autocast_context,
        capture_rng_state,
        init_distributed,
        progress,
        restore_rng_state,
        save_image_grid,
        save_model_folder,
        seed_everything,
        shutdown_distributed,
        unwrap,
        warn,
        wrap_ddp,
    )

    cfg = make_config(preset, **overrides)
    if threads:
        torch.set_num_threads(threads)
    sampler = PatchSampler(image, instance_size, cfg.patch_size, cfg.flips, name=image_name)
    ctx = init_distributed(device)
    try:
        seed_everything(cfg.seed, ctx.rank)
        config = {
            "preset": preset,
            "instance_size": float(instance_size),
            "window": sampler.window,
            "image_size": [int(sampler.image_hw[0]), int(sampler.image_hw[1])],
            "image_sha": image_fingerprint(sampler.resized.numpy()),
            **cfg.to_dict(),
        }
        run = RunFolder(out, kind=KIND, config=config, ctx=ctx)
        dev = ctx.device
        g, d, q = build_networks(cfg)
        g, d, q = g.to(dev), d.to(dev), q.to(dev)
        opt_g = torch.optim.Adam(
            list(g.parameters()) + list(q.parameters()), lr=cfg.lr_g, betas=cfg.betas
        )
        opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema_decay > 0 else None
        start = 0
        state = run.load_latest_checkpoint(map_location=dev)
        if state is not None:
            g.load_state_dict(state["g"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            d.load_state_dict(state["d"])
            q.load_state_dict(state["q"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
            start = int(state["step"])
            restore_rng_state(state["rng"])
            if ctx.is_main:
                import sys

                print(f"resuming {run.path} from step {start}", file=sys.stderr)
        if ctx.is_main and run.ctx.is_main and start == 0:
            from maskgen.core.io import write_image

            write_image(
                run.path / "train_image.png",
                (sampler.resized.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
            )
        end_scale = prior_scale_at(cfg.steps, cfg)
        if ctx.is_main and start == 0 and cfg.alpha_prior and cfg.prior_anneal and end_scale > 0:
            warn(
                f"--prior-anneal {cfg.prior_anneal} > --steps {cfg.steps}: the saved generator "
                f"keeps {end_scale:.2f} of the alpha prior (masks partly the prior's disk)"
            )
        gw, dw, qw = wrap_ddp(g, ctx), wrap_ddp(d, ctx), wrap_ddp(q, ctx)
        grid_every = grid_every or log_every
        (run.path / "grids").mkdir(exist_ok=True)
        per_rank = max(1, cfg.batch_size // ctx.world_size)
        t0 = time.monotonic()
        acc: dict[str, float] = {}
        cnt: dict[str, int] = {}  # per key: R1 is not logged every step
        history: list[dict[str, float]] = []
        last_warning: str | None = None

        def noise_at(i: int) -> float:
            """Instance noise std, annealed linearly to 0 over ``noise_steps``."""
            if cfg.instance_noise <= 0 or cfg.noise_steps <= 0:
                return 0.0
            return cfg.instance_noise * max(0.0, 1.0 - i / cfg.noise_steps)

        step = start

        def save(step_done: int) -> None:
            run.save_checkpoint(
                step_done,
                {
                    "step": step_done,
                    "g": unwrap(gw).state_dict(),
                    "d": unwrap(dw).state_dict(),
                    "q": unwrap(qw).state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "rng": capture_rng_state(),
                    **({"ema": ema.state_dict()} if ema is not None else {}),
                },
            )

        for step in progress(range(start, cfg.steps), desc="cluster", initial=start, ctx=ctx):
            unwrap(gw).prior_scale = prior_scale_at(step, cfg)
            if ema is not None:
                ema.prior_scale = unwrap(gw).prior_scale
            real = sampler.sample(per_rank).to(dev)
            bg = make_backgrounds(cfg.background, per_rank, sampler, radius=cfg.disk_radius).to(dev)
            # Phase 0: providers -> layout -> composition (paper Fig. 4).
            with autocast_context(dev):
                out_ = generate_composites(gw, cfg, per_rank, bg)
            # Phase 1: discriminator on real patches vs composites (eq. 6).
            m_d = discriminator_step(
                dw,
                opt_d,
                real,
                out_["composite"],
                loss=cfg.adv_loss,
                instance_noise=noise_at(step),
                step=step,
                autocast=autocast_context(dev),
            )
            if cfg.r1_weight > 0 and step % max(1, cfg.r1_every) == 0:
                m_d["r1"] = r1_step(unwrap(dw), opt_d, real, cfg.r1_weight, max(1, cfg.r1_every))
            # Phase 2: generator (+ Q): adversarial + lambda * area (eq. 7) + beta * info (+ binary).
            with autocast_context(dev):
                reg = regularizers(qw, out_, cfg)
            m_g = generator_step(
                unwrap(dw),
                opt_g,
                out_["composite"],
                out_["instances"][:, :, 3:4],
                area_weight=area_weight_at(step, cfg.area_weight, cfg.area_warmup),
                area_target=cfg.area_target,
                loss=cfg.adv_loss,
                instance_noise=noise_at(step),
                extra_loss=reg["extra"],
                step=step,
                autocast=autocast_context(dev),
            )
            m_g.update(info_loss=float(reg["info_loss"]), binary_loss=float(reg["binary_loss"]))
            if ema is not None:
                ema_update(ema, unwrap(gw), cfg.ema_decay)
            for k, v in {**m_d, **m_g}.items():
                acc[k] = acc.get(k, 0.0) + float(v)
                cnt[k] = cnt.get(k, 0) + 1
            done = step + 1
            timed_out = max_seconds is not None and time.monotonic() - t0 > max_seconds
            if done % log_every == 0 or done == cfg.steps or timed_out:
                tick = {k: v / cnt[k] for k, v in acc.items()}
                tick["prior_scale"] = unwrap(gw).prior_scale
                run.log(done, **tick, sec_per_iter=(time.monotonic() - t0) / max(1, done - start))
                history.append(tick)
                msg = detect_collapse(history)
                if msg and ctx.is_main and msg != last_warning:
                    warn(f"step {done}: {msg}")
                    last_warning = msg
                acc, cnt = {}, {}
            if done % grid_every == 0 or done == cfg.steps:
                save_image_grid(
                    run.path / "grids" / f"grid-{done:08d}.png", preview_grid(out_, real), nrow=8
                )
            if done % checkpoint_every == 0 or done == cfg.steps or timed_out:
                save(done)
            if timed_out:
                break
        finished = step + 1 >= cfg.steps or start >= cfg.steps
        model_dir = run.model_dir()
        if finished:
            final_g = ema if ema is not None else unwrap(gw)
            final_scale = prior_scale_at(cfg.steps, cfg)
            g_state = {f"generator.{k}": v for k, v in final_g.state_dict().items()}
            save_model_folder(
                model_dir,
                KIND,
                config,
                g_state,
                extra={
                    "instance_size": float(instance_size),
                    "window": sampler.window,
                    "patch_size": cfg.patch_size,
                    "prior_scale_final": final_scale,
                },
            )
            run.mark_finished()
            return model_dir
        return None
    finally:
        shutdown_distributed()


def load_generator(
    path: str | Path, device: str = "cpu"
) -> tuple[ClusterGenerator, ClusterConfig, dict]:
    """Load a trained generator from a model folder (or a run folder holding ``model/``).

    Returns ``(generator in eval mode, its ClusterConfig, the full config.json dict)``.
    """
    from maskgen.engine import load_model_folder, load_state_dict_strict

    header, state = load_model_folder(path, KIND, device=device)
    cfg = ClusterConfig.from_dict(header["config"])
    g = ClusterGenerator(
        cfg.z_dim,
        cfg.patch_size,
        cfg.g_channels,
        cfg.g_base_convs,
        alpha_prior=cfg.alpha_prior,
        area_target=cfg.area_target,
    )
    gstate = {k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")}
    if not gstate:
        raise MaskgenError(f"{path}: model holds no generator weights")
    load_state_dict_strict(g, gstate, path)
    # The prior's strength at the end of training (0 for an annealed prior: generator alone).
    g.prior_scale = float(header.get("prior_scale_final", prior_scale_at(cfg.steps, cfg)))
    return g.to(device).eval(), cfg, header


@torch.no_grad()
def generate_instances(
    g: ClusterGenerator, n: int, seed: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """``n`` generated instances ``n x 4 x P x P`` (eval-mode BN), deterministic for ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return g(sample_z(n, g.z_dim, gen, device)).float().cpu()


__all__ = [
    "KIND",
    "PRESETS",
    "ClusterConfig",
    "ClusterGenerator",
    "LatentPredictor",
    "build_networks",
    "regularizers",
    "generate_composites",
    "generate_instances",
    "load_generator",
    "make_config",
    "prior_scale_at",
    "r1_step",
    "sample_z",
    "train_cluster",
]
