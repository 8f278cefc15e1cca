"""Affine warps of torch tensors -- the spatial transformer of both systems.

Convention: an affine ``theta`` is ``N x 2 x 3`` and maps **output** normalised coordinates to
**input** normalised coordinates, as ``torch.nn.functional.affine_grid`` does, with
``align_corners=False``: ``(-1, -1)`` is the outer corner of the top-left pixel and ``(1, 1)`` the
outer corner of the bottom-right pixel, ``x`` along width first. So ``warp(img, theta)[p]`` is
``img`` sampled at ``theta @ [p, 1]``.

Boxes given to :func:`box_to_box_theta` share one pixel frame and are half-open
``(x0, y0, x1, y1)``; the theta resamples what box ``src`` shows (stretched to the whole input
tensor) into the position of box ``dst``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(
    images: torch.Tensor,
    theta: torch.Tensor,
    size: tuple[int, int] | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Warp ``N x C x H x W`` images by ``N x 2 x 3`` ``theta`` (zeros outside).

    Args:
        images: ``N x C x H x W`` float.
        theta: ``N x 2 x 3`` output->input normalised map (see module docstring).
        size: output ``(H', W')``; the input size when omitted.
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        ``N x C x H' x W'``.
    """
    n, c, h, w = images.shape
    oh, ow = size if size is not None else (h, w)
    grid = F.affine_grid(theta.to(images.dtype), [n, c, oh, ow], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def invert_theta(theta: torch.Tensor) -> torch.Tensor:
    """Inverse of ``N x 2 x 3`` affine maps (as 3x3 matrices with a ``[0, 0, 1]`` row)."""
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=theta.dtype, device=theta.device).expand(
        theta.shape[0], 1, 3
    )
    full = torch.cat([theta, bottom], dim=1)
    return torch.linalg.inv(full)[:, :2]


def box_to_box_theta(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Theta that moves the content of frame ``src`` into frame ``dst``.

    The input tensor shows box ``src`` (its full extent); the output tensor shows box ``dst``.
    Output normalised ``u`` is the pixel ``x = dst_x0 + (u + 1) / 2 * dst_w``, which the input
    shows at ``u' = 2 (x - src_x0) / src_w - 1``. Typical use: a decoder predicts a mask in the
    amodal-box frame; ``warp(pred, box_to_box_theta(amodal, visible))`` shows it in the
    visible-box frame.

    Args:
        src, dst: ``N x 4`` boxes ``(x0, y0, x1, y1)`` in one pixel frame.

    Returns:
        ``N x 2 x 3``.
    """
    sw = src[:, 2] - src[:, 0]
    sh = src[:, 3] - src[:, 1]
    dw = dst[:, 2] - dst[:, 0]
    dh = dst[:, 3] - dst[:, 1]
    ax = dw / sw
    ay = dh / sh
    bx = (2 * (dst[:, 0] - src[:, 0]) + dw) / sw - 1
    by = (2 * (dst[:, 1] - src[:, 1]) + dh) / sh - 1
    zero = torch.zeros_like(ax)
    return torch.stack([torch.stack([ax, zero, bx], 1), torch.stack([zero, ay, by], 1)], 1)


def rotation_theta(angle: torch.Tensor) -> torch.Tensor:
    """Theta turning content about the centre by ``angle`` radians (an ``N``-vector); ``N x 2 x 3``.

    Exact for square images only (normalised ``x`` and ``y`` then share one pixel scale).
    """
    c, s = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(angle)
    return torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1)], 1)


def translation_theta(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Theta shifting content by ``(dx, dy)`` in normalised units (``N``-vectors); ``N x 2 x 3``.

    Positive ``dx`` moves content right (the output samples the input further left).
    """
    one = torch.ones_like(dx)
    zero = torch.zeros_like(dx)
    return torch.stack([torch.stack([one, zero, -dx], 1), torch.stack([zero, one, -dy], 1)], 1)
