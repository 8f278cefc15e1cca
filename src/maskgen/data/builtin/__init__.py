"""Built-in data that ships with maskgen: animal silhouettes and real photo textures.

- :func:`load_silhouettes`: 8,988 binary ``28 x 28`` animal silhouettes in 9 classes, derived from
  the MIT-licensed PyPI package ``animal-mnist`` 0.4 by ``scripts/derive_animal_silhouettes.py``
  (binarised at grey >= 128, largest 8-connected component, holes <= 4 px filled; the textured
  zebra class is dropped). Licence notice: ``LICENSE-animal-mnist.txt`` beside the data file.
- :func:`upsample_shape`: a small mask to any size with smooth outlines.
- :func:`texture_images`: photographs and textures from scikit-image's bundled sample data (they
  ship inside the scikit-image wheel, so they load offline).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from maskgen.errors import MaskgenError

SILHOUETTES_PATH = Path(__file__).with_name("animal_silhouettes.npz")
SILHOUETTE_SIZE = 28

# scikit-image sample images that are part of the wheel itself (no download needed).
TEXTURE_NAMES = (
    "grass",
    "gravel",
    "brick",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "stereo_motorcycle",
)


@functools.lru_cache(maxsize=1)
def _silhouette_arrays() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not SILHOUETTES_PATH.is_file():
        raise MaskgenError(
            f"{SILHOUETTES_PATH}: built-in silhouettes missing from the installation"
        )
    with np.load(SILHOUETTES_PATH, allow_pickle=False) as z:
        packed = z["masks"]
        labels = z["labels"].astype(np.int64)
        names = tuple(str(n) for n in z["class_names"])
    n_bits = SILHOUETTE_SIZE * SILHOUETTE_SIZE
    masks = np.unpackbits(packed, axis=1, count=n_bits).astype(bool)
    masks = masks.reshape(-1, SILHOUETTE_SIZE, SILHOUETTE_SIZE)
    masks.flags.writeable = False
    labels.flags.writeable = False
    return masks, labels, names


def silhouette_class_names() -> list[str]:
    """Names of the built-in silhouette classes, in label order."""
    return list(_silhouette_arrays()[2])


def load_silhouettes(
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load the built-in animal silhouettes.

    Args:
        classes: class names to keep (see :func:`silhouette_class_names`: bear, bird, cat, cow,
            dog, elephant, giraffe, horse, sheep); all when None.

    Returns:
        ``masks``: ``N x 28 x 28`` bool (object = True; a fresh, writable copy), ``labels``:
        ``(N,)`` int64 indices into ``class_names``, ``class_names``: list of names. Labels keep
        their meaning when ``classes`` selects a subset (``class_names`` is always the full list).
        Order is the source order, so a split by index is reproducible.
    """
    masks, labels, names = _silhouette_arrays()
    if classes is None:
        return masks.copy(), labels.copy(), list(names)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise MaskgenError(
            f"unknown silhouette class {', '.join(unknown)}; choose from {', '.join(names)}"
        )
    keep = np.isin(labels, [names.index(c) for c in classes])
    return masks[keep].copy(), labels[keep].copy(), list(names)


def upsample_shape(
    mask: np.ndarray, size: int | tuple[int, int], sigma: float | None = None
) -> np.ndarray:
    """Resize a small binary mask to ``size`` with smooth outlines.

    Bilinear interpolation (pixel centres aligned, i.e. ``align_corners=False``), then a Gaussian
    blur of ``sigma`` output pixels (default ``0.4 * scale``, where ``scale`` is the larger of the
    two zoom factors -- enough to round off the staircase of the 28x28 grid while keeping
    one-pixel-wide legs), then threshold at 0.5.

    Args:
        mask: ``h x w`` bool/uint8/float (e.g. a ``28 x 28`` silhouette or a tight crop of one).
        size: output ``S`` (square) or ``(H, W)``.
        sigma: blur in output pixels; 0 disables the blur.

    Returns:
        ``H x W`` bool mask.
    """
    import cv2

    m = np.asarray(mask, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"upsample_shape needs a non-empty 2-D mask, got shape {m.shape}")
    out_h, out_w = (
        (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    )
    if out_h < 1 or out_w < 1:
        raise ValueError(f"upsample_shape: size must be positive, got {size}")
    scale = max(out_h / m.shape[0], out_w / m.shape[1])
    up = cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if sigma is None:
        sigma = 0.4 * scale
    if sigma > 0.3:
        up = cv2.GaussianBlur(
            up, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE
        )
    return up > 0.5


@functools.cache
def _texture(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)
    img.flags.writeable = False
    return img


def texture_images(names: list[str] | tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Real photographs and textures from scikit-image's bundled (offline) sample data.

    Args:
        names: subset of :data:`TEXTURE_NAMES` (grass, gravel, brick -- grey textures; astronaut,
            coffee, chelsea, rocket, immunohistochemistry, hubble_deep_field, stereo_motorcycle --
            colour photos); all when None.

    Returns:
        ``{name: H x W x 3 uint8 RGB}`` in the order asked (grey images repeated to 3 channels).
        Arrays are cached and read-only; copy before modifying.
    """
    names = TEXTURE_NAMES if names is None else tuple(names)
    unknown = [n for n in names if n not in TEXTURE_NAMES]
    if unknown:
        raise MaskgenError(
            f"unknown texture {', '.join(unknown)}; choose from {', '.join(TEXTURE_NAMES)}"
        )
    return {n: _texture(n) for n in names}


__all__ = [
    "SILHOUETTES_PATH",
    "TEXTURE_NAMES",
    "load_silhouettes",
    "silhouette_class_names",
    "texture_images",
    "upsample_shape",
]
