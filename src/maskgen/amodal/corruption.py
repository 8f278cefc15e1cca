"""Documented corruptions of visible masks: a stand-in for a detector's predicted masks.

Supplementary Table 1 asks how much amodal completion loses when its input is a *predicted*
visible mask instead of the ground-truth one. Without a detector here, we corrupt GT visible
masks with a seeded mix of the errors a mask head makes, applied in this order to each mask:

1. **Boundary jitter**: the mask is resampled through a smooth random displacement field
   (independent Gaussian noise on a coarse grid of ``jitter_cell`` pixels, bicubic-upsampled,
   scaled so that each displacement component has standard deviation ``jitter_px`` pixels), so
   its outline wobbles while its interior stays.
2. **Erosion or dilation**: by a disk of radius ``round(|s| * sqrt(area))`` pixels with ``s``
   drawn uniformly from ``[-morph_frac, morph_frac]`` (negative: erode, positive: dilate), so
   the error scales with the object.
3. **Dropped pixels**: each mask pixel is removed with probability ``drop_prob`` (holes and a
   ragged outline, as a low-resolution mask head leaves).

The defaults are calibrated on the built-in scenes' test split (256 px images) so that a
corrupted mask's IoU with its GT visible mask is that of a decent mask head (on KINS,
supplementary Table 1, predicted masks lose ~6 points of full mIoU against GT visible masks);
the measured effect is in benchmarks/RESULTS.md, section "amodal-quality".

A corruption that would empty a mask returns the mask after step 1 only, or the original when
that is empty too (a detector reports no empty masks). Every random draw comes from
``numpy.random.default_rng([seed, index])``, so the same ``(seed, index)`` always gives the same
corruption.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from maskgen.core.masks import dilate, erode

__all__ = ["CorruptionConfig", "corrupt_mask", "corrupt_masks"]


@dataclass(frozen=True)
class CorruptionConfig:
    """Strength of each corruption (see the module docstring)."""

    jitter_px: float = 0.5
    jitter_cell: int = 8
    morph_frac: float = 0.02
    drop_prob: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _jitter(mask: np.ndarray, rng: np.random.Generator, sigma: float, cell: int) -> np.ndarray:
    h, w = mask.shape
    if sigma <= 0:
        return mask.copy()
    gh, gw = max(h // cell, 1) + 2, max(w // cell, 1) + 2
    dx = cv2.resize(
        rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    dy = cv2.resize(
        rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    # Renormalise: upsampling smooths the noise, so rescale to the requested spread.
    dx *= sigma / max(float(dx.std()), 1e-6)
    dy *= sigma / max(float(dy.std()), 1e-6)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(
        mask.astype(np.float32),
        xs + dx,
        ys + dy,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return out >= 0.5


def corrupt_mask(
    mask: np.ndarray, seed: int = 0, index: int = 0, config: CorruptionConfig | None = None
) -> np.ndarray:
    """Corrupt one ``H x W`` bool visible mask (module docstring); returns ``H x W`` bool.

    Args:
        mask: ``H x W`` bool/uint8 visible mask.
        seed, index: the random stream is ``default_rng([seed, index])``.
        config: corruption strengths (defaults: :class:`CorruptionConfig`).
    """
    cfg = config or CorruptionConfig()
    m = np.asarray(mask, dtype=bool)
    area = int(m.sum())
    if area == 0:
        return m.copy()
    rng = np.random.default_rng([int(seed), int(index)])
    jittered = _jitter(m, rng, cfg.jitter_px, cfg.jitter_cell)
    s = rng.uniform(-cfg.morph_frac, cfg.morph_frac)
    radius = int(round(abs(s) * np.sqrt(area)))
    out = dilate(jittered, radius) if s > 0 else erode(jittered, radius)
    if cfg.drop_prob > 0:
        out = out & (rng.random(m.shape) >= cfg.drop_prob)
    if not out.any():
        out = jittered if jittered.any() else m.copy()
    return out


def corrupt_masks(
    masks: np.ndarray, seed: int = 0, start_index: int = 0, config: CorruptionConfig | None = None
) -> np.ndarray:
    """Corrupt ``K x H x W`` masks independently (mask ``k`` uses index ``start_index + k``)."""
    return (
        np.stack(
            [
                corrupt_mask(m, seed, start_index + k, config)
                for k, m in enumerate(np.asarray(masks, bool))
            ]
        )
        if len(masks)
        else np.asarray(masks, dtype=bool).copy()
    )
