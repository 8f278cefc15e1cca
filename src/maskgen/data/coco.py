"""COCO instances JSON (visible masks only): reader, writer, and the checks every reader shares.

Public API::

    read_coco(path: str | PathLike) -> Dataset
    write_coco(dataset: Dataset, path: str | PathLike) -> None

File layout (COCO "instances")::

    {"images": [{"id", "file_name", "height", "width"}, ...],
     "annotations": [{"id", "image_id", "category_id", "segmentation", "bbox": [x, y, w, h],
                      "area", "iscrowd"}, ...],
     "categories": [{"id", "name"}, ...]}

``segmentation`` is a polygon list (``[[x0, y0, x1, y1, ...], ...]``, pixel-corner coordinates),
an uncompressed RLE (``counts`` a list of ints) or a compressed RLE (``counts`` a string). The
reader keeps it encoded in :attr:`Instance.visible_segm` (decoded on demand by
:meth:`ImageRecord.visible_mask`); ``bbox`` becomes :attr:`Instance.visible_box` as
``(x0, y0, x1, y1)``. When ``bbox`` is absent it is computed from the mask.

The writer stores every visible mask as compressed RLE with ``counts`` a ``str`` and the box as
COCO ``[x, y, w, h]``; it writes atomically (temporary file + ``os.replace``).

Cheap checks run eagerly on load (JSON structure, required keys, RLE size against the image size,
polygon coordinates, empty masks, boxes with positive area overlapping the image, unknown image
ids); each failure is a one-line :class:`~maskgen.errors.MaskgenError` naming the file and the
annotation. Masks are not decoded on load.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.core.boxes import mask_to_box, xyxy_to_xywh
from maskgen.core.io import read_json, write_json
from maskgen.core.rle import decode_segmentation, encode_rle, rle_counts
from maskgen.data.types import Dataset, ImageRecord, Instance
from maskgen.errors import MaskgenError

__all__ = [
    "read_coco",
    "write_coco",
    "coco_from_json",
    "check_top_level",
    "parse_images",
    "check_segmentation",
    "check_box",
    "segm_area",
    "rle_counts",
    "segm_to_rle",
    "box_of_segm",
]


# --------------------------------------------------------------------------------------------
# Shared checks (used by the KINS and COCOA readers too)


def check_top_level(
    path: Path, obj: Any, keys: tuple[str, ...] = ("images", "annotations")
) -> None:
    """Check the file is a JSON object holding the list-valued ``keys``."""
    if not isinstance(obj, dict):
        raise MaskgenError(f"{path}: expected a JSON object at top level, got {type(obj).__name__}")
    for k in keys:
        if k not in obj:
            raise MaskgenError(f"{path}: missing top-level key '{k}'")
        if not isinstance(obj[k], list):
            raise MaskgenError(f"{path}: top-level '{k}' must be a list")


_NUMBER = (int, float)


def _is_int(v: Any) -> bool:
    return type(v) is int or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class Where:
    """Lazy error-message prefix ``"<file>: annotation <id> (image <id>)[: <field>]"``.

    Built per annotation on load but formatted only when an error is raised.
    """

    __slots__ = ("path", "ann", "index", "field_name")

    def __init__(self, path: Path, ann: Any, index: int, field_name: str | None = None) -> None:
        self.path = path
        self.ann = ann
        self.index = index
        self.field_name = field_name

    def field(self, name: str) -> Where:
        return Where(self.path, self.ann, self.index, name)

    def __str__(self) -> str:
        ann = self.ann if isinstance(self.ann, dict) else {}
        aid = ann.get("id", f"at index {self.index}")
        text = f"{self.path}: annotation {aid} (image {ann.get('image_id', '?')})"
        return f"{text}: {self.field_name}" if self.field_name else text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def parse_images(path: Path, images: list[Any]) -> dict[int, ImageRecord]:
    """Parse the ``images`` list into records keyed by id (checks id, size, file name)."""
    out: dict[int, ImageRecord] = {}
    for k, im in enumerate(images):
        if not isinstance(im, dict):
            raise MaskgenError(f"{path}: images[{k}] is not an object")
        for key in ("id", "height", "width"):
            if key not in im:
                raise MaskgenError(f"{path}: image at index {k}: missing key '{key}'")
        iid = im["id"]
        if not _is_int(iid):
            raise MaskgenError(f"{path}: image at index {k}: id must be an integer, got {iid!r}")
        h, w = im["height"], im["width"]
        if not (_is_int(h) and _is_int(w) and h > 0 and w > 0):
            raise MaskgenError(
                f"{path}: image {iid}: height/width must be positive integers, got {h!r}x{w!r}"
            )
        if iid in out:
            raise MaskgenError(f"{path}: image {iid}: duplicate image id")
        name = im.get("file_name", im.get("url", f"{iid}"))
        if not isinstance(name, str):
            raise MaskgenError(f"{path}: image {iid}: file_name must be a string")
        out[int(iid)] = ImageRecord(id=int(iid), file_name=name, height=int(h), width=int(w))
    return out


def segm_area(segm: Any, height: int, width: int) -> int | None:
    """Cheap pixel count of an RLE segmentation (``None`` for polygons: not computed here)."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, dict):
        counts = segm["counts"]
        if isinstance(counts, list):
            return int(sum(counts[1::2]))
        rle = {
            "size": [height, width],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
        return int(mask_utils.area(rle))
    return None


def check_segmentation(
    segm: Any, height: int, width: int, where: Any, allow_empty: bool = False
) -> None:
    """Check a COCO segmentation without decoding it.

    Args:
        segm: polygon list, or RLE dict with ``size`` ``[H, W]`` and ``counts`` (str or list).
        height, width: the image size the mask must have.
        where: prefix for error messages, ``"<file>: annotation <id> (image <id>): <field>"``
            (a str, or a lazy :class:`Where`).
        allow_empty: accept a mask with no pixels (a fully occluded instance's visible mask).

    Raises:
        MaskgenError: a one-line message starting with ``where``.
    """
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise MaskgenError(f"{where}: RLE needs 'size' and 'counts'")
        size = segm["size"]
        if not (
            isinstance(size, list) and len(size) == 2 and _is_int(size[0]) and _is_int(size[1])
        ):
            raise MaskgenError(f"{where}: RLE 'size' must be [height, width], got {size!r}")
        if (size[0], size[1]) != (height, width):
            raise MaskgenError(
                f"{where}: RLE size {size[0]}x{size[1]} disagrees with image size {height}x{width}"
            )
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts):
                raise MaskgenError(
                    f"{where}: uncompressed RLE counts must be non-negative integers"
                )
            if sum(counts) != height * width:
                raise MaskgenError(
                    f"{where}: uncompressed RLE counts sum to {sum(counts)}, expected {height * width}"
                )
        elif not isinstance(counts, (str, bytes)):
            raise MaskgenError(f"{where}: RLE counts must be a string or a list of integers")
        try:
            area = segm_area(segm, height, width)
        except Exception:
            raise MaskgenError(f"{where}: RLE counts cannot be parsed") from None
        if area == 0 and not allow_empty:
            raise MaskgenError(f"{where}: empty mask")
        return
    if isinstance(segm, list):
        if len(segm) == 0:
            if allow_empty:
                return
            raise MaskgenError(f"{where}: empty mask (no polygons)")
        xs: list[float] = []
        ys: list[float] = []
        for p in segm:
            if not isinstance(p, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in p
            ):
                raise MaskgenError(f"{where}: polygon must be a flat list of numbers")
            if len(p) < 6 or len(p) % 2:
                raise MaskgenError(
                    f"{where}: polygon needs an even number of coordinates, at least 3 points"
                )
            xs.extend(p[0::2])
            ys.extend(p[1::2])
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise MaskgenError(f"{where}: polygon lies outside the {height}x{width} image")
        if (x1 - x0) * (y1 - y0) <= 0 and not allow_empty:
            raise MaskgenError(f"{where}: empty mask (degenerate polygon)")
        return
    raise MaskgenError(f"{where}: segmentation must be a polygon list or an RLE object")


def check_box(box: Any, height: int, width: int, where: Any, beyond: bool = False) -> np.ndarray:
    """Check a COCO ``[x, y, w, h]`` box; return it as ``(4,)`` float64 ``(x0, y0, x1, y1)``.

    The box must have positive width and height and lie inside the image up to one pixel of
    slack (annotation tools round outward). With ``beyond=True`` (amodal boxes, whose object may
    continue past the image border) it need only overlap the image. ``where`` (a str or
    :class:`Where`) prefixes errors.
    """
    if not (
        isinstance(box, list)
        and len(box) == 4
        and all(type(v) in _NUMBER or _is_number(v) for v in box)
    ):
        raise MaskgenError(f"{where}: box must be [x, y, w, h] numbers, got {box!r}")
    x, y, w, h = (float(v) for v in box)
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h)):
        raise MaskgenError(f"{where}: box has non-finite values {box!r}")
    if w <= 0 or h <= 0:
        raise MaskgenError(f"{where}: box {box!r} has no area")
    if beyond:
        outside = x + w <= 0 or y + h <= 0 or x >= width or y >= height
    else:
        outside = x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1
    if outside:
        raise MaskgenError(f"{where}: box {box!r} lies outside the {height}x{width} image")
    return np.array((x, y, x + w, y + h), dtype=np.float64)


def segm_to_rle(segm: Any, height: int, width: int) -> dict[str, Any]:
    """Any COCO segmentation to compressed RLE with ``counts`` as ``str`` (fast path for RLE)."""
    if isinstance(segm, dict) and isinstance(segm.get("counts"), str):
        return {"size": [int(segm["size"][0]), int(segm["size"][1])], "counts": segm["counts"]}
    return encode_rle(decode_segmentation(segm, height, width))


def box_of_segm(segm: Any, height: int, width: int) -> np.ndarray | None:
    """Tight ``(x0, y0, x1, y1)`` box of a segmentation (decodes it); ``None`` when empty."""
    m = decode_segmentation(segm, height, width)
    return mask_to_box(m) if m.any() else None


def annotation_where(path: Path, ann: dict[str, Any], index: int) -> Where:
    """Lazy ``"<file>: annotation <id> (image <image_id>)"`` for error messages."""
    return Where(path, ann, index)


def check_annotation_keys(
    path: Path, ann: Any, index: int, keys: tuple[str, ...], images: dict[int, ImageRecord]
) -> ImageRecord:
    """Check an annotation is an object with ``keys`` and a known ``image_id``; return its image."""
    if not isinstance(ann, dict):
        raise MaskgenError(f"{path}: annotations[{index}] is not an object")
    where = annotation_where(path, ann, index)
    for k in keys:
        if k not in ann:
            raise MaskgenError(f"{where}: missing key '{k}'")
    if "id" in keys and not _is_int(ann["id"]):
        raise MaskgenError(f"{where}: id must be an integer")
    iid = ann.get("image_id")
    if not _is_int(iid) or int(iid) not in images:
        raise MaskgenError(f"{where}: refers to unknown image id {iid!r}")
    return images[int(iid)]


def check_categories(path: Path, obj: dict[str, Any]) -> list[dict[str, Any]]:
    cats = obj.get("categories", [])
    if not isinstance(cats, list) or not all(isinstance(c, dict) and "id" in c for c in cats):
        raise MaskgenError(f"{path}: 'categories' must be a list of objects with an 'id'")
    return cats


def check_unique_ids(path: Path, images: dict[int, ImageRecord]) -> None:
    seen: set[int] = set()
    for im in images.values():
        for inst in im.instances:
            if inst.id in seen:
                raise MaskgenError(
                    f"{path}: annotation {inst.id} (image {im.id}): duplicate annotation id"
                )
            seen.add(inst.id)


# --------------------------------------------------------------------------------------------
# COCO


def coco_from_json(path: Path, obj: Any) -> Dataset:
    """Build a :class:`Dataset` from an already parsed COCO instances object."""
    check_top_level(path, obj)
    images = parse_images(path, obj["images"])
    cats = check_categories(path, obj)
    for k, ann in enumerate(obj["annotations"]):
        im = check_annotation_keys(
            path, ann, k, ("id", "image_id", "category_id", "segmentation"), images
        )
        where = annotation_where(path, ann, k)
        check_segmentation(ann["segmentation"], im.height, im.width, where.field("segmentation"))
        if "bbox" in ann:
            box = check_box(ann["bbox"], im.height, im.width, where.field("bbox"))
        else:
            box = box_of_segm(ann["segmentation"], im.height, im.width)
        extra = {
            key: v
            for key, v in ann.items()
            if key not in ("id", "image_id", "category_id", "segmentation", "bbox", "area")
        }
        im.instances.append(
            Instance(
                id=int(ann["id"]),
                category_id=int(ann["category_id"]),
                visible_segm=ann["segmentation"],
                visible_box=box,
                extra=extra,
            )
        )
    check_unique_ids(path, images)
    return Dataset(images=list(images.values()), categories=cats, source=str(path), layout="coco")


def read_coco(path: str | os.PathLike[str]) -> Dataset:
    """Read a COCO instances JSON file (visible masks kept encoded). See the module docstring."""
    path = Path(path)
    return coco_from_json(path, read_json(path))


def image_json(im: ImageRecord) -> dict[str, Any]:
    """The COCO ``images`` entry of a record."""
    return {
        "id": int(im.id),
        "file_name": im.file_name,
        "height": int(im.height),
        "width": int(im.width),
    }


def _box_xywh(box: np.ndarray | None, segm: Any, height: int, width: int) -> list[float]:
    if box is None:
        box = box_of_segm(segm, height, width)
        if box is None:
            return [0.0, 0.0, 0.0, 0.0]
    return [float(v) for v in xyxy_to_xywh(np.asarray(box, dtype=np.float64))]


def write_coco(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write the visible masks of ``dataset`` as a COCO instances JSON file, atomically.

    Every ``Instance.visible_segm`` is written as compressed RLE (``counts`` a ``str``); an
    instance without a visible mask (``None``) raises :class:`MaskgenError` (nothing is
    written). A fully occluded instance (visible mask present but empty) is left out: COCO
    lists only what can be seen, and :func:`read_coco` rejects empty masks.
    ``bbox`` is ``Instance.visible_box`` as ``[x, y, w, h]`` (computed from the mask when None);
    ``area`` is the mask's pixel count; ``iscrowd`` is 0 unless ``extra`` says otherwise.
    """
    from maskgen.core.rle import rle_area

    anns = []
    for im in dataset.images:
        for inst in im.instances:
            if inst.visible_segm is None:
                raise MaskgenError(
                    f"{path}: annotation {inst.id} (image {im.id}): no visible mask to write"
                )
            rle = segm_to_rle(inst.visible_segm, im.height, im.width)
            area = rle_area(rle)
            if area == 0:
                continue
            anns.append(
                {
                    "id": int(inst.id),
                    "image_id": int(im.id),
                    "category_id": int(inst.category_id),
                    "segmentation": rle,
                    "area": area,
                    "bbox": _box_xywh(inst.visible_box, rle, im.height, im.width),
                    "iscrowd": int(inst.extra.get("iscrowd", 0)),
                }
            )
    obj = {
        "images": [image_json(im) for im in dataset.images],
        "annotations": anns,
        "categories": list(dataset.categories),
    }
    write_json(path, obj, indent=None)
