"""Real patches from one image of a dense object cluster (independence prior, application 2).

Paper, "Learning Instance Appearances and Masks From One Image of HOC" / Data Preparation:
"a window size of roughly 1.5 time of the width of the biggest instance works nicely. All patches
are scaled into 64x64. Both horizontal flip and vertical flip are used [where the objects allow]."
The background provider uses "real images [patches] with a black disk with radius of roughly 20
pixels in the center" (or pure black images).

Implementation: the whole image is resized once by ``patch_size / window`` (area interpolation),
so every random ``patch_size x patch_size`` crop of the resized image is a ``window x window``
window of the original scaled to the patch size. Crops are drawn uniformly over all positions
(each draw an independent sample: one image yields ``(H' - P + 1) * (W' - P + 1)`` distinct
patches, times 4 with flips).

Tensors: patches are ``N x 3 x P x P`` float32 in ``[0, 1]``, RGB.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from maskgen.errors import MaskgenError

#: Window width relative to the largest instance's width (paper: "roughly 1.5 time").
WINDOW_FACTOR = 1.5
#: Radius of the background disk at 64x64 (paper: "roughly 20 pixels"); scaled with the patch.
DISK_RADIUS_64 = 20.0


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Normalise an image array to ``H x W x 3`` uint8 RGB.

    Grey (``H x W`` or ``H x W x 1``) is repeated to three channels; RGBA / grey+alpha is
    flattened onto black (transparent = background); float images in ``[0, 1]`` are scaled.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
        elif np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255:
            a = (a.astype(np.float64) / max(1, a.max()) * 255).astype(np.uint8)
        else:
            a = a.astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise MaskgenError(
            f"{name}: expected a grey, RGB or RGBA image, got an array of shape {a.shape}"
        )
    if a.shape[2] in (2, 4):  # flatten alpha onto black
        alpha = a[..., -1:].astype(np.float32) / 255.0
        a = np.clip(np.round(a[..., :-1].astype(np.float32) * alpha), 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def check_not_label_map(path: Path) -> None:
    """Refuse an instance label map given where a photo is expected.

    A 16/32-bit grey file (the format of ``maskgen data cluster``'s ``labels.png``), or an 8-bit
    grey one whose values are the consecutive ids ``0..K`` (K < 64) with flat regions, is a
    label map: training on it would learn nothing and say nothing.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            grey = np.asarray(im) if mode in ("L", "P") else None
    except (UnidentifiedImageError, OSError):
        return  # read_image reports it
    if mode.startswith("I") or mode == "F":
        raise MaskgenError(
            f"{path}: is a 16/32-bit grey image (mode {mode}), i.e. an instance label map, not a photo; "
            "pass the RGB image (e.g. image.png)"
        )
    if grey is not None and grey.size and int(grey.max()) < 64:
        values = np.unique(grey)
        flat = (grey[:, 1:] == grey[:, :-1]).mean() if grey.shape[1] > 1 else 0.0
        if len(values) == int(grey.max()) + 1 and len(values) > 2 and flat > 0.5:
            raise MaskgenError(
                f"{path}: holds the consecutive ids 0..{int(grey.max())}, i.e. an instance label "
                "map, not a photo; pass the RGB image (e.g. image.png)"
            )


def load_cluster_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``H x W x 3`` uint8 RGB (grey and RGBA handled).

    Raises:
        MaskgenError: a missing file, a folder, an unreadable file, or a label map.
    """
    from maskgen.core.io import read_image, require_file

    path = require_file(path, "PNG or JPEG image")
    check_not_label_map(path)
    return read_image(path, mode="RGB")


def window_size(instance_size: float) -> int:
    """Patch window in original pixels: ``round(1.5 * instance_size)`` (at least 2)."""
    return max(2, int(round(WINDOW_FACTOR * float(instance_size))))


def check_patch_geometry(shape: tuple[int, ...], instance_size: float, name: str = "image") -> int:
    """Validate an image size against the instance size; return the window in pixels.

    Raises:
        MaskgenError: instance size not positive, larger than the image, or the image smaller
            than one patch window.
    """
    h, w = int(shape[0]), int(shape[1])
    if not instance_size or instance_size < 2:
        raise MaskgenError(f"instance size {instance_size}: must be at least 2 pixels")
    if instance_size > min(h, w):
        raise MaskgenError(
            f"{name}: instance size {instance_size:g} px is larger than the image ({w}x{h} px)"
        )
    win = window_size(instance_size)
    if win > min(h, w):
        raise MaskgenError(
            f"{name}: image {w}x{h} px is smaller than one patch window of {win} px "
            f"(1.5 x instance size {instance_size:g}); use a smaller --instance-size"
        )
    return win


class PatchSampler:
    """Random real patches of one image (the GAN's "real" data) and disk backgrounds.

    Args:
        image: ``H x W x 3`` uint8 RGB (grey/RGBA accepted, see :func:`as_rgb_uint8`).
        instance_size: width in pixels of the largest instance.
        patch_size: side ``P`` of the patches (64 in the paper).
        flips: random horizontal and vertical flips (paper: fruit and seed images).
        name: for error messages (e.g. the image path).

    Attributes:
        window: window side in original pixels; ``scale = patch_size / window``.
        resized: ``3 x H' x W'`` float32 tensor in ``[0, 1]``.
    """

    def __init__(
        self,
        image: np.ndarray,
        instance_size: float,
        patch_size: int = 64,
        flips: bool = False,
        name: str = "image",
    ) -> None:
        import cv2

        img = as_rgb_uint8(image, name)
        self.window = check_patch_geometry(img.shape, instance_size, name)
        self.instance_size = float(instance_size)
        self.patch_size = int(patch_size)
        self.flips = bool(flips)
        self.scale = self.patch_size / self.window
        h, w = img.shape[:2]
        self.image_hw = (h, w)
        nh, nw = (
            max(self.patch_size, round(h * self.scale)),
            max(self.patch_size, round(w * self.scale)),
        )
        interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(img, (nw, nh), interpolation=interp)
        self.resized = torch.from_numpy(small).permute(2, 0, 1).float().div_(255.0).contiguous()
        self.dark_colour = dark_colour(self.resized)
        self.bright_threshold = otsu_luminance(self.resized)

    @property
    def num_positions(self) -> int:
        """Number of distinct crop positions (before flips)."""
        _, h, w = self.resized.shape
        return (h - self.patch_size + 1) * (w - self.patch_size + 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random patches, ``n x 3 x P x P`` float32 in ``[0, 1]`` (CPU)."""
        _, h, w = self.resized.shape
        p = self.patch_size
        ys = torch.randint(0, h - p + 1, (n,), generator=generator)
        xs = torch.randint(0, w - p + 1, (n,), generator=generator)
        ar = torch.arange(p)
        rows = (ys[:, None] + ar[None]).view(n, 1, p, 1).expand(n, 3, p, w)
        out = torch.gather(self.resized[None].expand(n, 3, h, w), 2, rows)
        cols = (xs[:, None] + ar[None]).view(n, 1, 1, p).expand(n, 3, p, p)
        out = torch.gather(out, 3, cols)
        if self.flips:
            fh = torch.rand(n, generator=generator) < 0.5
            fv = torch.rand(n, generator=generator) < 0.5
            out = torch.where(fh[:, None, None, None], out.flip(3), out)
            out = torch.where(fv[:, None, None, None], out.flip(2), out)
        return out


#: Share of an image's pixels, darkest first, whose median colour stands for its background.
DARK_QUANTILE = 0.1
#: Rec. 601 luma weights (R, G, B): the luminance by which ground and objects are told apart.
LUMA = (0.299, 0.587, 0.114)


def dark_colour(image: torch.Tensor, quantile: float = DARK_QUANTILE) -> torch.Tensor:
    """Label-free estimate of a dark ground's colour: the per-channel median of the darkest
    ``quantile`` of pixels (by luminance) of ``image`` (``3 x H x W`` float in ``[0, 1]``).

    Returns a ``3`` float32 tensor. It assumes objects brighter than their ground, as the
    evaluation's default foreground rule does; on a dense cluster with little ground visible
    it is the colour of the gaps and shadows between objects.
    """
    lum = luminance(image.float()).flatten()
    k = max(1, int(lum.numel() * quantile))
    idx = torch.topk(lum, k, largest=False).indices
    return image.float().flatten(1)[:, idx].median(dim=1).values


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of ``... x 3 x H x W`` float RGB: ``... x H x W``."""
    return torch.tensordot(
        torch.tensor(LUMA, dtype=image.dtype, device=image.device), image, dims=([0], [-3])
    )


def otsu_threshold(grey: np.ndarray) -> float:
    """Otsu's threshold of a grey array (any shape, float); ``inf`` when it is flat (no
    brighter class). The label-free foreground rule of application 2: objects are the
    brighter class."""
    from skimage.filters import threshold_otsu

    grey = np.asarray(grey, dtype=np.float64)
    if grey.size == 0 or grey.max() == grey.min():
        return math.inf
    return float(threshold_otsu(grey))


def otsu_luminance(image: torch.Tensor) -> float:
    """:func:`otsu_threshold` of the luminance of ``3 x H x W`` float RGB in ``[0, 1]``."""
    return otsu_threshold(luminance(image.float()).numpy())


def bright_pixels(patches: torch.Tensor, threshold: float) -> torch.Tensor:
    """``n x P x P`` float32, 1 where ``n x 3 x P x P`` patches are brighter than ``threshold``
    (luminance): application 2's label-free foreground."""
    return (luminance(patches.float()) > threshold).float()


def soft_silhouette(patches: torch.Tensor, threshold: float, tau: float) -> torch.Tensor:
    """``n x 1 x P x P`` float in ``(0, 1)``: ``sigmoid((luminance - threshold) / tau)`` of
    ``n x 3 x P x P`` patches in ``[0, 1]`` -- :func:`bright_pixels` made soft (differentiable),
    what ``--silhouette-weight``'s discriminator sees."""
    return torch.sigmoid((luminance(patches.float()) - threshold) / tau)[:, None]


def shift_ground(
    patches: torch.Tensor,
    offset: torch.Tensor,
    ground: float,
    threshold: float,
    cover: torch.Tensor | None = None,
) -> torch.Tensor:
    """``patches`` with their ground moved by ``offset``, objects left as they are.

    A pixel's weight is ``clamp(2 (threshold - lum) / (threshold - ground), 0, 1)``: 1 from the
    ground's luminance up to half-way to the threshold, 0 from the threshold on (the objects:
    application 2's label-free foreground rule), linear in between so that anti-aliased
    outlines move in part, as the blend of object and ground they are.

    Args:
        patches: ``n x 3 x P x P`` float in ``[0, 1]``.
        offset: ``n x 3`` colour shift per patch.
        ground: the ground's luminance (of :func:`dark_colour`).
        threshold: the objects' luminance threshold (:func:`otsu_luminance`), above ``ground``.
        cover: ``n x 1 x P x P`` in ``[0, 1]``, the share of each pixel that generated layers
            cover (a composite's); the weight is multiplied by ``1 - cover``, so an opaque
            layer pixel never moves, whatever its colour. None: no layers (real patches).

    Returns:
        ``n x 3 x P x P``, clamped to ``[0, 1]``; ``patches`` itself when ``threshold`` is not
        finite (a flat image: no objects to keep apart from the ground).
    """
    if not math.isfinite(threshold):
        return patches
    span = max(threshold - ground, 1e-6)
    weight = (2.0 * (threshold - luminance(patches.float())) / span).clamp(0.0, 1.0)[:, None]
    if cover is not None:
        weight = weight * (1.0 - cover)
    moved = patches + weight * offset.to(patches)[:, :, None, None]
    return moved.clamp(0.0, 1.0)


def region_mean(x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``... x P x P`` over its last two axes, inside ``region`` (``P x P`` 0/1 float,
    e.g. :func:`disk_mask`) when given: ``...``."""
    if region is None:
        return x.flatten(-2).mean(-1)
    w = region.reshape(-1).to(x)
    return x.flatten(-2) @ w / w.sum().clamp_min(1.0)


def bright_share(
    patches: torch.Tensor, threshold: float, region: torch.Tensor | None = None
) -> torch.Tensor:
    """Per patch, the share of pixels brighter than ``threshold`` (luminance): ``n`` float32,
    for ``n x 3 x P x P`` patches in ``[0, 1]``; counted only inside ``region`` (``P x P``
    0/1 float, e.g. :func:`disk_mask`) when given."""
    return region_mean(bright_pixels(patches, threshold), region)


def disk_mask(patch_size: int, radius: float | None = None) -> torch.Tensor:
    """``1 x 1 x P x P`` float32: 1 inside a centred disk of ``radius`` px (default ``20 * P/64``)."""
    r = DISK_RADIUS_64 * patch_size / 64.0 if radius is None else float(radius)
    c = (patch_size - 1) / 2.0
    yy, xx = torch.meshgrid(torch.arange(patch_size), torch.arange(patch_size), indexing="ij")
    return (((yy - c) ** 2 + (xx - c) ** 2) <= r * r).float()[None, None]


def make_backgrounds(
    kind: str,
    n: int,
    sampler: PatchSampler,
    generator: torch.Generator | None = None,
    radius: float | None = None,
    fill: str = "black",
) -> torch.Tensor:
    """Background layer ``x_0`` for ``n`` composites: ``n x 3 x P x P`` in ``[0, 1]``.

    ``kind="black"``: one flat colour. ``kind="disk"``: real patches with a flat disk in the
    centre (paper: a black disk of radius roughly 20 px at 64x64, "which work better than pure
    black images"). ``fill``: the flat colour -- ``"black"`` (paper) or ``"dark"``, the image's
    own dark-ground colour (:func:`dark_colour`), so that a transparent pixel over the disk
    looks like the image's ground and painting the ground's colour earns nothing there.
    """
    p = sampler.patch_size
    if fill not in ("black", "dark"):
        raise MaskgenError(f"unknown background fill {fill!r}; choose black or dark")
    colour = torch.zeros(3) if fill == "black" else sampler.dark_colour
    flat = colour.view(1, 3, 1, 1).expand(n, 3, p, p)
    if kind == "black":
        return flat.clone()
    if kind == "disk":
        disk = disk_mask(p, radius)
        return sampler.sample(n, generator) * (1.0 - disk) + flat * disk
    raise MaskgenError(f"unknown background {kind!r}; choose black or disk")


def patch_grid_side(n: int) -> int:
    """Columns of a near-square grid of ``n`` images."""
    return max(1, int(math.ceil(math.sqrt(n))))


__all__ = [
    "DARK_QUANTILE",
    "DISK_RADIUS_64",
    "LUMA",
    "WINDOW_FACTOR",
    "PatchSampler",
    "as_rgb_uint8",
    "bright_pixels",
    "bright_share",
    "check_not_label_map",
    "check_patch_geometry",
    "dark_colour",
    "disk_mask",
    "load_cluster_image",
    "luminance",
    "make_backgrounds",
    "otsu_luminance",
    "otsu_threshold",
    "region_mean",
    "shift_ground",
    "soft_silhouette",
    "window_size",
]
