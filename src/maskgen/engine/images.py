"""Image grids for sample pictures (e.g. the prior-samples grid of Amodal-VAE Fig. 3)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from maskgen.core.io import write_image
from maskgen.engine.distributed import is_main_process


def make_image_grid(
    images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 0.5
) -> np.ndarray:
    """Tile ``images`` (N x C x H x W float in [0, 1], C in {1, 3, 4}) into a uint8 array.

    ``nrow`` images per row (the last row is padded); ``padding`` pixels of ``pad_value`` grey
    between and around tiles. Returns ``Hg x Wg`` (C = 1) or ``Hg x Wg x C`` uint8. Values outside
    [0, 1] are clipped; NaNs become 0.
    """
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"expected N x C x H x W images with C in 1, 3, 4; got {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise ValueError("no images to tile")
    if nrow < 1:
        raise ValueError("nrow must be at least 1")
    x = images.detach().to("cpu", torch.float32).nan_to_num(0.0).clamp(0, 1)
    n, c, h, w = x.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = torch.full(
        (c, rows * (h + padding) + padding, cols * (w + padding) + padding), float(pad_value)
    )
    if c == 4:
        grid[3] = 1.0  # opaque separators
    for i in range(n):
        r, q = divmod(i, cols)
        y0 = padding + r * (h + padding)
        x0 = padding + q * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = x[i]
    out = (grid * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    return out[0] if c == 1 else np.ascontiguousarray(out.transpose(1, 2, 0))


def save_image_grid(
    path: str | os.PathLike[str],
    images: torch.Tensor,
    nrow: int,
    padding: int = 2,
    pad_value: float = 0.5,
) -> Path:
    """Write :func:`make_image_grid` of ``images`` as a PNG, atomically (rank 0 only)."""
    path = Path(path)
    grid = make_image_grid(images, nrow, padding=padding, pad_value=pad_value)
    if is_main_process():
        write_image(path, grid)
    return path
