"""Load any supported annotation file into a :class:`~maskgen.data.types.Dataset`.

Public API::

    load_dataset(path: str | PathLike, layout: str = "auto",
                 image_root: str | PathLike | None = None) -> Dataset
    detect_layout(obj: Any) -> str | None
    check_image_files(dataset: Dataset, image_root: str | PathLike) -> None
    LAYOUTS = ("coco", "kins-old", "kins-2020", "cocoa")

``layout="auto"`` decides from the keys of the first annotation: ``regions`` -> COCOA;
``a_segm`` + ``i_segm`` -> KINS 2020; ``inmodal_seg`` + ``segmentation`` -> KINS old;
``segmentation`` alone -> COCO (visible masks only). A file with no annotations is read as COCO.
Anything else is a one-line :class:`~maskgen.errors.MaskgenError` naming the file and the keys it
found. Masks stay encoded; see the per-format modules for what is checked on load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from maskgen.core.io import read_json
from maskgen.data.coco import coco_from_json
from maskgen.data.cocoa import cocoa_from_json
from maskgen.data.kins import detect_kins_layout, kins_from_json
from maskgen.data.types import Dataset
from maskgen.errors import MaskgenError

__all__ = ["LAYOUTS", "check_image_files", "detect_layout", "load_dataset"]

LAYOUTS: tuple[str, ...] = ("coco", "kins-old", "kins-2020", "cocoa")


def detect_layout(obj: Any) -> str | None:
    """The layout of a parsed annotation object, or None when it is not recognised."""
    if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
        return None
    anns = obj["annotations"]
    if not anns:
        return "coco" if isinstance(obj.get("images"), list) else None
    first = anns[0]
    if not isinstance(first, dict):
        return None
    if "regions" in first:
        return "cocoa"
    kins = detect_kins_layout(first)
    if kins is not None:
        return kins
    if "segmentation" in first:
        return "coco"
    return None


def check_image_files(dataset: Dataset, image_root: str | os.PathLike[str]) -> None:
    """Raise :class:`MaskgenError` naming the first image whose file is missing under the root."""
    root = Path(image_root)
    for im in dataset.images:
        f = root / im.file_name
        if not f.is_file():
            raise MaskgenError(f"{f}: image file not found (image {im.id} of {dataset.source})")


def load_dataset(
    path: str | os.PathLike[str],
    layout: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Read a COCO, KINS (old or 2020) or COCOA annotation file.

    Args:
        path: the JSON file.
        layout: ``"auto"`` or one of :data:`LAYOUTS`.
        image_root: when given, check that every image's ``file_name`` exists under it.

    Raises:
        MaskgenError: missing or malformed file, unknown layout, or any failed check.
    """
    path = Path(path)
    if layout != "auto" and layout not in LAYOUTS:
        raise MaskgenError(
            f"{path}: unknown layout '{layout}' (expected auto, {', '.join(LAYOUTS)})"
        )
    obj = read_json(path)
    if layout == "auto":
        detected = detect_layout(obj)
        if detected is None:
            raise MaskgenError(
                f"{path}: unknown annotation layout ({_describe(obj)}); expected COCO, KINS (old or 2020) or COCOA"
            )
        layout = detected
    if layout == "coco":
        ds = coco_from_json(path, obj)
    elif layout == "cocoa":
        ds = cocoa_from_json(path, obj)
    else:
        ds = kins_from_json(path, obj, layout)
    if image_root is not None:
        check_image_files(ds, image_root)
    return ds


def load_visible_training_set(data: str, images: str) -> Dataset:
    """The ``--data`` / ``--images`` pair of a trainer that learns from visible masks, checked.

    Both flags are required; ``data`` must be an annotation file and ``images`` a folder holding
    every image it names, and the file must list at least one image. Every error is a one-line
    :class:`MaskgenError` naming the flag or path, raised before anything is written.
    """
    from maskgen.core.io import require_dir, require_file

    if not data:
        raise MaskgenError("--data: required (visible instance masks, COCO/KINS/COCOA JSON)")
    if not images:
        raise MaskgenError("--images: required (the folder of the images named in --data)")
    require_file(data, "annotation file")
    require_dir(images, "image folder")
    dataset = load_dataset(data, image_root=images)
    if not dataset.images:
        raise MaskgenError(f"{data}: holds no images")
    return dataset


def _describe(obj: Any) -> str:
    if isinstance(obj, list):
        return "top level is a list; a results file is not ground truth"
    if not isinstance(obj, dict):
        return f"top level is a {type(obj).__name__}"
    if not isinstance(obj.get("annotations"), list):
        return f"top-level keys: {', '.join(sorted(map(str, obj))[:8]) or 'none'}"
    first = obj["annotations"][0]
    if not isinstance(first, dict):
        return "annotations[0] is not an object"
    return f"annotation keys: {', '.join(sorted(map(str, first))[:12])}"
