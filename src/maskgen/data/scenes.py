"""Synthetic layered scenes with exact amodal ground truth (``maskgen data scenes``).

Scene format: ``DIR/images/{train,val,test}/NNNNNN.png`` (RGB, ``S x S``), ``DIR/annotations/
{split}_kins2020.json`` (KINS 2020 layout: amodal ``a_segm``/``a_bbox``/``a_area``, visible
``i_segm``/``i_bbox``/``i_area``, depth ``oco_id``/``ico_id``, RLE masks, ``file_name`` relative to
``DIR/images/{split}``), ``DIR/annotations/{split}_coco.json`` (the same instances, visible masks
only -- what a user without amodal labels has) and ``DIR/summary.json`` (parameters and statistics).

How a scene is made (all random choices from one seed; image ``i`` of split ``s`` uses the
generator ``numpy.random.default_rng([seed, s, i])``, so images do not depend on each other):

1. **Background**: a random crop of a scikit-image photo or texture (rescaled, flipped, tinted;
   70 %) or a flat colour with mild noise (30 %).
2. **Density**: each image draws a mode -- *sparse* (35 %: 3-6 shapes placed so that they touch
   nothing placed before when possible), *mixed* (25 %: 4-8 shapes, half of them placed onto an
   earlier shape) or *dense* (40 %: 6-10 shapes, 90 % placed onto an earlier shape). Sparse images give the
   complete (unoccluded, isolated) instances that Amodal-VAE's stage 1 needs; dense ones give
   heavy occlusion.
3. **Shapes**: drawn from the split's own shape pool (:func:`maskgen.data.shapes.split_shape_pools`:
   test shapes are never used in train), flipped left-right half the time, scaled so the longer
   side is log-uniform in ``[min_shape_size, max_shape_size]`` px (24-120 at 256 px) with smooth
   outlines (:func:`maskgen.data.builtin.upsample_shape`). 15 % of shapes cross one image edge
   (10-50 % of their extent outside, as truncated objects in real data); the rest keep a 1-px
   margin (a shape placed onto an earlier one is clamped to that margin).
4. **Depth order**: a random permutation, independent of placement. Each shape is filled with a
   flat colour (with noise) or a tinted texture crop, and the layers are composited back to front
   with the shared :func:`maskgen.core.compositing.composite`; visible masks come from
   :func:`maskgen.core.compositing.visible_masks` (binary alphas, so the image and the masks agree
   exactly: visible = amodal minus the union of the amodal masks in front).

Ground truth conventions: the amodal mask is the shape's full mask **clipped to the image** (as in
KINS), so border truncation is not counted as occlusion; occlusion ratio = ``1 - visible/amodal``.
An instance whose visible part is smaller than ``min_visible_pixels`` (20) or than
``min_visible_fraction`` (10 %) of its amodal mask is **still drawn but not annotated** (as with
unlabeled objects in real data); ``summary.json`` counts them. ``depth`` (written as ``oco_id`` and
``ico_id``) is the layer's index in the back-to-front order of all drawn shapes (larger is nearer).

``summary.json`` reports per split the occlusion histogram (0, <= 25 %, <= 50 %, > 50 %) and the
number of **complete** instances by the rule Amodal-VAE's stage 1 can apply without amodal labels
(docs/design.md, "Amodal-VAE"): the visible mask touches no other annotated visible mask (8-neighbourhood) and not the
image border -- plus how many of those are truly unoccluded (a hidden, unannotated shape can make
the rule wrong, as in real data).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskgen.core.boxes import mask_to_box
from maskgen.core.compositing import composite, visible_masks
from maskgen.core.io import prepare_out_dir
from maskgen.core.metrics import OCCLUSION_BUCKETS, occlusion_bucket
from maskgen.core.rle import encode_rle
from maskgen.data.shapes import SPLITS, ShapeSet, load_shapes, split_shape_pools
from maskgen.data.types import Dataset, ImageRecord, Instance
from maskgen.errors import MaskgenError

# (name, probability, min shapes, max shapes, probability a shape is placed onto an earlier one)
DENSITY_MODES = (
    ("sparse", 0.35, 3, 6, 0.0),
    ("mixed", 0.25, 4, 8, 0.5),
    ("dense", 0.40, 6, 10, 0.9),
)
BORDER_CROSS_PROB = 0.15
TEXTURE_BACKGROUND_PROB = 0.7
TEXTURE_FILL_PROB = 0.5
ISOLATION_GAP = 2  # px kept free around shapes placed in "sparse" mode


@dataclass
class SceneConfig:
    """Parameters of :func:`generate_scenes` (stored in ``summary.json``).

    Attributes:
        image_size: side ``S`` of the square images, px.
        num_images: images per split.
        min_shape_size, max_shape_size: range of a shape's longer side, px (log-uniform);
            ``max_shape_size`` is capped at ``image_size``.
        min_visible_pixels, min_visible_fraction: instances with less visible area are drawn
            but not annotated.
        seed: master seed.
    """

    image_size: int = 256
    num_images: dict[str, int] = field(
        default_factory=lambda: {"train": 2000, "val": 250, "test": 250}
    )
    min_shape_size: int = 24
    max_shape_size: int = 120
    min_visible_pixels: int = 20
    min_visible_fraction: float = 0.10
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`MaskgenError` for sizes that make no sense."""
        if self.min_shape_size < 8:
            raise MaskgenError(f"--min-shape-size {self.min_shape_size}: must be at least 8 px")
        if self.max_shape_size < self.min_shape_size:
            raise MaskgenError(
                f"--max-shape-size {self.max_shape_size}: smaller than --min-shape-size {self.min_shape_size}"
            )
        if self.image_size < self.min_shape_size + 2:
            raise MaskgenError(
                f"--image-size {self.image_size}: smaller than the smallest shape "
                f"(--min-shape-size {self.min_shape_size} px plus a 1-px margin)"
            )
        if self.image_size > 4096:
            raise MaskgenError(f"--image-size {self.image_size}: larger than 4096 px")
        for split, n in self.num_images.items():
            if n < 0:
                raise MaskgenError(f"--num-images-{split} {n}: must not be negative")
        if sum(self.num_images.values()) == 0:
            raise MaskgenError("--num-images-*: all splits are empty; nothing to generate")
        if not 0.0 <= self.min_visible_fraction < 1.0:
            raise MaskgenError(
                f"min_visible_fraction {self.min_visible_fraction}: must be in [0, 1)"
            )


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: ``S x S x 3`` uint8 RGB.
        amodal: ``L x S x S`` bool full masks clipped to the image, back to front.
        visible: ``L x S x S`` bool visible masks (same order).
        labels: ``(L,)`` int64 class indices.
        shape_ids: ``(L,)`` int64 index of each shape in its pool.
        mode: density mode name.
        colours: ``L x S x S x 3`` float32 layer colours, and ``background``: ``S x S x 3``
            float32 (kept so that edits can be rendered exactly, :mod:`maskgen.data.edit_cases`).
        materials: per layer its :class:`Material` (re-renders it into any mask,
            :mod:`maskgen.data.reshape_cases`).
    """

    image: np.ndarray
    amodal: np.ndarray
    visible: np.ndarray
    labels: np.ndarray
    shape_ids: np.ndarray
    mode: str
    colours: np.ndarray | None = None
    background: np.ndarray | None = None
    materials: list[Material] | None = None


@dataclass
class Material:
    """How one layer was filled, enough to render its material into any mask
    (:func:`maskgen.data.materials.render_material`).

    Attributes:
        kind: ``"flat"`` (``colour`` plus per-pixel grey noise) or ``"texture"``.
        origin: ``(x0, y0, w, h)`` the image region the layer's fill was drawn for (the shape's
            box clipped to the image); the material field is anchored there.
        colour: ``(3,)`` float32 flat colour.
        texture: index into :func:`maskgen.data.builtin.texture_images` values.
        crop: ``(y, x, ch, cw)`` texture region stretched onto ``origin``; flip: mirrored.
        gain, scale, bias: the tint (``tex * gain * scale + bias``, float32).
        extension_seed, layer: seed the flat noise beyond ``origin`` (``[seed, layer]``).
    """

    kind: str
    origin: tuple[int, int, int, int]
    colour: np.ndarray | None = None
    texture: int = -1
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    flip: bool = False
    gain: np.ndarray | None = None
    scale: float = 1.0
    bias: np.ndarray | None = None
    extension_seed: int = 0
    layer: int = 0


# --------------------------------------------------------------------------------------------
# Rendering


def _random_crop(
    rng: np.random.Generator,
    tex: np.ndarray,
    h: int,
    w: int,
    zoom: float,
    record: dict[str, Any] | None = None,
) -> np.ndarray:
    """An ``h x w`` crop of ``tex`` (uint8 RGB) seen at ``zoom`` (output px per texture px).

    ``record`` (when given) receives the crop's ``crop`` ``(y, x, ch, cw)`` and ``flip``
    (:class:`Material`); the random draws are the same either way."""
    th, tw = tex.shape[:2]
    ch = int(np.clip(round(h / zoom), 1, th))
    cw = int(np.clip(round(w / zoom), 1, tw))
    y = int(rng.integers(0, th - ch + 1))
    x = int(rng.integers(0, tw - cw + 1))
    crop = tex[y : y + ch, x : x + cw]
    flip = rng.random() < 0.5
    if flip:
        crop = crop[:, ::-1]
    if record is not None:
        record.update(crop=(y, x, ch, cw), flip=bool(flip))
    return cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)


def _tint(
    rng: np.random.Generator, img: np.ndarray, record: dict[str, Any] | None = None
) -> np.ndarray:
    """Colour-jitter a uint8 image: per-channel gain towards a random colour, then a bias.

    ``record`` receives ``gain`` (3,), ``scale`` and ``bias`` (3,): the result is
    ``img * gain * scale + bias`` in float32."""
    colour = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
    mix = rng.uniform(0.0, 0.8)
    gain = (1.0 - mix) + mix * colour / colour.max()
    bias = rng.uniform(-30, 30, size=3).astype(np.float32)
    tinted = img.astype(np.float32) * gain
    scale = rng.uniform(0.7, 1.2)
    if record is not None:
        record.update(gain=gain, scale=scale, bias=bias)
    return tinted * scale + bias


def _flat(
    rng: np.random.Generator, h: int, w: int, record: dict[str, Any] | None = None
) -> np.ndarray:
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    noise = rng.normal(0.0, 5.0, size=(h, w, 1)).astype(np.float32)
    if record is not None:
        record.update(colour=colour)
    return np.broadcast_to(colour, (h, w, 3)) + noise


def _background(rng: np.random.Generator, size: int, textures: list[np.ndarray]) -> np.ndarray:
    if textures and rng.random() < TEXTURE_BACKGROUND_PROB:
        tex = textures[int(rng.integers(len(textures)))]
        zoom = max(size / min(tex.shape[:2]), rng.uniform(0.6, 1.6))
        return _tint(rng, _random_crop(rng, tex, size, size, zoom))
    return _flat(rng, size, size)


def _fill(
    rng: np.random.Generator,
    h: int,
    w: int,
    textures: list[np.ndarray],
    record: dict[str, Any] | None = None,
) -> np.ndarray:
    """An ``h x w x 3`` float32 layer fill; ``record`` receives its :class:`Material` fields."""
    if textures and rng.random() < TEXTURE_FILL_PROB:
        t = int(rng.integers(len(textures)))
        tex = textures[t]
        zoom = max(max(h / tex.shape[0], w / tex.shape[1]), rng.uniform(0.5, 1.5))
        if record is not None:
            record.update(kind="texture", texture=t)
        return _tint(rng, _random_crop(rng, tex, h, w, zoom, record), record)
    if record is not None:
        record.update(kind="flat")
    return _flat(rng, h, w, record)


def render_shape(shape: np.ndarray, longer_side: float, flip: bool) -> np.ndarray:
    """Scale a tightly cropped shape so its longer side is ~``longer_side`` px, smooth outline.

    Args:
        shape: ``h x w`` bool tight crop.
        longer_side: target length of the longer side, px.
        flip: mirror left-right.

    Returns:
        ``H x W`` bool, tightly cropped again (non-empty).
    """
    from maskgen.data.builtin import upsample_shape
    from maskgen.data.shapes import tight_crop

    h, w = shape.shape
    scale = longer_side / max(h, w)
    padded = np.pad(shape, 1)  # room for the smoothed outline
    out_h = max(3, int(round((h + 2) * scale)))
    out_w = max(3, int(round((w + 2) * scale)))
    up = upsample_shape(padded, (out_h, out_w))
    m = tight_crop(up)
    if m is None:  # a tiny, thin shape vanished: fall back to nearest-neighbour
        m = tight_crop(
            cv2.resize(padded.astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_NEAREST) > 0
        )
    assert m is not None
    return m[:, ::-1] if flip else m


def _paste(
    canvas: np.ndarray, m: np.ndarray, x0: int, y0: int
) -> tuple[slice, slice, np.ndarray] | None:
    """Where ``m`` (top-left at ``x0, y0``) lands on ``canvas``: (rows, cols, clipped m) or None."""
    s_h, s_w = canvas.shape[:2]
    h, w = m.shape
    ya, xa = max(0, y0), max(0, x0)
    yb, xb = min(s_h, y0 + h), min(s_w, x0 + w)
    if ya >= yb or xa >= xb:
        return None
    return slice(ya, yb), slice(xa, xb), m[ya - y0 : yb - y0, xa - x0 : xb - x0]


def render_scene(
    rng: np.random.Generator, pool: ShapeSet, cfg: SceneConfig, textures: list[np.ndarray]
) -> Scene:
    """Draw one scene from ``pool`` (see the module docstring for the recipe)."""
    size = cfg.image_size
    max_side = min(cfg.max_shape_size, size)
    names, probs = [m[0] for m in DENSITY_MODES], np.array([m[1] for m in DENSITY_MODES])
    mode_i = int(rng.choice(len(DENSITY_MODES), p=probs / probs.sum()))
    _, _, k_min, k_max, p_onto = DENSITY_MODES[mode_i]
    k = int(rng.integers(k_min, k_max + 1))

    occupied = np.zeros((size, size), dtype=bool)  # dilated union of placed shapes
    gap_kernel = np.ones((2 * ISOLATION_GAP + 1, 2 * ISOLATION_GAP + 1), dtype=np.uint8)
    placed: list[tuple[np.ndarray, int, int]] = []  # (mask, x0, y0)
    shape_ids, labels = [], []
    for _ in range(k):
        sid = int(rng.integers(len(pool)))
        side = float(np.exp(rng.uniform(np.log(cfg.min_shape_size), np.log(max_side))))
        m = render_shape(pool.masks[sid], side, flip=bool(rng.random() < 0.5))
        h, w = m.shape
        cross = rng.random() < BORDER_CROSS_PROB or h > size - 2 or w > size - 2

        def sample_xy(m_h: int, m_w: int, cross: bool = cross) -> tuple[int, int]:
            def inside(extent: int) -> int:  # 1-px margin when it fits, else centred at random
                if extent <= size - 2:
                    return int(rng.integers(1, size - extent))
                return int(rng.integers(-(extent // 2), size - extent // 2))

            x, y = inside(m_w), inside(m_h)
            if cross:  # 10-50 % of the shape's extent beyond one image edge
                edge = int(rng.integers(4))
                extent = m_w if edge < 2 else m_h
                out = int(round(rng.uniform(0.1, 0.5) * extent))
                pos = -out if edge % 2 == 0 else size - extent + out
                x, y = (pos, y) if edge < 2 else (x, pos)
            return x, y

        if placed and rng.random() < p_onto:
            # Onto an earlier shape: centre uniformly inside its box.
            pm, px, py = placed[int(rng.integers(len(placed)))]
            cx = px + rng.uniform(0, pm.shape[1])
            cy = py + rng.uniform(0, pm.shape[0])
            x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
            if not cross:
                x0 = int(np.clip(x0, 1, size - w - 1))
                y0 = int(np.clip(y0, 1, size - h - 1))
        else:
            x0, y0 = sample_xy(h, w)
            if p_onto == 0.0:
                # Sparse mode: look for a spot touching nothing placed so far.
                for _attempt in range(30):
                    where = _paste(occupied, m, x0, y0)
                    if where is None or not (occupied[where[0], where[1]] & where[2]).any():
                        break
                    x0, y0 = sample_xy(h, w)
        where = _paste(occupied, m, x0, y0)
        if where is None:
            continue
        full = np.zeros((size, size), dtype=bool)
        full[where[0], where[1]] = where[2]
        occupied |= cv2.dilate(full.astype(np.uint8), gap_kernel).astype(bool)
        placed.append((m, x0, y0))
        shape_ids.append(sid)
        labels.append(int(pool.labels[sid]))

    n = len(placed)
    order = rng.permutation(n)  # depth: order[0] is the furthest layer
    amodal = np.zeros((n, size, size), dtype=bool)
    colours = np.zeros((n, size, size, 3), dtype=np.float32)
    records: list[dict[str, Any]] = []
    for layer, j in enumerate(order):
        m, x0, y0 = placed[j]
        rows, cols, clipped = _paste(amodal[layer], m, x0, y0)  # type: ignore[misc]
        amodal[layer, rows, cols] = clipped
        rec: dict[str, Any] = {
            "origin": (cols.start, rows.start, clipped.shape[1], clipped.shape[0])
        }
        colours[layer, rows, cols] = _fill(rng, clipped.shape[0], clipped.shape[1], textures, rec)
        records.append(rec)
    background = _background(rng, size, textures)
    # Drawn after everything else, so the scene does not depend on it: the seed of the noise
    # that extends flat fills beyond their layer (maskgen.data.materials).
    extension_seed = int(rng.integers(2**62))
    materials = [
        Material(**r, extension_seed=extension_seed, layer=k) for k, r in enumerate(records)
    ]
    image = composite(colours, amodal, background)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        amodal=amodal,
        visible=visible_masks(amodal),
        labels=np.asarray(labels, dtype=np.int64)[order] if n else np.zeros(0, np.int64),
        shape_ids=np.asarray(shape_ids, dtype=np.int64)[order] if n else np.zeros(0, np.int64),
        mode=names[mode_i],
        colours=colours,
        background=background,
        materials=materials,
    )


# --------------------------------------------------------------------------------------------
# Annotation and statistics


def complete_by_rule(visible: list[np.ndarray]) -> list[bool]:
    """Which annotated instances count as complete without amodal labels (docs/design.md, "Amodal-VAE", stage 1).

    Args:
        visible: the annotated instances' ``H x W`` bool visible masks of one image.

    Returns:
        per instance: True when its visible mask touches no other visible mask (overlap or
        8-neighbour contact) and not the image border.
    """
    kernel = np.ones((3, 3), dtype=np.uint8)
    out = []
    for i, v in enumerate(visible):
        if v[0].any() or v[-1].any() or v[:, 0].any() or v[:, -1].any():
            out.append(False)
            continue
        grown = cv2.dilate(v.astype(np.uint8), kernel).astype(bool)
        out.append(not any((grown & u).any() for j, u in enumerate(visible) if j != i))
    return out


@dataclass
class SplitStats:
    """Counts for ``summary.json``."""

    images: int = 0
    drawn_instances: int = 0
    annotated_instances: int = 0
    dropped_small_visible: int = 0
    occlusion_histogram: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(OCCLUSION_BUCKETS, 0)
    )
    complete_by_rule: int = 0
    complete_by_rule_truly_unoccluded: int = 0
    touching_border: int = 0
    mean_occlusion: float = 0.0
    density_modes: dict[str, int] = field(default_factory=lambda: {m[0]: 0 for m in DENSITY_MODES})
    shapes_in_pool: int = 0


def annotate(
    scene: Scene, image_id: int, first_instance_id: int, file_name: str, cfg: SceneConfig
) -> tuple[ImageRecord, dict[str, Any]]:
    """Turn a :class:`Scene` into an :class:`ImageRecord` (dropping tiny visible parts).

    Returns:
        the record and per-scene statistics (keys of :class:`SplitStats`, plus occlusion ratios).
    """
    size = cfg.image_size
    rec = ImageRecord(id=image_id, file_name=file_name, height=size, width=size)
    kept_vis, ratios, buckets, truly_unoccluded, dropped = [], [], [], [], 0
    next_id = first_instance_id
    for layer in range(len(scene.amodal)):
        a, v = scene.amodal[layer], scene.visible[layer]
        a_area, v_area = int(a.sum()), int(v.sum())
        if v_area < cfg.min_visible_pixels or v_area < cfg.min_visible_fraction * a_area:
            dropped += 1
            continue
        ratio = 1.0 - v_area / a_area
        rec.instances.append(
            Instance(
                id=next_id,
                category_id=int(scene.labels[layer]) + 1,
                visible_segm=encode_rle(v),
                amodal_segm=encode_rle(a),
                visible_box=mask_to_box(v),
                amodal_box=mask_to_box(a),
                depth=layer,
            )
        )
        next_id += 1
        kept_vis.append(v)
        ratios.append(ratio)
        buckets.append(occlusion_bucket(a_area - v_area, a_area))
        truly_unoccluded.append(v_area == a_area)
    complete = complete_by_rule(kept_vis)
    stats = {
        "drawn_instances": len(scene.amodal),
        "annotated_instances": len(rec.instances),
        "dropped_small_visible": dropped,
        "ratios": ratios,
        "buckets": buckets,
        "complete_by_rule": sum(complete),
        "complete_by_rule_truly_unoccluded": sum(
            c and t for c, t in zip(complete, truly_unoccluded, strict=True)
        ),
        "touching_border": sum(
            bool(v[0].any() or v[-1].any() or v[:, 0].any() or v[:, -1].any()) for v in kept_vis
        ),
    }
    return rec, stats


# --------------------------------------------------------------------------------------------
# Splits and the output folder


def _generate_one(args: tuple[int, int, int, str]) -> tuple[ImageRecord, dict[str, Any], str]:
    split_index, image_index, first_id, images_dir = args
    pool, cfg, textures = (
        _WORKER_STATE["pools"][SPLITS[split_index]],
        _WORKER_STATE["cfg"],
        _WORKER_STATE["textures"],
    )
    rng = np.random.default_rng([cfg.seed, split_index, image_index])
    scene = render_scene(rng, pool, cfg, textures)
    name = f"{image_index:06d}.png"
    if len(scene.amodal) > MAX_INSTANCES_PER_IMAGE:  # ids are allotted in blocks per image
        raise RuntimeError(f"scene has {len(scene.amodal)} > {MAX_INSTANCES_PER_IMAGE} shapes")
    rec, stats = annotate(scene, image_index + 1, first_id, name, cfg)
    from PIL import Image

    Image.fromarray(scene.image).save(
        os.path.join(images_dir, name), format="PNG", compress_level=1
    )
    return rec, stats, scene.mode


_WORKER_STATE: dict[str, Any] = {}
MAX_INSTANCES_PER_IMAGE = 10  # ids are allotted in blocks so that workers need not talk


def generate_scenes(
    out: str | os.PathLike[str],
    shapes: str | Path = "builtin",
    cfg: SceneConfig | None = None,
    force: bool = False,
    workers: int = 1,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Generate a scenes folder (see the module docstring) and return its summary.

    The folder is built beside ``out`` under a temporary name and moved into place at the end,
    so an interrupted run leaves nothing half-written. With ``force``, an existing scenes folder
    (one holding ``summary.json``) is replaced; any other non-empty path is never touched.

    Args:
        out: output folder.
        shapes: ``"builtin"``, a folder of mask images, or an ``.npy``/``.npz`` file
            (:func:`maskgen.data.shapes.load_shapes`).
        cfg: :class:`SceneConfig` (defaults when None).
        force: replace an existing scenes folder.
        workers: processes (results do not depend on it; needs the ``fork`` start method,
            one process otherwise).
        progress: tqdm progress bar (None: only on a terminal).

    Returns:
        the summary dict written to ``out/summary.json``.
    """
    from maskgen.data.builtin import texture_images

    cfg = cfg or SceneConfig()
    cfg.validate()
    out = Path(out)
    prepare_out_dir(out, force, marker="summary.json")
    shape_set = load_shapes(shapes)
    pools, shared = split_shape_pools(shape_set)
    textures = list(texture_images().values())
    categories = [
        {"id": i + 1, "name": n, "supercategory": "animal" if str(shapes) == "builtin" else "shape"}
        for i, n in enumerate(shape_set.class_names)
    ]
    _WORKER_STATE.update(pools=pools, cfg=cfg, textures=textures)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    t_start = time.perf_counter()
    summary: dict[str, Any] = {
        "format": "maskgen synthetic scenes v1",
        "config": asdict(cfg),
        "shapes": shape_set.source,
        "shape_pools_shared_between_splits": shared,
        "categories": [c["name"] for c in categories],
        "splits": {},
    }
    pool_ctx = None
    try:
        import multiprocessing as mp

        if workers > 1 and "fork" in mp.get_all_start_methods():  # else: one process
            pool_ctx = mp.get_context("fork").Pool(workers)
        for split_index, split in enumerate(SPLITS):
            summary["splits"][split] = _generate_split(
                split_index, split, tmp, out, pool_ctx, len(pools[split]), categories, progress
            )
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _replace_dir(tmp, out)
    finally:
        if pool_ctx is not None:
            pool_ctx.close()
            pool_ctx.join()
        _WORKER_STATE.clear()
        if tmp.exists():
            shutil.rmtree(tmp)
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    return summary


def _generate_split(
    split_index: int,
    split: str,
    tmp: Path,
    out: Path,
    pool_ctx: Any,
    pool_size: int,
    categories: list[dict[str, Any]],
    progress: bool | None,
) -> dict[str, Any]:
    """Render one split's images into ``tmp``, write its annotations; its statistics."""
    from tqdm import tqdm

    from maskgen.data.coco import write_coco
    from maskgen.data.kins import write_kins2020

    n = _WORKER_STATE["cfg"].num_images.get(split, 0)
    images_dir = tmp / "images" / split
    images_dir.mkdir(parents=True)
    jobs = [(split_index, i, i * MAX_INSTANCES_PER_IMAGE + 1, str(images_dir)) for i in range(n)]
    results = (
        pool_ctx.imap(_generate_one, jobs, chunksize=16) if pool_ctx else map(_generate_one, jobs)
    )
    stats = SplitStats(images=n, shapes_in_pool=pool_size)
    records, ratios = [], []
    bar = tqdm(results, total=n, desc=f"scenes {split}", leave=False,
               disable=None if progress is None else not progress)  # fmt: skip
    for rec, st, mode in bar:
        records.append(rec)
        for key in ("drawn_instances", "annotated_instances", "dropped_small_visible",
                    "complete_by_rule", "complete_by_rule_truly_unoccluded", "touching_border"):  # fmt: skip
            setattr(stats, key, getattr(stats, key) + st[key])
        stats.density_modes[mode] += 1
        ratios.extend(st["ratios"])
        for bucket in st["buckets"]:
            stats.occlusion_histogram[bucket] += 1
    stats.mean_occlusion = round(float(np.mean(ratios)), 4) if ratios else 0.0
    dataset = Dataset(images=records, categories=categories, source=str(out), layout="kins-2020")
    write_kins2020(dataset, tmp / "annotations" / f"{split}_kins2020.json")
    write_coco(dataset, tmp / "annotations" / f"{split}_coco.json")
    return asdict(stats)


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished folder ``new`` to ``out`` (replacing an existing scenes folder)."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "x")
        os.replace(new, out)
        shutil.rmtree(old)
    else:
        os.replace(new, out)


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines: per split, instances, occlusion histogram, complete count."""
    lines = []
    for split, st in summary["splits"].items():
        n = st["annotated_instances"]
        hist = ", ".join(
            f"{b} {c} ({100 * c / n:.0f}%)" if n else f"{b} 0"
            for b, c in st["occlusion_histogram"].items()
        )
        comp = st["complete_by_rule"]
        lines.append(
            f"{split}: {st['images']} images, {n} annotated instances "
            f"({st['dropped_small_visible']} drawn but too hidden to annotate); occlusion {hist}; "
            f"complete by the stage-1 rule {comp} ({100 * comp / max(n, 1):.0f}%, "
            f"{st['complete_by_rule_truly_unoccluded']} truly unoccluded)"
        )
    return "\n".join(lines)
