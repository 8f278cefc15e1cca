"""Alpha compositing of a layer stack in depth order -- one implementation for both systems.

Layers are ordered **back to front**: layer 0 is drawn first (furthest), the last layer is on top.
Independence prior, eq. 1: ``x_i = I_i * m_i + x_{i-1} * (1 - m_i)`` with ``x_0`` the background
(black by default). Amodal-VAE's synthetic occlusion is the same operation on binary masks: put
other instances' masks in front of a complete mask and see what stays visible.

numpy functions take ``L x H x W`` alphas (``float32`` in ``[0, 1]`` or bool) and ``L x H x W x 3``
colours; torch functions take ``N x L x 1 x H x W`` alphas and ``N x L x C x H x W`` colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: numpy-only users (and CLI start-up) skip it
    import torch


def visibility_weights(alphas: np.ndarray) -> np.ndarray:
    """How much of each layer reaches the viewer: ``w_i = a_i * prod_{j > i} (1 - a_j)``.

    Args:
        alphas: ``L x H x W`` float/bool, back to front.

    Returns:
        ``L x H x W`` float32; for binary alphas this is each layer's visible mask.
    """
    a = np.asarray(alphas, dtype=np.float32)
    out = np.empty_like(a)
    transmit = np.ones(a.shape[1:], dtype=np.float32)  # product of (1 - a_j) over layers in front
    for i in range(a.shape[0] - 1, -1, -1):
        out[i] = a[i] * transmit
        transmit *= 1.0 - a[i]
    return out


def composite(
    colors: np.ndarray, alphas: np.ndarray, background: np.ndarray | None = None
) -> np.ndarray:
    """Alpha-composite ``L`` RGBA layers back to front over a background.

    Args:
        colors: ``L x H x W x C`` float32 colours.
        alphas: ``L x H x W`` float32 in ``[0, 1]`` (or bool).
        background: ``H x W x C`` float32; black when omitted.

    Returns:
        ``H x W x C`` float32 composite.
    """
    colors = np.asarray(colors, dtype=np.float32)
    alphas = np.asarray(alphas, dtype=np.float32)
    x = (
        np.zeros(colors.shape[1:], dtype=np.float32)
        if background is None
        else np.asarray(background, dtype=np.float32).copy()
    )
    for i in range(colors.shape[0]):
        a = alphas[i][..., None]
        x = colors[i] * a + x * (1.0 - a)
    return x


def visible_masks(masks: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Visible part of each binary mask in a back-to-front stack.

    Args:
        masks: ``L x H x W`` bool (full/amodal masks), back to front.

    Returns:
        ``L x H x W`` bool: pixels of layer ``i`` not covered by any layer in front of it.
    """
    m = np.asarray(masks, dtype=bool)
    out = np.empty_like(m)
    covered = np.zeros(m.shape[1:], dtype=bool)
    for i in range(m.shape[0] - 1, -1, -1):
        out[i] = m[i] & ~covered
        covered |= m[i]
    return out


def occluders(masks: np.ndarray | list[np.ndarray]) -> list[list[int]]:
    """For each layer of a back-to-front binary stack, the layers in front that hide part of it."""
    m = np.asarray(masks, dtype=bool)
    return [[j for j in range(i + 1, m.shape[0]) if (m[i] & m[j]).any()] for i in range(m.shape[0])]


def occlude(full_mask: np.ndarray, masks_in_front: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Synthetic occlusion: the visible part of ``full_mask`` once ``masks_in_front`` cover it.

    This is :func:`visible_masks` on the stack ``[full_mask, *masks_in_front]`` (layer 0 at the
    back); all masks share one ``H x W`` shape.
    """
    stack = np.concatenate(
        [
            np.asarray(full_mask, dtype=bool)[None],
            np.asarray(masks_in_front, dtype=bool).reshape(-1, *np.shape(full_mask)),
        ]
    )
    return visible_masks(stack)[0]


def occluded_fraction(full_mask: np.ndarray, visible_mask: np.ndarray) -> float:
    """Share of a full mask's pixels that are hidden (0 for an empty full mask)."""
    full = np.asarray(full_mask, dtype=bool)
    n = int(full.sum())
    if n == 0:
        return 0.0
    return 1.0 - float((full & np.asarray(visible_mask, dtype=bool)).sum()) / n


def composite_torch(
    colors: torch.Tensor, alphas: torch.Tensor, background: torch.Tensor | None = None
) -> torch.Tensor:
    """Batched, differentiable alpha compositing (independence prior eq. 1).

    Args:
        colors: ``N x L x C x H x W`` float.
        alphas: ``N x L x 1 x H x W`` float in ``[0, 1]``.
        background: ``N x C x H x W``; black when omitted.

    Returns:
        ``N x C x H x W`` composite.
    """
    import torch

    x = torch.zeros_like(colors[:, 0]) if background is None else background
    for i in range(colors.shape[1]):
        a = alphas[:, i]
        x = colors[:, i] * a + x * (1.0 - a)
    return x


def visibility_weights_torch(alphas: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`visibility_weights` for ``N x L x 1 x H x W`` alphas (back to front)."""
    # transmit_i = prod_{j > i}(1 - a_j): a reversed exclusive cumulative product.
    import torch

    one_minus = 1.0 - alphas
    rev = torch.flip(one_minus, dims=[1])
    cum = torch.cumprod(rev, dim=1)
    excl = torch.cat([torch.ones_like(cum[:, :1]), cum[:, :-1]], dim=1)
    transmit = torch.flip(excl, dims=[1])
    return alphas * transmit
