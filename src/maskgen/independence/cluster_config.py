"""Configuration of the cluster application: one dataclass, the single source of every setting.

Each field is declared with :func:`maskgen.engine.config.param` (help text, bounds, role), so
``maskgen cluster train`` generates one flag per field and every value is validated before any
work starts. Presets are tables of overrides (:attr:`ClusterConfig.PRESETS`): ``cpu`` (the
default, sized for a 2-core CPU), ``quality`` (``cpu`` at 64x64 with more layers),
``shapes`` (``quality`` with the ground jitter after composition and matched density),
``crowd``/``fruit``/``seed`` (paper Table 4 with Table 2's networks at 64x64) and ``tiny``
(tests only). What the ``cpu`` preset's additions are for and what was measured with them:
``benchmarks/RESULTS.md``, "cluster: what was tried".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from maskgen.engine.config import config_from_dict, config_to_dict, param
from maskgen.engine.config import make_config as _make_config
from maskgen.errors import MaskgenError

#: Refuse a configuration whose largest per-step tensor (batch x layers x 4 x P x P floats,
#: the generated RGBA layers) exceeds this many elements: ~1 GiB in float32, and training keeps
#: several such tensors for the backward pass.
MAX_LAYER_ELEMENTS = 2**28

_TABLE2_D = ((64, 3, 2), (128, 3, 2), (256, 3, 2), (512, 3, 2), (1024, 3, 1))

# What the three Table 4 settings share: 64x64 patches, the Table 2 networks, batch 64.
_TABLE4_COMMON: dict[str, Any] = dict(
    patch_size=64,
    g_channels=(256, 128, 64),
    d_specs=_TABLE2_D,
    q_channels=(32, 64, 128, 128),
    batch_size=64,
    steps=20000,
    # The paper's losses only: none of the cpu preset's additions.
    binary_weight=0.0,
    alpha_prior=0.0,
    prior_anneal=0,
)

_QUALITY: dict[str, Any] = dict(patch_size=64, layers=16, pad=24)

#: Named settings (tables of overrides of the :class:`ClusterConfig` defaults).
#: ``crowd``/``fruit``/``seed``: paper Table 4 + Table 2 networks at 64x64, padding from
#: "Layout Details" (30 / 32 / 26 px), flips for fruit and seed ("Data Preparation"); the paper's
#: losses only. ``cpu``: the default, 32x32 patches and narrower networks, with the annealed alpha
#: prior (gone by step 1000 of 1500, so the saved generator has none) and the binarisation term.
#: ``quality``: ``cpu`` at 64x64 patches with 16 layers and 24 px padding, about 3x the CPU time
#: (inside a quality setting's 60-minute budget); the setting that beat disks on the seed cluster.
#: ``shapes``: ``quality`` with the ground jitter moved after composition and matched density,
#: the setting where the discriminator prefers true shapes to blobs (RESULTS, "cluster: what was
#: tried"); ``--area-target`` still has to be set to the objects' relative area.
#: ``r1_weight`` is off in every preset. ``tiny``: for tests only.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},  # the class defaults
    "quality": dict(_QUALITY),
    "shapes": dict(**_QUALITY, ground_jitter=1.0, jitter_at="composite", density="matched"),
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
        binary_weight=0.0,
        alpha_prior=0.0,
        prior_anneal=0,
    ),
}


@dataclass
class ClusterConfig:
    """Every setting of a cluster run (stored in the run's and the model's ``config.json``).

    Roles: ``model`` fields change what is learned and must match to resume a run;
    ``grid_every`` is operational (``run``). Paper values are in :data:`PRESETS`.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    preset: str = param("cpu", "the preset these settings started from", flag=False)
    instance_size: float | None = param(
        None,
        "width in px of the largest instance in the image (patch window = 1.5x); "
        "built-in images know theirs",
        low=2,
    )
    patch_size: int = param(
        32,
        "patch and instance side P in px, a multiple of 8 (paper 64); --pad does not scale with it",
        low=16,
        high=512,
    )
    layers: int = param(10, "composition layers N (foreground providers)", low=1, high=256)
    z_dim: int = param(4, "dimension of each provider's latent code z", low=1, high=1024)
    area_weight: float = param(1000.0, "lambda of the mask-area penalty (eq. 7)", low=0)
    area_target: float = param(
        0.2, "a of eq. 7: target relative mask area", low=0, high=1, low_open=True, high_open=True
    )
    info_weight: float = param(50.0, "beta of the InfoGAN-like term (appendix)", low=0)
    info_input: str = param(
        "rgba",
        "what Q sees to predict z back: rgba, the whole instance (the paper's term); alpha "
        "(ours), the mask only, so z must vary the mask's shape rather than its colour",
        choices=("rgba", "alpha"),
    )
    binary_weight: float = param(
        5.0, "not in the paper: weight of mean(alpha*(1-alpha)) (0 = off)", low=0
    )
    alpha_prior: float = param(
        4.0, "not in the paper: centred-disk logit bias on alpha, disk area a (0 = off)", low=0
    )
    prior_anneal: int = param(
        1000,
        "not in the paper: steps over which the alpha prior decays linearly to 0 "
        "(0 = fixed prior throughout)",
        low=0,
    )
    rgb_lowres: int = param(
        1,
        "not in the paper: the generator's RGB is average-pooled by this factor and upsampled "
        "bilinearly (alpha stays full resolution), so sharp outlines can only come from alpha "
        "(1 = off); --patch-size must be a multiple of it",
        low=1,
        high=16,
    )
    paint_weight: float = param(
        0.0,
        "not in the paper: weight of the share of alpha spent on paint that looks like what is "
        "behind the layer (a transparent pixel would show the same; 0 = off); penalises alpha only",
        low=0,
    )
    paint_sigma: float = param(
        0.1,
        "colour distance (RGB in [0, 1]) at which paint stops counting as like what is behind: "
        "similarity exp(-d^2 / (2 sigma^2))",
        low=0,
        low_open=True,
        high=2,
    )
    paint_against: str = param(
        "behind",
        "what --paint-weight compares paint with: behind (the composite behind the layer), "
        "ground (only the image's ground colour, as --bg-fill dark estimates it, so that "
        "overlapping objects of one colour do not count) or ground-or-darker (the same, "
        "with paint darker than that colour counted in full)",
        choices=("behind", "ground", "ground-or-darker"),
    )
    border_weight: float = param(
        0.0,
        "not in the paper: weight of the mean alpha in a band along each instance's border "
        "(an instance is 1.5x the largest object, so no whole object reaches it; 0 = off)",
        low=0,
    )
    border_px: int = param(4, "width in px of that band (--border-weight)", low=1, high=256)
    fragment_weight: float = param(
        0.0,
        "not in the paper: weight of the share of each layer's alpha outside its largest "
        "connected component (alpha > 0.5, grown 1 px), so a provider draws one object, not "
        "fragments (0 = off)",
        low=0,
    )
    recolour: float = param(
        0.0,
        "not in the paper (after ReDO's redrawing): each generated layer's RGB is shifted by a "
        "random colour, uniform in [-J, J] per channel, before composition, so opaque paint "
        "that imitates the ground no longer matches it (0 = off)",
        low=0,
        high=1,
    )
    ground_jitter: float = param(
        0.0,
        "not in the paper: the same augmentation for D's real patches and the backgrounds of "
        "the composites (the generated layers untouched): the ground (pixels darker than the "
        "image's Otsu threshold) moves to a random colour, ground + J (c - ground) with c "
        "uniform in [0, 1]^3 per patch, so a layer that paints the ground's colour shows as a "
        "dark halo where a real patch has none (0 = off)",
        low=0,
        high=1,
    )
    jitter_at: str = param(
        "background",
        "not in the paper: where --ground-jitter moves a composite's ground: background (the "
        "background before the layers go on, so their anti-aliased edges blend into the moved "
        "ground) or composite (the finished composite by the real patches' own rule, times "
        "the layers' transparency, so edges keep the dark blend a real patch's edges keep and "
        "opaque paint still does not move)",
        choices=("background", "composite"),
    )
    colour_floor: float = param(
        0.0,
        "not in the paper: the generated colours are lifted to at least this luminance (RGB in "
        "[0, 1]) above the image's ground colour (as --bg-fill dark estimates it), so a layer "
        "cannot paint the ground and only transparency can show it; for objects brighter than "
        "their ground (0 = off)",
        low=0,
        high=1,
    )
    density: str = param(
        "fixed",
        "not in the paper: fixed: every composite holds all --layers providers (paper); "
        "matched: each composite keeps only the first k layers, k bringing its foreground "
        "coverage (the union of the layers' alphas and the background's bright pixels) "
        "nearest to the bright share of a real patch of the same batch (Otsu's threshold "
        "on the image's luminance, no labels), so composites are as dense as the image, "
        "patch by patch; --layers is then the most a composite can hold; matched-disk: "
        "the same, counted only inside the background's disk (the region the layers must "
        "fill; the whole patch with --background black)",
        choices=("fixed", "matched", "matched-disk"),
    )
    silhouette_weight: float = param(
        0.0,
        "not in the paper: weight of a second discriminator that sees only the soft "
        "silhouette of a patch, sigmoid((luminance - Otsu threshold) / --silhouette-tau), of "
        "real patches and composites alike (before --ground-jitter), so it judges outlines "
        "and not colour or texture; its generator loss is added with this weight (0 = off)",
        low=0,
    )
    silhouette_tau: float = param(
        0.03,
        "softness of that silhouette in luminance units ([0, 1] RGB)",
        low=0,
        low_open=True,
        high=1,
    )
    r1_weight: float = param(
        0.0, "not in the paper: gamma of the lazy R1 penalty on D (0 = off)", low=0
    )
    r1_every: int = param(4, "lazy R1: applied every N steps, scaled by N", low=1)
    augment: str = param(
        "none",
        "not in the paper: DiffAugment policy on D's inputs, real and composite alike "
        "(comma-separated color,translation,cutout, or none)",
    )
    augment_p: float = param(1.0, "probability of each augmentation per patch", low=0, high=1)
    area_penalty: str = param(
        "target",
        "target: the paper's (area - a)^2 per layer; bounds: zero inside --area-bounds, "
        "quadratic outside; both: the two added",
        choices=("target", "bounds", "both"),
    )
    area_bounds: tuple[float, ...] = param(
        (0.02, 0.3), "a_min,a_max per layer (with --area-penalty bounds|both)", low=0, high=1
    )
    area_warmup: int = param(0, "steps of linear warm-up of lambda (0 = full at once)", low=0)
    instance_noise: float = param(
        0.0, "std of Gaussian noise on D's inputs, annealed to 0", low=0, high=10
    )
    noise_steps: int = param(0, "steps over which the instance noise anneals", low=0)
    ema_decay: float = param(
        0.0, "EMA of G's weights for the saved model (0 = off)", low=0, high=1, high_open=True
    )
    pad: int = param(16, "layout padding in px (paper 30/32/26 at 64x64)", low=0)
    layer_rotation: float = param(
        0.0,
        "not in the paper: the layout also turns each instance about its centre by a random "
        "angle in [-R, R] degrees before placing it (sampled instances too), for objects seen at "
        "every orientation (0 = off, the paper's translation only; 180 = any angle)",
        low=0,
        high=180,
    )
    background: str = param(
        "disk",
        "background provider: real patch with a central black disk, or black",
        choices=("disk", "black"),
    )
    bg_fill: str = param(
        "black",
        "not in the paper: colour of the background's disk (and of --background black): black "
        "(paper) or dark, the image's ground colour (median of its darkest 10 %% of pixels)",
        choices=("black", "dark"),
    )
    disk_radius: float | None = param(
        None,
        "radius in px of the background's black disk (default 20 * P / 64)",
        low=0,
        low_open=True,
    )
    flips: bool = param(False, "random h/v flips of real patches (paper: fruit and seed)")
    g_channels: tuple[int, ...] = param(
        (64, 32, 16), "generator widths c0,c1,c2 (paper Table 2: 256,128,64)", low=1, high=4096
    )
    g_base_convs: int = param(2, "4x4 stride-1 convs at the base resolution", low=0, high=16)
    g_upsample: str = param(
        "deconv",
        "generator upsampling: deconv = the paper's 4x4 stride-2 transposed convolutions (Table "
        "2); resize = nearest-neighbour x2 then a 3x3 convolution (not in the paper: no "
        "periodic texture from uneven kernel overlap)",
        choices=("deconv", "resize"),
    )
    d_specs: tuple[tuple[int, int, int], ...] = param(
        ((32, 3, 2), (64, 3, 2), (128, 3, 2), (128, 3, 1)),
        "discriminator layers (channels, kernel, stride); presets change it",
        flag=False,
    )
    d_field: str = param(
        "layers",
        "not in the paper's presets: layers = D as the preset lists it (at 64x64 patches the "
        "cpu stack sees 31 px per output); patch = stride-2 layers added until one output sees "
        "the whole patch, as the paper's Table 2 D does at 64x64 (cover_patch)",
        choices=("layers", "patch"),
    )
    q_channels: tuple[int, ...] = param(
        (16, 32, 64), "widths of the InfoGAN Q network's stride-2 convs", low=1, high=4096
    )
    adv_loss: str = param("nonsaturating", "adversarial loss", choices=("nonsaturating", "hinge"))
    batch_size: int = param(16, "composites per step", low=1, high=4096)
    lr_g: float = param(4e-4, "generator (and Q) learning rate", low=0, low_open=True, high=1)
    lr_d: float = param(2e-4, "discriminator learning rate", low=0, low_open=True, high=1)
    betas: tuple[float, float] = param((0.5, 0.999), "Adam betas", low=0, high=1, high_open=True)
    steps: int = param(1500, "training steps", low=1, high=10**8)
    seed: int = param(0, "random seed", low=0, high=2**31 - 1)
    restarts: int = param(
        1,
        "not in the paper: K full runs with seeds seed..seed+K-1 (K times the CPU time); the "
        "saved model is the best by a label-free rule: most varied masks (lowest mean pairwise "
        "IoU) among runs with >= 80%% one-object layers, else the most one-object layers "
        "(maskgen.independence.selection.rank_generators; 1 = off)",
        low=1,
        high=16,
    )
    grid_every: int | None = param(
        None,
        "steps between preview grids; unset: one per logging tick",
        low=1,
        role="run",
    )

    def check(self) -> None:
        """Cross-field rules (called by :func:`maskgen.engine.config.validate_config`)."""
        p = self.patch_size
        if p % 8:
            raise MaskgenError(
                f"--patch-size {p}: must be a multiple of 8 (three stride-2 deconvolutions)"
            )
        if self.pad >= p:
            raise MaskgenError(f"--pad {self.pad}: must be smaller than --patch-size {p}")
        if 2 * self.border_px >= p:
            raise MaskgenError(
                f"--border-px {self.border_px}: two bands must leave room in the {p} px instance"
            )
        if p % self.rgb_lowres:
            raise MaskgenError(
                f"--rgb-lowres {self.rgb_lowres}: --patch-size {p} is not a multiple of it"
            )
        if len(self.g_channels) != 3:
            raise MaskgenError(
                f"--g-channels {','.join(map(str, self.g_channels))}: needs exactly three widths"
            )
        if not self.q_channels or p // 2 ** len(self.q_channels) < 1:
            raise MaskgenError(
                f"--q-channels {','.join(map(str, self.q_channels))}: 1 to log2({p}) stride-2 "
                f"convs fit a {p} px patch"
            )
        if len(self.betas) != 2:
            raise MaskgenError(f"--betas {','.join(map(str, self.betas))}: needs two values")
        from maskgen.independence.augment import parse_policy
        from maskgen.independence.segmentation import check_pair

        parse_policy(self.augment)
        check_pair("--area-bounds", self.area_bounds, strict=True)
        if self.seed + self.restarts - 1 > 2**31 - 1:
            raise MaskgenError(f"--restarts {self.restarts}: seeds past 2**31-1 from --seed")
        if self.disk_radius is not None and self.disk_radius > p:
            raise MaskgenError(f"--disk-radius {self.disk_radius:g}: larger than the {p} px patch")
        if any(len(r) != 3 or min(r) < 1 for r in self.d_specs):
            raise MaskgenError(f"d_specs {self.d_specs}: rows of three positive integers")
        c0 = self.g_channels[0]
        weights = self.z_dim * (p // 8) ** 2 * c0 + 16 * c0 * c0 * self.g_base_convs
        if weights > MAX_LAYER_ELEMENTS:
            raise MaskgenError(
                f"--g-channels {','.join(map(str, self.g_channels))} at --patch-size {p} and "
                f"--z-dim {self.z_dim}: {weights:.3g} generator weights do not fit in memory "
                f"(limit {MAX_LAYER_ELEMENTS:.3g})"
            )
        elements = self.batch_size * self.layers * 4 * p * p
        if elements > MAX_LAYER_ELEMENTS:
            raise MaskgenError(
                f"--batch-size {self.batch_size} x --layers {self.layers} x {p}x{p} px: "
                f"{elements:.3g} values per step do not fit in memory (limit "
                f"{MAX_LAYER_ELEMENTS:.3g}); use fewer layers, a smaller batch or patch"
            )

    # Kept for callers of the earlier API (config.json readers, benchmarks).
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterConfig:
        """Inverse of :meth:`to_dict`; unknown keys (run facts such as ``window``) are ignored."""
        return config_from_dict(cls, d)


def make_config(preset: str = "cpu", **overrides: Any) -> ClusterConfig:
    """A validated :class:`ClusterConfig`: ``preset``'s table, then ``overrides`` (``None``
    values ignored).

    Raises:
        MaskgenError: unknown preset or setting, a value out of bounds, or a cross-field rule.
    """
    return _make_config(ClusterConfig, preset, **overrides)


def field_names() -> list[str]:
    """Names of the :class:`ClusterConfig` fields."""
    return [f.name for f in dataclasses.fields(ClusterConfig)]


__all__ = ["MAX_LAYER_ELEMENTS", "PRESETS", "ClusterConfig", "field_names", "make_config"]
