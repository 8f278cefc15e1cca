"""Editing ground truth for the built-in scenes: erase an occluder, know exactly what shows.

A built-in scene (:mod:`maskgen.data.scenes`) is re-drawn from its seed with its layer colours
and background, so the scene **without** a chosen instance can be rendered exactly -- the target
the scene-editing application (supplementary Fig. 6) should reach::

    for case in edit_cases("benchmarks/data/scenes", split="test"):
        case.image, case.target          # H x W x 3 uint8 before / after erasing case.erase_id
        case.new_visible[ann_id]         # H x W bool true visible mask after the erase

**Which occluders** (a fixed rule, no hand picking): every annotated instance that hides at
least ``min_hidden`` pixels of the annotated instances' amodal masks, one case each, in image
order then annotation-id order. Only the ``builtin`` shapes are supported (the shapes must be
re-loaded); a re-drawn image that differs from the stored PNG is an error (the folder was made
by another version).

Conventions: ``revealed = visible mask of the erased instance``; its pixels split into
**revealed-object** (inside the amodal mask of some remaining drawn shape, annotated or not)
and **revealed-background** pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskgen.core.compositing import composite, visible_masks
from maskgen.errors import MaskgenError

__all__ = ["DEFAULT_MIN_HIDDEN", "EditCase", "edit_cases"]

DEFAULT_MIN_HIDDEN = 50  # px of other instances an occluder must hide to make a case


@dataclass
class EditCase:
    """One erase with its exact outcome.

    Attributes:
        case_id: 0-based position in the case list.
        image_id, file_name: the scene image; erase_id: annotation id of the erased instance.
        image: ``H x W x 3`` uint8 the scene; target: the scene rendered without the instance.
        visible: annotation id -> ``H x W`` bool visible mask before.
        new_visible: annotation id -> true visible mask after (remaining instances).
        revealed: ``H x W`` bool erased instance's visible mask.
        revealed_object: ``H x W`` bool pixels of ``revealed`` that now show an object.
    """

    case_id: int
    image_id: int
    file_name: str
    erase_id: int
    image: np.ndarray
    target: np.ndarray
    visible: dict[int, np.ndarray]
    new_visible: dict[int, np.ndarray]
    revealed: np.ndarray
    revealed_object: np.ndarray


def _redraw(scenes: Path, split: str) -> Iterator[tuple[int, object, object]]:
    """``(image index, Scene, ImageRecord)`` of each image of a split, re-drawn from the seed."""
    from maskgen.core.io import read_json
    from maskgen.data.builtin import texture_images
    from maskgen.data.scenes import MAX_INSTANCES_PER_IMAGE as MAXI
    from maskgen.data.scenes import SceneConfig, annotate, render_scene
    from maskgen.data.shapes import SPLITS, load_shapes, split_shape_pools

    summary = read_json(scenes / "summary.json")
    if split not in SPLITS:
        raise MaskgenError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    cfg = SceneConfig(**summary["config"])
    shapes = load_shapes("builtin")
    if summary.get("shapes") != shapes.source:
        raise MaskgenError(f"{scenes}: made from shapes {summary.get('shapes')!r}; only builtin")
    pool = split_shape_pools(shapes)[0][split]
    textures = list(texture_images().values())
    s = SPLITS.index(split)
    for i in range(int(cfg.num_images.get(split, 0))):
        scene = render_scene(np.random.default_rng([cfg.seed, s, i]), pool, cfg, textures)
        rec, _ = annotate(scene, i + 1, i * MAXI + 1, f"{i:06d}.png", cfg)
        yield i, scene, rec


def edit_cases(
    scenes: str | os.PathLike[str],
    split: str = "test",
    min_hidden: int = DEFAULT_MIN_HIDDEN,
    max_cases: int | None = None,
) -> Iterator[EditCase]:
    """The edit cases of a built-in scenes folder (module docstring).

    Raises:
        MaskgenError: the folder is not a built-in scenes folder this version can re-draw.
    """
    from maskgen.core.io import read_image

    scenes = Path(scenes)
    n = 0
    for _, scene, rec in _redraw(scenes, split):
        path = scenes / "images" / split / rec.file_name
        image = read_image(path)
        if not np.array_equal(image, scene.image):
            raise MaskgenError(f"{path}: differs from the scene its seed draws (another version?)")
        layer = {int(inst.id): int(inst.depth) for inst in rec.instances}
        for inst in rec.instances:
            a = layer[int(inst.id)]
            hidden = sum(
                int((scene.amodal[layer[o]] & scene.visible[a]).sum())
                for o in layer
                if o != inst.id
            )
            if hidden < min_hidden:
                continue
            yield _case(n, rec, scene, layer, int(inst.id))
            n += 1
            if max_cases is not None and n >= max_cases:
                return


def _case(n: int, rec, scene, layer: dict[int, int], erase_id: int) -> EditCase:  # noqa: ANN001
    a = layer[erase_id]
    keep = np.array([k for k in range(len(scene.amodal)) if k != a], dtype=np.int64)
    target = composite(scene.colours[keep], scene.amodal[keep], scene.background)
    target = np.clip(np.rint(target), 0, 255).astype(np.uint8)
    vis_after = visible_masks(scene.amodal[keep])
    pos = {int(k): j for j, k in enumerate(keep)}
    revealed = scene.visible[a]
    return EditCase(
        case_id=n,
        image_id=int(rec.id),
        file_name=rec.file_name,
        erase_id=erase_id,
        image=scene.image,
        target=target,
        visible={i: scene.visible[k] for i, k in layer.items()},
        new_visible={i: vis_after[pos[k]] for i, k in layer.items() if k != a},
        revealed=revealed,
        revealed_object=revealed & scene.amodal[keep].any(axis=0),
    )
