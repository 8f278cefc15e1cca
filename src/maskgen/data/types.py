"""The in-memory dataset representation every reader produces and every writer takes.

One :class:`ImageRecord` per image holds its :class:`Instance` s. Masks are kept *encoded* (a COCO
segmentation: RLE dict or polygon list) and decoded on demand, so a KINS-size file (~100k
instances) loads without decoding every mask. Boxes follow :mod:`maskgen.core.boxes`:
``(x0, y0, x1, y1)`` half-open float pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskgen.core.rle import decode_segmentation


@dataclass
class Instance:
    """One object in one image.

    Attributes:
        id: annotation id (unique within the dataset).
        category_id: category id.
        visible_segm: COCO segmentation of the visible (modal) mask, or None.
        amodal_segm: COCO segmentation of the full (amodal) mask, or None when unknown.
        visible_box: ``(4,)`` box of the visible mask, or None.
        amodal_box: ``(4,)`` box of the amodal mask, or None.
        depth: position in the depth order, larger is nearer the camera (None when unknown).
        occluded_by: ids of instances known to be in front of this one (None when unknown).
        extra: format-specific fields kept for round trips.
    """

    id: int
    category_id: int
    visible_segm: Any = None
    amodal_segm: Any = None
    visible_box: np.ndarray | None = None
    amodal_box: np.ndarray | None = None
    depth: int | None = None
    occluded_by: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageRecord:
    """One image: its file name, size and instances."""

    id: int
    file_name: str
    height: int
    width: int
    instances: list[Instance] = field(default_factory=list)

    def visible_mask(self, inst: Instance) -> np.ndarray:
        """Decode an instance's visible mask to ``H x W`` bool (all False when absent)."""
        if inst.visible_segm is None:
            return np.zeros((self.height, self.width), dtype=bool)
        return decode_segmentation(inst.visible_segm, self.height, self.width)

    def amodal_mask(self, inst: Instance) -> np.ndarray:
        """Decode an instance's amodal mask to ``H x W`` bool (raises when absent)."""
        if inst.amodal_segm is None:
            raise ValueError(f"instance {inst.id} has no amodal mask")
        return decode_segmentation(inst.amodal_segm, self.height, self.width)


@dataclass
class Dataset:
    """Images, categories and where they came from."""

    images: list[ImageRecord]
    categories: list[dict[str, Any]]
    source: str = ""
    layout: str = ""  # "coco", "kins-old", "kins-2020" or "cocoa"

    @property
    def has_amodal(self) -> bool:
        return any(inst.amodal_segm is not None for im in self.images for inst in im.instances)

    def num_instances(self) -> int:
        return sum(len(im.instances) for im in self.images)
