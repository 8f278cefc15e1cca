"""Mask crops, pastes and shape operations (numpy at the API edge).

Conventions: masks are ``H x W`` ``bool``/``uint8`` arrays (soft masks ``float32`` in
``[0, 1]``); boxes are ``(x0, y0, x1, y1)`` half-open float pixels (see :mod:`maskgen.core.boxes`).

Cropping samples an ``N x N`` grid at the centres of the box's ``N x N`` cells: crop cell
``(i, j)`` reads the image at ``x = x0 + (j + 0.5) * (x1 - x0) / N``,
``y = y0 + (i + 0.5) * (y1 - y0) / N`` (bilinear, zero outside the image). Pasting is the exact
inverse map: image pixel centre ``(x + 0.5, y + 0.5)`` reads the crop at the cell coordinate
that the same formula gives, so ``paste(crop(m, b), b)`` reproduces ``m`` inside ``b`` up to
resampling.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_CROP_SIZE = 28  # Amodal-VAE supplementary §3.2: masks are cropped and resized to 28x28


def _crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """2x3 matrix taking crop pixel indices ``(j, i)`` to image pixel indices ``(x, y)``.

    Pixel indices have their centres at integers (OpenCV's convention), hence the ``-0.5``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    sx = (x1 - x0) / size
    sy = (y1 - y0) / size
    return np.array(
        [[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], dtype=np.float64
    )


def crop_mask(mask: np.ndarray, box: np.ndarray, size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """Crop ``mask`` to ``box`` and resize to ``size x size`` (bilinear, zero outside).

    Args:
        mask: ``H x W`` bool/uint8/float array.
        box: ``(4,)`` ``(x0, y0, x1, y1)`` with positive width and height; may leave the image.
        size: output side ``N``.

    Returns:
        ``N x N`` ``float32`` in ``[0, 1]`` (for a binary input).
    """
    box = np.asarray(box, dtype=np.float64)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"box {box.tolist()} has no area")
    m = _crop_matrix(box, size)
    src = np.ascontiguousarray(mask, dtype=np.float32)
    return cv2.warpAffine(
        src,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )


def _bilinear_taps(
    lo: np.ndarray, hi: np.ndarray, size: int, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear taps along one axis for ``N`` crops at once (the :func:`crop_mask` convention).

    Crop cell ``j`` of ``[lo, hi)`` (``size`` cells) reads the pixel-index coordinate
    ``lo + (j + 0.5) (hi - lo) / size - 0.5``.

    Returns:
        ``(indices N x 2 size intp, weights N x 2 size float32)``: the lower taps then the upper
        taps, indices clipped into ``[0, limit)``, weights zeroed where a tap falls outside.
    """
    lo = np.asarray(lo, dtype=np.float64)[:, None]
    hi = np.asarray(hi, dtype=np.float64)[:, None]
    pos = lo + (np.arange(size) + 0.5) * ((hi - lo) / size) - 0.5
    i0 = np.floor(pos)
    f = pos - i0
    i0 = i0.astype(np.intp)
    idx = np.concatenate([i0, i0 + 1], axis=1)
    wts = np.concatenate([1.0 - f, f], axis=1)
    wts *= (idx >= 0) & (idx < limit)
    return np.clip(idx, 0, limit - 1), wts.astype(np.float32)


def _bilinear_mix(g: np.ndarray, wy: np.ndarray, wx: np.ndarray, size: int) -> np.ndarray:
    """Mix ``N x 2S x 2S`` gathered taps (lower then upper) into ``N x S x S`` float32."""
    g = g.astype(np.float32, copy=False)
    top = g[:, :size] * wy[:, :size, None] + g[:, size:] * wy[:, size:, None]
    return top[:, :, :size] * wx[:, None, :size] + top[:, :, size:] * wx[:, None, size:]


def crop_masks(
    masks: np.ndarray,
    boxes: np.ndarray,
    size: int = DEFAULT_CROP_SIZE,
    which: np.ndarray | None = None,
    count: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Batched :func:`crop_mask`: crop ``masks[which[n]]`` to ``boxes[n]`` for all ``n`` at once.

    Reads only the ``4 size^2`` pixels bilinear interpolation needs per crop (zero outside the
    image), so its cost does not grow with the image; equal to :func:`crop_mask` up to float
    rounding.

    Args:
        masks: ``K x H x W`` bool/uint8 masks of one image.
        boxes: ``N x 4`` ``(x0, y0, x1, y1)`` crop boxes (positive width and height; may leave
            the image).
        size: crop side ``S``.
        which: ``(N,)`` indices into ``masks`` (default ``arange(K)``, then ``N = K``).
        count: optional ``H x W`` int ``masks.sum(0)``; then the crops of "the union of the
            *other* masks" (``count - masks[which[n]] > 0``) in the same boxes come too.

    Returns:
        ``N x S x S`` float32, or ``(crops, others)`` when ``count`` is given.
    """
    masks = np.asarray(masks)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    which = np.arange(len(masks)) if which is None else np.asarray(which, dtype=np.intp)
    if len(which) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes for {len(which)} masks")
    if not np.all((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])):
        raise ValueError("every crop box needs a positive width and height")
    _, h, w = masks.shape
    ry, wy = _bilinear_taps(boxes[:, 1], boxes[:, 3], size, h)
    rx, wx = _bilinear_taps(boxes[:, 0], boxes[:, 2], size, w)
    rr, cc = ry[:, :, None], rx[:, None, :]
    g = masks[which[:, None, None], rr, cc]
    crops = _bilinear_mix(g, wy, wx, size)
    if count is None:
        return crops
    others = (count[rr, cc] - g) > 0
    return crops, _bilinear_mix(others, wy, wx, size)


def paste_mask(
    crop: np.ndarray, box: np.ndarray, height: int, width: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Paste an ``N x N`` crop back into an ``H x W`` image; the inverse of :func:`crop_mask`.

    Only the pixels whose centres fall inside ``box`` (clipped to the image) are written; the
    rest are zero (or left as they are in ``out``).

    Args:
        crop: ``N x N`` float (probabilities) or bool array.
        box: ``(4,)`` box the crop covers, in image pixels.
        height, width: image size.
        out: optional ``H x W`` float32 array to write into.

    Returns:
        ``H x W`` float32 (threshold it for a binary mask).
    """
    box = np.asarray(box, dtype=np.float64)
    size_y, size_x = crop.shape
    if out is None:
        out = np.zeros((height, width), dtype=np.float32)
    x0, y0, x1, y1 = (float(v) for v in box)
    # Integer region of image pixels whose centres lie in the box.
    rx0 = max(int(np.ceil(x0 - 0.5)), 0)
    ry0 = max(int(np.ceil(y0 - 0.5)), 0)
    rx1 = min(int(np.ceil(x1 - 0.5)), width)
    ry1 = min(int(np.ceil(y1 - 0.5)), height)
    if rx1 <= rx0 or ry1 <= ry0:
        return out
    sx = (x1 - x0) / size_x
    sy = (y1 - y0) / size_y
    # Image pixel (x, y) -> crop index: j = (x + 0.5 - x0) / sx - 0.5 ; shifted to the region.
    inv = np.array(
        [
            [1 / sx, 0.0, (rx0 + 0.5 - x0) / sx - 0.5],
            [0.0, 1 / sy, (ry0 + 0.5 - y0) / sy - 0.5],
        ],
        dtype=np.float64,
    )
    region = cv2.warpAffine(
        np.ascontiguousarray(crop, dtype=np.float32),
        inv,
        (rx1 - rx0, ry1 - ry0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    out[ry0:ry1, rx0:rx1] = region
    return out


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a whole ``H x W`` mask to ``height x width`` (bilinear; float32 out)."""
    return cv2.resize(
        np.asarray(mask, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )


def connected_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask.

    Returns:
        ``(labels, count)``: ``H x W`` int32 labels with 0 for background and ``1..count``.
    """
    count, labels = cv2.connectedComponents(
        np.asarray(mask, dtype=np.uint8), connectivity=connectivity
    )
    return labels.astype(np.int32), int(count - 1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a binary mask, as bool (empty stays empty)."""
    labels, count = connected_components(mask)
    if count <= 1:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a binary mask's pixels (bool, same shape; empty stays empty)."""
    mask = np.asarray(mask, dtype=np.uint8)
    points = cv2.findNonZero(mask)
    out = np.zeros(mask.shape, dtype=np.uint8)
    if points is None:
        return out.astype(bool)
    hull = cv2.convexHull(points)
    cv2.fillConvexPoly(out, hull, 1)
    return out.astype(bool) | mask.astype(bool)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a disk of ``radius`` pixels (bool out)."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(np.asarray(mask, dtype=np.uint8), k).astype(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a disk of ``radius`` pixels (bool out)."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.erode(np.asarray(mask, dtype=np.uint8), k).astype(bool)


def touches_border(mask: np.ndarray) -> bool:
    """True when a binary mask has a pixel on the image border."""
    m = np.asarray(mask, dtype=bool)
    return bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
