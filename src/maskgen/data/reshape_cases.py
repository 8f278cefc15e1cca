"""Re-shape ground truth for the built-in scenes: an instance given a new shape, rendered exactly.

A built-in scene (:mod:`maskgen.data.scenes`) is re-drawn from its seed with its layers'
materials (:class:`maskgen.data.materials.MaterialField`), so an instance can be rendered into a
new mask exactly -- the target of the re-shape edit (supplementary §3.4, Fig. 10)::

    for case in reshape_cases("benchmarks/data/scenes", split="test"):
        case.image, case.visible, case.new_mask   # the scene, the instance, its new full mask
        case.target                               # the scene with the instance re-shaped
        case.new_visible                          # what shows of the new shape in the target

**Which instances** (a fixed rule): annotated instances that are truly unoccluded (visible ==
amodal), do not touch the image border, and keep a 1-px gap to every other drawn shape -- the
instances whose whole appearance a method can see. **Case kinds**, one case per kind and
instance, parameters from ``numpy.random.default_rng([seed, image index, annotation id, kind
index])`` (a case does not depend on which other kinds are asked for):

- non-rigid (the material stays in place, only the mask changes):
  ``shape`` -- another shape of the same class from the split's pool, scaled to about the same
  area, its centroid on the instance's centroid, mirrored half the time;
  ``tps`` -- a thin-plate deformation of the instance's own mask (a 4x4 control grid over its
  box, each point moved by a normal offset of :data:`TPS_SIGMA` times the box's longer side;
  its largest connected part);
- rigid (the material moves with the object, by the same map): ``scale`` (a factor in
  ``[0.6, 0.8]`` or its inverse), ``rotate`` (25-90 degrees either way), ``flip``
  (left-right), all about the instance's centroid.

A new mask that touches the image border or has fewer than :data:`MIN_AREA` pixels is skipped
(no case). **Compositing**: the instance keeps its depth; its new shape is drawn over whatever
lies behind it (background, or a neighbour farther away) and under nearer shapes, so
``new_visible`` (where methods are compared) may be smaller than ``new_mask``. For non-rigid
kinds the pixels the old and new masks share keep their rendered colours exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskgen.core.compositing import composite, visible_masks
from maskgen.core.deform import (
    affine_about,
    centroid,
    fit_tps,
    invert_affine,
    warp_mask_affine,
)
from maskgen.core.masks import largest_component
from maskgen.errors import MaskgenError

__all__ = [
    "NONRIGID_KINDS",
    "RIGID_KINDS",
    "ReshapeCase",
    "eligible_layers",
    "reshape_cases",
    "reshape_target",
]

NONRIGID_KINDS = ("shape", "tps")
RIGID_KINDS = ("scale", "rotate", "flip")
KINDS = NONRIGID_KINDS + RIGID_KINDS
TPS_SIGMA = 0.06
MIN_AREA = 20


@dataclass
class ReshapeCase:
    """One re-shape with its exact outcome.

    Attributes:
        case_id: 0-based position in the case list.
        image_id, file_name: the scene image; ann_id: annotation id of the re-shaped instance.
        kind: one of :data:`KINDS`; params: its parameters (JSON-friendly).
        image: ``H x W x 3`` uint8 the scene; visible: ``H x W`` bool the instance (complete).
        new_mask: ``H x W`` bool its new full mask; new_visible: what of it shows in ``target``.
        target: ``H x W x 3`` uint8 the scene with the instance re-shaped.
        transform: ``2 x 3`` forward affine map of a rigid kind (None for non-rigid ones).
        label: class index (0-based) of the instance.
        extra: ``{"material": "flat" | "texture"}`` (the instance's fill).
    """

    case_id: int
    image_id: int
    file_name: str
    ann_id: int
    kind: str
    params: dict[str, Any]
    image: np.ndarray
    visible: np.ndarray
    new_mask: np.ndarray
    new_visible: np.ndarray
    target: np.ndarray
    transform: np.ndarray | None = None
    label: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rigid(self) -> bool:
        return self.kind in RIGID_KINDS


def eligible_layers(scene: Any, rec: Any) -> list[tuple[int, int]]:
    """``(annotation id, layer)`` of the instances cases are made from (module docstring)."""
    out = []
    kernel = np.ones((3, 3), np.uint8)
    for inst in rec.instances:
        k = int(inst.depth)
        a = scene.amodal[k]
        if not np.array_equal(a, scene.visible[k]):
            continue
        if a[0].any() or a[-1].any() or a[:, 0].any() or a[:, -1].any():
            continue
        grown = cv2.dilate(a.astype(np.uint8), kernel, iterations=2).astype(bool)
        others = np.delete(scene.amodal, k, axis=0)
        if len(others) and (others & grown[None]).any():
            continue
        out.append((int(inst.id), k))
    return out


def _shape_mask(
    rng: np.random.Generator, mask: np.ndarray, label: int, shape_id: int, pool: Any
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Another shape of class ``label`` at ``mask``'s centroid with about its area."""
    from maskgen.data.scenes import _paste, render_shape

    ids = np.flatnonzero((pool.labels == label) & (np.arange(len(pool)) != shape_id))
    if len(ids) == 0:
        return None
    sid = int(ids[int(rng.integers(len(ids)))])
    flip = bool(rng.random() < 0.5)
    ys, xs = np.nonzero(mask)
    side = float(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)
    m = render_shape(pool.masks[sid], side, flip)
    m = render_shape(pool.masks[sid], side * np.sqrt(mask.sum() / m.sum()), flip)
    cx, cy = centroid(mask)
    mx, my = centroid(m)
    canvas = np.zeros_like(mask)
    where = _paste(canvas, m, int(round(cx - mx)), int(round(cy - my)))
    if where is None:
        return None
    canvas[where[0], where[1]] = where[2]
    return canvas, {"shape_id": sid, "flip": flip}


def tps_deform(rng: np.random.Generator, mask: np.ndarray, sigma: float = TPS_SIGMA) -> np.ndarray:
    """A random thin-plate deformation of ``mask`` (module docstring, ``tps``)."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    side = float(max(x1 - x0, y1 - y0) + 1)
    gx, gy = np.meshgrid(np.linspace(x0, x1, 4), np.linspace(y0, y1, 4))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    moved = grid + rng.normal(0.0, sigma * side, size=grid.shape)
    back = fit_tps(moved, grid)  # new position -> where the old mask is sampled
    h, w = mask.shape
    pad = int(0.5 * side)
    ra, rb = max(0, int(y0) - pad), min(h, int(y1) + pad + 1)
    ca, cb = max(0, int(x0) - pad), min(w, int(x1) + pad + 1)
    py, px = np.mgrid[ra:rb, ca:cb]
    src = back(np.stack([px.ravel(), py.ravel()], axis=1)).astype(np.float32)
    sampled = cv2.remap(
        mask.astype(np.float32), src[:, 0].reshape(px.shape), src[:, 1].reshape(px.shape),
        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )  # fmt: skip
    out = np.zeros_like(mask)
    out[ra:rb, ca:cb] = sampled >= 0.5
    return largest_component(out) if out.any() else out  # stretched thin parts may break off


def _rigid(rng: np.random.Generator, kind: str, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """The forward affine map of a rigid kind and its parameters."""
    c = centroid(mask)
    if kind == "scale":
        s = float(rng.uniform(0.6, 0.8))
        s = s if rng.random() < 0.5 else 1.0 / s
        return affine_about(c, scale=s), {"scale": s}
    if kind == "rotate":
        deg = float(rng.uniform(25.0, 90.0)) * (1 if rng.random() < 0.5 else -1)
        return affine_about(c, degrees=deg), {"degrees": deg}
    return affine_about(c, flip=True), {}


def reshape_target(
    scene: Any,
    layer: int,
    new_mask: np.ndarray,
    textures: list[np.ndarray],
    transform: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The scene with layer ``layer`` given the full mask ``new_mask``, rendered exactly.

    Args:
        scene: a :class:`maskgen.data.scenes.Scene` with colours, background and materials.
        transform: the forward ``2 x 3`` map of a rigid re-shape (the material moves with it);
            None: the material stays in place and shared pixels keep their colours.

    Returns:
        ``(target H x W x 3 uint8, new visible mask H x W bool)``.
    """
    from maskgen.data.materials import MaterialField

    fieldm = MaterialField(scene.materials[layer], textures, scene.colours[layer])
    inverse = None if transform is None else invert_affine(transform)
    colour = fieldm.render(new_mask, inverse)
    if transform is None:
        shared = new_mask & scene.amodal[layer]
        colour[shared] = scene.colours[layer][shared]
    colours = scene.colours.copy()
    colours[layer] = colour
    amodal = scene.amodal.copy()
    amodal[layer] = new_mask
    target = np.clip(np.rint(composite(colours, amodal, scene.background)), 0, 255)
    return target.astype(np.uint8), visible_masks(amodal)[layer]


def _new_mask(
    rng: np.random.Generator, kind: str, scene: Any, layer: int, pool: Any
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]] | None:
    mask = scene.amodal[layer]
    if kind == "shape":
        got = _shape_mask(rng, mask, int(scene.labels[layer]), int(scene.shape_ids[layer]), pool)
        return None if got is None else (got[0], None, got[1])
    if kind == "tps":
        return tps_deform(rng, mask), None, {"sigma": TPS_SIGMA}
    a, params = _rigid(rng, kind, mask)
    return warp_mask_affine(mask, a), a, params


def reshape_cases(
    scenes: str | os.PathLike[str],
    split: str = "test",
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    max_cases: int | None = None,
    samples: Callable[[np.ndarray, int], list[np.ndarray]] | None = None,
) -> Iterator[ReshapeCase]:
    """The re-shape cases of a built-in scenes folder (module docstring), in image order, then
    annotation id, then the order of ``kinds``.

    Args:
        samples: optional source of a further non-rigid kind, ``sample``: called with the
            image's annotated visible masks (``K x H x W`` bool, annotation order) and the
            instance's index among them, it returns candidate new masks (e.g. the instance's
            Amodal-VAE posterior samples); the first valid one makes the case (after ``kinds``).

    Raises:
        MaskgenError: an unknown kind, or a folder this version cannot re-draw.
    """
    from maskgen.core.io import read_image
    from maskgen.data.builtin import texture_images
    from maskgen.data.edit_cases import _redraw
    from maskgen.data.shapes import load_shapes, split_shape_pools

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise MaskgenError(f"--kinds {','.join(bad)}: unknown (expected some of {','.join(KINDS)})")
    scenes = Path(scenes)
    textures = list(texture_images().values())
    n = 0
    pool = None
    for i, scene, rec in _redraw(scenes, split):
        if pool is None:
            pool = split_shape_pools(load_shapes("builtin"))[0][split]
        path = scenes / "images" / split / rec.file_name
        if not np.array_equal(read_image(path), scene.image):
            raise MaskgenError(f"{path}: differs from the scene its seed draws (another version?)")
        annotated = np.stack([scene.visible[int(inst.depth)] for inst in rec.instances])
        ann_ids = [int(inst.id) for inst in rec.instances]
        for ann_id, layer in eligible_layers(scene, rec):
            proposals = [
                (kind, _new_mask(np.random.default_rng([seed, i, ann_id, KINDS.index(kind)]),
                                 kind, scene, layer, pool))
                for kind in kinds
            ]  # fmt: skip
            if samples is not None:
                for s, m in enumerate(samples(annotated, ann_ids.index(ann_id))):
                    if _valid(m, scene.amodal[layer]):
                        proposals.append(("sample", (m, None, {"sample": s})))
                        break
            for kind, got in proposals:
                if got is None:
                    continue
                new_mask, a, params = got
                if not _valid(new_mask, None):
                    continue
                target, new_vis = reshape_target(scene, layer, new_mask, textures, a)
                yield ReshapeCase(
                    n, int(rec.id), rec.file_name, ann_id, kind, params, scene.image,
                    scene.visible[layer], new_mask, new_vis, target, a, int(scene.labels[layer]),
                    {"material": scene.materials[layer].kind},
                )  # fmt: skip
                n += 1
                if max_cases is not None and n >= max_cases:
                    return


def _valid(m: np.ndarray, old: np.ndarray | None) -> bool:
    """A usable new mask: large enough, off the border, and (when ``old`` is given) not equal
    to the old mask."""
    if m.sum() < MIN_AREA or m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
        return False
    return old is None or not np.array_equal(m, old)
