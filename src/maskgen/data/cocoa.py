"""COCOA (COCO amodal, Zhu et al. 2017) ground truth: reader and writer.

Public API::

    read_cocoa(path: str | PathLike) -> Dataset
    cocoa_from_json(path: Path, obj: dict) -> Dataset
    write_cocoa(dataset: Dataset, path: str | PathLike) -> None
    parse_depth_constraint(text: str) -> list[tuple[int, int]]

Layout (``COCO_amodal_*.json``)::

    {"images": [{"id", "file_name", "height", "width"}, ...],
     "annotations": [                       # one per image (an "annotation set")
        {"id", "image_id", "size": <number of regions>,
         "depth_constraint": "1-2,3-1",     # "a-b": region a is in front of region b
         "regions": [
            {"segmentation": [x0, y0, x1, y1, ...],   # amodal polygon (flat list)
             "visible_mask": RLE,           # absent when the region is fully visible
             "invisible_mask": RLE,         # absent when the region is fully visible
             "order": 1,                    # depth order, 1 = nearest the camera
             "area", "occlude_rate", "name", "isStuff"}, ...]}]}

How it maps onto :class:`~maskgen.data.types.Instance`:

- ``id``: the region's own ``id`` when present, else ``1000 * annotation id + (region index + 1)``.
- ``category_id``: the region's ``category_id`` when present, else one id per distinct ``name``
  (1, 2, ... in sorted name order; ``Dataset.categories`` lists them with their names).
- ``amodal_segm``: the polygon (a flat list is wrapped into ``[[...]]``; nested lists are
  accepted). ``visible_segm``: ``visible_mask`` when present, else the amodal polygon itself.
- ``depth = size - order`` (our convention: larger is nearer; COCOA's 1 = nearest);
  ``occluded_by``: the ids of the regions the ``depth_constraint`` puts in front. Constraint
  numbers are region ``order`` values (1-based; regions without ``order`` use their 1-based
  position).
- Boxes: COCOA stores none, so ``visible_box`` / ``amodal_box`` are None.
- ``extra`` keeps ``order``, ``name``, ``isStuff``, ``occlude_rate`` and ``annotation_id``.

An empty visible mask is accepted (fully occluded region); an empty amodal polygon is an error.

The writer groups instances by image into one annotation set each, writes the amodal mask as a
polygon (kept as it is when it already is one, else traced with
:func:`maskgen.core.rle.encode_polygons`, which drops holes), and ``visible_mask`` /
``invisible_mask`` as compressed RLE only for occluded regions. Writes are atomic.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from maskgen.core.io import read_json, write_json
from maskgen.core.rle import decode_segmentation, encode_polygons, encode_rle
from maskgen.data.coco import (
    check_annotation_keys,
    check_segmentation,
    check_top_level,
    check_unique_ids,
    image_json,
    parse_images,
)
from maskgen.data.types import Dataset, Instance
from maskgen.errors import MaskgenError

__all__ = ["read_cocoa", "cocoa_from_json", "write_cocoa", "parse_depth_constraint"]

_PAIR = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_depth_constraint(text: str) -> list[tuple[int, int]]:
    """``"1-2,3-1"`` -> ``[(1, 2), (3, 1)]``: (front, back) region numbers; ``""`` -> ``[]``.

    Raises:
        ValueError: a pair is not ``<int>-<int>``.
    """
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _PAIR.match(part)
        if m is None:
            raise ValueError(f"bad depth constraint {part.strip()!r} (expected 'front-back')")
        pairs.append((int(m.group(1)), int(m.group(2))))
    return pairs


def cocoa_from_json(path: Path, obj: Any) -> Dataset:
    """Build a :class:`Dataset` from a parsed COCOA object (see the module docstring)."""
    check_top_level(path, obj)
    images = parse_images(path, obj["images"])
    names: set[str] = set()
    for ann in obj["annotations"]:
        if isinstance(ann, dict) and isinstance(ann.get("regions"), list):
            for r in ann["regions"]:
                if isinstance(r, dict) and "category_id" not in r:
                    names.add(str(r.get("name", "object")))
    name_to_id = {n: k + 1 for k, n in enumerate(sorted(names))}
    cats = obj.get("categories")
    if not isinstance(cats, list) or not cats:
        cats = [{"id": i, "name": n} for n, i in name_to_id.items()]

    for k, ann in enumerate(obj["annotations"]):
        im = check_annotation_keys(path, ann, k, ("id", "image_id", "regions"), images)
        aid = int(ann["id"])
        if not isinstance(ann["regions"], list):
            raise MaskgenError(
                f"{path}: annotation {aid} (image {im.id}): 'regions' must be a list"
            )
        regions = ann["regions"]
        n = len(regions)
        by_order: dict[int, Instance] = {}
        new: list[Instance] = []
        for j, r in enumerate(regions):
            where = f"{path}: annotation {aid} region {j + 1} (image {im.id})"
            if not isinstance(r, dict):
                raise MaskgenError(f"{where}: region is not an object")
            if "segmentation" not in r:
                raise MaskgenError(f"{where}: missing key 'segmentation'")
            amodal = r["segmentation"]
            if isinstance(amodal, list) and amodal and not isinstance(amodal[0], list):
                amodal = [amodal]
            check_segmentation(amodal, im.height, im.width, f"{where}: segmentation")
            if r.get("visible_mask") is not None:
                visible = r["visible_mask"]
                check_segmentation(
                    visible, im.height, im.width, f"{where}: visible_mask", allow_empty=True
                )
            else:
                visible = amodal
            order = r.get("order", j + 1)
            if not isinstance(order, int) or isinstance(order, bool):
                raise MaskgenError(f"{where}: 'order' must be an integer")
            rid = r.get("id", 1000 * aid + j + 1)
            cid = r.get("category_id", name_to_id.get(str(r.get("name", "object")), 0))
            extra: dict[str, Any] = {"order": order, "annotation_id": aid}
            for key in ("name", "isStuff", "occlude_rate"):
                if key in r:
                    extra[key] = r[key]
            inst = Instance(
                id=int(rid),
                category_id=int(cid),
                visible_segm=visible,
                amodal_segm=amodal,
                depth=n - order,
                occluded_by=[],
                extra=extra,
            )
            by_order[order] = inst
            new.append(inst)
        text = ann.get("depth_constraint", "")
        if not isinstance(text, str):
            raise MaskgenError(
                f"{path}: annotation {aid} (image {im.id}): depth_constraint must be a string"
            )
        try:
            pairs = parse_depth_constraint(text)
        except ValueError as e:
            raise MaskgenError(f"{path}: annotation {aid} (image {im.id}): {e}") from None
        for front, back in pairs:
            if front not in by_order or back not in by_order:
                raise MaskgenError(
                    f"{path}: annotation {aid} (image {im.id}): depth constraint {front}-{back} names a region that does not exist"
                )
            by_order[back].occluded_by.append(by_order[front].id)
        im.instances.extend(new)
    check_unique_ids(path, images)
    return Dataset(images=list(images.values()), categories=cats, source=str(path), layout="cocoa")


def read_cocoa(path: str | os.PathLike[str]) -> Dataset:
    """Read a COCOA file (masks kept encoded). See the module docstring."""
    path = Path(path)
    return cocoa_from_json(path, read_json(path))


def write_cocoa(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` as COCOA, one annotation set per image, atomically.

    Region order: by ``Instance.depth`` descending (nearest first, ``order`` 1) when known, else
    ``extra["order"]``, else list order. ``depth_constraint`` comes from ``occluded_by``.
    """
    anns = []
    next_id = 1
    cat_names = {c["id"]: c.get("name", str(c["id"])) for c in dataset.categories}
    for im in dataset.images:
        if not im.instances:
            continue
        insts = list(im.instances)
        if all(i.depth is not None for i in insts):
            insts.sort(key=lambda i: -int(i.depth))
        elif all("order" in i.extra for i in insts):
            insts.sort(key=lambda i: int(i.extra["order"]))
        order_of = {inst.id: k + 1 for k, inst in enumerate(insts)}
        regions = []
        pairs = []
        for k, inst in enumerate(insts):
            if inst.amodal_segm is None:
                raise MaskgenError(
                    f"{path}: annotation {inst.id} (image {im.id}): no amodal mask to write"
                )
            a = decode_segmentation(inst.amodal_segm, im.height, im.width)
            v = im.visible_mask(inst) if inst.visible_segm is not None else a
            seg = inst.amodal_segm
            if not (isinstance(seg, list) and seg and isinstance(seg[0], list)):
                seg = encode_polygons(a)
            region: dict[str, Any] = {
                "id": int(inst.id),
                "category_id": int(inst.category_id),
                "name": inst.extra.get(
                    "name", cat_names.get(inst.category_id, str(inst.category_id))
                ),
                "segmentation": seg[0] if len(seg) == 1 else seg,
                "area": int(a.sum()),
                "order": k + 1,
                "isStuff": int(inst.extra.get("isStuff", 0)),
            }
            hidden = a & ~v
            region["occlude_rate"] = float(hidden.sum()) / max(int(a.sum()), 1)
            if hidden.any():
                region["visible_mask"] = encode_rle(v & a)
                region["invisible_mask"] = encode_rle(hidden)
            regions.append(region)
            for front in inst.occluded_by or []:
                if front in order_of:
                    pairs.append(f"{order_of[front]}-{k + 1}")
        anns.append(
            {
                "id": int(insts[0].extra.get("annotation_id", next_id)),
                "image_id": int(im.id),
                "size": len(regions),
                "regions": regions,
                "depth_constraint": ",".join(pairs),
            }
        )
        next_id += 1
    obj = {
        "images": [image_json(im) for im in dataset.images],
        "annotations": anns,
        "categories": list(dataset.categories),
    }
    write_json(path, obj, indent=None)
