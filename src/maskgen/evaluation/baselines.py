"""The classical amodal-completion baselines the literature reports.

Public API (each a predictor for :func:`maskgen.evaluation.evaluate_predictions`)::

    raw_visible(image: ImageRecord, instance: Instance) -> np.ndarray      # H x W bool
    convex_hull_baseline(image: ImageRecord, instance: Instance) -> np.ndarray
    BASELINES: dict[str, Predictor]                 # "raw", "convex-hull"
    baseline_protocol(name: str) -> dict

- **raw**: the GT visible mask itself is the amodal answer (no completion at all). KINS with GT
  visible masks: 87.03 full mIoU in the Amodal-VAE supplementary, Table 1.
- **convex-hull**: the filled convex hull of the GT visible mask (it contains the visible mask).

Both take the *ground-truth* visible mask, work on the whole image (no crop) and contain the
visible mask, so their protocol is ``visible_source="gt"``, ``crop="none (whole image)"``,
``or_visible=True``, ``baseline=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maskgen.core.masks import convex_hull
from maskgen.data.types import ImageRecord, Instance
from maskgen.evaluation.harness import Predictor

__all__ = ["BASELINES", "baseline_protocol", "convex_hull_baseline", "raw_visible"]


def raw_visible(image: ImageRecord, instance: Instance) -> np.ndarray:
    """The GT visible mask as the amodal prediction (``H x W`` bool)."""
    return image.visible_mask(instance)


def convex_hull_baseline(image: ImageRecord, instance: Instance) -> np.ndarray:
    """The filled convex hull of the GT visible mask (``H x W`` bool; empty stays empty)."""
    return convex_hull(image.visible_mask(instance))


BASELINES: dict[str, Predictor] = {"raw": raw_visible, "convex-hull": convex_hull_baseline}

_DESCRIPTIONS = {
    "raw": "baseline: the GT visible mask itself, unchanged",
    "convex-hull": "baseline: filled convex hull of the GT visible mask",
}


def baseline_protocol(name: str) -> dict[str, Any]:
    """The protocol dict of a baseline (``name`` in :data:`BASELINES`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    return {
        "method": name,
        "description": _DESCRIPTIONS[name],
        "baseline": True,
        "visible_source": "gt",
        "crop": "none (whole image)",
        "or_visible": True,
    }
