"""Texture: how much of an instance's texture a re-rendering has (measures) and a texture loss.

Pixel errors (MAE, PSNR) reward the blurry mean where a texture cannot be predicted pixel by
pixel, so a smooth fill of the visible colours scores well while showing no texture. Two
alignment-free measures, on the pixels where a method has to invent the appearance (the new mask
minus the old visible pixels, :func:`texture_region`), say whether the texture is there:

- :func:`hf_energy` -- the standard deviation of the grey image's 3 x 3 Laplacian on the region
  (its pixels whose 3 x 3 neighbourhood lies inside it): high-frequency energy; a smooth fill has
  ~0, the truth has the material's;
- :func:`patch_swd` -- the sliced Wasserstein distance (Rabin et al. 2011; ProGAN's SWD; Heitz
  et al. CVPR 2021 as a texture loss) between the ``5 x 5`` RGB patches of the method and of the
  truth on the region (patches wholly inside it), each patch minus its own mean colour, so that
  it compares local structure (texture), not colour (MAE does): 0 for the truth, the truth's
  texture magnitude for a smooth fill.

The training loss (:class:`RandomFeatureStyle`): Gatys-style Gram matrices of the features of a
**fixed random-weight** multi-scale conv net (random filters carry texture statistics well enough
to synthesise textures -- Ustyuzhaninov et al., ICLR 2017 -- and need no downloaded weights, unlike
VGG), computed over a masked region of the generated and the real crop.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PATCH = 5  # side of the patches patch_swd compares
DIRECTIONS = 64  # random projections of patch_swd
MAX_PATCHES = 4096  # patch_swd subsamples larger regions on a fixed stride
MIN_PIXELS = 8  # fewer usable pixels / patches: no measure (None)


def texture_region(new_visible: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``H x W`` bool: what shows of the new shape minus the old visible pixels -- where kept
    pixels cannot help and a method must invent the appearance."""
    return new_visible & ~visible


def _inner(region: np.ndarray, side: int) -> np.ndarray:
    """Pixels of ``region`` whose ``side x side`` neighbourhood lies inside it (bool)."""
    kernel = np.ones((side, side), np.uint8)
    return cv2.erode(region.astype(np.uint8), kernel, borderValue=0).astype(bool)


def hf_energy(image: np.ndarray, region: np.ndarray) -> float | None:
    """Std of the 3 x 3 Laplacian of ``image``'s grey level (mean of RGB, 0-255) over the pixels
    of ``region`` (``H x W`` bool) with their 3 x 3 neighbourhood inside it; ``None`` when fewer
    than ``MIN_PIXELS``.

    Args:
        image: ``H x W x 3`` uint8.
    """
    inner = _inner(region, 3)
    if inner.sum() < MIN_PIXELS:
        return None
    grey = image.astype(np.float64).mean(axis=2)
    lap = cv2.Laplacian(grey, cv2.CV_64F, ksize=1)
    return float(lap[inner].std())


def _patches(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``N x (PATCH*PATCH*3)`` float64 patches centred at ``(ys, xs)``, each minus its mean colour."""
    r = PATCH // 2
    view = np.lib.stride_tricks.sliding_window_view(image.astype(np.float64), (PATCH, PATCH, 3))
    p = view[ys - r, xs - r, 0]  # N x P x P x 3
    p = p - p.mean(axis=(1, 2), keepdims=True)
    return p.reshape(len(ys), -1)


def patch_swd(image: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float | None:
    """Sliced Wasserstein-1 distance (0-255 units) between the mean-removed ``PATCH x PATCH``
    patches of ``image`` and ``truth`` (both ``H x W x 3`` uint8) centred on the pixels of
    ``region`` whose patch lies inside it; ``DIRECTIONS`` random unit directions from a fixed
    seed, at most ``MAX_PATCHES`` centres (a fixed stride). ``None`` below ``MIN_PIXELS`` centres.
    """
    ys, xs = np.nonzero(_inner(region, PATCH))
    if len(ys) < MIN_PIXELS:
        return None
    step = max(1, -(-len(ys) // MAX_PATCHES))
    ys, xs = ys[::step], xs[::step]
    proj = np.random.default_rng(0).normal(size=(PATCH * PATCH * 3, DIRECTIONS))
    proj /= np.linalg.norm(proj, axis=0, keepdims=True)
    a = np.sort(_patches(image, ys, xs) @ proj, axis=0)
    b = np.sort(_patches(truth, ys, xs) @ proj, axis=0)
    return float(np.abs(a - b).mean())


class RandomFeatureStyle(nn.Module):
    """Texture loss: Gram matrices of a fixed random conv net's features on a Laplacian pyramid,
    masked and normalised.

    Per level ``i`` (``levels`` of them): the band ``x_i - up(x_{i+1})`` of the image's Laplacian
    pyramid (``x_0`` the image, ``x_{i+1}`` its ``2 x 2`` average pooling) -- colour and smooth
    shading removed, which L1 already judges and which would otherwise dominate the statistics --
    through ``3 x 3 conv -> ReLU -> 3 x 3 conv -> ReLU`` with ``channels`` filters each,
    Kaiming-normal weights from a fixed seed (so a resumed run and every process build the same
    net), never trained (weights are buffers, not parameters). Per level and sample: the Gram
    matrix ``sum_p m_p f_p f_p^T / sum_p m_p`` over the mask ``m`` (area-downsampled to the
    level), the L1 distance of the generated Gram to the real one divided by the real one's L1
    norm (plus ``eps``): ~1 for a smooth fill of a textured truth at any texture contrast, 0 for
    the truth's statistics. Samples weighted by their mask's area; mean over levels.
    """

    def __init__(
        self, channels: int = 32, levels: int = 3, seed: int = 1234, eps: float = 1e-4
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        for i in range(levels):
            for j, c_in in enumerate((3, channels)):
                w = torch.randn(channels, c_in, 3, 3, generator=gen) * (2.0 / (9 * c_in)) ** 0.5
                self.register_buffer(f"w{i}_{j}", w)
        self.levels, self.eps = levels, eps

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``B x C x h x w`` features of ``x`` (``B x 3 x S x S`` in ``[-1, 1]``)."""
        out = []
        for i in range(self.levels):
            low = F.avg_pool2d(x, 2)
            band = x - F.interpolate(low, size=x.shape[2:], mode="bilinear", align_corners=False)
            f = F.relu(F.conv2d(band, getattr(self, f"w{i}_0"), padding=1))
            out.append(F.relu(F.conv2d(f, getattr(self, f"w{i}_1"), padding=1)))
            x = low
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss (scalar) of ``fake`` against ``real`` (``B x 3 x S x S``) over ``mask``
        (``B x 1 x S x S`` float in ``[0, 1]``); 0 when the mask is empty."""
        total = fake.new_zeros(())
        with torch.no_grad():
            real_feats = self.features(real)
        for f, r in zip(self.features(fake), real_feats, strict=True):
            m = F.adaptive_avg_pool2d(mask, f.shape[2:])
            area = m.sum((1, 2, 3))  # B
            norm = area.clamp_min(1e-6)[:, None, None]
            g_f = torch.einsum("bchw,bdhw->bcd", f * m, f) / norm
            g_r = torch.einsum("bchw,bdhw->bcd", r * m, r) / norm
            per = (g_f - g_r).abs().mean((1, 2)) / (g_r.abs().mean((1, 2)) + self.eps)
            total = total + (per * area).sum() / area.sum().clamp_min(1e-6)
        return total / self.levels
