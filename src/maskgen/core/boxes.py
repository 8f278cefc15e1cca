"""Box operations.

Convention (whole codebase): a box is ``(x0, y0, x1, y1)`` in pixels, half-open, float. Pixel
``(row y, col x)`` covers the square ``[x, x+1) x [y, y+1)``, so the tight box of a mask whose
pixels span columns ``c0..c1`` and rows ``r0..r1`` (inclusive) is ``(c0, r0, c1 + 1, r1 + 1)``.
COCO's ``[x, y, w, h]`` converts with :func:`xywh_to_xyxy` / :func:`xyxy_to_xywh`.
Arrays of boxes are ``float64`` (or ``float32``) of shape ``(N, 4)``.
"""

from __future__ import annotations

import numpy as np


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight half-open box of a mask.

    Args:
        mask: ``H x W`` bool/uint8 array; must have at least one non-zero pixel.

    Returns:
        ``(4,)`` float64 ``(x0, y0, x1, y1)``.

    Raises:
        ValueError: the mask is empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def xywh_to_xyxy(box: np.ndarray | list[float]) -> np.ndarray:
    """COCO ``[x, y, w, h]`` (``(..., 4)``) to ``(x0, y0, x1, y1)``."""
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def xyxy_to_xywh(box: np.ndarray | list[float]) -> np.ndarray:
    """``(x0, y0, x1, y1)`` (``(..., 4)``) to COCO ``[x, y, w, h]``."""
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def box_area(box: np.ndarray) -> np.ndarray:
    """Area of ``(..., 4)`` boxes; degenerate boxes give 0."""
    b = np.asarray(box, dtype=np.float64)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest box holding both ``(..., 4)`` boxes."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.concatenate(
        [np.minimum(a[..., :2], b[..., :2]), np.maximum(a[..., 2:], b[..., 2:])], axis=-1
    )


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of ``(..., 4)`` boxes (may be degenerate: check with :func:`box_area`)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.concatenate(
        [np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])], axis=-1
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``(..., 4)`` boxes, broadcast; 0 where the union is empty."""
    inter = box_area(box_intersection(a, b))
    union = box_area(a) + box_area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def clip_box(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip ``(..., 4)`` boxes to the image ``[0, width) x [0, height)``."""
    b = np.asarray(box, dtype=np.float64).copy()
    b[..., 0::2] = np.clip(b[..., 0::2], 0, width)
    b[..., 1::2] = np.clip(b[..., 1::2], 0, height)
    return b


def box_inside_image(box: np.ndarray, height: int, width: int) -> bool:
    """True when a ``(4,)`` box has positive area and overlaps the image at all."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x1 > x0 and y1 > y0 and x1 > 0 and y1 > 0 and x0 < width and y0 < height


def square_box(box: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Square box with the same centre, side ``scale * max(w, h)`` (a "context crop").

    Works on ``(..., 4)``; the result may extend outside the image (crops pad with zeros).
    """
    b = np.asarray(box, dtype=np.float64)
    c = (b[..., :2] + b[..., 2:]) / 2
    side = scale * np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    half = side[..., None] / 2
    return np.concatenate([c - half, c + half], axis=-1)


def expand_box(box: np.ndarray, scale: float) -> np.ndarray:
    """Scale ``(..., 4)`` boxes about their centres by ``scale`` (each side separately)."""
    b = np.asarray(box, dtype=np.float64)
    c = (b[..., :2] + b[..., 2:]) / 2
    half = (b[..., 2:] - b[..., :2]) * scale / 2
    return np.concatenate([c - half, c + half], axis=-1)


def relative_box(inner: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Express ``inner`` boxes in the normalised coordinates of ``frame`` boxes.

    ``frame`` maps to ``(0, 0, 1, 1)``; the result is ``(..., 4)`` and is the inverse of
    :func:`absolute_box`. Used to describe an amodal box relative to a visible box.
    """
    inner = np.asarray(inner, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    size = frame[..., 2:] - frame[..., :2]
    size = np.concatenate([size, size], axis=-1)
    origin = np.concatenate([frame[..., :2], frame[..., :2]], axis=-1)
    return (inner - origin) / size


def absolute_box(relative: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relative_box`: normalised ``(..., 4)`` boxes back to pixels."""
    relative = np.asarray(relative, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    size = frame[..., 2:] - frame[..., :2]
    size = np.concatenate([size, size], axis=-1)
    origin = np.concatenate([frame[..., :2], frame[..., :2]], axis=-1)
    return relative * size + origin
