"""Layout module of the independence prior (paper eq. 4): warp each RGBA layer into place.

``Î_i = ST(I_i, Δr_i)``, ``m̂_i = ST(m_i, Δr_i)``: one warp for colour and alpha together, so
colour never leaves its mask. Layers are ``N x 4 x H x W`` float tensors, RGB in channels 0-2
and alpha in channel 3, values in ``[0, 1]``. Outside the source image the warp gives zeros,
i.e. transparent black (alpha 0), so a warped layer never covers new ground with garbage.

- Application 1 (box-cropped foreground segmentation): ``Δr = 0`` -> :func:`identity_layout`.
- Application 2 (dense structure-free clusters): random placement by padding the generated
  layer and cropping it back at a random offset -> :func:`pad_and_random_crop` ("Layout
  Details": pad 26-32 px at 64x64).
- Random turn of each layer about its centre (ours, ``--layer-rotation``):
  :func:`random_rotation`, for objects seen at every orientation.
- General spatial transformer: :func:`spatial_transform_layout` with an affine ``theta`` in
  :mod:`maskgen.core.warp`'s convention (output->input normalised coordinates,
  ``align_corners=False``).
"""

from __future__ import annotations

import torch

from maskgen.core.warp import rotation_theta, warp


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


def random_rotation(
    rgba: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Turn each square layer about its centre by its own angle, uniform in
    ``[-max_degrees, max_degrees]`` (bilinear, transparent black where the turned layer leaves
    the square).

    Args:
        rgba: ``N x C x P x P`` float.
        max_degrees: largest turn in degrees, in ``[0, 180]`` (0 returns ``rgba``; 180: any angle).
        generator: torch RNG for the angles (on the CPU); the global RNG when None.

    Returns:
        ``N x C x P x P``; differentiable in ``rgba``.
    """
    if not 0 <= max_degrees <= 180:
        raise ValueError(f"max_degrees must be in [0, 180], got {max_degrees}")
    n, _, h, w = rgba.shape
    if h != w:
        raise ValueError(f"random_rotation needs square layers, got {h}x{w}")
    if max_degrees == 0:
        return rgba
    t = (torch.rand(n, generator=generator) * 2.0 - 1.0) * torch.pi * (max_degrees / 180.0)
    return warp(rgba, rotation_theta(t).to(rgba.device))


__all__ = ["identity_layout", "pad_and_random_crop", "random_rotation", "spatial_transform_layout"]
