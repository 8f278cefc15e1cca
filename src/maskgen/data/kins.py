"""KINS amodal ground truth, both layouts: reader and writers.

Public API::

    read_kins(path: str | PathLike, layout: str = "auto") -> Dataset   # "kins-old" | "kins-2020"
    kins_from_json(path: Path, obj: dict, layout: str = "auto") -> Dataset
    write_kins2020(dataset: Dataset, path: str | PathLike) -> None
    write_kins_old(dataset: Dataset, path: str | PathLike) -> None
    detect_kins_layout(annotation: dict) -> str | None

Both layouts share COCO's ``images`` and ``categories``; annotations differ:

- **KINS 2020** (``update_*_2020.json``): ``a_segm`` (amodal), ``i_segm`` (visible, "inmodal"),
  ``a_bbox``, ``i_bbox`` (``[x, y, w, h]``), ``a_area``, ``i_area``, ``oco_id``, ``ico_id``,
  ``iscrowd``.
- **KINS old** (``instances_*.json``): ``segmentation`` and ``bbox`` are *amodal*;
  ``inmodal_seg`` and ``inmodal_bbox`` are visible; ``area``, ``inmodal_area`` and the
  ``oco_id`` / ``ico_id`` order fields when present.

Segmentations may be polygons or RLE (compressed or not); they stay encoded in the
:class:`~maskgen.data.types.Instance` (``visible_segm`` / ``amodal_segm``). The order fields
``oco_id`` / ``ico_id`` are kept in ``Instance.extra`` unchanged (their meaning differs between
KINS releases, so the reader does not turn them into ``Instance.depth``).

An empty visible mask is accepted (a fully occluded instance); an empty amodal mask is an error.

The writers store both masks as compressed RLE (``counts`` a ``str``), boxes as ``[x, y, w, h]``
(computed from the mask when the instance has none), areas as pixel counts, ``iscrowd`` from
``extra`` (default 0), and ``oco_id`` / ``ico_id`` from ``extra`` when present, otherwise
``Instance.depth`` (our convention: larger is nearer the camera), otherwise 0. Writes are atomic.
Every instance must have both masks; otherwise :class:`MaskgenError` and nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.core.boxes import xyxy_to_xywh
from maskgen.core.io import read_json, write_json
from maskgen.core.rle import rle_area
from maskgen.data.coco import (
    annotation_where,
    box_of_segm,
    check_annotation_keys,
    check_box,
    check_categories,
    check_segmentation,
    check_top_level,
    check_unique_ids,
    image_json,
    parse_images,
    segm_to_rle,
)
from maskgen.data.types import Dataset, Instance
from maskgen.errors import MaskgenError

__all__ = ["read_kins", "kins_from_json", "write_kins2020", "write_kins_old", "detect_kins_layout"]

# layout -> (visible segm, visible box, amodal segm, amodal box, keys not kept in extra)
_FIELDS = {
    "kins-2020": ("i_segm", "i_bbox", "a_segm", "a_bbox", ("a_area", "i_area")),
    "kins-old": ("inmodal_seg", "inmodal_bbox", "segmentation", "bbox", ("area", "inmodal_area")),
}


def detect_kins_layout(annotation: dict[str, Any]) -> str | None:
    """``"kins-2020"`` / ``"kins-old"`` from one annotation's keys, or None when neither."""
    if "a_segm" in annotation and "i_segm" in annotation:
        return "kins-2020"
    if "inmodal_seg" in annotation and "segmentation" in annotation:
        return "kins-old"
    return None


def kins_from_json(path: Path, obj: Any, layout: str = "auto") -> Dataset:
    """Build a :class:`Dataset` from a parsed KINS object (``layout``: auto, kins-old, kins-2020)."""
    check_top_level(path, obj)
    if layout == "auto":
        layout = "kins-2020"
        for ann in obj["annotations"]:
            if isinstance(ann, dict):
                layout = detect_kins_layout(ann) or "kins-2020"
                break
    if layout not in _FIELDS:
        raise MaskgenError(
            f"{path}: unknown KINS layout '{layout}' (expected kins-old or kins-2020)"
        )
    vis_key, vbox_key, amo_key, abox_key, dropped = _FIELDS[layout]
    images = parse_images(path, obj["images"])
    cats = check_categories(path, obj)
    for k, ann in enumerate(obj["annotations"]):
        im = check_annotation_keys(
            path, ann, k, ("id", "image_id", "category_id", vis_key, amo_key), images
        )
        where = annotation_where(path, ann, k)
        check_segmentation(
            ann[vis_key], im.height, im.width, where.field(vis_key), allow_empty=True
        )
        check_segmentation(ann[amo_key], im.height, im.width, where.field(amo_key))
        abox = (
            check_box(ann[abox_key], im.height, im.width, where.field(abox_key), beyond=True)
            if abox_key in ann
            else box_of_segm(ann[amo_key], im.height, im.width)
        )
        vbox = None
        if (
            vbox_key in ann
            and ann[vbox_key] is not None
            and any(float(v) != 0 for v in ann[vbox_key])
        ):
            vbox = check_box(ann[vbox_key], im.height, im.width, where.field(vbox_key))
        elif vbox_key not in ann:
            vbox = box_of_segm(ann[vis_key], im.height, im.width)
        skip = {"id", "image_id", "category_id", vis_key, vbox_key, amo_key, abox_key, *dropped}
        im.instances.append(
            Instance(
                id=int(ann["id"]),
                category_id=int(ann["category_id"]),
                visible_segm=ann[vis_key],
                amodal_segm=ann[amo_key],
                visible_box=vbox,
                amodal_box=abox,
                extra={key: v for key, v in ann.items() if key not in skip},
            )
        )
    check_unique_ids(path, images)
    return Dataset(images=list(images.values()), categories=cats, source=str(path), layout=layout)


def read_kins(path: str | os.PathLike[str], layout: str = "auto") -> Dataset:
    """Read a KINS file (either layout; ``"auto"`` decides from the annotation keys)."""
    path = Path(path)
    return kins_from_json(path, read_json(path), layout)


def _xywh(box: np.ndarray | None, rle: dict[str, Any], height: int, width: int) -> list[float]:
    if box is None:
        box = box_of_segm(rle, height, width)
        if box is None:  # empty visible mask of a fully occluded instance
            return [0.0, 0.0, 0.0, 0.0]
    return [float(v) for v in xyxy_to_xywh(np.asarray(box, dtype=np.float64))]


def _order(inst: Instance, key: str) -> int:
    if key in inst.extra:
        return inst.extra[key]
    return int(inst.depth) if inst.depth is not None else 0


def _write(dataset: Dataset, path: str | os.PathLike[str], layout: str) -> None:
    vis_key, vbox_key, amo_key, abox_key, (a_area, i_area) = _FIELDS[layout]
    anns = []
    for im in dataset.images:
        for inst in im.instances:
            if inst.amodal_segm is None or inst.visible_segm is None:
                which = "amodal" if inst.amodal_segm is None else "visible"
                raise MaskgenError(
                    f"{path}: annotation {inst.id} (image {im.id}): no {which} mask to write"
                )
            a = segm_to_rle(inst.amodal_segm, im.height, im.width)
            v = segm_to_rle(inst.visible_segm, im.height, im.width)
            ann: dict[str, Any] = {
                "id": int(inst.id),
                "image_id": int(im.id),
                "category_id": int(inst.category_id),
                amo_key: a,
                vis_key: v,
                abox_key: _xywh(inst.amodal_box, a, im.height, im.width),
                vbox_key: _xywh(inst.visible_box, v, im.height, im.width),
                a_area: rle_area(a),
                i_area: rle_area(v),
                "iscrowd": int(inst.extra.get("iscrowd", 0)),
                "oco_id": _order(inst, "oco_id"),
                "ico_id": _order(inst, "ico_id"),
            }
            anns.append(ann)
    obj = {
        "images": [image_json(im) for im in dataset.images],
        "annotations": anns,
        "categories": list(dataset.categories),
    }
    write_json(path, obj, indent=None)


def write_kins2020(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` in the KINS 2020 layout (``a_segm``/``i_segm`` RLE, ...), atomically."""
    _write(dataset, path, "kins-2020")


def write_kins_old(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` in the old KINS layout (``segmentation``/``inmodal_seg`` RLE), atomically."""
    _write(dataset, path, "kins-old")
