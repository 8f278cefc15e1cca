"""Built-in images of dense object clusters for the independence prior's second application.

Dai et al. (AAAI 2019), "Learning Instance Appearances and Masks From One Image of HOC", learn
instance appearances and masks from a single image of a *dense structure-free homogeneous object
cluster* (DSF-HOC). Their images (a crowd, a fruit cluster, a seed cluster) are not available
offline, so this module provides:

- :func:`synthetic_cluster`: a dense, structure-free cluster of many copies of one object type
  at random scale, rotation and depth order, **with exact instance labels**, rendered by the
  shared compositing code (:mod:`maskgen.core.compositing`). Objects are shaded "fruit"
  ellipses (default), elongated "seed" ellipses (like the paper's seed cluster), or a built-in
  animal silhouette filled with a colour gradient.
- :func:`coins`: scikit-image's ``coins`` (~24 coins, loads offline; no labels).
- :func:`nuclei`: ``nuclear.png`` shipped inside the PyPI package ``mahotas`` (optional extra
  ``pip install 'maskgen[data]'``; no labels).

Images are ``H x W x 3`` uint8 RGB; label maps are ``H x W`` uint16 with 0 = background and
``k = 1..K`` the *visible* pixels of instance ``k`` (depth order: larger ``k`` is in front).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskgen.core.compositing import composite, visible_masks
from maskgen.errors import MaskgenError

#: Minor / major axis ratio range of the shaded-ellipse objects: round "fruit", and elongated
#: "seed" (like the paper's seed cluster; far from any disk, so a generator that learns only
#: object-sized blobs cannot match it).
ELLIPSE_ASPECT = {"fruit": (0.72, 0.85), "seed": (0.36, 0.46)}


def cluster_shapes() -> list[str]:
    """Object types of :func:`synthetic_cluster`: the shaded ellipses, then the built-in
    silhouette classes (:func:`maskgen.data.builtin.silhouette_class_names`)."""
    from maskgen.data.builtin import silhouette_class_names

    return [*ELLIPSE_ASPECT, *silhouette_class_names()]


@dataclass
class ClusterImage:
    """One cluster image, optionally with instance labels.

    Attributes:
        image: ``H x W x 3`` uint8 RGB.
        labels: ``H x W`` uint16 visible-instance label map (0 background), or None.
        instance_size: width in pixels of the largest instance (for patch windows).
        full_masks: ``K x H x W`` bool complete (amodal) masks back to front, when known.
        info: free-form description (name, seed, counts).
    """

    image: np.ndarray
    labels: np.ndarray | None
    instance_size: int
    full_masks: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _ellipse_layer(
    h: int, w: int, cx: float, cy: float, ra: float, rb: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Soft alpha and normalised in-object coordinates of a rotated ellipse.

    Returns ``alpha`` (``H x W`` float32, ~1 px anti-aliased edge) and ``rho`` (``H x W``
    float32, 0 at the centre, 1 on the outline) used for shading.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    c, s = np.cos(angle), np.sin(angle)
    u = (c * dx + s * dy) / ra
    v = (-s * dx + c * dy) / rb
    rho = np.sqrt(u * u + v * v)
    # Signed distance to the outline, approximated in pixels of the minor radius.
    alpha = np.clip(0.5 - (rho - 1.0) * min(ra, rb), 0.0, 1.0).astype(np.float32)
    return alpha, rho.astype(np.float32)


def synthetic_cluster(
    size: int | tuple[int, int] = 256,
    instance_size: int = 32,
    shape: str = "fruit",
    scale_range: tuple[float, float] = (0.8, 1.0),
    spacing: float = 0.68,
    seed: int = 0,
    rim: float = 0.0,
    tint_jitter: float = 0.06,
) -> ClusterImage:
    """A dense structure-free cluster of one object type with exact instance labels.

    Objects sit on a jittered grid of pitch ``spacing * instance_size`` (dense, as in DSF-HOC
    images) at random scale in ``scale_range`` (times ``instance_size``), rotation, colour
    jitter and depth order; the layers are composited back to front
    (:func:`maskgen.core.compositing.composite`); the label map is the visible part of each
    layer (:func:`maskgen.core.compositing.visible_masks` of the binarised alphas).

    Args:
        size: image side ``S`` or ``(H, W)`` in pixels.
        instance_size: width in pixels of the largest instance (major axis for ``fruit`` and ``seed``).
        shape: ``"fruit"`` (shaded ellipse with a highlight), ``"seed"`` (the same, minor/major
            axis 0.36-0.46) or a silhouette class from
            :func:`maskgen.data.builtin.silhouette_class_names`.
        scale_range: relative instance size range.
        spacing: grid pitch relative to ``instance_size`` (smaller = more occlusion; thin
            silhouettes leave more background visible than fruit at the same spacing).
        seed: random seed (same seed, same image).
        rim: darkening of each silhouette's outline band (0 = none; fruit have a shaded rim
            already): ``colour *= 1 - rim * exp(-d / 1.2)`` at ``d`` px inside the outline, so
            an outline shows where it overlaps a neighbour of the same colour.
        tint_jitter: std of the per-instance colour jitter (RGB, on a 0-1 scale).

    Returns:
        :class:`ClusterImage` with ``labels`` and ``full_masks``.
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    alphas, colors = synthetic_layers(
        (h, w), instance_size, shape, scale_range, spacing, seed, rim, tint_jitter
    )
    image, labels, kept_full = _render_and_label(alphas, colors)
    return ClusterImage(
        image=image,
        labels=labels,
        instance_size=int(instance_size),
        full_masks=kept_full,
        info={
            "name": f"synthetic-{shape}",
            "seed": seed,
            "count": int(labels.max(initial=0)),
            "size": [h, w],
            # Everything needed to re-render the same image (and its complete masks).
            "params": {
                "shape": shape,
                "instance_size": int(instance_size),
                "scale_range": list(scale_range),
                "spacing": spacing,
                "rim": rim,
                "tint_jitter": tint_jitter,
            },
        },
    )


#: Base colour of every instance (orange), jittered per instance by ``tint_jitter``.
BASE_HUE = np.array([0.92, 0.45, 0.12], dtype=np.float32)
#: Colour of the background behind the cluster (dark brown).
BACKGROUND_RGB = np.array([0.08, 0.05, 0.03], np.float32)


def synthetic_layers(
    size: tuple[int, int],
    instance_size: int = 32,
    shape: str = "fruit",
    scale_range: tuple[float, float] = (0.8, 1.0),
    spacing: float = 0.68,
    seed: int = 0,
    rim: float = 0.0,
    tint_jitter: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """The object layers :func:`synthetic_cluster` is drawn from (same arguments, ``size`` as
    ``(H, W)``): alphas ``K x H x W`` and colours ``K x H x W x 3`` in ``[0, 1]``, back to
    front, before the cluster drops the objects whose alpha never exceeds 0.5 (not drawn) and
    those with under 4 visible pixels (not labelled). For probes that need each object whole
    (its complete shape and colour), not just the rendered image."""
    h, w = size
    if shape not in cluster_shapes():
        raise MaskgenError(
            f"unknown cluster shape {shape!r}; choose from {', '.join(cluster_shapes())}"
        )
    if instance_size < 6 or instance_size > min(h, w):
        raise MaskgenError(
            f"instance size {instance_size}: must be between 6 and the image side {min(h, w)}"
        )
    rng = np.random.default_rng(seed)
    centres = _grid_centres(h, w, spacing * instance_size, rng)
    order = rng.permutation(len(centres))
    alphas, colors = _object_layers(
        (h, w),
        [centres[k] for k in order],
        rng,
        shape,
        instance_size,
        scale_range,
        tint_jitter,
        rim,
    )
    return np.stack(alphas), np.stack(colors)


def _object_layers(hw, centres, rng, shape, instance_size, scale_range, tint_jitter, rim):
    """Alpha and colour layers of the objects at ``centres`` (back to front), drawn from
    ``rng`` in a fixed order per object: scale, angle, tint, then the shape's own draws."""
    sil_masks = None
    if shape not in ELLIPSE_ASPECT:
        from maskgen.data.builtin import load_silhouettes

        sil_masks = load_silhouettes([shape])[0]
    alphas, colors = [], []
    for cx, cy in centres:
        scale = rng.uniform(*scale_range)
        angle = rng.uniform(0, np.pi)
        tint = np.clip(BASE_HUE + rng.normal(0, tint_jitter, 3).astype(np.float32), 0, 1)
        if sil_masks is None:
            ra = 0.5 * instance_size * scale
            rb = ra * rng.uniform(*ELLIPSE_ASPECT[shape])
            alpha, col = _shaded_ellipse(hw, (cx, cy), ra, rb, angle, tint)
        else:
            side = max(int(round(instance_size * scale)), 4)
            m = sil_masks[rng.integers(len(sil_masks))]
            mirror = rng.random() < 0.5
            alpha, col = _shaded_silhouette(hw, (cx, cy), m, side, mirror, angle, tint, rim)
        alphas.append(alpha)
        colors.append(col.astype(np.float32))
    return alphas, colors


def _grid_centres(h: int, w: int, pitch: float, rng: np.random.Generator) -> list:
    """Object centres ``(x, y)`` on a hexagonal grid of ``pitch`` px, jittered by +-pitch/4."""
    centres = []
    for gy in np.arange(-0.3 * pitch, h + 0.3 * pitch, pitch * 0.866):
        row = int(round(gy / (pitch * 0.866)))
        off = 0.5 * pitch if row % 2 else 0.0
        for gx in np.arange(-0.3 * pitch + off, w + 0.3 * pitch, pitch):
            centres.append(
                (gx + rng.uniform(-0.25, 0.25) * pitch, gy + rng.uniform(-0.25, 0.25) * pitch)
            )
    return centres


def _shaded_ellipse(hw, centre, ra: float, rb: float, angle: float, tint: np.ndarray):
    """Alpha ``H x W`` and colour ``H x W x 3`` of one shaded ellipse (fruit / seed).

    Lambert-like shading: light from the upper left, darker rim, small highlight.
    """
    (h, w), (cx, cy) = hw, centre
    alpha, rho = _ellipse_layer(h, w, cx, cy, ra, rb, angle)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lx, ly = (xx + 0.5 - cx) / ra, (yy + 0.5 - cy) / ra
    shade = 0.55 + 0.45 * np.clip(1.0 - rho**2, 0, 1) ** 0.5 - 0.15 * (lx + ly)
    spec = np.exp(-((lx + 0.35) ** 2 + (ly + 0.35) ** 2) / 0.02)
    return alpha, np.clip(tint[None, None] * shade[..., None] + 0.6 * spec[..., None], 0, 1)


def _shaded_silhouette(hw, centre, mask, side: int, mirror: bool, angle: float, tint, rim: float):
    """Alpha ``H x W`` and colour ``H x W x 3`` of one silhouette scaled to ``side`` px, mirrored
    when ``mirror``, rotated by ``angle`` about ``centre``, shaded radially, optional rim."""
    import cv2

    from maskgen.data.builtin import upsample_shape

    (h, w), (cx, cy) = hw, centre
    m = upsample_shape(mask, side).astype(np.float32)
    if mirror:
        m = m[:, ::-1]
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), float(np.degrees(angle)), 1.0)
    rot[0, 2] += cx - side / 2
    rot[1, 2] += cy - side / 2
    alpha = cv2.warpAffine(m, rot, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 0.6 + 0.4 * np.clip(1 - ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.5 * side) ** 2, 0, 1)
    if rim > 0:
        # Distance (px) inside the outline; the rim band darkens towards the outline.
        inside = (alpha > 0.5).astype(np.uint8)
        d = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        shade = shade * (1.0 - rim * np.exp(-np.maximum(d - 0.5, 0) / 1.2))
    return alpha, np.clip(tint[None, None] * shade[..., None], 0, 1)


def _render_and_label(alphas: np.ndarray, colors: np.ndarray):
    """Composite ``K`` layers (back to front) over the background; label the visible parts.

    Returns ``(H x W x 3 uint8 image, H x W uint16 labels, K' x H x W bool complete masks)``;
    layers entirely transparent or with fewer than 4 visible pixels get no label.
    """
    keep = alphas.reshape(len(alphas), -1).max(1) > 0.5
    alphas, colors = alphas[keep], colors[keep]
    h, w = alphas.shape[1:]
    img = composite(colors, alphas, np.broadcast_to(BACKGROUND_RGB, (h, w, 3)))
    full = alphas > 0.5
    vis = visible_masks(full)
    labels = np.zeros((h, w), np.uint16)
    kept_full = []
    for i in range(vis.shape[0]):
        if vis[i].sum() >= 4:  # drop instances that are practically invisible
            kept_full.append(full[i])
            labels[vis[i]] = len(kept_full)
    image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return image, labels, np.stack(kept_full) if kept_full else np.zeros((0, h, w), bool)


def coins() -> ClusterImage:
    """scikit-image's ``coins`` photograph (303 x 384, grey -> RGB), ~24 coins, no labels.

    The largest coin is about 60 px wide, so ``instance_size = 60``.
    """
    import skimage.data

    g = np.asarray(skimage.data.coins())
    return ClusterImage(
        image=np.repeat(g[..., None], 3, axis=2),
        labels=None,
        instance_size=60,
        info={"name": "coins", "source": "scikit-image data.coins()"},
    )


def nuclei_path() -> Path:
    """Path of ``nuclear.png`` inside an installed ``mahotas`` (found without importing it)."""
    spec = importlib.util.find_spec("mahotas")
    if spec is None or not spec.submodule_search_locations:
        raise MaskgenError(
            "the nuclei image needs the optional package mahotas: pip install 'maskgen[data]' "
            "(or pip install mahotas)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "demos" / "data" / "nuclear.png"
    if not path.is_file():
        raise MaskgenError(f"{path}: nuclear.png missing from the installed mahotas")
    return path


def nuclei() -> ClusterImage:
    """``nuclear.png`` from mahotas (fluorescence-stained nuclei, 1024 x 1344 RGB), no labels.

    The largest nuclei are about 100 px wide at full resolution, so ``instance_size = 100``.
    """
    from maskgen.core.io import read_image

    return ClusterImage(
        image=read_image(nuclei_path()),
        labels=None,
        instance_size=100,
        info={"name": "nuclei", "source": "mahotas demos/data/nuclear.png"},
    )


def load_builtin(kind: str, seed: int = 0, **kwargs) -> ClusterImage:
    """A built-in cluster image by name: ``synthetic``, ``coins`` or ``nuclei``."""
    if kind == "synthetic":
        return synthetic_cluster(seed=seed, **kwargs)
    if kind == "coins":
        return coins()
    if kind == "nuclei":
        return nuclei()
    raise MaskgenError(f"unknown cluster image {kind!r}; choose synthetic, coins or nuclei")


__all__ = [
    "cluster_shapes",
    "ClusterImage",
    "coins",
    "load_builtin",
    "nuclei",
    "nuclei_path",
    "synthetic_cluster",
]
