"""Numpy deformations of masks and images: affine maps about a point and thin-plate splines.

(:mod:`maskgen.core.warp` holds the torch affine warps of the models; this module serves the
re-shape edits and their ground truth, which work on whole images in pixel coordinates.)

Conventions: points are ``N x 2`` float ``(x, y)`` image pixels (pixel centres at integers);
an affine map is ``2 x 3`` ``A`` with ``A @ [x, y, 1]``; images ``H x W x 3`` uint8, masks
``H x W`` bool. Warps sample backwards: an output pixel ``p`` takes the input at ``inverse(p)``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "affine_about",
    "apply_affine",
    "centroid",
    "fit_tps",
    "invert_affine",
    "match_outlines",
    "outline_points",
    "warp_image_affine",
    "warp_mask_affine",
]


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` mean pixel of a non-empty ``H x W`` bool mask."""
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def affine_about(
    centre: tuple[float, float], scale: float = 1.0, degrees: float = 0.0, flip: bool = False
) -> np.ndarray:
    """``2 x 3`` map that mirrors left-right (``flip``), rotates by ``degrees`` (counter-clockwise
    as seen on screen) and scales by ``scale``, all about ``centre`` ``(x, y)``."""
    cx, cy = centre
    t = np.deg2rad(degrees)
    # y points down, so a counter-clockwise turn on screen is a clockwise one in (x, y).
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) * scale
    if flip:
        rot = rot @ np.diag([-1.0, 1.0])
    c = np.array([cx, cy], np.float64)
    return np.concatenate([rot, (c - rot @ c)[:, None]], axis=1)


def invert_affine(a: np.ndarray) -> np.ndarray:
    """Inverse of a ``2 x 3`` affine map."""
    return cv2.invertAffineTransform(np.asarray(a, np.float64))


def apply_affine(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``N x 2`` points mapped by ``2 x 3`` ``a``."""
    pts = np.asarray(pts, np.float64)
    return pts @ a[:, :2].T + a[:, 2]


def warp_mask_affine(mask: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``mask`` moved by the forward map ``a`` (bilinear on the 0/1 mask, kept where >= 0.5)."""
    h, w = mask.shape
    out = cv2.warpAffine(
        mask.astype(np.float32), np.asarray(a, np.float64), (w, h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )  # fmt: skip
    return out >= 0.5


def warp_image_affine(image: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``image`` (``H x W x C`` uint8) moved by the forward map ``a`` (bilinear, edge replicated)."""
    h, w = image.shape[:2]
    return cv2.warpAffine(
        image, np.asarray(a, np.float64), (w, h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip


# ---------------------------------------------------------------------- thin-plate splines


def _kernel(r2: np.ndarray) -> np.ndarray:
    """The thin-plate radial basis ``r^2 log r^2`` (0 at 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = r2 * np.log(r2)
    return np.nan_to_num(k, nan=0.0)


def fit_tps(src: np.ndarray, dst: np.ndarray, smooth: float = 0.0):  # noqa: ANN201
    """A thin-plate spline mapping control points ``src`` onto ``dst`` (``N x 2`` each).

    Args:
        src, dst: ``N x 2`` corresponding points (``N >= 3``, not all on a line).
        smooth: regularisation added to the kernel's diagonal (0: exact interpolation).

    Returns:
        a function mapping ``M x 2`` points to ``M x 2`` points.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = len(src)
    # Normalise for conditioning: the spline is affine-equivariant in its inputs.
    mu, sd = src.mean(0), max(float(src.std()), 1e-6)
    s = (src - mu) / sd
    k = _kernel(((s[:, None] - s[None]) ** 2).sum(-1)) + smooth * np.eye(n)
    p = np.concatenate([np.ones((n, 1)), s], axis=1)
    lhs = np.zeros((n + 3, n + 3))
    lhs[:n, :n], lhs[:n, n:], lhs[n:, :n] = k, p, p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = dst
    coef = np.linalg.lstsq(lhs, rhs, rcond=None)[0]

    def apply(pts: np.ndarray) -> np.ndarray:
        q = (np.asarray(pts, np.float64) - mu) / sd
        out = np.empty((len(q), 2))
        for i in range(0, len(q), 4096):  # bounded memory: M x N kernel per block
            b = q[i : i + 4096]
            kb = _kernel(((b[:, None] - s[None]) ** 2).sum(-1))
            out[i : i + 4096] = kb @ coef[:n] + coef[n] + b @ coef[n + 1 :]
        return out

    return apply


def outline_points(mask: np.ndarray, n: int = 48) -> np.ndarray:
    """``n x 2`` points evenly spaced (by arc length) on the outline of ``mask``'s largest
    outer contour, in OpenCV's contour orientation, starting at its first contour point."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise ValueError("outline_points: empty mask")
    c = max(contours, key=cv2.contourArea)[:, 0].astype(np.float64)
    closed = np.concatenate([c, c[:1]])
    seg = np.sqrt((np.diff(closed, axis=0) ** 2).sum(1))
    t = np.concatenate([[0.0], np.cumsum(seg)])
    if t[-1] == 0:
        return np.repeat(c[:1], n, axis=0)
    u = np.linspace(0.0, t[-1], n, endpoint=False)
    return np.stack([np.interp(u, t, closed[:, 0]), np.interp(u, t, closed[:, 1])], axis=1)


def match_outlines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b`` (``n x 2`` outline points) cyclically shifted so that, centred on their means, it
    lies closest to ``a`` (same orientation): ``b`` re-indexed to correspond to ``a``."""
    ca, cb = a - a.mean(0), b - b.mean(0)
    costs = [float(((ca - np.roll(cb, -k, axis=0)) ** 2).sum()) for k in range(len(b))]
    return np.roll(b, -int(np.argmin(costs)), axis=0)
