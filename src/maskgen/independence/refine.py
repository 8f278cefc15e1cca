"""``--refine``: an optional post-process of application 1 that seeds OpenCV GrabCut with the
learned soft mask (issue 12, item 5; reported apart from the unrefined masks).

The soft mask ``m`` (``H x W`` float in ``[0, 1]``) of a box crop becomes GrabCut's initial
label map (``cv2.GC_INIT_WITH_MASK``):

- definite foreground where ``m >= refine_sure_fg``, definite background where
  ``m <= refine_sure_bg``, both eroded by ``refine_erode`` pixels (the masks' edges are soft and
  often misplaced by a pixel or two, so only their interiors are trusted);
- elsewhere probable foreground where ``m >= threshold`` (the model's binarisation threshold),
  probable background below it.

GrabCut then fits its colour models to those labels and re-labels the uncertain pixels by a graph
cut on the crop's own colours, which sharpens the blurred, blob-like edges of the learned masks.
A crop where GrabCut cannot run (no foreground-ish or no background-ish pixel, or degenerate
colour statistics) keeps its thresholded mask. The settings live in :class:`RefineConfig`
(flags of ``segment predict``); :func:`refine_masks` is the numpy API used by
:meth:`~maskgen.independence.predict.SegmentPredictor.predict_binary` and ``predict_folder``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from maskgen.engine.config import param
from maskgen.errors import MaskgenError


@dataclasses.dataclass
class RefineConfig:
    """Every setting of the ``--refine`` post-process. Defaults chosen on the photo *tuning*
    set (``data segmentation-set --variant photo``), never on a reporting set: the distilled
    students' soft masks are rarely near 0 or 1, so "confident" starts at 0.3 / 0.7 (0.1 / 0.9
    made the refined student worse than the unrefined one there)."""

    refine: bool = param(
        False, "refine the binary masks with GrabCut seeded by the soft mask (off: the paper)"
    )
    refine_sure_fg: float = param(
        0.7, "with --refine: soft mask at or above this is definite foreground", low=0, high=1
    )
    refine_sure_bg: float = param(
        0.3, "with --refine: soft mask at or below this is definite background", low=0, high=1
    )
    refine_erode: int = param(
        1, "with --refine: pixels the definite regions are eroded by", low=0, high=64
    )
    refine_iterations: int = param(5, "with --refine: GrabCut iterations", low=1, high=100)

    def check(self) -> None:
        if self.refine_sure_bg >= self.refine_sure_fg:
            raise MaskgenError(
                f"--refine-sure-bg {self.refine_sure_bg}: must be below --refine-sure-fg "
                f"{self.refine_sure_fg}"
            )

    def check_threshold(self, threshold: float) -> None:
        """The binarisation threshold must lie between the two confidence levels.

        Raises:
            MaskgenError: ``threshold`` outside ``[refine_sure_bg, refine_sure_fg]``.
        """
        if not self.refine_sure_bg <= threshold <= self.refine_sure_fg:
            raise MaskgenError(
                f"--refine-sure-bg {self.refine_sure_bg} / --refine-sure-fg {self.refine_sure_fg}: "
                f"the binarisation threshold {threshold} must lie between them"
            )


def _erode(region: np.ndarray, pixels: int) -> np.ndarray:
    """``H x W`` bool eroded by a ``(2 * pixels + 1)``-square (``pixels`` 0: unchanged)."""
    import cv2

    if pixels <= 0:
        return region
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.erode(region.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE) > 0


def seed_labels(soft: np.ndarray, threshold: float, cfg: RefineConfig) -> np.ndarray:
    """GrabCut's initial labels from a soft mask: ``H x W`` float -> ``H x W`` uint8 of
    ``cv2.GC_BGD / GC_FGD / GC_PR_BGD / GC_PR_FGD`` (see the module docstring)."""
    import cv2

    labels = np.where(soft >= threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    labels[_erode(soft >= cfg.refine_sure_fg, cfg.refine_erode)] = cv2.GC_FGD
    labels[_erode(soft <= cfg.refine_sure_bg, cfg.refine_erode)] = cv2.GC_BGD
    return labels


def refine_mask(
    image: np.ndarray, soft: np.ndarray, threshold: float, cfg: RefineConfig, seed: int = 0
) -> np.ndarray:
    """One crop: ``H x W x 3`` uint8 RGB and its ``H x W`` float soft mask -> ``H x W`` bool.

    ``seed`` fixes OpenCV's RNG (GrabCut's k-means initialisation draws from it). Returns
    ``soft >= threshold`` where GrabCut cannot run.
    """
    import cv2

    hard = soft >= threshold
    labels = seed_labels(soft, threshold, cfg)
    fgish = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    # GrabCut's two 5-component colour models each need a handful of pixels.
    if fgish.sum() < 5 or (~fgish).sum() < 5:
        return hard
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    bgr = np.ascontiguousarray(image[..., ::-1])
    try:
        cv2.grabCut(bgr, labels, None, bgd, fgd, cfg.refine_iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour statistics (e.g. a flat crop)
        return hard
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def refine_masks(
    crops: np.ndarray, soft: np.ndarray, threshold: float, cfg: RefineConfig
) -> np.ndarray:
    """A batch: ``N x H x W x 3`` uint8 crops and ``N x H x W`` float soft masks ->
    ``N x H x W`` bool refined masks (:func:`refine_mask` per crop).

    Raises:
        ValueError: crops and masks of different shapes.
        MaskgenError: ``threshold`` outside the two confidence levels.
    """
    crops, soft = np.asarray(crops), np.asarray(soft)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be N x H x W x 3 uint8, got {crops.shape} {crops.dtype}")
    if soft.shape != crops.shape[:3]:
        raise ValueError(f"soft masks {soft.shape} do not match the crops {crops.shape[:3]}")
    cfg.check_threshold(threshold)
    if len(crops) == 0:
        return np.zeros(soft.shape, bool)
    return np.stack([refine_mask(c, s, threshold, cfg) for c, s in zip(crops, soft, strict=True)])


__all__ = ["RefineConfig", "refine_mask", "refine_masks", "seed_labels"]
