#!/usr/bin/env python
"""Derive maskgen's built-in animal silhouettes from the ``animal-mnist`` wheel (MIT).

Usage::

    pip download --no-deps animal-mnist==0.4 -d /tmp/amn
    python scripts/derive_animal_silhouettes.py --wheel /tmp/amn/animal_mnist-0.4-py3-none-any.whl \
        --out src/maskgen/data/builtin/animal_silhouettes.npz

The package is never imported (it declares a TensorFlow dependency it does not need): the wheel is
opened as a zip and its two gzipped pickles (``animal_data_version_3.gz``: ``10000 x 28 x 28`` uint8
images, ``animal_label_version_3.gz``: ``(10000,)`` int64 labels 0..9) are read with a *restricted*
unpickler that only allows the globals numpy needs to rebuild a plain array.

Processing, per 28x28 image:

1. **Binarise at grey level >= 128** (of 0..255): the silhouettes are white on black with a 1-2 px
   anti-aliased rim; 128 is the rim's midpoint, so the binary outline sits where the original edge is.
2. **Keep the largest 8-connected component** (drops stray specks and detached ground lines or
   branch fragments; the median image loses 0 % of its pixels, the 90th percentile ~2 %).
3. **Fill holes of at most 4 pixels** (binarisation speckle inside the body). Larger holes are kept:
   at 28x28 they are real background enclosed by legs, a tail or a ground line.
4. **Drop** shapes with fewer than 40 pixels left (too small to be a useful shape).

The **zebra class (label 9) is dropped**: its images are grey-level photographs with stripes, not
silhouettes (only 0.6 % of its pixels are near white), so no threshold gives a clean mask.

The output is a compressed ``.npz`` with ``masks`` (``N x 98`` uint8, ``np.packbits`` of each
28x28 mask in row-major order), ``labels`` (``N`` uint8, index into ``class_names``),
``class_names`` (unicode array), ``source_index`` (``N`` int32, index in the original arrays) and
``notes`` (a one-element unicode array describing the derivation). It is read by
:func:`maskgen.data.builtin.load_silhouettes`.
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

CLASS_NAMES = [
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
]  # order documented in the package's description; checked visually on a montage
DROPPED_CLASSES = {"zebra"}
THRESHOLD = 128
MAX_HOLE_AREA = 4
MIN_AREA = 40
DATA_MEMBER = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
LABEL_MEMBER = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module == "numpy.core.multiarray":
            # numpy >= 2 renamed numpy.core to numpy._core; take the current name directly.
            try:
                from numpy._core import multiarray
            except ImportError:  # numpy < 2
                from numpy.core import multiarray
            return getattr(multiarray, name)
        return super().find_class(module, name)


def load_array(blob: bytes) -> np.ndarray:
    """Un-gzip and restricted-unpickle one numpy array."""
    arr = ArrayOnlyUnpickler(io.BytesIO(gzip.decompress(blob))).load()
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(arr).__name__}")
    return arr


def clean_silhouette(image: np.ndarray) -> np.ndarray:
    """Binarise one ``28 x 28`` uint8 image; largest component; fill holes <= MAX_HOLE_AREA px."""
    binary = image >= THRESHOLD
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return binary
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    mask = labels == counts.argmax()
    holes = ndimage.binary_fill_holes(mask) & ~mask
    hole_labels, n_holes = ndimage.label(holes)  # 4-connected holes
    if n_holes:
        hole_sizes = np.bincount(hole_labels.ravel())
        small = np.flatnonzero(hole_sizes <= MAX_HOLE_AREA)
        small = small[small > 0]
        mask |= np.isin(hole_labels, small)
    return mask


def derive(wheel: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(wheel) as zf:
        images = load_array(zf.read(DATA_MEMBER))
        labels = load_array(zf.read(LABEL_MEMBER))
    if images.shape[1:] != (28, 28) or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(f"unexpected arrays {images.shape} {images.dtype} / {labels.shape}")
    keep_masks, keep_labels, keep_index = [], [], []
    kept_names = [c for c in CLASS_NAMES if c not in DROPPED_CLASSES]
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        name = CLASS_NAMES[int(lab)]
        if name in DROPPED_CLASSES:
            continue
        mask = clean_silhouette(img)
        if mask.sum() < MIN_AREA:
            continue
        keep_masks.append(mask)
        keep_labels.append(kept_names.index(name))
        keep_index.append(i)
    masks = np.stack(keep_masks)
    notes = (
        f"Derived from PyPI animal-mnist 0.4 (MIT, see LICENSE-animal-mnist.txt) by "
        f"scripts/derive_animal_silhouettes.py: grey >= {THRESHOLD}, largest 8-connected "
        f"component, holes <= {MAX_HOLE_AREA} px filled, shapes < {MIN_AREA} px dropped, "
        f"zebra class dropped (textured, not a silhouette)."
    )
    return {
        "masks": np.packbits(masks.reshape(len(masks), -1), axis=1),
        "labels": np.asarray(keep_labels, dtype=np.uint8),
        "class_names": np.asarray(kept_names),
        "source_index": np.asarray(keep_index, dtype=np.int32),
        "notes": np.asarray([notes]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, required=True, help="animal_mnist-0.4-*.whl")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    args = parser.parse_args(argv)
    if not args.wheel.is_file():
        print(f"{args.wheel}: wheel not found", file=sys.stderr)
        return 2
    arrays = derive(args.wheel)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(args.out)
    counts = np.bincount(arrays["labels"], minlength=len(arrays["class_names"]))
    print(
        f"{args.out}: {len(arrays['labels'])} silhouettes, {args.out.stat().st_size / 1024:.0f} KB; "
        + ", ".join(f"{n} {c}" for n, c in zip(arrays["class_names"], counts, strict=True))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
