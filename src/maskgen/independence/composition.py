"""Composition module of the independence prior (paper eq. 5), a thin wrapper over the shared
compositing code :func:`maskgen.core.compositing.composite_torch`.

``x_i = Î_i ⊙ m̂_i + x_{i-1} ⊙ (1 - m̂_i)``, layers **back to front**, ``x_0`` = the background
(pure black in the paper when no background layer is given).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from maskgen.core.compositing import composite_torch


def compose(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """Alpha-composite layers back to front.

    Args:
        layers: ``L`` pairs ``(rgb, alpha)``: ``rgb`` ``N x 3 x H x W`` and ``alpha``
            ``N x 1 x H x W``, floats in ``[0, 1]``, the first pair at the back.
        background: ``N x 3 x H x W`` (``x_0``); pure black when None.

    Returns:
        ``N x 3 x H x W`` composite, differentiable in every input.
    """
    if len(layers) == 0:
        raise ValueError("compose needs at least one layer")
    colors = torch.stack([rgb for rgb, _ in layers], dim=1)
    alphas = torch.stack([alpha for _, alpha in layers], dim=1)
    return composite_torch(colors, alphas, background)


def compose_rgba(
    rgba_layers: Sequence[torch.Tensor], background: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`compose` for ``N x 4 x H x W`` RGBA layers (alpha in channel 3), back to front."""
    return compose([(x[:, :3], x[:, 3:4]) for x in rgba_layers], background)


__all__ = ["compose", "compose_rgba"]
