"""Photo segmentation sets of application 1 (issue 12): ``photo`` (tuning) and
``photo-holdout`` (reporting only).

Both are a few hundred ``S x S`` box crops with exact masks, made offline from scikit-image's
bundled photographs: a silhouette of the built-in animal shapes is cut out, filled with a patch
of a real photo (object texture), lit with a random linear shading, pasted on a patch of another
real photo (background) with a soft contact shadow, then the whole crop gets a camera-like
defocus blur, white-balance jitter and sensor noise. The two sets are made *differently* so that
tuning on ``photo`` does not tune on the report:

============  ===========================  ===========================
              ``photo``                     ``photo-holdout``
============  ===========================  ===========================
classes       bird, cat, dog, horse, sheep  bear, cow, elephant, giraffe
textures      chelsea, coffee, IHC          motorcycle, retina, gravel
backgrounds   astronaut, rocket, grass,     camera, coins, moon,
              brick                         hubble deep field
box margin    4-14 % per side               0-24 % per side (smaller and
                                            more varied objects)
pose          upright, mirrored             rotated up to +-25 deg, mirrored
============  ===========================  ===========================

The object texture and the background pools are disjoint in each set and between the sets;
the shapes of ``test/`` are disjoint from those of ``train/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskgen.errors import MaskgenError


@dataclass(frozen=True)
class PhotoRecipe:
    """How one photo set is made (see the module docstring)."""

    classes: tuple[str, ...]
    default_class: str
    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    margin: tuple[float, float]
    max_rotation: float
    n_train: int = 400
    n_test: int = 100
    n_backgrounds: int = 400


PHOTO_RECIPES = {
    "photo": PhotoRecipe(
        classes=("bird", "cat", "dog", "horse", "sheep"),
        default_class="horse",
        textures=("chelsea", "coffee", "immunohistochemistry"),
        backgrounds=("astronaut", "rocket", "grass", "brick"),
        margin=(0.04, 0.14),
        max_rotation=0.0,
    ),
    "photo-holdout": PhotoRecipe(
        classes=("bear", "cow", "elephant", "giraffe"),
        default_class="cow",
        textures=("stereo_motorcycle", "retina", "gravel"),
        backgrounds=("camera", "coins", "moon", "hubble_deep_field"),
        margin=(0.0, 0.24),
        max_rotation=25.0,
    ),
}


def photo_recipe(variant: str, shape_class: str | None) -> tuple[PhotoRecipe, str]:
    """The recipe of ``variant`` and the silhouette class to use (``None``: its default).

    Raises:
        MaskgenError: a class that belongs to the other set (the split is by class).
    """
    r = PHOTO_RECIPES[variant]
    cls = shape_class or r.default_class
    if cls not in r.classes:
        raise MaskgenError(
            f"--class {cls}: not a class of --variant {variant} (choose from "
            f"{', '.join(r.classes)}; the photo sets are split by class)"
        )
    return r, cls


def _photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as ``H x W x 3`` uint8 (grey repeated to 3 channels)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def _rotated_shape(shape28: np.ndarray, degrees: float) -> np.ndarray:
    """The silhouette rotated about its centre on a grid large enough to hold it."""
    import cv2

    if degrees == 0:
        return shape28
    m = np.pad(shape28.astype(np.float32), 8)
    h, w = m.shape
    rot = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
    out = cv2.warpAffine(m, rot, (w, h), flags=cv2.INTER_LINEAR) > 0.5
    return out if out.sum() >= 10 else shape28


def _shade(colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear light gradient across the object (factor 1 -+ up to 0.3)."""
    s = colours.shape[0]
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(1, s - 1) - 0.5
    ramp = np.cos(ang) * xx + np.sin(ang) * yy
    return colours * (1.0 + rng.uniform(0, 0.6) * ramp)[..., None]


def _contact_shadow(bg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken the background under a blurred, slightly shifted copy of the object."""
    import cv2

    s = alpha.shape[0]
    dy, dx = (int(rng.integers(0, max(2, s // 12))) for _ in range(2))
    sh = np.roll(np.roll(alpha, dy, 0), dx, 1)
    sh = cv2.GaussianBlur(sh, (0, 0), sigmaX=max(0.5, s / 24))
    return bg * (1.0 - rng.uniform(0.0, 0.35) * sh)[..., None]


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus blur, white-balance jitter and sensor noise on the whole crop."""
    import cv2

    sigma = rng.uniform(0.0, 0.8)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    img = img * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    img = img + rng.normal(0, rng.uniform(1.0, 4.0), size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def photo_samples(
    variant: str, seed: int, size: int, counts: tuple[int, int, int], shape_class: str | None
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], list[np.ndarray], str]:
    """The set's train crops, ``(test crop, mask)`` pairs, background patches and class."""
    from maskgen.core.compositing import composite
    from maskgen.data.builtin import load_silhouettes
    from maskgen.data.segmentation_sets import _background_patch, _object_alpha, _random_patch

    recipe, cls = photo_recipe(variant, shape_class)
    n_train, n_test, n_backgrounds = counts
    shapes, _, _ = load_silhouettes([cls])
    shapes = shapes[shapes.reshape(len(shapes), -1).sum(1) >= 20]
    rng = np.random.default_rng(seed + (0 if variant == "photo" else 7919))
    perm = rng.permutation(len(shapes))
    n_tr = int(0.8 * len(shapes))
    train_shapes, test_shapes = shapes[perm[:n_tr]], shapes[perm[n_tr:]]
    tex = [_photo(n) for n in recipe.textures]
    bgs = [_photo(n) for n in recipe.backgrounds]

    def sample(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = pool[int(rng.integers(len(pool)))]
        rot = rng.uniform(-recipe.max_rotation, recipe.max_rotation)
        alpha = _object_alpha(_rotated_shape(shape, rot), size, rng, recipe.margin)
        photo = tex[int(rng.integers(len(tex)))]
        colours = _random_patch(photo, int(rng.integers(size // 2, 3 * size + 1)), size, rng)
        colours = _shade(colours.astype(np.float32), rng)
        bg = _background_patch(bgs, size, rng).astype(np.float32)
        bg = _contact_shadow(bg, alpha, rng)
        img = composite(np.clip(colours, 0, 255)[None], alpha[None], bg)
        return _camera(np.asarray(img, np.float32), rng), alpha > 0.5

    tr = [sample(train_shapes)[0] for _ in range(n_train)]
    te = [sample(test_shapes) for _ in range(n_test)]
    bg_out = [
        _camera(_background_patch(bgs, size, rng).astype(np.float32), rng)
        for _ in range(n_backgrounds)
    ]
    return tr, te, bg_out, cls


def photo_readme(variant: str, seed: int, size: int, shape_class: str) -> str:
    """README.md of a photo set."""
    r = PHOTO_RECIPES[variant]
    use = "tuning" if variant == "photo" else "reporting only (never tune on it)"
    return (
        f"# Built-in photo segmentation set ({variant}; {use})\n\n"
        f"Made by `maskgen data segmentation-set --variant {variant} --seed {seed} "
        f"--size {size} --class {shape_class}`.\n"
        f"Objects: '{shape_class}' silhouettes (train and test use disjoint shapes), filled with "
        f"patches of real photos ({', '.join(r.textures)}), shaded, pasted with a contact "
        f"shadow on patches of other real photos ({', '.join(r.backgrounds)}), box margin "
        f"{r.margin[0]:.0%}-{r.margin[1]:.0%} per side, rotation up to {r.max_rotation:g} deg; "
        "defocus, white-balance jitter and noise on every crop.\n\n"
        "- `train/images`: box crops for training (no masks).\n"
        "- `test/images`, `test/masks`: held-back crops and their exact masks (0/255).\n"
        "- `backgrounds`: background-only patches from the same photos.\n"
        "Photos: scikit-image sample data (see its licence notes).\n"
    )
