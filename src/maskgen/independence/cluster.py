"""Independence prior, application 2: instance appearances and masks from ONE cluster image.

Dai et al. (AAAI 2019), "Learning Instance Appearances and Masks From One Image of HOC"
(``docs/design.md``, "Independence prior"):

- **Foreground providers**: ``N`` providers share one deconvolutional generator
  ``z -> RGBA`` (paper Table 2, :class:`ClusterGenerator`), each with its own independently
  sampled ``z`` ("to guarantee the independence between appearances").
- **Layout**: structure-free -- each generated RGBA layer is zero-padded by ``pad`` px and
  randomly cropped back (:func:`maskgen.independence.layout.pad_and_random_crop`).
- **Background provider**: pure black, or real patches with a black disk of radius ~20 px in the
  centre (:func:`maskgen.independence.cluster_patches.make_backgrounds`).
- **Composition**: eq. 5 back to front (:func:`maskgen.independence.composition.compose`).
- **Losses**: SN discriminator (Table 2), adversarial loss (eq. 6-7), mask-area penalty
  ``lambda * E[(1/N) sum_i (|m_i|_1/A - a)^2]`` (eq. 7), and the appendix's "information
  regularization term like InfoGAN" of weight ``beta`` (:class:`LatentPredictor`: Q predicts
  ``z`` back from each generated instance; G and Q minimise ``beta * mean((Q(G(z)) - z)^2)``).
- Not in the paper, on in the ``cpu`` preset only: a centred-disk logit bias on alpha that is
  annealed to 0 during training (:func:`prior_scale_at`; the saved generator has none) and a
  binarisation term ``mean(alpha (1 - alpha))``. Optional, off in every preset: lazy R1 on D,
  instance noise, a warm-up of ``lambda``, an EMA of G, low-resolution RGB (``--rgb-lowres``:
  outlines must come from alpha) and a penalty on alpha spent painting what is behind a layer
  (``--paint-weight``, :func:`paint_like_behind` or, with ``--paint-against ground`` or
  ``ground-or-darker``, :func:`paint_like_ground`), one on alpha along each instance's edge
  (``--border-weight``, :func:`border_alpha`), and a random colour shift of each generated
  layer before composition (``--recolour``, :func:`recolour_layers`), a luminance floor on
  the generated colours above the ground's (``--colour-floor``, :func:`lift_above_ground`), and
  the ground of real patches and backgrounds moved to random colours alike
  (``--ground-jitter``, :func:`ground_offsets`), and an InfoGAN-like term that reads ``z``
  from the mask only (``--info-input alpha``, :func:`info_view`). ``--restarts K`` keeps the
  best of ``K`` runs by a label-free rule (:func:`keep_best_run`).

Training runs on the engine's one loop (:func:`maskgen.engine.training_loop`):
:class:`ClusterTrainer` is one step made of named phases (generate composites -> D phase (+ lazy
R1) -> G phase (+ info / area / binary terms) -> EMA); :func:`train_cluster` validates, opens
the run folder and writes the model folder. Trained models load with
:meth:`ClusterGenerator.from_folder`; :class:`ClusterPredictor` samples them as numpy arrays.

Tensors: generated instances are ``M x 4 x P x P`` float in ``[0, 1]`` (RGB + alpha, not
premultiplied); composites and real patches ``N x 3 x P x P`` in ``[0, 1]``. The numpy side
(:class:`ClusterPredictor`) is channels-last: ``N x P x P x 4`` RGBA.

Measured results, the presets' history and what was tried: ``benchmarks/RESULTS.md``, sections
``cluster-synthetic*``, ``cluster-speed``, ``cluster-figures`` and "cluster: what was tried".
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskgen.errors import MaskgenError
from maskgen.independence.cluster_config import (  # noqa: F401 (re-exported)
    MAX_LAYER_ELEMENTS,
    PRESETS,
    ClusterConfig,
    make_config,
)
from maskgen.independence.cluster_patches import (
    LUMA,
    PatchSampler,
    bright_pixels,
    bright_share,
    disk_mask,
    luminance,
    make_backgrounds,
    region_mean,
    shift_ground,
    soft_silhouette,
)
from maskgen.independence.composition import compose
from maskgen.independence.discriminator import ConvSpec, SNDiscriminator, cover_patch
from maskgen.independence.gan import (
    area_weight_at,
    detect_collapse,
    discriminator_step,
    ema_update,
    generator_adversarial_loss,
    generator_step,
)
from maskgen.independence.layout import pad_and_random_crop, random_rotation
from maskgen.independence.regularizers import (  # R1: Mescheder et al. 2018
    outside_main_component,
    r1_step,
)

KIND = "cluster"
#: Prefix of the generator's weights in a model folder's ``model.safetensors``.
WEIGHTS_PREFIX = "generator."


def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``x`` (``M x C x P x P`` float) average-pooled by ``factor`` and upsampled bilinearly back
    to ``P x P``: what is left has no detail finer than ``factor`` px.

    Applied to the generator's RGB *after* the sigmoid (``--rgb-lowres``): smooth logits can
    still give a sharp edge through a saturated sigmoid, smooth colours cannot. Alpha is left at
    full resolution, so an object's outline has to be cut by alpha; an opaque blob that paints
    the outline in background colour (the failure this is for) no longer fools D.
    """
    p = x.shape[-1]
    small = F.avg_pool2d(x, factor)
    return F.interpolate(small, size=(p, p), mode="bilinear", align_corners=False)


#: ``K = A w A^T``: the 4x4 stride-2 transposed-convolution kernel that computes nearest x2
#: upsampling followed by the 3x3 convolution ``w`` (row ``k`` of ``A`` lists which of ``w``'s
#: taps land on kernel tap ``k``; derivation in :class:`ResizeConv`).
_RESIZE_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class ResizeConv(nn.Sequential):
    """Nearest-neighbour x2 then a 3x3 "same" convolution, ``N x cin x H x W -> N x cout x 2H x
    2W`` (``--g-upsample resize``).

    Held as ``[Upsample, Conv2d]`` (the weights a reader expects) but computed as one 4x4
    stride-2 transposed convolution with the tied kernel ``A w A^T`` (:data:`_RESIZE_TAPS`):
    output row ``2i`` sums ``w``'s top tap on input row ``i - 1`` and its two lower taps on row
    ``i``, row ``2i + 1`` its two upper taps on row ``i`` and its bottom tap on row ``i + 1``
    (columns alike; zero padding maps to zero padding). Same output, a deconvolution's cost
    instead of a 3x3 convolution at twice the resolution (9/4 of the multiply-adds).
    """

    def __init__(self, cin: int, cout: int, bias: bool) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        a = _RESIZE_TAPS.to(conv.weight)
        kernel = torch.einsum("kh,oihw,lw->iokl", a, conv.weight, a)
        return F.conv_transpose2d(x, kernel, conv.bias, stride=2, padding=1)


def upsample_x2(cin: int, cout: int, kind: str, bias: bool) -> nn.Module:
    """One x2 upsampling stage of the generator, ``N x cin x H x W -> N x cout x 2H x 2W``.

    ``deconv``: paper Table 2's 4x4 stride-2 transposed convolution. ``resize`` (not in the
    paper): :class:`ResizeConv`, nearest-neighbour x2 then a 3x3 convolution -- every output
    pixel sums the same taps of a constant input, so it cannot draw the period-2 stripes that a
    free transposed convolution's uneven overlap draws (Odena et al., "Deconvolution and
    checkerboard artifacts").
    """
    if kind == "deconv":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
    if kind == "resize":
        return ResizeConv(cin, cout, bias)
    raise ValueError(f"unknown upsampling {kind!r}")


class ClusterGenerator(nn.Module):
    """Paper Table 2 generator: ``z`` (``M x z_dim``) -> RGBA ``M x 4 x P x P`` in ``[0, 1]``.

    Layers (Table 2, widths ``c0, c1, c2 = g_channels``, base ``b = P / 8``): "1x1 conv" of the
    ``1 x 1 x z`` input to ``b*b*c0`` (a linear layer), BN, lReLU; ``g_base_convs`` x (4x4 conv
    ``c0`` stride 1, BN, lReLU); 4x4 deconv ``c1`` stride 2, BN, lReLU; 4x4 deconv ``c2``
    stride 2, BN, lReLU; 4x4 deconv 4 stride 2, sigmoid. Channel 3 is the soft mask (alpha).
    With ``upsample="resize"`` (not in the paper) each deconv is :func:`upsample_x2`'s
    resize + 3x3 conv.
    With ``rgb_lowres > 1`` (not in the paper) the RGB channels are low-passed (:func:`low_pass`);
    with ``colour_floor > 0`` (not in the paper) they are lifted above the ground colour
    :attr:`ground` (:func:`lift_above_ground`), which must then be set.
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
        rgb_lowres: int = 1,
        colour_floor: float = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.z_dim, self.patch_size, self.base = z_dim, patch_size, patch_size // 8
        self.rgb_lowres, self.colour_floor = rgb_lowres, colour_floor
        #: ``(3,)`` RGB ground colour in ``[0, 1]`` for ``colour_floor`` (set by the trainer
        #: from the image and by :meth:`from_folder` from the run's facts; not a weight).
        self.ground: torch.Tensor | None = None
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
        body += [upsample_x2(c0, c1, upsample, bias=False), nn.BatchNorm2d(c1), act]
        body += [upsample_x2(c1, c2, upsample, bias=False), nn.BatchNorm2d(c2), act]
        body += [upsample_x2(c2, 4, upsample, bias=True)]
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

        #: the config this generator was built from (set by :meth:`from_config`).
        self.config: ClusterConfig | None = None
        #: facts of the training run kept with the model: ``instance_size``, ``window`` (patch
        #: window in image px), ``image_size`` ``[H, W]``, ``image_sha`` (set by the trainer or
        #: :meth:`from_folder`).
        self.facts: dict[str, Any] = {}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.bn0(self.fc(z)), 0.2)
        h = h.view(z.shape[0], self.c0, self.base, self.base)
        h = self.body(h)
        if self.prior_scale != 0.0:
            h = h + self.prior_scale * self.logit_bias
        out = torch.sigmoid(h)
        if self.rgb_lowres > 1:
            out = torch.cat([low_pass(out[:, :3], self.rgb_lowres), out[:, 3:]], dim=1)
        if self.colour_floor > 0:
            if self.ground is None:
                raise ValueError("colour_floor > 0 needs the generator's ground colour")
            rgb = lift_above_ground(out[:, :3], self.ground, self.colour_floor)
            out = torch.cat([rgb, out[:, 3:]], dim=1)
        return out

    # ------------------------------------------------------------------ one model API
    @classmethod
    def from_config(cls, cfg: ClusterConfig) -> ClusterGenerator:
        """A fresh (untrained) generator for ``cfg``, with ``cfg`` attached."""
        g = cls(
            cfg.z_dim,
            cfg.patch_size,
            cfg.g_channels,
            cfg.g_base_convs,
            alpha_prior=cfg.alpha_prior,
            area_target=cfg.area_target,
            rgb_lowres=cfg.rgb_lowres,
            colour_floor=cfg.colour_floor,
            upsample=cfg.g_upsample,
        )
        g.config = cfg
        return g

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], device: str = "cpu") -> ClusterGenerator:
        """Load a trained generator (eval mode) from a model folder or a run folder's ``model/``.

        The folder's kind must be ``"cluster"`` and its weights must match the config exactly.
        ``prior_scale`` is the prior's strength at the end of training (0 for an annealed prior:
        the generator alone). ``config`` and ``facts`` are attached.

        Raises:
            MaskgenError: a missing or corrupt folder, another kind of model, mismatched weights.
        """
        from maskgen.engine import load_model_folder, load_state_dict_strict

        header, state = load_model_folder(path, KIND, device="cpu")
        mconf = header["config"]
        if not isinstance(mconf, dict):
            raise MaskgenError(f"{path}: config.json holds no cluster config")
        cfg = ClusterConfig.from_dict(mconf)
        g = cls.from_config(cfg)
        n = len(WEIGHTS_PREFIX)
        gstate = {k[n:]: v for k, v in state.items() if k.startswith(WEIGHTS_PREFIX)}
        if not gstate:
            raise MaskgenError(f"{path}: model holds no generator weights")
        load_state_dict_strict(g, gstate, path)
        g.prior_scale = float(header.get("prior_scale_final", prior_scale_at(cfg.steps, cfg)))
        facts = ("window", "image_size", "image_sha", "ground_rgb")
        g.facts = {k: mconf[k] for k in facts if k in mconf}
        g.facts["instance_size"] = header.get("instance_size", mconf.get("instance_size"))
        if cfg.colour_floor > 0:
            g.ground = _ground_from_facts(g.facts, path)
        return g.to(device).eval()

    def save_folder(self, path: str | os.PathLike[str]) -> Path:
        """Write this generator as a model folder (``config.json`` + ``model.safetensors``).

        Needs the attached ``config`` and ``facts`` (``window`` at least); the saved
        ``prior_scale_final`` is the current ``prior_scale``.
        """
        from maskgen.engine import save_model_folder
        from maskgen.engine.config import config_to_dict

        if self.config is None or "window" not in self.facts:
            raise ValueError("save_folder needs the generator's config and facts (window)")
        config = {**config_to_dict(self.config), **self.facts}
        state = {WEIGHTS_PREFIX + k: v for k, v in self.state_dict().items()}
        extra = {
            "instance_size": float(self.facts["instance_size"]),
            "window": self.facts["window"],
            "patch_size": self.patch_size,
            "prior_scale_final": float(self.prior_scale),
        }
        return save_model_folder(path, KIND, config, state, extra=extra)


def _ground_from_facts(facts: dict[str, Any], path: str | os.PathLike[str]) -> torch.Tensor:
    """The ``ground_rgb`` fact as a ``(3,)`` float tensor (a model with a colour floor needs it)."""
    rgb = facts.get("ground_rgb")
    ok = isinstance(rgb, list) and len(rgb) == 3
    if not ok or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in rgb):
        raise MaskgenError(f"{path}: colour_floor > 0 but no valid ground_rgb in config.json")
    return torch.tensor(rgb, dtype=torch.float32)


def lift_above_ground(rgb: torch.Tensor, ground: torch.Tensor, floor: float) -> torch.Tensor:
    """Colours lifted by grey to a luminance of at least ``lum(ground) + floor``.

    A hard form of the paint terms: with every generated colour at least ``floor`` brighter
    than the ground, an opaque pixel can no longer look like the ground, so the only way a
    layer can show ground there is transparency -- the mask must follow the outline. Adding
    the same amount to the three channels raises luminance by exactly that amount (the weights
    sum to 1) and keeps the hue free; the clamp at 1 can leave a saturated colour short of a
    high floor (a channel at 1 stops rising), never of the low floors used on dark grounds.

    Args:
        rgb: ``M x 3 x P x P`` in ``[0, 1]``.
        ground: ``(3,)`` RGB in ``[0, 1]``.
        floor: luminance margin in ``[0, 1]``.

    Returns:
        ``M x 3 x P x P`` in ``[0, 1]``, differentiable (the chroma only, where lifted).
    """
    target = float(ground.detach().float().cpu() @ torch.tensor(LUMA)) + floor
    lum = luminance(rgb).unsqueeze(1)
    return (rgb + (target - lum).clamp_min(0.0)).clamp(0.0, 1.0)


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


def discriminator_specs(cfg: ClusterConfig) -> tuple[ConvSpec, ...]:
    """D's conv layers for ``cfg`` (``d_specs``, widened to the whole patch with ``--d-field
    patch``); the silhouette D uses the same."""
    specs = tuple(ConvSpec(*r) for r in cfg.d_specs)
    return cover_patch(specs, cfg.patch_size) if cfg.d_field == "patch" else specs


def build_networks(cfg: ClusterConfig) -> tuple[ClusterGenerator, SNDiscriminator, LatentPredictor]:
    """Generator, discriminator and Q network for ``cfg`` (built in this order from the global
    RNG, so a seed fixes all three)."""
    g = ClusterGenerator.from_config(cfg)
    d = SNDiscriminator(discriminator_specs(cfg), in_channels=3)
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
    recolour: float = 0.0,
    density: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor]:
    """Generator for scene patches: ``N`` providers -> layout -> composition (paper Fig. 4).

    Args:
        g: the shared instance generator.
        n: composites to make.
        background: ``n x 3 x P x P`` ``x_0``.
        z: ``n x L x z_dim`` codes (drawn when None).
        recolour: training only: :func:`recolour_layers` amount applied to the placed layers
            before composition (0 = off, as at inference).
        density: training only, ``--density matched[-disk]``: ``(share, bright, region)``,
            the ``n`` target foreground shares, the background's bright pixels
            ``n x 1 x P x P`` and where coverage counts (``P x P`` or None: everywhere);
            layers beyond :func:`layers_to_match_density`'s count are made transparent.

    Returns:
        dict with ``z`` (``n x L x z_dim``), ``instances`` (``n x L x 4 x P x P``, before
        layout, so not turned by ``--layer-rotation``: Q and the mask terms read them),
        ``layers`` (``n x L x 4 x P x P``, after layout), ``composite`` (``n x 3 x P x P``) and
        ``kept`` (``n``, the layers each composite holds).
    """
    L, P = cfg.layers, cfg.patch_size
    dev = background.device
    if z is None:
        z = sample_z(n * L, cfg.z_dim, generator, dev).view(n, L, cfg.z_dim)
    inst = g(z.reshape(n * L, cfg.z_dim))  # (n*L) x 4 x P x P
    turned = random_rotation(inst, cfg.layer_rotation, generator)
    placed = pad_and_random_crop(turned, cfg.pad, generator=generator)
    inst = inst.view(n, L, 4, P, P)
    placed = placed.view(n, L, 4, P, P)
    kept = torch.full((n,), float(L), device=dev)
    if density is not None:
        keep = layers_to_match_density(placed[:, :, 3:4], *density)
        placed = placed * keep[:, :, None, None, None].to(placed.dtype)
        kept = keep.sum(1)
    if recolour > 0:
        placed = recolour_layers(placed, recolour, generator)
    comp = compose([(placed[:, i, :3], placed[:, i, 3:4]) for i in range(L)], background)
    return {
        "z": z,
        "instances": inst,
        "layers": placed,
        "composite": comp,
        "background": background,
        "kept": kept,
    }


def layers_to_match_density(
    alphas: torch.Tensor,
    share: torch.Tensor,
    bright: torch.Tensor,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which layers a composite keeps so that it is as dense as a real patch (``--density
    matched``; ours, not in the paper).

    With a fixed number of providers every composite is about equally crowded, while real
    patches range from mostly ground to packed; a generator whose composites are denser than
    the image can only thin them by painting objects in the ground's colour. Here composite
    ``j`` keeps its first ``k_j`` layers, ``k_j`` making its coverage -- the mean of
    ``1 - (1 - bright) * prod_{i<k}(1 - alpha_i)`` -- nearest to ``share[j]``. The providers are
    i.i.d. and randomly placed, so the first ``k`` are as good as any ``k``. No gradient flows
    through the choice.

    Args:
        alphas: ``n x L x 1 x P x P`` placed alphas in ``[0, 1]``.
        share: ``n`` target foreground shares in ``[0, 1]``.
        bright: ``n x 1 x P x P``, 1 where the background already shows foreground.
        region: ``P x P`` 0/1 float, where coverage is counted (``--density matched-disk``:
            the background's disk, where the layers must stand in for the image); the whole
            patch when None.

    Returns:
        ``n x L`` float32 keep mask, 1 for the kept layers (a prefix of each row).
    """
    with torch.no_grad():
        num = alphas.shape[1]
        uncovered = (1.0 - bright.float())[:, None] * torch.cumprod(1.0 - alphas.float(), dim=1)
        covered = 1.0 - region_mean(uncovered[:, :, 0], region)  # n x L: with layers 0..i
        base = region_mean(bright.float()[:, 0], region)  # n: no layer
        coverage = torch.cat([base[:, None], covered], dim=1)  # n x (L + 1)
        k = (coverage - share.to(coverage)[:, None]).abs().argmin(dim=1)
        return (torch.arange(num, device=alphas.device)[None] < k[:, None]).float()


def ground_offsets(
    n: int, ground: torch.Tensor, amount: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n x 3`` ground shifts of ``--ground-jitter``: ``amount * (c - ground)``, ``c`` uniform
    in ``[0, 1]^3`` per patch, so that at ``amount = 1`` the ground takes any colour.

    Why (ours, not in the paper): on a cluster whose ground shows, an opaque pixel painted in
    the ground's colour looks exactly like a transparent one, so D cannot see a blob that paints
    an outline. Moving the ground's colour in the real patches and under the layers alike keeps
    the two distributions equal for a right mask and makes such paint a visible halo.
    """
    c = torch.rand(n, 3, generator=generator)
    return amount * (c - ground.float().cpu()[None])


def layer_cover(alphas: torch.Tensor) -> torch.Tensor:
    """How much of each pixel a stack of layers covers: ``1 - prod(1 - alpha)`` over the
    layers, ``n x 1 x P x P`` for ``n x L x 1 x P x P`` alphas in ``[0, 1]``."""
    return 1.0 - (1.0 - alphas).prod(dim=1)


def recolour_layers(
    layers: torch.Tensor, amount: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each layer's RGB shifted by its own random colour, clamped to ``[0, 1]``.

    ReDO's argument (Chen et al., NeurIPS 2019) in compositing form: a mask is right when the
    object's appearance can change on its own and the scene stays plausible. An opaque blob
    that paints the ground colour around an outline becomes a visible halo once its colour
    moves, so D can see it; a transparent pixel stays invisible whatever the shift.

    Args:
        layers: ``n x L x 4 x P x P`` RGBA in ``[0, 1]``; alpha is kept.
        amount: ``J``: each layer's offset is uniform in ``[-J, J]`` per channel.

    Returns:
        the recoloured layers, same shape; differentiable in the RGB and alpha.
    """
    n, L = layers.shape[:2]
    u = torch.rand(n, L, 3, 1, 1, generator=generator).to(layers.device, layers.dtype)
    rgb = (layers[:, :, :3] + amount * (2.0 * u - 1.0)).clamp(0.0, 1.0)
    return torch.cat([rgb, layers[:, :, 3:]], dim=2)


def paint_like_behind(
    layers: torch.Tensor, background: torch.Tensor, sigma: float = 0.1
) -> torch.Tensor:
    """Share of the layers' alpha spent on paint that looks like what is behind it.

    Where a layer's colour matches the composite behind it (the background and the layers
    below), an opaque pixel and a transparent one give the same composite, so D cannot tell a
    mask cut to the object's outline from an object-sized blob that paints the outline in
    background colour. This term settles that ambiguity for transparency:
    ``sum(alpha * s) / sum(alpha)`` with ``s = exp(-|rgb - behind|^2 / (2 sigma^2))``. ``s``
    and the denominator are constants for the gradient, so only alpha is pushed (down, where
    ``s`` is high); colours are left to D.

    Args:
        layers: ``n x L x 4 x P x P`` placed RGBA layers in ``[0, 1]``, back to front.
        background: ``n x 3 x P x P`` (``x_0``).
        sigma: colour distance scale (RGB in ``[0, 1]``).

    Returns:
        scalar in ``[0, 1]``, differentiable in the alphas.
    """
    with torch.no_grad():
        behind = background.float()
        sims = []
        for i in range(layers.shape[1]):
            rgb, a = layers[:, i, :3].float(), layers[:, i, 3:4].float()
            d2 = ((rgb - behind) ** 2).sum(1, keepdim=True)
            sims.append(torch.exp(-d2 / (2.0 * sigma * sigma)))
            behind = rgb * a + behind * (1.0 - a)
        sim = torch.stack(sims, dim=1)  # n x L x 1 x P x P
    return _alpha_share(layers[:, :, 3:4].float(), sim)


def paint_like_ground(
    instances: torch.Tensor, ground: torch.Tensor, sigma: float = 0.1, or_darker: bool = False
) -> torch.Tensor:
    """Share of the instances' alpha spent on paint in the image's ground colour.

    Like :func:`paint_like_behind`, but the reference is one colour, the ground's (the
    sampler's :attr:`~maskgen.independence.cluster_patches.PatchSampler.dark_colour`), not
    the composite behind each layer: an object that overlaps another of its own colour is not
    penalised, only an opaque blob that paints the ground around an outline.

    Args:
        instances: ``n x L x 4 x P x P`` RGBA instances in ``[0, 1]`` (placed or not).
        ground: ``(3,)`` RGB in ``[0, 1]``.
        sigma: colour distance scale (RGB in ``[0, 1]``).
        or_darker: one-sided distance: only the channels brighter than the ground count, so
            paint darker than the estimated ground (which is a median of the darkest pixels,
            not the darkest) counts in full.

    Returns:
        scalar in ``[0, 1]``, differentiable in the alphas only.
    """
    with torch.no_grad():
        ref = ground.float().to(instances.device).view(1, 1, 3, 1, 1)
        diff = instances[:, :, :3].float() - ref
        if or_darker:
            diff = diff.clamp_min(0.0)
        d2 = (diff**2).sum(2, keepdim=True)
        sim = torch.exp(-d2 / (2.0 * sigma * sigma))
    return _alpha_share(instances[:, :, 3:4].float(), sim)


def border_alpha(alphas: torch.Tensor, width: int) -> torch.Tensor:
    """Mean alpha in the band of ``width`` px along the border of each instance.

    An instance canvas is 1.5x the largest object, so a whole object never reaches the band;
    alpha there is a piece of mask that the layout's random crop usually hides (area spent off
    the object, a second component when it shows).

    Args:
        alphas: ``... x P x P`` masks in ``[0, 1]``.
        width: band width in px, ``2 * width < P``.

    Returns:
        scalar in ``[0, 1]``.
    """
    band = torch.ones(alphas.shape[-2:], dtype=torch.bool, device=alphas.device)
    band[width:-width, width:-width] = False
    return alphas[..., band].float().mean()


def _alpha_share(alpha: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """``sum(alpha * sim) / sum(alpha)``; the denominator is a constant for the gradient."""
    return (alpha * sim).sum() / alpha.detach().sum().clamp_min(1e-6)


# --------------------------------------------------------------------------------- training
def image_fingerprint(image: np.ndarray) -> str:
    """Short SHA-256 of an image's shape and pixels (a run refuses to resume on another image)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:16]


def info_view(instances: torch.Tensor, what: str) -> torch.Tensor:
    """What the InfoGAN-like Q sees of ``M x 4 x P x P`` instances: all of them (``"rgba"``,
    the paper's term) or the alpha only, RGB set to a constant grey (``"alpha"``, ours).

    Why ``alpha``: with the whole instance, G can keep ``z`` recoverable through colour alone
    and draw one mask for every ``z`` (as measured with ``--ground-jitter``, RESULTS); from the
    mask alone, ``z`` can only be read if the masks differ.
    """
    if what == "rgba":
        return instances
    if what != "alpha":
        raise ValueError(f"info input must be rgba or alpha, got {what!r}")
    return torch.cat([torch.full_like(instances[:, :3], 0.5), instances[:, 3:]], dim=1)


def regularizers(
    q: nn.Module,
    out: dict[str, torch.Tensor],
    cfg: ClusterConfig,
    ground: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Application 2's extra generator terms, passed to the shared G phase as ``extra_loss``.

    - InfoGAN-like term (appendix, weight ``beta``): ``mean((Q(G(z)) - z)^2)``. All layers are
      i.i.d., so it is computed on layer 0 of each composite -- an unbiased estimate of the
      all-layer term at ``1/L`` of the cost.
      With ``info_input="alpha"`` (ours) Q sees the mask only (:func:`info_view`).
    - Binarisation term (ours, weight ``binary_weight``, 0 in the paper presets):
      ``mean(alpha * (1 - alpha))`` over the generated masks.
    - Paint term (ours, weight ``paint_weight``, 0 in every preset): :func:`paint_like_behind`
      of the placed layers, or with ``paint_against="ground"`` (``"ground-or-darker"``:
      one-sided) :func:`paint_like_ground` of the instances against ``ground`` (``(3,)`` RGB,
      required then); always computed (it is cheap) and logged as ``paint_loss``, a
      label-free monitor of background-coloured paint.
    - Border term (ours, weight ``border_weight``, 0 in every preset): :func:`border_alpha`,
      alpha in a ``border_px`` band along the instance's edge; logged as ``border_loss``.
    - Fragment term (ours, weight ``fragment_weight``, 0 in every preset):
      :func:`~maskgen.independence.regularizers.outside_main_component`, the share of each
      layer's alpha outside its largest component; logged as ``fragment_loss`` when on.

    Returns ``{"extra": weighted sum (scalar, attached), "info_loss", "binary_loss",
    "paint_loss", "border_loss"}`` (and ``"fragment_loss"`` when its weight is set).
    """
    zhat = q(info_view(out["instances"][:, 0], cfg.info_input))
    info = F.mse_loss(zhat.float(), out["z"][:, 0].float())
    alphas = out["instances"][:, :, 3:4].float()
    binary = (alphas * (1.0 - alphas)).mean()
    # Without its weight the paint term is only a monitor: no graph, so the step costs no more.
    with torch.set_grad_enabled(cfg.paint_weight > 0 and torch.is_grad_enabled()):
        if cfg.paint_against != "behind":
            if ground is None:
                raise ValueError(f"paint_against={cfg.paint_against!r} needs the ground colour")
            darker = cfg.paint_against == "ground-or-darker"
            paint = paint_like_ground(out["instances"], ground, cfg.paint_sigma, darker)
        else:
            paint = paint_like_behind(out["layers"], out["background"], cfg.paint_sigma)
    with torch.set_grad_enabled(cfg.border_weight > 0 and torch.is_grad_enabled()):
        border = border_alpha(alphas, cfg.border_px)
    extra = cfg.info_weight * info + cfg.binary_weight * binary
    if cfg.fragment_weight > 0:
        fragment = outside_main_component(alphas)
        extra = extra + cfg.fragment_weight * fragment
    if cfg.paint_weight > 0:
        extra = extra + cfg.paint_weight * paint
    if cfg.border_weight > 0:
        extra = extra + cfg.border_weight * border
    return {
        "extra": extra,
        "info_loss": info.detach(),
        "binary_loss": binary.detach(),
        "paint_loss": paint.detach(),
        "border_loss": border.detach(),
        **({"fragment_loss": fragment.detach()} if cfg.fragment_weight > 0 else {}),
    }


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


class ClusterTrainer:
    """One training step of the cluster GAN, as named phases (engine trainer protocol).

    ``step(i)``: :meth:`generate_phase` (real patches, backgrounds, providers -> layout ->
    composition, paper Fig. 4) -> :meth:`d_phase` (eq. 6, + lazy R1) -> :meth:`g_phase` (eq. 7
    adversarial + ``lambda`` area, + ``beta`` info and binarisation terms) -> :meth:`ema_phase`.
    The random draws come from the global RNG in that order, which the loop checkpoints.

    Args:
        cfg: a validated :class:`ClusterConfig`.
        sampler: real patches of the training image.
        ctx: the :class:`~maskgen.engine.DistContext` (device, ranks).
        run: the run folder for preview grids (None: no grids).
    """

    def __init__(self, cfg: ClusterConfig, sampler: PatchSampler, ctx: Any, run: Any = None):
        from maskgen.engine import wrap_ddp

        self.cfg, self.sampler, self.ctx, self.run = cfg, sampler, ctx, run
        dev = ctx.device
        g, d, q = build_networks(cfg)
        g.ground = sampler.dark_colour.float()
        self.g, self.d, self.q = g.to(dev), d.to(dev), q.to(dev)
        self.opt_g = torch.optim.Adam(
            list(self.g.parameters()) + list(self.q.parameters()), lr=cfg.lr_g, betas=cfg.betas
        )
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.ema = copy.deepcopy(self.g).requires_grad_(False) if cfg.ema_decay > 0 else None
        self.gw, self.dw, self.qw = (
            wrap_ddp(self.g, ctx),
            wrap_ddp(self.d, ctx),
            wrap_ddp(self.q, ctx),
        )
        self.per_rank = max(1, cfg.batch_size // ctx.world_size)
        self.resumable: dict[str, Any] = {
            "g": self.g,
            "d": self.d,
            "q": self.q,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "ema": self.ema,
        }
        self._augmented_discriminators(ctx.rank)
        self._silhouette_discriminator()
        # Where --density matched-disk counts coverage: the background's disk (else everywhere).
        self.density_region = None
        if cfg.density == "matched-disk" and cfg.background == "disk":
            self.density_region = disk_mask(cfg.patch_size, cfg.disk_radius)[0, 0].to(dev)
        self.history: list[dict[str, float]] = []
        self.last_warning: str | None = None
        self.last_batch: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None
        self.grid_tag = ""  # preview grid file prefix (restarts: "restart<i>-")

    def _augmented_discriminators(self, rank: int) -> None:
        """D as the D phase, the G phase and R1 see it: ``D(augment(x))`` with ``--augment``
        (:mod:`maskgen.independence.augment`), else D itself."""
        from maskgen.engine import unwrap
        from maskgen.independence.augment import AugmentedDiscriminator, parse_policy

        cfg, policy = self.cfg, parse_policy(self.cfg.augment)
        self.d_phase_d, self.d_plain = self.dw, unwrap(self.dw)
        if policy:
            g = torch.Generator().manual_seed(cfg.seed * 1000 + rank + 500)
            self.resumable["gen_aug"] = g
            self.d_phase_d = AugmentedDiscriminator(self.dw, policy, g, cfg.augment_p)
            self.d_plain = AugmentedDiscriminator(unwrap(self.dw), policy, g, cfg.augment_p)

    def _silhouette_discriminator(self) -> None:
        """``--silhouette-weight``: a second D, same layers, on one-channel silhouettes
        (:func:`~maskgen.independence.cluster_patches.soft_silhouette`), with its own Adam;
        built after G, D and Q, so runs without it draw the same weights as before."""
        from maskgen.engine import unwrap, wrap_ddp

        self.d_sil = self.d_sil_plain = None
        cfg = self.cfg
        if cfg.silhouette_weight <= 0:
            return
        d_sil = SNDiscriminator(discriminator_specs(cfg), in_channels=1)
        self.d_sil = wrap_ddp(d_sil.to(self.ctx.device), self.ctx)
        self.d_sil_plain = unwrap(self.d_sil)  # the G phase's view, as D's (no DDP reduction)
        self.opt_d_sil = torch.optim.Adam(self.d_sil.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.resumable.update(d_sil=self.d_sil, opt_d_sil=self.opt_d_sil)

    def silhouettes(self, patches: torch.Tensor) -> torch.Tensor:
        """What the silhouette D sees of ``n x 3 x P x P`` patches: ``n x 1 x P x P``."""
        return soft_silhouette(patches, self.sampler.bright_threshold, self.cfg.silhouette_tau)

    def noise_at(self, step: int) -> float:
        """Instance noise std at ``step``, annealed linearly to 0 over ``noise_steps``."""
        cfg = self.cfg
        if cfg.instance_noise <= 0 or cfg.noise_steps <= 0:
            return 0.0
        return cfg.instance_noise * max(0.0, 1.0 - step / cfg.noise_steps)

    def _autocast(self):
        from maskgen.engine import autocast_context

        return autocast_context(self.ctx.device)

    def generate_phase(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Real patches ``n x 3 x P x P`` and the generator's output for ``n`` composites."""
        dev, n = self.ctx.device, self.per_rank
        real = self.sampler.sample(n).to(dev)
        cfg = self.cfg
        bg = make_backgrounds(
            cfg.background, n, self.sampler, radius=cfg.disk_radius, fill=cfg.bg_fill
        ).to(dev)
        density = None
        if cfg.density != "fixed":
            thr, region = self.sampler.bright_threshold, self.density_region
            bright = bright_pixels(bg, thr)[:, None]
            density = (bright_share(real, thr, region), bright, region)
        jitter = cfg.ground_jitter > 0
        real_sil = self.silhouettes(real) if self.d_sil is not None else None
        if jitter:
            real = self.jitter_ground(real)
            if cfg.jitter_at == "background":
                bg = self.jitter_ground(bg)
        with self._autocast():
            out = generate_composites(self.gw, cfg, n, bg, recolour=cfg.recolour, density=density)
        if real_sil is not None:  # before the jitter moves the ground across the threshold
            out["real_silhouette"] = real_sil
            out["silhouette"] = self.silhouettes(out["composite"])
        if jitter and cfg.jitter_at == "composite":
            cover = layer_cover(out["layers"][:, :, 3:4].float())
            out["composite"] = self.jitter_ground(out["composite"].float(), cover)
        return real, out

    def jitter_ground(
        self, patches: torch.Tensor, cover: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``--ground-jitter``: each patch's ground moved to its own random colour
        (:func:`ground_offsets`, :func:`~maskgen.independence.cluster_patches.shift_ground`);
        ``cover``: the generated layers' coverage of a composite (``--jitter-at composite``)."""
        s = self.sampler
        offset = ground_offsets(len(patches), s.dark_colour, self.cfg.ground_jitter)
        ground = float(luminance(s.dark_colour[:, None, None]))
        return shift_ground(patches, offset.to(patches.device), ground, s.bright_threshold, cover)

    def d_phase(self, step: int, real: torch.Tensor, out: dict[str, torch.Tensor]) -> dict:
        """Discriminator on real patches vs composites (eq. 6), then lazy R1 when due."""

        cfg = self.cfg
        m = discriminator_step(
            self.d_phase_d,
            self.opt_d,
            real,
            out["composite"],
            loss=cfg.adv_loss,
            instance_noise=self.noise_at(step),
            step=step,
            autocast=self._autocast(),
        )
        if cfg.r1_weight > 0 and step % cfg.r1_every == 0:
            m["r1"] = r1_step(self.d_plain, self.opt_d, real, cfg.r1_weight, cfg.r1_every)
        if self.d_sil is not None:
            ms = discriminator_step(
                self.d_sil,
                self.opt_d_sil,
                out["real_silhouette"],
                out["silhouette"],
                loss=cfg.adv_loss,
                instance_noise=self.noise_at(step),
                step=step,
                autocast=self._autocast(),
            )
            m.update({f"{k}_sil": v for k, v in ms.items()})
        return m

    def g_phase(self, step: int, out: dict[str, torch.Tensor]) -> dict:
        """Generator and Q: adversarial + lambda * area (eq. 7) + beta * info (+ binarisation)."""

        cfg = self.cfg
        with self._autocast():
            reg = regularizers(self.qw, out, cfg, ground=self.sampler.dark_colour)
        lam = area_weight_at(step, cfg.area_weight, cfg.area_warmup)
        extra = reg["extra"]
        if self.d_sil is not None:
            with self._autocast():
                adv_sil = generator_adversarial_loss(
                    self.d_sil_plain, out["silhouette"], cfg.adv_loss, self.noise_at(step)
                )
            extra = extra + cfg.silhouette_weight * adv_sil
            reg = {**reg, "loss_adv_sil": adv_sil.detach()}
        if cfg.area_penalty in ("bounds", "both"):
            from maskgen.independence.regularizers import area_bounds_penalty

            bounds = area_bounds_penalty(out["instances"][:, :, 3:4].float(), *cfg.area_bounds)
            extra = extra + lam * bounds
        m = generator_step(
            self.d_plain,
            self.opt_g,
            out["composite"],
            out["instances"][:, :, 3:4],
            area_weight=lam if cfg.area_penalty != "bounds" else 0.0,
            area_target=cfg.area_target,
            loss=cfg.adv_loss,
            instance_noise=self.noise_at(step),
            extra_loss=extra,
            step=step,
            autocast=self._autocast(),
        )
        m.update({k: float(v) for k, v in reg.items() if k != "extra"})
        return m

    def ema_phase(self) -> None:
        """EMA of G's weights (when ``ema_decay > 0``)."""
        if self.ema is not None:
            ema_update(self.ema, self.g, self.cfg.ema_decay)

    def step(self, step: int) -> dict[str, float]:
        """One iteration: every phase, in order; returns its metrics (engine protocol)."""
        scale = prior_scale_at(step, self.cfg)
        self.g.prior_scale = scale
        if self.ema is not None:
            self.ema.prior_scale = scale
        real, out = self.generate_phase()
        metrics = self.d_phase(step, real, out)
        metrics.update(self.g_phase(step, out))
        self.ema_phase()
        metrics["prior_scale"] = scale
        metrics["layers_kept"] = float(out["kept"].mean())
        self.last_batch = (out, real)
        return metrics

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Rank 0, each logging tick: collapse warning and a preview grid."""
        from maskgen.engine import save_image_grid, warn

        self.history.append(metrics)
        msg = detect_collapse(self.history)
        if msg and msg != self.last_warning:
            warn(f"step {step}: {msg}")
            self.last_warning = msg
        every = self.cfg.grid_every
        due = every is None or step % every == 0 or step == self.cfg.steps
        if self.run is not None and self.last_batch is not None and due:
            out, real = self.last_batch
            path = self.run.path / "grids" / f"{self.grid_tag}grid-{step:08d}.png"
            save_image_grid(path, preview_grid(out, real), nrow=8)

    def final_generator(self, facts: dict[str, Any]) -> ClusterGenerator:
        """The generator to save (the EMA copy when kept), prior at its end-of-training
        strength, with the config and the run's ``facts`` attached."""
        g = self.ema if self.ema is not None else self.g
        g.config, g.facts = self.cfg, dict(facts)
        g.prior_scale = prior_scale_at(self.cfg.steps, self.cfg)
        return g


def run_facts(sampler: PatchSampler) -> dict[str, Any]:
    """What a run records about its image: instance size, window, size and fingerprint."""
    return {
        "instance_size": float(sampler.instance_size),
        "window": sampler.window,
        "image_size": [int(sampler.image_hw[0]), int(sampler.image_hw[1])],
        "image_sha": image_fingerprint(sampler.resized.numpy()),
        "ground_rgb": [round(float(v), 6) for v in sampler.dark_colour],
    }


def _start_notes(run: Any, sampler: PatchSampler, cfg: ClusterConfig) -> None:
    """Rank 0, fresh run: save the (resized) training image; warn about an unfinished prior."""
    from maskgen.core.io import write_image
    from maskgen.engine import warn

    if not run.ctx.is_main or run.checkpoints():
        return
    (run.path / "grids").mkdir(exist_ok=True)
    image = (sampler.resized.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    write_image(run.path / "train_image.png", image)
    end_scale = prior_scale_at(cfg.steps, cfg)
    if cfg.alpha_prior and cfg.prior_anneal and end_scale > 0:
        warn(
            f"--prior-anneal {cfg.prior_anneal} > --steps {cfg.steps}: the saved generator "
            f"keeps {end_scale:.2f} of the alpha prior (masks partly the prior's disk)"
        )


#: Generated masks that application 2's label-free selection scores per restart.
SELECTION_MASKS = 256


def keep_best_run(
    cfg: ClusterConfig, sampler: PatchSampler, run: Any, opts: Any, facts: dict[str, Any]
) -> int | None:
    """``--restarts K``: ``K`` full runs with seeds ``seed .. seed + K - 1`` in ``run``
    (checkpoint series ``restart<i>``, grids ``grids/restart<i>-*``), each scored without labels
    by :func:`~maskgen.independence.selection.generator_selection_score` on
    :data:`SELECTION_MASKS` masks, the best by
    :func:`~maskgen.independence.selection.rank_generators`; returns its seed (its last
    checkpoint is the run's ``ckpt``), or None when paused before all were scored.

    Full-length, not short, restarts: the failures the rule catches (layers breaking into
    fragments) appear once the alpha prior has annealed away, late in a run.
    """
    from maskgen.engine import sayer, seed_everything
    from maskgen.independence.restarts import keep_best_restart
    from maskgen.independence.selection import generator_selection_score, rank_generators

    def make_trainer(seed: int) -> ClusterTrainer:
        seed_everything(seed, run.ctx.rank)
        trainer = ClusterTrainer(dataclasses.replace(cfg, seed=seed), sampler, run.ctx, run)
        trainer.grid_tag = f"restart{seed - cfg.seed}-"
        return trainer

    def score(trainer: ClusterTrainer, result: Any) -> dict[str, Any]:
        g = copy.deepcopy(trainer.final_generator(facts))
        masks = ClusterPredictor(g).masks(SELECTION_MASKS, seed=0)
        return generator_selection_score(masks, cfg.area_target)

    return keep_best_restart(
        run,
        opts,
        restarts=cfg.restarts,
        seed=cfg.seed,
        steps=cfg.steps,
        make_trainer=make_trainer,
        score=score,
        rank=rank_generators,
        criterion="most varied among >= 80% one-object layers, else most one-object (label-free)",
        say=sayer(opts, run.ctx),
    )


def train_cluster(
    image: np.ndarray,
    cfg: ClusterConfig,
    out: str | os.PathLike[str],
    opts: Any = None,
    image_name: str = "image",
) -> Path | None:
    """Train a cluster model on one image; rerunning the same call resumes from ``out``.

    Args:
        image: ``H x W x 3`` uint8 RGB (grey/RGBA accepted).
        cfg: a validated :class:`ClusterConfig` with ``instance_size`` set.
        out: the run folder (kind ``"cluster"``); its resume key is the config's model fields
            plus the image's window, size and fingerprint.
        opts: :class:`~maskgen.engine.RunOptions` (device, threads, intervals, time budget).
        image_name: names the image in error messages.

    Returns:
        the model folder ``out/model``, or None when the loop paused (time budget or
        ``stop_after``); rerunning continues it.

    Raises:
        MaskgenError: bad geometry or device, or a run folder that cannot be resumed -- all
            checked before anything is written.
    """
    from maskgen.engine import (
        RunFolder,
        RunOptions,
        init_distributed,
        resume_key,
        seed_everything,
        shutdown_distributed,
        training_loop,
    )

    opts = opts if opts is not None else RunOptions()
    if cfg.instance_size is None:
        raise MaskgenError("--instance-size: required (width in px of the largest instance)")
    sampler = PatchSampler(image, cfg.instance_size, cfg.patch_size, cfg.flips, name=image_name)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    ctx = init_distributed(opts.device)
    try:
        seed_everything(cfg.seed, ctx.rank)
        facts = run_facts(sampler)
        # The networks exist before the run folder does: a start that fails leaves nothing.
        trainer = ClusterTrainer(cfg, sampler, ctx)
        run = RunFolder(out, kind=KIND, config={**resume_key(cfg), **facts}, ctx=ctx)
        if run.is_finished() and (run.model_dir() / "config.json").is_file():
            return run.model_dir()
        trainer.run = run
        _start_notes(run, sampler, cfg)
        if cfg.restarts > 1:
            best = keep_best_run(cfg, sampler, run, opts, facts)
            if best is None:  # paused (time budget / stop_after) during the restarts
                return None
            cfg = dataclasses.replace(cfg, seed=best)
            trainer = ClusterTrainer(cfg, sampler, ctx, run)
        result = training_loop(trainer, run, total_steps=cfg.steps, opts=opts, desc="cluster")
        if not result.finished:
            return None
        if ctx.is_main:
            trainer.final_generator(facts).save_folder(run.model_dir())
        run.mark_finished()
        return run.model_dir()
    finally:
        shutdown_distributed()


# ------------------------------------------------------------------------------- prediction
class ClusterPredictor:
    """Numpy-facing sampler of a trained cluster model.

    ``sample(n, seed)`` -> ``N x P x P x 4`` RGBA instances (uint8, or float32 in ``[0, 1]``);
    ``masks(n, seed)`` -> ``N x P x P`` bool (``alpha > 0.5``); ``layers(n, seed, image)`` ->
    composites ``N x P x P x 3`` and their layout-placed layers ``N x L x P x P x 4``. The same
    ``seed`` gives the same instances (eval-mode batch norm). The torch-side equivalents
    (``instances``, ``render``) return channels-first float tensors.
    """

    def __init__(self, generator: ClusterGenerator, device: str = "cpu") -> None:
        if generator.config is None:
            raise ValueError("ClusterPredictor needs a generator with its config attached")
        self.generator = generator.to(device).eval()
        self.device = device

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], device: str = "cpu") -> ClusterPredictor:
        """Load a model folder (or a run folder's ``model/``); see
        :meth:`ClusterGenerator.from_folder`."""
        return cls(ClusterGenerator.from_folder(path, device), device)

    @property
    def config(self) -> ClusterConfig:
        assert self.generator.config is not None
        return self.generator.config

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def window(self) -> float:
        """Patch window in image pixels (patches are this window scaled to ``P x P``)."""
        return float(self.generator.facts["window"])

    @property
    def image_size(self) -> list[int] | None:
        """``[H, W]`` of the training image, when recorded."""
        return self.generator.facts.get("image_size")

    def check_count(self, n: int, what: str = "--num", layers: bool = False) -> None:
        """Refuse ``n < 1`` and counts whose tensors would not fit in memory."""
        p = self.patch_size
        per = 4 * p * p * ((self.config.layers + 1) if layers else 1)
        if n < 1:
            raise MaskgenError(f"{what} {n}: must be at least 1")
        if n * per > MAX_LAYER_ELEMENTS:
            limit = MAX_LAYER_ELEMENTS // per
            raise MaskgenError(f"{what} {n}: too many for memory at {p}x{p} px (at most {limit})")

    @torch.no_grad()
    def instances(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` generated instances ``n x 4 x P x P`` float on the CPU, deterministic in
        ``seed``; turned at random as the layout turns them when ``--layer-rotation`` is set."""
        self.check_count(n)
        return self._draw(n, torch.Generator().manual_seed(seed))

    def _draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` instances from codes drawn from ``gen``, turned as the layout turns them."""
        z = sample_z(n, self.generator.z_dim, gen, self.device)
        return random_rotation(self.generator(z), self.config.layer_rotation, gen).float().cpu()

    def sample(self, n: int, seed: int = 0, dtype: str = "uint8") -> np.ndarray:
        """``n`` RGBA instances ``N x P x P x 4``: uint8 (``dtype="uint8"``) or float32 in
        ``[0, 1]`` (``"float32"``); alpha is the soft mask, RGB not premultiplied."""
        arr = self.instances(n, seed).permute(0, 2, 3, 1).numpy()
        if dtype == "float32":
            return np.ascontiguousarray(arr, dtype=np.float32)
        if dtype != "uint8":
            raise ValueError(f"dtype must be uint8 or float32, got {dtype!r}")
        return (arr * 255).round().clip(0, 255).astype(np.uint8)

    def masks(self, n: int, seed: int = 0, threshold: float = 0.5) -> np.ndarray:
        """Binary masks ``N x P x P`` bool: ``alpha > threshold`` of :meth:`instances`."""
        return (self.instances(n, seed)[:, 3] > threshold).numpy()

    @torch.no_grad()
    def render(self, n: int, seed: int = 0, image: np.ndarray | None = None) -> dict:
        """Instances and composites as the trainer makes them (one RNG stream for both).

        Returns torch tensors: ``instances`` ``n x 4 x P x P``, ``layers`` ``n x L x 4 x P x P``
        (after layout), ``composite`` ``n x 3 x P x P``; the background is the training
        image's disk patches when ``image`` is given, else black.
        """
        self.check_count(n, layers=True)
        cfg, g, p = self.config, self.generator, self.patch_size
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        inst = self._draw(n, gen)
        if image is not None:
            sampler = PatchSampler(image, self.generator.facts["instance_size"], p)
            bg = make_backgrounds(
                cfg.background, n, sampler, generator=gen, radius=cfg.disk_radius, fill=cfg.bg_fill
            )
        else:
            bg = torch.zeros(n, 3, p, p)
        comp = generate_composites(g, cfg, n, bg.to(self.device), generator=gen)
        return {
            "instances": inst,
            "layers": comp["layers"].float().cpu(),
            "composite": comp["composite"].float().cpu(),
        }

    def layers(self, n: int, seed: int = 0, image: np.ndarray | None = None) -> dict:
        """:meth:`render` as channels-last float32 numpy: ``instances`` ``N x P x P x 4``,
        ``layers`` ``N x L x P x P x 4``, ``composites`` ``N x P x P x 3``."""
        r = self.render(n, seed, image)
        return {
            "instances": r["instances"].permute(0, 2, 3, 1).numpy(),
            "layers": r["layers"].permute(0, 1, 3, 4, 2).numpy(),
            "composites": r["composite"].permute(0, 2, 3, 1).numpy(),
        }


__all__ = [
    "KIND",
    "LUMA",
    "PRESETS",
    "SELECTION_MASKS",
    "ClusterConfig",
    "ClusterGenerator",
    "ClusterPredictor",
    "ClusterTrainer",
    "LatentPredictor",
    "border_alpha",
    "build_networks",
    "generate_composites",
    "layers_to_match_density",
    "lift_above_ground",
    "low_pass",
    "paint_like_behind",
    "paint_like_ground",
    "make_config",
    "prior_scale_at",
    "r1_step",
    "ground_offsets",
    "info_view",
    "keep_best_run",
    "recolour_layers",
    "regularizers",
    "run_facts",
    "sample_z",
    "train_cluster",
]
