"""Layout module of the independence prior (paper eq. 4): warp each RGBA layer into place.

``Î_i = ST(I_i, Δr_i)``, ``m̂_i = ST(m_i, Δr_i)``: one warp for colour and alpha together, so
colour never leaves its mask. Layers are ``N x 4 x H x W`` float tensors, RGB in channels 0-2
and alpha in channel 3, values in ``[0, 1]``. Outside the source image the warp gives zeros,
i.e. transparent black (alpha 0), so a warped layer never covers new ground with garbage.

- Application 1 (box-cropped foreground segmentation): ``Δr = 0`` -> :func:`identity_layout`.
- Application 2 (dense structure-free clusters): random placement by padding the generated
  layer and cropping it back at a random offset -> :func:`pad_and_random_crop` ("Layout
  Details": pad 26-32 px at 64x64).
- General spatial transformer: :func:`spatial_transform_layout` with an affine ``theta`` in
  :mod:`maskgen.core.warp`'s convention (output->input normalised coordinates,
  ``align_corners=False``).
"""

from __future__ import annotations

import torch

from maskgen.core.warp import warp


def identity_layout(rgba: torch.Tensor) -> torch.Tensor:
    """``Δr = 0``: returns ``rgba`` (``N x 4 x H x W``) unchanged."""
    return rgba


def spatial_transform_layout(
    rgba: torch.Tensor, theta: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Warp colour and alpha with the same affine map (paper eq. 4), bilinear, zeros outside.

    Args:
        rgba: ``N x 4 x H x W`` float (RGB + alpha), or any ``N x C x H x W``.
        theta: ``N x 2 x 3`` affine, output->input normalised coordinates (see
            :mod:`maskgen.core.warp`).
        size: output ``(H', W')``; input size when omitted.

    Returns:
        ``N x C x H' x W'``; differentiable in ``rgba`` and ``theta``.
    """
    return warp(rgba, theta, size=size)


def pad_and_random_crop(
    rgba: torch.Tensor, pad: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Structure-free layout (application 2): zero-pad by ``pad`` px, crop back at a random offset.

    Equivalent to translating each layer by an integer ``(dx, dy)`` drawn uniformly from
    ``[-pad, pad]^2`` independently per sample; uncovered pixels are zero (transparent black).
    Exact (no resampling), differentiable in ``rgba``.

    Args:
        rgba: ``N x C x H x W`` float.
        pad: padding in pixels (>= 0).
        generator: torch RNG for the offsets (on the CPU); the global RNG when None.

    Returns:
        ``N x C x H x W``.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return rgba
    n, c, h, w = rgba.shape
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    padded = torch.nn.functional.pad(rgba, (pad, pad, pad, pad))
    # Gather with index grids: row index y + oy, column index x + ox for each sample.
    ys = (torch.arange(h)[None, :] + offs[:, :1]).to(rgba.device)  # N x H
    xs = (torch.arange(w)[None, :] + offs[:, 1:]).to(rgba.device)  # N x W
    rows = torch.gather(padded, 2, ys[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return torch.gather(rows, 3, xs[:, None, None, :].expand(n, c, h, w))


__all__ = ["identity_layout", "pad_and_random_crop", "spatial_transform_layout"]
