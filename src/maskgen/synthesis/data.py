"""Training pairs for mask-conditioned instance synthesis, from visible masks only (issue 14).

No amodal labels: training instances are those whose visible mask is their full mask -- the
project's stage-1 rule (:func:`maskgen.inpainting.samplers.complete_instances`: a visible mask
of at least ``MIN_INSTANCE_PIXELS`` px touching no other instance's visible mask, by overlap or
8-neighbour contact, and not the image border). On the built-in scenes every instance the rule
keeps is truly unoccluded (``maskgen data scenes`` reports both counts). On other data (where
unannotated objects may hide part of an isolated instance) ``completion_iou > 0`` also asks the
Amodal-VAE (:class:`~maskgen.amodal.predictor.AmodalPredictor`, the shipped model by default) to
agree: the IoU of its unrestricted completion (the thresholded mode, before the visible mask is
joined to it) with the visible mask must reach ``completion_iou``.

Each instance is cut out by :func:`~maskgen.inpainting.samplers.instance_window` (its box made
square with a margin, as at inference) and resized to ``crop_size``. A training pair mimics what a
re-shape hides and shows (instance mask ``M``, its pixels ``P``):

- **visible** ``V = M & D``: ``D`` is a random deformation of ``M`` (:func:`random_deformation`:
  affine jitter -- rotation, anisotropic scale, shift -- then a smooth random displacement field)
  or, with probability ``OCCLUDER_PROB``, ``V = M & ~O`` with ``O`` another instance's mask
  placed over ``M`` as an occluder;
- **new mask** ``N``: ``M`` itself, or with probability ``SHRINK_PROB`` ``M & E`` for a second
  deformation ``E`` (so that, as in a real re-shape, part of the visible region lies outside the
  new mask and only its appearance is evidence);
- **target**: ``P`` inside ``N`` (known, since ``N`` lies in ``M``).

Augmentation: left-right flips and, with probability ``PERMUTE_PROB``, a random permutation of
the colour channels (more materials from the few the built-in scenes have).

Arrays: patches ``S x S x 3`` uint8, masks ``S x S`` bool; a :class:`SynthBatch` holds float32
numpy arrays ready for torch (images in ``[-1, 1]``, ``B x 3 x S x S``; masks ``B x 1 x S x S``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from maskgen.core.io import read_image
from maskgen.data.types import Dataset
from maskgen.errors import MaskgenError
from maskgen.inpainting.samplers import (
    MIN_INSTANCE_PIXELS,
    complete_instances,
    cut,
    instance_window,
    mask_box,
    place_shape,
    push_pull,
    resize_image,
    resize_mask,
)

OCCLUDER_PROB = 0.35  # visible = instance minus another instance's mask (else a deformation)
SHRINK_PROB = 0.5  # new mask = instance & a second deformation (else the whole instance)
PERMUTE_PROB = 0.5  # permute the colour channels
VISIBLE_SHARE = (0.15, 0.97)  # share of the new mask the visible pixels may cover
MIN_NEW_SHARE = 0.3  # the new mask keeps at least this share of the instance
TRIES = 8


@dataclasses.dataclass
class SynthData:
    """What training pairs are drawn from (see :func:`load_synth_data`).

    Attributes:
        patches: ``N x S x S x 3`` uint8, the complete instances' windows.
        masks: ``N x S x S`` bool, their masks.
        shapes: tight-cropped ``h x w`` bool visible masks of every instance (occluders).
        images: how many images were read.
    """

    patches: np.ndarray
    masks: np.ndarray
    shapes: list[np.ndarray]
    images: int


@dataclasses.dataclass
class SynthBatch:
    """A training batch (float32 numpy, see the module docstring).

    Attributes:
        image: ``B x 3 x S x S`` the instance's pixels in ``[-1, 1]`` (the target inside ``new``).
        coarse: ``B x 3 x S x S`` the visible pixels, the rest push-pull filled from them.
        visible: ``B x 1 x S x S`` the pixels shown to the network.
        new: ``B x 1 x S x S`` the new full mask (SPADE input; the loss's pixels).
    """

    image: np.ndarray
    coarse: np.ndarray
    visible: np.ndarray
    new: np.ndarray


def cut_instance(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An instance's window (:func:`instance_window`) resized to ``size x size``:
    ``(S x S x 3 uint8, S x S bool)``."""
    win = instance_window(mask)
    patch = resize_image(cut(image, win), (size, size))
    return patch, resize_mask(cut(mask, win), (size, size))


def _completion_filter(dataset: Dataset, threshold: float, model: str) -> dict[int, list[bool]]:
    """Per image id, per instance: whether the Amodal-VAE's unrestricted completion overlaps the
    visible mask with IoU >= ``threshold`` (only instances the stage-1 rule keeps are completed)."""
    from maskgen.amodal.io import SHIPPED_MODEL
    from maskgen.amodal.predictor import AmodalPredictor, ImageInput

    predictor = AmodalPredictor.from_folder(SHIPPED_MODEL if model == "builtin" else model)
    recs, items = [], []
    for rec in dataset.images:
        visible = [rec.visible_mask(inst) for inst in rec.instances]
        done = complete_instances(visible) if visible else []
        if any(done):
            recs.append((rec, done))
            items.append(ImageInput(np.stack(visible), complete=np.array(done)))
    out: dict[int, list[bool]] = {}
    results = predictor.complete_images(items, restrict_to_occluders=False)
    for (rec, done), comps in zip(recs, results, strict=True):
        it = iter(comps)
        keep = []
        for inst, ok in zip(rec.instances, done, strict=True):
            if not ok:
                keep.append(False)
                continue
            v, raw = rec.visible_mask(inst), next(it).raw_mask
            keep.append(bool((v & raw).sum() >= threshold * max(int((v | raw).sum()), 1)))
        out[rec.id] = keep
    return out


def load_synth_data(
    dataset: Dataset,
    images_dir: str | os.PathLike[str],
    crop_size: int,
    completion_iou: float = 0.0,
    amodal_model: str = "builtin",
) -> SynthData:
    """Decode the complete instances (module docstring) of ``dataset``; only visible masks are read.

    Args:
        completion_iou: when > 0, also require the Amodal-VAE check (module docstring).
        amodal_model: its model folder, or ``"builtin"`` for the shipped one.

    Raises:
        MaskgenError: an unreadable image, an image whose size differs from its annotation, or
            no complete instance.
    """
    root = Path(images_dir)
    patches, masks, shapes = [], [], []
    agree = _completion_filter(dataset, completion_iou, amodal_model) if completion_iou > 0 else {}
    for rec in dataset.images:
        visible = [rec.visible_mask(inst) for inst in rec.instances]
        done = complete_instances(visible) if visible else []
        if completion_iou > 0:
            done = agree.get(rec.id, [False] * len(visible))
        for v in visible:
            if v.sum() >= MIN_INSTANCE_PIXELS:
                x0, y0, x1, y1 = mask_box(v)
                shapes.append(v[y0:y1, x0:x1].copy())
        if not any(done):
            continue
        image = read_image(root / rec.file_name)
        if image.shape[:2] != (rec.height, rec.width):
            raise MaskgenError(
                f"{root / rec.file_name}: image is {image.shape[1]}x{image.shape[0]} px but the "
                f"annotations say {rec.width}x{rec.height}"
            )
        for v, ok in zip(visible, done, strict=True):
            if ok:
                p, m = cut_instance(image, v, crop_size)
                patches.append(p)
                masks.append(m)
    if not patches:
        where = dataset.source or "the annotations"
        check = f", completed by the Amodal-VAE with IoU >= {completion_iou:g}" * (
            completion_iou > 0
        )
        raise MaskgenError(
            f"{where}: no unoccluded instance to learn from (a visible mask of at least "
            f"{MIN_INSTANCE_PIXELS} px touching no other instance and not the image border{check})"
        )
    return SynthData(np.stack(patches), np.stack(masks), shapes, len(dataset.images))


def random_deformation(
    rng: np.random.Generator, mask: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """A random non-rigid deformation of an ``S x S`` bool mask (same size, bool).

    Affine jitter about the mask's centre (rotation ``N(0, 15 deg)``, per-axis log-scale
    ``N(0, 0.15)``, shift ``N(0, 0.05 S)``), then a smooth displacement field (a ``4 x 4`` grid of
    ``N(0, 0.05 S)`` offsets, cubic-upsampled); every spread is times ``strength``.
    """
    s = mask.shape[0]
    ys, xs = np.nonzero(mask)
    cx, cy = (float(xs.mean()), float(ys.mean())) if len(xs) else (s / 2.0, s / 2.0)
    angle = np.deg2rad(rng.normal(0.0, 15.0 * strength))
    sx, sy = np.exp(rng.normal(0.0, 0.15 * strength, size=2))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lin = rot @ np.diag([sx, sy])
    centre = np.array([cx, cy])
    offset = centre + rng.normal(0.0, 0.05 * s * strength, size=2) - lin @ centre
    affine = np.hstack([lin, offset[:, None]]).astype(np.float32)
    warped = cv2.warpAffine(mask.astype(np.float32), affine, (s, s), flags=cv2.INTER_LINEAR)
    field = rng.normal(0.0, 0.05 * s * strength, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(field[0], (s, s), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(field[1], (s, s), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32))
    out = cv2.remap(warped, gx + dx, gy + dy, cv2.INTER_LINEAR)
    return out >= 0.5


def _occluded(rng: np.random.Generator, data: SynthData, m: np.ndarray) -> np.ndarray:
    """``m`` minus another instance's mask placed over it (``place_shape``)."""
    size = m.shape[0]
    ys, xs = np.nonzero(m)
    shape = data.shapes[int(rng.integers(len(data.shapes)))]
    side = size * rng.uniform(0.3, 1.0)
    k = int(rng.integers(len(ys)))
    centre = (xs[k] + rng.uniform(-0.5, 0.5) * side, ys[k] + rng.uniform(-0.5, 0.5) * side)
    return m & ~place_shape(rng, shape, side, size, centre)


def sample_pair(
    rng: np.random.Generator, data: SynthData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training pair ``(patch S x S x 3 uint8, visible S x S bool, new S x S bool)``, see
    the module docstring. Redrawn up to ``TRIES`` times until the visible pixels cover a share in
    ``VISIBLE_SHARE`` of the new mask; the last draw with some visible pixels is kept otherwise."""
    j = int(rng.integers(len(data.patches)))
    patch, m = data.patches[j], data.masks[j]
    if rng.random() < 0.5:
        patch, m = patch[:, ::-1], m[:, ::-1]
    if rng.random() < PERMUTE_PROB:
        patch = patch[..., rng.permutation(3)]
    area = max(int(m.sum()), 1)
    best = (m & ~m, m)
    for _ in range(TRIES):
        if rng.random() < SHRINK_PROB:
            new = m & random_deformation(rng, m)
            if new.sum() < MIN_NEW_SHARE * area:
                new = m
        else:
            new = m
        if rng.random() < OCCLUDER_PROB:
            vis = _occluded(rng, data, m)
        else:
            vis = m & random_deformation(rng, m)
        share = (vis & new).sum() / max(int(new.sum()), 1)
        if vis.any():
            best = (vis, new)
        if VISIBLE_SHARE[0] <= share <= VISIBLE_SHARE[1]:
            break
    vis, new = best
    if not vis.any():  # nothing survived: keep the upper half of the instance visible
        vis = m.copy()
        vis[int(np.nonzero(m)[0].mean()) :] = False
        vis = vis if vis.any() else m.copy()
    return np.ascontiguousarray(patch), vis, new


def coarse_from_visible(patch: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``patch`` on ``visible``, the push-pull fill of the visible colours elsewhere
    (``S x S x 3`` float32, 0-255; grey 128 when nothing is visible)."""
    if not visible.any():
        return np.full(patch.shape, 128.0, np.float32)
    fill = push_pull(patch, visible)
    return np.where(visible[..., None], patch.astype(np.float32), fill)


def synth_batch(rng: np.random.Generator, data: SynthData, n: int) -> SynthBatch:
    """``n`` training pairs as a :class:`SynthBatch`."""
    patches, vis, new = zip(*(sample_pair(rng, data) for _ in range(n)), strict=True)
    coarse = [coarse_from_visible(p, v) for p, v in zip(patches, vis, strict=True)]

    def to_img(xs: tuple[np.ndarray, ...] | list[np.ndarray]) -> np.ndarray:
        return np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0

    def to_mask(xs: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.stack(xs)[:, None].astype(np.float32)

    return SynthBatch(to_img(patches), to_img(coarse), to_mask(vis), to_mask(new))
