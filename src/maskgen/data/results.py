"""Amodal completion results: what ``maskgen amodal complete`` writes and ``evaluate --pred`` reads.

Public API::

    write_results(path: str | PathLike, annotations: list[dict], info: dict) -> None
    read_results(path: str | PathLike) -> tuple[dict, dict[int, dict]]
    result_annotation(instance_id, image_id, category_id, mask, *, score=None,
                      uncertainty=None, samples=None) -> dict
    PROTOCOL_FIELDS = ("visible_source", "crop", "or_visible", "method")

File layout (one JSON object)::

    {"info": {"visible_source": "gt" | "predicted",   # which visible masks were completed
              "crop": "<crop convention, e.g. 'tight box, 28x28'>",
              "or_visible": true | false,              # prediction OR-ed with the visible mask
              "method": "<e.g. amodal-vae, raw, convex-hull>",
              ... any other fields (model folder, threshold, eraser on/off, K samples) ...},
     "annotations": [
        {"id": <the input (GT) annotation id this completes>,
         "image_id": int, "category_id": int,
         "segmentation": {"size": [H, W], "counts": str},   # amodal mask, compressed RLE
         "bbox": [x, y, w, h],                              # of the amodal mask
         "score": float,                                     # optional
         "uncertainty": float,                               # optional
         "samples": [{"segmentation": RLE, "consistency": float}, ...]},  # optional
        ...]}

``read_results`` also accepts a plain COCO result list (``[{"id", "image_id", "segmentation",
...}, ...]``, no info); its protocol fields are then ``"unknown"``. Every entry must carry the
``id`` of the GT annotation it completes (that is how predictions are matched to ground truth).
Duplicate ids, missing keys and bad segmentations are one-line
:class:`~maskgen.errors.MaskgenError` s naming the file and the entry. ``write_results`` writes
atomically; refusing to overwrite earlier results is the caller's job
(:func:`maskgen.core.io.refuse_overwrite`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.core.boxes import mask_to_box, xyxy_to_xywh
from maskgen.core.io import read_json, write_json
from maskgen.core.rle import encode_rle
from maskgen.errors import MaskgenError

__all__ = ["PROTOCOL_FIELDS", "write_results", "read_results", "result_annotation"]

PROTOCOL_FIELDS: tuple[str, ...] = ("visible_source", "crop", "or_visible", "method")


def result_annotation(
    instance_id: int,
    image_id: int,
    category_id: int,
    mask: np.ndarray,
    *,
    score: float | None = None,
    uncertainty: float | None = None,
    samples: list[tuple[np.ndarray, float]] | None = None,
) -> dict[str, Any]:
    """One result entry from an ``H x W`` bool amodal mask (and optional ``(mask, consistency)``
    samples, each ``H x W`` bool)."""
    m = np.asarray(mask).astype(bool)
    bbox = [float(v) for v in xyxy_to_xywh(mask_to_box(m))] if m.any() else [0.0, 0.0, 0.0, 0.0]
    out: dict[str, Any] = {
        "id": int(instance_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "segmentation": encode_rle(m),
        "bbox": bbox,
    }
    if score is not None:
        out["score"] = float(score)
    if uncertainty is not None:
        out["uncertainty"] = float(uncertainty)
    if samples is not None:
        out["samples"] = [
            {"segmentation": encode_rle(np.asarray(s).astype(bool)), "consistency": float(c)}
            for s, c in samples
        ]
    return out


def _check_info(path: Path, info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise MaskgenError(f"{path}: 'info' must be an object")
    vs = info.get("visible_source", "unknown")
    if vs not in ("gt", "predicted", "unknown"):
        raise MaskgenError(f"{path}: info.visible_source must be 'gt' or 'predicted', got {vs!r}")
    out = dict(info)
    for k in PROTOCOL_FIELDS:
        out.setdefault(k, "unknown")
    return out


def write_results(
    path: str | os.PathLike[str], annotations: list[dict[str, Any]], info: dict[str, Any]
) -> None:
    """Write a results file (layout in the module docstring) atomically."""
    path = Path(path)
    info = _check_info(path, info)
    seen: set[int] = set()
    for k, a in enumerate(annotations):
        if "id" not in a or "segmentation" not in a:
            raise MaskgenError(f"{path}: result {k} needs 'id' and 'segmentation'")
        if a["id"] in seen:
            raise MaskgenError(f"{path}: result for annotation {a['id']}: duplicate id")
        seen.add(a["id"])
    write_json(path, {"info": info, "annotations": list(annotations)}, indent=None)


def read_results(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Read a results file; returns ``(info, {GT annotation id: entry})``.

    Segmentations are checked for structure here; their size is checked against the GT image by
    the evaluation harness.
    """
    path = Path(path)
    obj = read_json(path)
    if isinstance(obj, list):
        info = dict.fromkeys(PROTOCOL_FIELDS, "unknown")
        anns = obj
    elif isinstance(obj, dict) and "images" in obj:
        raise MaskgenError(
            f"{path}: an annotation (ground-truth) file, not a results file; pass the output "
            "of 'maskgen amodal complete'"
        )
    elif isinstance(obj, dict) and isinstance(obj.get("annotations"), list):
        info = _check_info(path, obj.get("info", {}))
        anns = obj["annotations"]
    else:
        raise MaskgenError(
            f"{path}: not a results file (expected {{'info', 'annotations'}} or a list of results)"
        )
    out: dict[int, dict[str, Any]] = {}
    for k, a in enumerate(anns):
        if not isinstance(a, dict):
            raise MaskgenError(f"{path}: result at index {k} is not an object")
        if "id" not in a:
            raise MaskgenError(
                f"{path}: result at index {k} (image {a.get('image_id', '?')}): missing 'id' of the GT annotation it completes"
            )
        aid = a["id"]
        if not isinstance(aid, int) or isinstance(aid, bool):
            raise MaskgenError(f"{path}: result at index {k}: id must be an integer, got {aid!r}")
        seg = a.get("segmentation")
        if not (isinstance(seg, dict) and "counts" in seg and "size" in seg) and not isinstance(
            seg, list
        ):
            raise MaskgenError(
                f"{path}: result for annotation {aid}: 'segmentation' must be an RLE object or polygons"
            )
        if aid in out:
            raise MaskgenError(f"{path}: result for annotation {aid}: duplicate id")
        out[aid] = a
    return info, out
