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
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


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
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segm, h, w)
        else:
            rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    raise ValueError(f"unrecognised segmentation encoding of type {type(segm).__name__}")


def encode_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[list[float]]:
    """Polygons tracing a binary mask's outer contours (pixel-corner coordinates).

    Lossy for thin parts and holes; use RLE when exactness matters.
    """
    import cv2

    m = np.asarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polys = []
    for c in contours:
        if tolerance > 0:
            c = cv2.approxPolyDP(c, tolerance, True)
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) < 3:
            continue
        polys.append(pts.ravel().tolist())
    return polys


def rle_area(segm: dict[str, Any]) -> int:
    """Pixel count of a compressed RLE without decoding it."""
    counts = segm["counts"]
    rle = {"size": segm["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(mask_utils.area(rle))
