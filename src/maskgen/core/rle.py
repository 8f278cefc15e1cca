"""COCO mask encodings through ``pycocotools``: RLE (compressed, ``counts`` as ``str``) and polygons.

Masks are ``H x W`` bool/uint8 numpy arrays. An RLE is ``{"size": [H, W], "counts": str}``;
uncompressed RLE (``counts`` a list of ints) and polygons (a list of flat ``[x, y, ...]`` lists in
pixel coordinates) are accepted on decode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode an ``H x W`` binary mask as compressed RLE with ``counts`` as ``str``."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def rle_counts(counts: str | bytes) -> list[int]:
    """Decode the run lengths of a compressed COCO RLE ``counts`` string (pure Python).

    The format (pycocotools ``rleToString``): each count is a little-endian sequence of 5-bit
    groups, one character each (``chr(48 + group)``, bit 0x20 = more groups follow, bit 0x10 of
    the last group = negative); counts after the second are stored as differences from the count
    two places before. pycocotools does not bound-check a decode, so a results file's counts are
    checked with this (``sum == H*W``, all ``>= 0``) before use.

    Raises:
        ValueError: a bad character, a truncated count, or a negative run.
    """
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    out: list[int] = []
    x = 0
    k = 0
    for ch in counts:
        c = ord(ch) - 48
        if c < 0 or c > 63:
            raise ValueError(f"RLE counts hold an invalid character {ch!r}")
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if not c & 0x20:
            if c & 0x10:
                x |= -1 << (5 * k)
            if len(out) > 2:
                x += out[-2]
            if x < 0:
                raise ValueError("RLE counts decode to a negative run")
            out.append(x)
            x = 0
            k = 0
    if k:
        raise ValueError("RLE counts string is truncated")
    return out


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (compressed/uncompressed RLE or polygons) to ``H x W`` bool.

    Raises:
        ValueError: the encoding is not recognised, or its size disagrees with ``height x width``.
    """
    if isinstance(segm, list):
        if len(segm) == 0:
            return np.zeros((height, width), dtype=bool)
        polys = [list(map(float, p)) for p in segm]
        if any(len(p) < 6 or len(p) % 2 for p in polys):
            raise ValueError("polygon needs an even number of coordinates, at least 3 points")
        rles = mask_utils.frPyObjects(polys, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        h, w = (int(v) for v in segm["size"])
        if (h, w) != (height, width):
            raise ValueError(f"RLE size {h}x{w} disagrees with image size {height}x{width}")
        counts = segm["counts"]
        # pycocotools does not bound-check run lengths: a malformed RLE can write past its
        # buffer, so the runs must add up to H*W before it sees them.
        runs = counts if isinstance(counts, list) else rle_counts(counts)
        if any(int(c) < 0 for c in runs) or sum(int(c) for c in runs) != h * w:
            raise ValueError(f"RLE run lengths do not add up to its size {h}x{w}")
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segm, h, w)
        else:
            rle = {
                "size": [h, w],
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
            }
        return mask_utils.decode(rle).astype(bool)
    raise ValueError(f"unrecognised segmentation encoding of type {type(segm).__name__}")


def encode_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[list[float]]:
    """Polygons tracing a binary mask's outer boundaries, in COCO pixel-corner coordinates.

    Marching squares at level 0.5 puts the outline on pixel edges (a 1-pixel-wide step is
    traced exactly; convex corners lose a 1/8-pixel triangle). Holes are dropped: COCO polygons
    cannot express them, so use RLE when exactness matters. ``tolerance`` > 0 simplifies the
    outline (Douglas-Peucker, in pixels).
    """
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(np.asarray(mask, dtype=np.float32), 1)
    polys = []
    for contour in find_contours(padded, 0.5):
        # (row, col) in padded pixel-centre coordinates -> (x, y) in pixel-corner coordinates.
        xy = contour[:, ::-1] - 0.5
        # Outer boundaries and holes wind in opposite directions; keep the outer ones.
        x, y = xy[:, 0], xy[:, 1]
        signed_area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        if signed_area <= 0:
            continue
        if tolerance > 0:
            xy = approximate_polygon(xy, tolerance)
        if len(xy) >= 4:  # closed contours repeat their first point
            polys.append(xy[:-1].ravel().tolist())
    return polys


def rle_area(segm: dict[str, Any]) -> int:
    """Pixel count of a compressed RLE without decoding it."""
    counts = segm["counts"]
    rle = {
        "size": segm["size"],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return int(mask_utils.area(rle))
