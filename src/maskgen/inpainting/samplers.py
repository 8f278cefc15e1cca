"""Training samples for the two inpainters of supplementary §3.3, from visible masks only.

No amodal labels and no clean backgrounds are needed: everything is cut from ordinary images
with visible instance masks (a COCO/KINS/COCOA file read by :func:`maskgen.data.loader.load_dataset`).

**Background holes** (§3.3 "Background Inpainting"): a random square crop of an image (side
``crop_size x U(1, 2)`` px at the image's scale, clipped to the image, resized to ``crop_size``:
the learned inpainter downsizes large windows by up to 2x at test time); the hole is a randomly
chosen instance mask of the data set, randomly scaled, placed at a random position and dilated
by ``U(dilate_min, dilate_max) x crop_size / 256`` px (the paper: 5-25 px at 256 px). The crop's
instance pixels are **unknown** (what lies under an object is never seen): they are zeroed in the
input and left out of the loss, so the target is ``hole & background`` and the context
``background & ~hole``.

**Instance holes** (§3.3 "Instance Inpainting"): an instance whose visible mask is likely
complete -- the rule of Amodal-VAE's stage 1 (docs/design.md, "Amodal-VAE"): its visible mask touches no other
instance's visible mask (overlap or 8-neighbour contact) and not the image border, and it has at
least ``MIN_INSTANCE_PIXELS`` pixels -- is cut out by :func:`instance_window` (its box, made square
with a margin) and resized to ``instance_size``; another instance's mask, randomly scaled and
placed over it, is the occluder; the hole is ``occluder & instance`` (kept when it covers
``HOLE_FRACTION`` of the instance); the target is the original pixels of the hole. The model gets
the hole filled with the instance's class label (a learned embedding plane, §3.3).

Arrays: images ``H x W x 3`` uint8; masks ``H x W`` bool; a :class:`Batch` holds float32 numpy
arrays ready for torch (images in ``[-1, 1]``, ``B x 3 x S x S``; masks ``B x 1 x S x S``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from maskgen.core.io import read_image
from maskgen.core.masks import dilate
from maskgen.data.types import Dataset
from maskgen.errors import MaskgenError

MIN_INSTANCE_PIXELS = 64  # smaller visible masks are neither hole shapes nor instance samples
HOLE_FRACTION = (0.1, 0.6)  # share of the instance an instance hole covers
INSTANCE_MARGIN = 0.1  # margin around an instance box, as a share of its longer side
MAX_CROP_ZOOM = 2.0  # background crops span crop_size x U(1, MAX_CROP_ZOOM) image px
TRIES = 8  # placements tried before a sample is accepted as it is


def push_pull(image: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Smooth fill of the pixels outside ``given`` (a pyramid of normalised averages).

    Args:
        image: ``H x W x 3`` (only ``given`` pixels are read).
        given: ``H x W`` bool, non-empty.

    Returns:
        ``H x W x 3`` float32: ``image`` on ``given``; elsewhere the average of the nearest given
        pixels, blended across pyramid levels.
    """
    levels = [(image.astype(np.float32) * given[..., None], given.astype(np.float32))]
    while min(levels[-1][1].shape) > 1:
        num, den = levels[-1]
        size = (max(1, (den.shape[1] + 1) // 2), max(1, (den.shape[0] + 1) // 2))
        levels.append(
            (
                cv2.resize(num, size, interpolation=cv2.INTER_AREA).reshape(size[::-1] + (3,)),
                cv2.resize(den, size, interpolation=cv2.INTER_AREA).reshape(size[::-1]),
            )
        )
    num, den = levels[-1]
    fill = num / np.maximum(den, 1e-6)[..., None]
    for num, den in reversed(levels[:-1]):
        h, w = den.shape
        up = cv2.resize(fill, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, 3)
        weight = np.clip(den, 0.0, 1.0)[..., None]
        fill = weight * (num / np.maximum(den, 1e-6)[..., None]) + (1.0 - weight) * up
    return fill


def nearest_fill(image: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Every pixel coloured like its nearest ``given`` pixel (``H x W x 3`` uint8; ``given``
    non-empty)."""
    _, lab = cv2.distanceTransformWithLabels(
        (~given).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    lut = np.zeros((int(lab.max()) + 1, 3), np.uint8)
    lut[lab[given]] = image[given]
    return lut[lab]


COARSE_EXTEND = {"background": "push_pull", "instance": "nearest"}


def coarse_fill(
    image: np.ndarray, given: np.ndarray, hole: np.ndarray, extend: str = "push_pull"
) -> np.ndarray:
    """The fixed coarse stage: the pixels outside ``given`` filled from the ``given`` ones.

    Unknown pixels outside the hole (other objects, the outside of an instance) are first
    extended cheaply -- ``"push_pull"`` (:func:`push_pull`, the background net's) or
    ``"nearest"`` (:func:`nearest_fill`, the instance net's: with it the fill equals OpenCV's
    Telea restricted to the given pixels) -- then the hole is filled by Telea (radius 5) from
    everything around it. (Telea over every unknown pixel costs up to 10x more.) On held-out
    built-in scenes the hole error is 14.05 (push-pull) vs 14.33 (restricted Telea) for
    background holes and 8.40 (nearest) vs 8.41 for instance holes.

    Args:
        image: ``H x W x 3`` uint8 (only ``given`` pixels are read).
        given: ``H x W`` bool.
        hole: ``H x W`` bool, disjoint from ``given``.

    Returns:
        ``H x W x 3`` uint8, equal to ``image`` on ``given`` (grey 128 when nothing is given).
    """
    if not given.any():
        return np.full_like(image, 128)
    if extend == "nearest":
        smooth = nearest_fill(image, given)
    else:
        smooth = push_pull(image, given).clip(0, 255).round().astype(np.uint8)
    base = np.where(given[..., None], image, smooth)
    if not hole.any():
        return base
    return cv2.inpaint(base, hole.astype(np.uint8), 5.0, cv2.INPAINT_TELEA)


@dataclasses.dataclass
class Batch:
    """A batch for one network (float32 numpy, see the module docstring).

    Attributes:
        image: ``B x 3 x S x S`` the original pixels in ``[-1, 1]``.
        coarse: ``B x 3 x S x S`` :func:`coarse_fill` of the non-given pixels, in ``[-1, 1]``.
        given: ``B x 1 x S x S`` pixels shown to the network.
        hole: ``B x 1 x S x S`` pixels to fill.
        target: ``B x 1 x S x S`` hole pixels whose truth is known (the loss's pixels).
        amodal: ``B x 1 x S x S`` the instance's mask (instance batches; zeros otherwise).
        label: ``(B,)`` int64 category ids (instance batches; zeros otherwise).
    """

    image: np.ndarray
    coarse: np.ndarray
    given: np.ndarray
    hole: np.ndarray
    target: np.ndarray
    amodal: np.ndarray
    label: np.ndarray


def square_window(
    box: tuple[int, int, int, int], side: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """A ``side x side`` window ``(x0, y0, x1, y1)`` centred on ``box``, shifted to lie inside
    an ``height x width`` image where it fits (it may extend past the image otherwise)."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, x0 + side, y0 + side


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight half-open ``(x0, y0, x1, y1)`` box of a non-empty ``H x W`` bool mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def instance_window(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The square window an instance is cut out with (training and inference alike): its box
    grown by ``INSTANCE_MARGIN`` of the longer side on each side, centred (may leave the image)."""
    x0, y0, x1, y1 = mask_box(mask)
    side = max(x1 - x0, y1 - y0)
    side = int(np.ceil(side * (1 + 2 * INSTANCE_MARGIN))) + 2
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    wx, wy = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    return wx, wy, wx + side, wy + side


def cut(array: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """``array[y0:y1, x0:x1]`` with zero padding where the window leaves the array."""
    x0, y0, x1, y1 = window
    h, w = array.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + array.shape[2:], array.dtype)
    ya, yb, xa, xb = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    if ya < yb and xa < xb:
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = array[ya:yb, xa:xb]
    return out


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB array to ``size = (width, height)``: area when shrinking, linear else."""
    shrink = size[0] < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=interp)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to ``size = (width, height)`` (area/linear, then ``>= 0.5``)."""
    return resize_image(mask.astype(np.float32), size) >= 0.5


def complete_instances(visible: list[np.ndarray]) -> list[bool]:
    """Which visible masks of one image count as complete (see the module docstring)."""
    kernel = np.ones((3, 3), dtype=np.uint8)
    union = np.zeros_like(visible[0], dtype=np.uint16) if visible else None
    for v in visible:
        union += v
    out = []
    for v in visible:
        if v.sum() < MIN_INSTANCE_PIXELS or v[0].any() or v[-1].any() or v[:, 0].any():
            out.append(False)
            continue
        if v[:, -1].any():
            out.append(False)
            continue
        grown = cv2.dilate(v.astype(np.uint8), kernel).astype(bool)
        others = (union - v) > 0
        out.append(not (grown & others).any())
    return out


@dataclasses.dataclass
class InpaintData:
    """What the samplers draw from, decoded once (see :func:`load_inpaint_data`).

    Attributes:
        images: per image ``H x W x 3`` uint8.
        background: per image ``H x W`` bool, True where no annotated visible mask lies.
        shapes: tight-cropped ``h x w`` bool visible masks (hole shapes and occluders).
        patches: per complete instance, ``S x S x 3`` uint8 cut by :func:`instance_window`.
        patch_masks: per complete instance, ``S x S`` bool.
        patch_labels: per complete instance, its category id.
    """

    images: list[np.ndarray]
    background: list[np.ndarray]
    shapes: list[np.ndarray]
    patches: np.ndarray
    patch_masks: np.ndarray
    patch_labels: np.ndarray


def _cut_instance(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An instance's window (:func:`instance_window`) resized to ``size x size``."""
    win = instance_window(mask)
    patch = resize_image(cut(image, win), (size, size))
    return patch, resize_mask(cut(mask, win), (size, size))


def load_inpaint_data(
    dataset: Dataset, images_dir: str | os.PathLike[str], instance_size: int
) -> InpaintData:
    """Decode every image and visible mask of ``dataset`` for the samplers.

    Memory: the images are kept decoded (about 200 KB per 256 x 256 image).

    Raises:
        MaskgenError: an unreadable image, an image whose size differs from its annotation, no
            instance of at least ``MIN_INSTANCE_PIXELS`` pixels, or no complete instance.
    """
    root = Path(images_dir)
    images, background, shapes = [], [], []
    patches, patch_masks, labels = [], [], []
    for rec in dataset.images:
        image = read_image(root / rec.file_name)
        if image.shape[:2] != (rec.height, rec.width):
            raise MaskgenError(
                f"{root / rec.file_name}: image is {image.shape[1]}x{image.shape[0]} px but the "
                f"annotations say {rec.width}x{rec.height}"
            )
        visible = [rec.visible_mask(inst) for inst in rec.instances]
        fg = np.zeros((rec.height, rec.width), bool)
        for v in visible:
            fg |= v
        images.append(image)
        background.append(~fg)
        for inst, v, done in zip(rec.instances, visible, complete_instances(visible), strict=True):
            if v.sum() >= MIN_INSTANCE_PIXELS:
                x0, y0, x1, y1 = mask_box(v)
                shapes.append(v[y0:y1, x0:x1].copy())
            if done:
                p, m = _cut_instance(image, v, instance_size)
                patches.append(p)
                patch_masks.append(m)
                labels.append(int(inst.category_id))
    where = dataset.source or "the annotations"
    if not shapes:
        raise MaskgenError(
            f"{where}: no visible instance mask of at least {MIN_INSTANCE_PIXELS} pixels "
            "(the hole shapes come from them)"
        )
    if not patches:
        raise MaskgenError(
            f"{where}: no complete instance (a visible mask of at least {MIN_INSTANCE_PIXELS} px "
            "touching no other instance and not the image border); the instance inpainter "
            "learns from them"
        )
    return InpaintData(
        images, background, shapes, np.stack(patches), np.stack(patch_masks), np.array(labels)
    )


def place_shape(
    rng: np.random.Generator,
    shape: np.ndarray,
    side: float,
    size: int | tuple[int, int],
    centre: tuple[float, float],
) -> np.ndarray:
    """A bool canvas (``size x size``, or ``size = (height, width)``) with ``shape`` scaled so
    its longer side is ``side`` px, randomly flipped, centred at ``centre = (x, y)`` (clipped)."""
    height, width = (size, size) if isinstance(size, int) else size
    h, w = shape.shape
    scale = side / max(h, w)
    out_w, out_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    m = resize_mask(shape, (out_w, out_h))
    if rng.random() < 0.5:
        m = m[:, ::-1]
    x0, y0 = int(round(centre[0] - out_w / 2.0)), int(round(centre[1] - out_h / 2.0))
    return cut(m, (-x0, -y0, width - x0, height - y0))


def _background_crop(
    rng: np.random.Generator, data: InpaintData, size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """A random crop (image, background mask) resized to ``size``, and its zoom (image px per
    crop px)."""
    i = int(rng.integers(len(data.images)))
    image, bg = data.images[i], data.background[i]
    h, w = bg.shape
    side = min(int(round(size * rng.uniform(1.0, MAX_CROP_ZOOM))), h, w)
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    win = (x0, y0, x0 + side, y0 + side)
    crop = resize_image(cut(image, win), (size, size))
    return crop, resize_mask(cut(bg, win), (size, size)), side / size


def sample_background(
    rng: np.random.Generator, data: InpaintData, size: int, dilate_px: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One background sample (§3.3): ``(crop, given, hole, target)``, ``size x size``.

    ``dilate_px`` is the dilation range in px at 256 px (scaled by ``size / 256``).
    """
    crop, bg, zoom = _background_crop(rng, data, size)
    for attempt in range(TRIES):
        if attempt and attempt % 3 == 0:  # a crop with too little background: draw another
            crop, bg, zoom = _background_crop(rng, data, size)
        shape = data.shapes[int(rng.integers(len(data.shapes)))]
        side = max(shape.shape) / zoom * rng.uniform(0.8, 1.25)
        side = float(np.clip(side, 0.1 * size, 0.6 * size))
        centre = (rng.uniform(0, size), rng.uniform(0, size))
        hole = place_shape(rng, shape, side, size, centre)
        hole = dilate(hole, int(round(rng.uniform(*dilate_px) * size / 256.0)))
        target = hole & bg
        if target.sum() >= 0.02 * size * size:
            break
    return crop, bg & ~hole, hole, target


def sample_instance(
    rng: np.random.Generator, data: InpaintData
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """One instance sample (§3.3): ``(patch, given, hole, amodal, category id)``.

    The hole (``occluder & instance``) is redrawn up to ``TRIES`` times until it covers a share
    in ``HOLE_FRACTION`` of the instance; the last draw with a non-empty hole is kept otherwise.
    """
    j = int(rng.integers(len(data.patches)))
    patch, m = data.patches[j], data.patch_masks[j]
    if rng.random() < 0.5:
        patch, m = patch[:, ::-1], m[:, ::-1]
    size = m.shape[0]
    ys, xs = np.nonzero(m)
    area = len(ys)
    best = np.zeros_like(m)
    for _ in range(TRIES):
        shape = data.shapes[int(rng.integers(len(data.shapes)))]
        side = size * rng.uniform(0.3, 1.0)
        k = int(rng.integers(area))
        centre = (xs[k] + rng.uniform(-0.5, 0.5) * side, ys[k] + rng.uniform(-0.5, 0.5) * side)
        hole = place_shape(rng, shape, side, size, centre) & m
        frac = hole.sum() / max(area, 1)
        if hole.any():
            best = hole
        if HOLE_FRACTION[0] <= frac <= HOLE_FRACTION[1]:
            break
    if not best.any():  # no occluder landed: a disc around a random pixel of the instance
        yy, xx = np.ogrid[:size, :size]
        best = ((yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= (0.15 * size) ** 2) & m
    return np.ascontiguousarray(patch), m & ~best, best, m.copy(), int(data.patch_labels[j])


def _to_float(images: list[np.ndarray]) -> np.ndarray:
    """``B x S x S x 3`` uint8 list -> ``B x 3 x S x S`` float32 in ``[-1, 1]``."""
    return np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


def _to_mask(masks: list[np.ndarray]) -> np.ndarray:
    return np.stack(masks)[:, None].astype(np.float32)


def background_batch(
    rng: np.random.Generator, data: InpaintData, n: int, size: int, dilate_px: tuple[float, float]
) -> Batch:
    """``n`` background samples as a :class:`Batch`."""
    crops, given, holes, targets = zip(
        *(sample_background(rng, data, size, dilate_px) for _ in range(n)), strict=True
    )
    zeros = np.zeros((n, 1, size, size), np.float32)
    coarse = [coarse_fill(c, g, h) for c, g, h in zip(crops, given, holes, strict=True)]
    return Batch(
        _to_float(list(crops)),
        _to_float(coarse),
        _to_mask(list(given)),
        _to_mask(list(holes)),
        _to_mask(list(targets)),
        zeros,
        np.zeros(n, np.int64),
    )


def instance_batch(rng: np.random.Generator, data: InpaintData, n: int) -> Batch:
    """``n`` instance samples as a :class:`Batch` (``target`` = ``hole``)."""
    patches, given, holes, amodal, labels = zip(
        *(sample_instance(rng, data) for _ in range(n)), strict=True
    )
    hole = _to_mask(list(holes))
    coarse = [
        coarse_fill(p, g, h, COARSE_EXTEND["instance"])
        for p, g, h in zip(patches, given, holes, strict=True)
    ]
    return Batch(
        _to_float(list(patches)),
        _to_float(coarse),
        _to_mask(list(given)),
        hole,
        hole.copy(),
        _to_mask(list(amodal)),
        np.array(labels, np.int64),
    )
