"""Configuration of the cluster application (paper Table 4 presets): no torch import, so the CLI
can list presets without loading torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from maskgen.errors import MaskgenError


@dataclass
class ClusterConfig:
    """Every hyper-parameter of a cluster run (stored in the run's and model's config.json).

    Paper values (Table 4 / text) are in the presets; see :data:`PRESETS`.
    """

    patch_size: int = 32  # P: patches and generated instances are P x P (paper: 64)
    layers: int = 10  # N composition layers (foreground providers)
    z_dim: int = 4  # dim(z)
    area_weight: float = 1000.0  # lambda
    area_target: float = 0.2  # a
    info_weight: float = 50.0  # beta
    binary_weight: float = 0.0  # not in the paper: weight of mean(alpha * (1 - alpha)), pushes
    # soft masks towards 0/1 so "uniformly faint everywhere" stops satisfying the area penalty
    alpha_prior: float = 0.0  # not in the paper: strength of a fixed centred-disk logit bias on
    # alpha (disk area = a), so every provider starts as one centred object of the target area
    prior_anneal: int = 0  # steps over which alpha_prior decays linearly to 0 (a curriculum:
    # the prior only starts training; the final generator has none). 0 = fixed prior throughout
    r1_weight: float = 0.0  # not in the paper: gamma of the R1 penalty (Mescheder et al. 2018)
    # (gamma / 2) * E|grad_x D(x_real)|^2 on D, a stabiliser that keeps D smooth on real patches
    r1_every: int = 4  # lazy R1: applied every r1_every D steps, scaled by r1_every
    area_warmup: int = 0  # steps of linear warm-up of lambda (0 = paper: full lambda at once)
    instance_noise: float = 0.0  # std of Gaussian noise on D inputs, annealed to 0
    noise_steps: int = 0  # steps over which the instance noise anneals
    ema_decay: float = 0.0  # EMA of G's weights for the saved model (0 = off, paper)
    pad: int = 16  # layout padding in px (paper: 30/32/26 at 64x64)
    background: str = "disk"  # "disk" (real patch with central black disk) or "black"
    disk_radius: float | None = None  # px; default 20 * P / 64
    flips: bool = False  # h/v flips of real patches (paper: fruit and seed images)
    g_channels: tuple[int, ...] = (64, 32, 16)  # Table 2: (256, 128, 64)
    g_base_convs: int = 2  # Table 2: two 4x4 stride-1 convs at the base resolution
    d_specs: tuple[tuple[int, int, int], ...] = ((32, 3, 2), (64, 3, 2), (128, 3, 2), (128, 3, 1))
    q_channels: tuple[int, ...] = (16, 32, 64)
    adv_loss: str = "nonsaturating"  # or "hinge"
    batch_size: int = 16  # composites per step
    lr_g: float = 4e-4  # paper
    lr_d: float = 2e-4  # paper
    betas: tuple[float, float] = (0.5, 0.999)  # paper
    steps: int = 2000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("g_channels", "q_channels", "betas"):
            if k in kw:
                kw[k] = tuple(kw[k])
        if "d_specs" in kw:
            kw["d_specs"] = tuple(tuple(r) for r in kw["d_specs"])
        return cls(**kw)


_TABLE2_D = ((64, 3, 2), (128, 3, 2), (256, 3, 2), (512, 3, 2), (1024, 3, 1))

#: Named settings. ``crowd``/``fruit``/``seed``: paper Table 4 + Table 2 networks at 64x64,
#: padding from "Layout Details" (30 / 32 / 26 px), flips for fruit and seed ("Data
#: Preparation"). ``cpu``: the default, sized for a 2-core CPU (32x32, narrower nets), with the
#: annealed alpha prior and binarisation term of the module docstring (paper losses only:
#: ``alpha_prior=0, binary_weight=0``). ``r1_weight`` (R1 on D) is an option, off in every preset:
#: gamma 1 made D too weak on the synthetic cat cluster (see ``cluster`` module docstring).
#: ``tiny``: for tests only.
# What the three Table 4 settings share: 64x64 patches, the Table 2 networks, batch 64.
_TABLE4_COMMON: dict[str, Any] = dict(
    patch_size=64,
    g_channels=(256, 128, 64),
    d_specs=_TABLE2_D,
    q_channels=(32, 64, 128, 128),
    batch_size=64,
    steps=20000,
)

PRESETS: dict[str, dict[str, Any]] = {
    # Alpha prior annealed to 0 by step 1000 of 1500 (curriculum): the saved generator has none.
    "cpu": dict(binary_weight=5.0, alpha_prior=4.0, prior_anneal=1000, steps=1500),
    "crowd": dict(**_TABLE4_COMMON, layers=8, z_dim=6, area_target=0.1, pad=30, flips=False),
    "fruit": dict(**_TABLE4_COMMON, layers=10, z_dim=5, area_target=0.25, pad=32, flips=True),
    "seed": dict(**_TABLE4_COMMON, layers=12, z_dim=2, area_target=0.25, pad=26, flips=True),
    "tiny": dict(
        patch_size=16,
        layers=3,
        z_dim=2,
        pad=4,
        g_channels=(16, 8, 8),
        g_base_convs=1,
        d_specs=((8, 3, 2), (16, 3, 2), (16, 3, 1)),
        q_channels=(8, 8),
        batch_size=4,
        steps=6,
    ),
}


def make_config(preset: str = "cpu", **overrides: Any) -> ClusterConfig:
    """A :class:`ClusterConfig` from a preset name plus overrides (``None`` values ignored)."""
    if preset not in PRESETS:
        raise MaskgenError(f"unknown cluster preset {preset!r}; choose from {', '.join(PRESETS)}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    cfg = ClusterConfig.from_dict(ClusterConfig(**kw).to_dict())
    if cfg.patch_size % 8 or cfg.patch_size < 16:
        raise MaskgenError(f"patch size {cfg.patch_size}: must be a multiple of 8, at least 16")
    if cfg.background not in ("disk", "black"):
        raise MaskgenError(f"unknown background {cfg.background!r}; choose disk or black")
    from maskgen.independence.losses import ADVERSARIAL_LOSSES  # imports torch: only here

    if cfg.adv_loss not in ADVERSARIAL_LOSSES:
        raise MaskgenError(f"unknown adversarial loss {cfg.adv_loss!r}")
    return cfg


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
