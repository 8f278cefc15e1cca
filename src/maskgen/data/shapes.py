"""Shape sources for synthetic scenes: the built-in silhouettes, a folder of mask images, or an array file.

A *shape* is a binary mask tightly cropped to its object (``h x w`` bool, every border row and
column touching the object). :func:`load_shapes` turns any source into a :class:`ShapeSet`;
:func:`split_shape_pools` splits it by index into disjoint train/val/test pools, so shapes of the
test split are never seen in training.

Accepted sources (``--shapes``):

- ``builtin``: the animal silhouettes of :mod:`maskgen.data.builtin` (9 classes).
- a **folder** of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.gif``,
  searched recursively): one shape per image. A file with an alpha channel uses alpha > 127;
  otherwise grey > 127 is the object, inverted when the border is mostly bright (dark shapes on a
  white page). The largest 8-connected component is kept. The category is the name of the
  sub-folder holding the file (``shape`` for files directly in the folder).
- a ``.npy`` (``N x H x W``) or ``.npz`` file: key ``masks`` (else the first array); optional
  ``labels`` (``N`` ints) and ``class_names``. Non-zero is the object; largest component kept.

Shapes with fewer than :data:`MIN_SHAPE_PIXELS` pixels are skipped; a source with no usable
shape is a :class:`~maskgen.errors.MaskgenError`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskgen.core.masks import largest_component
from maskgen.errors import MaskgenError

MIN_SHAPE_PIXELS = 16
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"}
SPLITS = ("train", "val", "test")


@dataclass
class ShapeSet:
    """Tightly cropped binary shapes with class labels.

    Attributes:
        masks: list of ``h x w`` bool arrays, each cropped to its object's box.
        labels: ``(N,)`` int64 indices into ``class_names``.
        class_names: category names.
        source: where the shapes came from (for summaries).
    """

    masks: list[np.ndarray]
    labels: np.ndarray
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.masks)

    def subset(self, index: np.ndarray) -> ShapeSet:
        """The shapes at ``index`` (same class names)."""
        return ShapeSet(
            [self.masks[i] for i in index], self.labels[index], list(self.class_names), self.source
        )


def tight_crop(mask: np.ndarray) -> np.ndarray | None:
    """Crop a binary mask to its bounding box (None when empty)."""
    m = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()


def _clean(mask: np.ndarray) -> np.ndarray | None:
    m = largest_component(np.asarray(mask) != 0)
    if m.sum() < MIN_SHAPE_PIXELS:
        return None
    return tight_crop(m)


def _mask_from_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                alpha = np.asarray(im.convert("RGBA"))[..., 3]
                if alpha.min() < 128:  # a real alpha channel
                    return alpha > 127
            grey = np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError) as e:
        raise MaskgenError(f"{path}: cannot read image ({e.__class__.__name__})") from None
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    fg = grey > 127
    return ~fg if (border > 127).mean() > 0.5 else fg


def _from_folder(folder: Path) -> ShapeSet:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise MaskgenError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    masks, cats = [], []
    for f in files:
        m = _clean(_mask_from_image(f))
        if m is None:
            continue
        masks.append(m)
        cats.append("shape" if f.parent == folder else f.parent.name)
    names = sorted(set(cats))
    labels = np.array([names.index(c) for c in cats], dtype=np.int64)
    return ShapeSet(masks, labels, names, str(folder))


def _from_array_file(path: Path) -> ShapeSet:
    labels = names = None
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                if not z.files:
                    raise MaskgenError(f"{path}: the .npz file holds no arrays")
                arr = z["masks"] if "masks" in z.files else z[z.files[0]]
                labels = z["labels"] if "labels" in z.files else None
                names = [str(n) for n in z["class_names"]] if "class_names" in z.files else None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise MaskgenError(
            f"{path}: cannot read shapes array ({e.__class__.__name__}: {e})"
        ) from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if (
        arr.ndim != 3
        or arr.size == 0
        or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool)
    ):
        raise MaskgenError(
            f"{path}: expected an N x H x W array of binary masks, got shape {arr.shape} dtype {arr.dtype}"
        )
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if labels.shape[0] != arr.shape[0] or (labels < 0).any():
            raise MaskgenError(f"{path}: 'labels' must hold one non-negative int per mask")
    if names is None:
        n_cls = int(labels.max()) + 1 if labels is not None else 1
        names = ["shape"] if n_cls == 1 else [f"class_{i}" for i in range(n_cls)]
    if labels is not None and labels.max() >= len(names):
        raise MaskgenError(f"{path}: a label exceeds the {len(names)} class_names")
    masks, keep = [], []
    for i, m in enumerate(arr):
        c = _clean(m)
        if c is not None:
            masks.append(c)
            keep.append(i)
    lab = labels[keep] if labels is not None else np.zeros(len(masks), dtype=np.int64)
    return ShapeSet(masks, np.asarray(lab, dtype=np.int64), names, str(path))


def load_shapes(source: str | Path = "builtin") -> ShapeSet:
    """Load shapes from ``"builtin"``, a folder of mask images, or an ``.npy``/``.npz`` file.

    Raises:
        MaskgenError: the path does not exist, cannot be read, or holds no usable shape.
    """
    if str(source) == "builtin":
        from maskgen.data.builtin import load_silhouettes

        masks28, labels, names = load_silhouettes()
        masks = [tight_crop(m) for m in masks28]
        return ShapeSet(masks, labels, names, "builtin animal silhouettes")  # type: ignore[arg-type]
    path = Path(source)
    if not path.exists():
        raise MaskgenError(
            f"{path}: shapes path not found (give 'builtin', a folder of mask images, or a .npy/.npz file)"
        )
    if path.is_dir():
        shapes = _from_folder(path)
    elif path.suffix.lower() in (".npy", ".npz"):
        shapes = _from_array_file(path)
    else:
        raise MaskgenError(f"{path}: not a folder or a .npy/.npz file of shapes")
    if len(shapes) == 0:
        raise MaskgenError(
            f"{path}: no usable shapes (each needs a connected object of at least {MIN_SHAPE_PIXELS} pixels)"
        )
    return shapes


def split_shape_pools(
    shapes: ShapeSet, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[dict[str, ShapeSet], bool]:
    """Split shapes by index into disjoint ``train``/``val``/``test`` pools, per class.

    Within each class, the shapes (in source order) are dealt in blocks of 10: with the default
    fractions positions 0-7 go to train, 8 to val, 9 to test -- deterministic, stratified, and
    independent of the scene seed, so the test shapes are always the same unseen ones.

    Returns:
        ``(pools, shared)``: ``shared`` is True when there are too few shapes to give every split
        its own (fewer than 3 shapes overall): then every split uses all shapes. With 3 or more
        shapes but a split left empty by the per-class rule, shapes are dealt round-robin.
    """
    if len(shapes) < 3:
        return {s: shapes for s in SPLITS}, True
    cuts = np.cumsum(np.round(np.asarray(fractions) / sum(fractions) * 10)).astype(int)
    assignment = np.empty(len(shapes), dtype=np.int64)
    for c in np.unique(shapes.labels):
        idx = np.flatnonzero(shapes.labels == c)
        pos = np.arange(len(idx)) % 10
        assignment[idx] = np.searchsorted(cuts, pos, side="right")
    pools = {s: np.flatnonzero(assignment == k) for k, s in enumerate(SPLITS)}
    if any(len(p) == 0 for p in pools.values()):
        # Small sources: deal shapes round-robin so each split gets at least one.
        order = np.arange(len(shapes))
        pools = {s: order[k::3] for k, s in enumerate(SPLITS)}
    return {s: shapes.subset(p) for s, p in pools.items()}, False
