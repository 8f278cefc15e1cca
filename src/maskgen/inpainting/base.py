"""The inpainter interface and the OpenCV (Telea) inpainter.

Conventions: images are ``H x W x 3`` uint8 RGB; masks ``H x W`` bool in image pixel
coordinates. An inpainter returns a new image equal to the input outside ``hole``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

DEFAULT_INPAINT_RADIUS = 5  # Telea neighbourhood in pixels (OpenCV's docs suggest 3-5)


class Inpainter(Protocol):
    """Fills holes in a scene, either with background or with one instance's appearance."""

    def inpaint_background(
        self, image: np.ndarray, hole: np.ndarray, known: np.ndarray
    ) -> np.ndarray:
        """Fill ``hole`` with background continued from the ``known`` background pixels.

        Args:
            image: ``H x W x 3`` uint8.
            hole: ``H x W`` bool pixels to fill.
            known: ``H x W`` bool pixels that show background (disjoint from ``hole``).

        Returns:
            ``H x W x 3`` uint8, equal to ``image`` outside ``hole``.
        """
        ...

    def inpaint_instance(
        self,
        image: np.ndarray,
        hole: np.ndarray,
        known: np.ndarray,
        amodal: np.ndarray,
        label: int = 0,
    ) -> np.ndarray:
        """Fill ``hole`` (the newly visible part of one instance) from its ``known`` pixels.

        Args:
            image: ``H x W x 3`` uint8.
            hole: ``H x W`` bool pixels to fill (inside ``amodal``).
            known: ``H x W`` bool visible pixels of the instance (disjoint from ``hole``).
            amodal: ``H x W`` bool full (amodal) mask of the instance.
            label: the instance's class id (the learned inpainter fills the hole with it, §3.3).

        Returns:
            ``H x W x 3`` uint8, equal to ``image`` outside ``hole``.
        """
        ...


def _box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """Tight ``(x0, y0, x1, y1)`` half-open integer box of a non-empty mask, grown by ``margin``
    and clipped to the image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        max(int(cols[0]) - margin, 0),
        max(int(rows[0]) - margin, 0),
        min(int(cols[-1]) + 1 + margin, w),
        min(int(rows[-1]) + 1 + margin, h),
    )


def inpaint_from(
    image: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    radius: int = DEFAULT_INPAINT_RADIUS,
) -> np.ndarray:
    """Colours for the ``target`` pixels inpainted from the ``source`` pixels only.

    ``cv2.inpaint`` (Telea) runs on a crop around ``target`` grown until it holds source pixels;
    every pixel of the crop that is not in ``source`` is marked to fill, so nothing outside
    ``source`` contributes a colour.

    Args:
        image: ``H x W x 3`` uint8.
        source: ``H x W`` bool pixels whose colours may be used (non-empty).
        target: ``H x W`` bool pixels to fill (disjoint from ``source``).
        radius: Telea neighbourhood radius in pixels.

    Returns:
        ``(N, 3)`` uint8 colours of the ``N`` target pixels in row-major order
        (``image[target]`` order).
    """
    import cv2

    if not target.any():
        return np.zeros((0, 3), np.uint8)
    if not source.any():
        raise ValueError("inpaint_from: no source pixels")
    h, w = target.shape
    # Margin: enough for Telea's neighbourhood; grown until the crop holds source pixels (a
    # target far from every source pixel is filled by marching in from the nearest ones).
    margin = 2 * radius + 2
    while True:
        x0, y0, x1, y1 = _box(target, margin)
        if source[y0:y1, x0:x1].any() or (x0, y0, x1, y1) == (0, 0, w, h):
            break
        margin *= 2
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    fill = (~source[y0:y1, x0:x1]).astype(np.uint8)
    out = cv2.inpaint(crop, fill, float(radius), cv2.INPAINT_TELEA)
    return out[target[y0:y1, x0:x1]]


class TeleaInpainter:
    """:class:`Inpainter` by OpenCV's Telea method, each region from its own source pixels.

    A CPU baseline with no training: it continues colours and smooth shading from the hole's
    border and does not synthesise texture. Without any source pixel the hole gets the image's
    median colour.
    """

    def __init__(self, radius: int = DEFAULT_INPAINT_RADIUS) -> None:
        self.radius = int(radius)

    def _fill(self, image: np.ndarray, hole: np.ndarray, source: np.ndarray) -> np.ndarray:
        out = np.array(image, copy=True)
        if not hole.any():
            return out
        if source.any():
            out[hole] = inpaint_from(image, source, hole, self.radius)
        else:
            out[hole] = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
        return out

    def inpaint_background(
        self, image: np.ndarray, hole: np.ndarray, known: np.ndarray
    ) -> np.ndarray:
        return self._fill(image, hole, known & ~hole)

    def inpaint_instance(
        self,
        image: np.ndarray,
        hole: np.ndarray,
        known: np.ndarray,
        amodal: np.ndarray,
        label: int = 0,
    ) -> np.ndarray:
        return self._fill(image, hole, known & ~hole)
