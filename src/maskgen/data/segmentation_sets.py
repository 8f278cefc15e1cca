"""Data for foreground segmentation with box-level labels (independence prior, application 1).

Folder layout written by the generators and read by ``maskgen segment``::

    DIR/train/images/*.png     box-cropped RGB images (one object of the class per image)
    DIR/test/images/*.png      held-back crops (shapes not used in train/)
    DIR/test/masks/*.png       their ground truth, same file names, uint8 0/255 (``H x W``)
    DIR/backgrounds/*.png      background-only patches (the background provider's pool)
    DIR/info.json, README.md   how the set was made

Generators:

- :func:`make_segmentation_set` -- built-in set with exact ground truth: silhouettes of one class
  of the built-in animal shapes, upsampled smoothly, painted with a texture cut from real photos
  (``variant="texture"``) or one flat colour (``"flat"``), composited with the shared compositing
  code on patches of *other* real photos, cropped by the object box plus a random margin.
  In the texture variant the object textures and the backgrounds are both natural photo
  patches (disjoint photo pools, overlapping colour ranges), so colour alone does not separate
  object from background -- the case the paper says colour models (GrabCut) find hard.
- :func:`make_pedestrian_set` -- real pedestrians from OpenCV's ``vtest.avi``: median frame as
  background, background subtraction for boxes, crops of people; the subtraction masks are a
  rough reference only.

Loaders: :func:`list_images`, :func:`load_image_folder`, :func:`load_mask_folder`,
:func:`crop_boxes_from_coco`. Images are ``N x S x S x 3`` uint8 at the API edge.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.core.io import (
    prepare_out_dir,
    read_image,
    read_json,
    require_file,
    write_image,
    write_json,
    write_text,
)
from maskgen.errors import MaskgenError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Disjoint photo pools (scikit-image's offline sample data): backgrounds vs object textures.
BACKGROUND_PHOTOS = ("astronaut", "coffee", "rocket", "grass", "brick")
OBJECT_TEXTURE_PHOTOS = ("chelsea", "stereo_motorcycle", "immunohistochemistry", "gravel")


# ----------------------------------------------------------------------------------- loading
def list_images(folder: str | os.PathLike[str], what: str = "image folder") -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted by name.

    Raises:
        MaskgenError: missing folder, not a folder, or no image files in it.
    """
    folder = Path(folder)
    if not folder.exists():
        raise MaskgenError(f"{folder}: {what} not found")
    if not folder.is_dir():
        raise MaskgenError(f"{folder}: is a file, not a folder ({what} expected)")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise MaskgenError(
            f"{folder}: {what} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
        )
    return files


def _image_mode(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode
    except (UnidentifiedImageError, OSError) as e:
        raise MaskgenError(f"{path}: cannot read image ({e.__class__.__name__})") from None


@dataclass
class ImageFolder:
    """Images loaded from a folder.

    Attributes:
        images: ``N x S x S x 3`` uint8 RGB, resized to ``size`` (bilinear/area).
        names: file stems, same order.
        native_sizes: ``(H, W)`` of each file before resizing.
        notes: one-line remarks for the user (resized / converted files).
    """

    images: np.ndarray
    names: list[str]
    native_sizes: list[tuple[int, int]]
    notes: list[str] = field(default_factory=list)

    @property
    def uniform_native_size(self) -> tuple[int, int] | None:
        s = set(self.native_sizes)
        return next(iter(s)) if len(s) == 1 else None


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """``H x W x 3`` uint8 -> ``size x size x 3`` (area when shrinking, bilinear when growing)."""
    import cv2

    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def load_image_folder(
    folder: str | os.PathLike[str], size: int, what: str = "image folder"
) -> ImageFolder:
    """Read every image of ``folder`` as RGB and resize it to ``size x size``.

    Mixed sizes are resized (aspect not kept: the images are box crops, resized as the paper
    does); grey, palette and RGBA files are converted to RGB (RGBA flattened onto black). Both
    are reported in ``notes``. An unreadable file raises a one-line :class:`MaskgenError`.
    """
    files = list_images(folder, what)
    imgs, names, sizes, modes = [], [], [], {}
    for p in files:
        mode = _image_mode(p)
        modes[mode] = modes.get(mode, 0) + 1
        a = read_image(p, "RGB")
        if a.shape[0] < 4 or a.shape[1] < 4:
            raise MaskgenError(f"{p}: image is only {a.shape[1]}x{a.shape[0]} pixels")
        sizes.append((int(a.shape[0]), int(a.shape[1])))
        imgs.append(resize_rgb(a, size))
        names.append(p.stem)
    if len(set(names)) != len(names):
        raise MaskgenError(f"{folder}: two images share a file name stem")
    notes = []
    distinct = sorted(set(sizes))
    if len(distinct) > 1:
        notes.append(
            f"{folder}: images have {len(distinct)} different sizes; all resized to {size}x{size}"
        )
    other = {m: n for m, n in modes.items() if m != "RGB"}
    if other:
        desc = ", ".join(f"{n} {m}" for m, n in sorted(other.items()))
        notes.append(f"{folder}: converted {desc} image(s) to RGB")
    return ImageFolder(np.stack(imgs), names, sizes, notes)


def _as_mask(path: Path, strict: bool) -> np.ndarray:
    """One mask file as ``H x W`` bool (> 127 after grey conversion), refusing what is not a
    mask: a colour photo (channels differ), and with ``strict`` a grey image that is far from
    0/255 (more than a fifth of its pixels in between)."""
    rgb = read_image(path, "RGB").astype(np.int16)
    spread = (rgb.max(axis=2) - rgb.min(axis=2)) > 8
    if spread.mean() > 0.01:
        raise MaskgenError(f"{path}: a colour image, not a mask (expected 0/255 grey PNGs)")
    grey = rgb.mean(axis=2)
    if strict and ((grey > 32) & (grey < 223)).mean() > 0.2:
        raise MaskgenError(f"{path}: not a binary mask (expected 0/255 values; is it an image?)")
    return grey > 127


def load_mask_folder(
    folder: str | os.PathLike[str],
    names: list[str] | None = None,
    what: str = "mask folder",
    strict: bool = True,
) -> dict[str, np.ndarray]:
    """Binary masks from PNG files (non-zero = foreground), keyed by file stem.

    Args:
        folder: the folder.
        names: stems that must be present (others are ignored); all files when None.
        what: how errors name the folder.
        strict: refuse grey images that are not close to 0/255 (ground truth); predictions
            (``strict=False``) may be soft and are thresholded at 127.

    Returns:
        ``{stem: H x W bool}``. Grey files (or RGB files with equal channels) are accepted.

    Raises:
        MaskgenError: a missing/empty folder, a missing name, or a file that is a colour photo
            (or, with ``strict``, not a binary mask).
    """
    files = {p.stem: p for p in list_images(folder, what)}
    if names is not None:
        missing = [n for n in names if n not in files]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise MaskgenError(f"{folder}: no mask for {len(missing)} image(s): {shown}")
        files = {n: files[n] for n in names}
    return {n: _as_mask(p, strict) for n, p in files.items()}


def _coco_index(
    obj: Any, boxes_json: Path, category: str | int | None
) -> tuple[dict[Any, str], Any]:
    """``{image id: file name}`` of a COCO JSON and the id of ``category`` (None = all)."""
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("images"), list)
        or not isinstance(obj.get("annotations"), list)
    ):
        raise MaskgenError(
            f"{boxes_json}: not a COCO JSON (needs 'images' and 'annotations' lists)"
        )
    files: dict[Any, str] = {}
    for k, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise MaskgenError(f"{boxes_json}: images[{k}] needs 'id' and 'file_name'")
        files[im["id"]] = im["file_name"]
    if category is None:
        return files, None
    cats = {c.get("name"): c.get("id") for c in obj.get("categories", []) if isinstance(c, dict)}
    if isinstance(category, str) and category in cats:
        return files, cats[category]
    try:
        return files, int(category)
    except ValueError:
        raise MaskgenError(f"{boxes_json}: no category named {category!r}") from None


def crop_boxes_from_coco(
    images_dir: str | os.PathLike[str],
    boxes_json: str | os.PathLike[str],
    size: int,
    margin: float = 0.1,
    category: str | int | None = None,
) -> ImageFolder:
    """Crop every box of a COCO JSON (``bbox`` ``[x, y, w, h]``) out of its image.

    Only ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``, ``bbox``, optional
    ``category_id``) are needed; masks are not. Each box is grown by ``margin`` of its size on
    each side (clipped to the image), cropped and resized to ``size x size``.
    """
    boxes_json = require_file(boxes_json, "COCO JSON file")
    obj = read_json(boxes_json)
    files, cat_id = _coco_index(obj, boxes_json, category)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise MaskgenError(f"{images_dir}: image folder not found")
    cache: dict[str, np.ndarray] = {}
    crops, names, sizes = [], [], []
    for k, ann in enumerate(obj["annotations"]):
        where = f"{boxes_json}: annotations[{k}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "bbox" not in ann:
            raise MaskgenError(f"{where} needs 'image_id' and 'bbox'")
        if cat_id is not None and ann.get("category_id") != cat_id:
            continue
        if ann["image_id"] not in files:
            raise MaskgenError(f"{where}: unknown image_id {ann['image_id']}")
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)
        ):
            raise MaskgenError(f"{where}: bbox must be [x, y, w, h] numbers")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 1 or h <= 1:
            raise MaskgenError(f"{where}: bbox {bbox} has no area")
        fn = files[ann["image_id"]]
        if fn not in cache:
            cache[fn] = read_image(images_dir / fn, "RGB")
        img = cache[fn]
        H, W = img.shape[:2]
        x0 = int(max(0, np.floor(x - margin * w)))
        y0 = int(max(0, np.floor(y - margin * h)))
        x1 = int(min(W, np.ceil(x + w + margin * w)))
        y1 = int(min(H, np.ceil(y + h + margin * h)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise MaskgenError(f"{where}: bbox {bbox} lies outside its {W}x{H} image")
        crops.append(resize_rgb(np.ascontiguousarray(img[y0:y1, x0:x1]), size))
        names.append(f"{Path(fn).stem}_{ann.get('id', k)}")
        sizes.append((y1 - y0, x1 - x0))
    if not crops:
        raise MaskgenError(f"{boxes_json}: no boxes to crop")
    return ImageFolder(
        np.stack(crops),
        names,
        sizes,
        [f"{boxes_json}: cropped {len(crops)} boxes, resized to {size}x{size}"],
    )


def write_image_folder(
    folder: Path, images: np.ndarray, names: list[str] | None = None
) -> list[str]:
    """Write ``N x H x W x 3`` (or ``N x H x W``) uint8 images as ``folder/<name>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names if names is not None else [f"{i:06d}" for i in range(len(images))]
    for n, im in zip(names, images, strict=True):
        write_image(folder / f"{n}.png", im)
    return names


@contextlib.contextmanager
def staged_output(
    out: str | os.PathLike[str], force: bool = False, marker: str | None = None
) -> Iterator[Path]:
    """Write a command's output folder all at once.

    Checks ``out`` with :func:`maskgen.core.io.prepare_out_dir` (a file, or a non-empty folder
    without ``force`` / without ``marker``, is refused), then yields a new temporary folder
    beside ``out``. When the block finishes, the temporary folder replaces ``out`` (an earlier
    result is removed only then); when it fails, it is deleted. A crash or kill half-way leaves
    at most a hidden ``.NAME.*.partial`` folder, never a half-written ``out`` that blocks the
    rerun.
    """
    import shutil
    import tempfile

    out = prepare_out_dir(out, force, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- built-in set
def _random_patch(
    photo: np.ndarray, side: int, out: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A random ``side x side`` patch of ``photo`` resized to ``out`` with a random flip."""
    import cv2

    h, w = photo.shape[:2]
    side = int(min(side, h, w))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    p = photo[y : y + side, x : x + side]
    oh, ow = (out, out) if isinstance(out, int) else out
    interp = cv2.INTER_AREA if side > max(oh, ow) else cv2.INTER_LINEAR
    p = cv2.resize(np.ascontiguousarray(p), (ow, oh), interpolation=interp)
    if rng.random() < 0.5:
        p = p[:, ::-1]
    return np.ascontiguousarray(p)


def _object_alpha(
    shape28: np.ndarray, size: int, rng: np.random.Generator, margin: tuple[float, float]
) -> np.ndarray:
    """Soft alpha ``size x size`` float32: the silhouette's tight box fills the crop minus a
    random margin on each side (fraction of ``size`` in ``margin``); edges anti-aliased by
    rendering at 4x and area-averaging."""
    import cv2

    from maskgen.data.builtin import upsample_shape

    ys, xs = np.nonzero(shape28)
    tight = shape28[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    lo, hi = margin
    ml, mr, mt, mb = (int(round(rng.uniform(lo, hi) * size)) for _ in range(4))
    ow, oh = max(4, size - ml - mr), max(4, size - mt - mb)
    big = upsample_shape(tight, (oh * 4, ow * 4)).astype(np.float32)
    small = cv2.resize(big, (ow, oh), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((size, size), np.float32)
    alpha[mt : mt + oh, ml : ml + ow] = small
    if rng.random() < 0.5:
        alpha = alpha[:, ::-1]
    return np.ascontiguousarray(alpha)


def _background_patch(photos: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))]
    side = int(rng.integers(size, 3 * size + 1))
    return _random_patch(photo, side, size, rng)


def _object_colours(
    variant: str, photos: list[np.ndarray], size: int, rng: np.random.Generator
) -> np.ndarray:
    if variant == "flat":
        c = rng.integers(0, 256, size=3).astype(np.float32)
        return np.broadcast_to(c, (size, size, 3)).copy()
    photo = photos[int(rng.integers(len(photos)))]
    side = int(rng.integers(size // 2, 3 * size + 1))
    return _random_patch(photo, side, size, rng).astype(np.float32)


#: Largest number of image bytes a data command holds in memory (refused up front above it).
MAX_SET_BYTES = 4 * 2**30


def check_set_counts(size: int, counts: dict[str, int], seed: int) -> None:
    """Validate a data command's numbers before any work: ``size`` in [16, 1024], every count
    at least 1, a non-negative seed, and all images fitting in :data:`MAX_SET_BYTES`."""
    if not 16 <= size <= 1024:
        raise MaskgenError(f"--size {size}: must be between 16 and 1024")
    if seed < 0:
        raise MaskgenError(f"--seed {seed}: must be >= 0")
    for name, n in counts.items():
        if n < 1:
            raise MaskgenError(f"--{name.replace('_', '-')} {n}: must be >= 1")
    total = sum(counts.values()) * size * size * 3
    if total > MAX_SET_BYTES:
        raise MaskgenError(
            f"--{max(counts, key=counts.get).replace('_', '-')} {max(counts.values())}: "
            f"{sum(counts.values())} images of {size}x{size} need {total / 2**30:.1f} GiB in "
            f"memory (at most {MAX_SET_BYTES / 2**30:.0f} GiB)"
        )


def _segmentation_readme(variant: str, seed: int, size: int, shape_class: str) -> str:
    return (
        f"# Built-in foreground-segmentation set ({variant})\n\n"
        f"Made by `maskgen data segmentation-set --variant {variant} --seed {seed} --size {size}`.\n"
        f"Objects: silhouettes of the built-in '{shape_class}' class (train and test use disjoint "
        "shapes), "
        + (
            "painted with patches of real photos (" + ", ".join(OBJECT_TEXTURE_PHOTOS) + ")"
            if variant == "texture"
            else "filled with one flat random colour each"
        )
        + ", composited on patches of other real photos ("
        + ", ".join(BACKGROUND_PHOTOS)
        + ") and cropped by the object box plus a random margin.\n\n"
        "- `train/images`: box crops for training (no masks).\n"
        "- `test/images`, `test/masks`: held-back crops and their exact masks (0/255).\n"
        "- `backgrounds`: background-only patches drawn like the crops' backgrounds.\n"
        "Photos: scikit-image sample data (see its licence notes).\n"
    )


def _segmentation_samples(
    variant: str,
    seed: int,
    size: int,
    counts: tuple[int, int, int],
    shape_class: str,
    margin: tuple[float, float],
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """The set's train crops, ``(test crop, mask)`` pairs and background patches."""
    from maskgen.core.compositing import composite
    from maskgen.data.builtin import load_silhouettes, texture_images

    n_train, n_test, n_backgrounds = counts
    shapes, _, _ = load_silhouettes([shape_class])
    shapes = shapes[shapes.reshape(len(shapes), -1).sum(1) >= 20]
    n_tr_shapes = int(0.8 * len(shapes))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(shapes))
    train_shapes, test_shapes = shapes[perm[:n_tr_shapes]], shapes[perm[n_tr_shapes:]]
    bg_photos = list(texture_images(BACKGROUND_PHOTOS).values())
    tex_photos = list(texture_images(OBJECT_TEXTURE_PHOTOS).values())

    def sample(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = pool[int(rng.integers(len(pool)))]
        alpha = _object_alpha(shape, size, rng, margin)
        colours = _object_colours(variant, tex_photos, size, rng)
        bg = _background_patch(bg_photos, size, rng).astype(np.float32)
        img = composite(colours[None], alpha[None], bg)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), alpha > 0.5

    tr = [sample(train_shapes)[0] for _ in range(n_train)]
    te = [sample(test_shapes) for _ in range(n_test)]
    bgs = [_background_patch(bg_photos, size, rng) for _ in range(n_backgrounds)]
    return tr, te, bgs


#: Variants of :func:`make_segmentation_set`.
SEGMENTATION_VARIANTS = ("texture", "flat", "photo", "photo-holdout")


def _set_samples(
    variant: str,
    seed: int,
    size: int,
    counts: tuple[int, int, int],
    shape_class: str,
    margin: tuple[float, float],
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], list[np.ndarray], str]:
    """Train crops, test pairs, backgrounds and the README text of any variant."""
    from maskgen.data.photo_sets import PHOTO_RECIPES, photo_readme, photo_samples

    if variant in PHOTO_RECIPES:
        tr, te, bgs, cls = photo_samples(variant, seed, size, counts, shape_class)
        return tr, te, bgs, photo_readme(variant, seed, size, cls)
    tr, te, bgs = _segmentation_samples(variant, seed, size, counts, shape_class, margin)
    return tr, te, bgs, _segmentation_readme(variant, seed, size, shape_class)


def make_segmentation_set(
    out: str | os.PathLike[str],
    variant: str = "texture",
    seed: int = 0,
    size: int = 64,
    n_train: int | None = None,
    n_test: int | None = None,
    n_backgrounds: int | None = None,
    shape_class: str | None = None,
    margin: tuple[float, float] = (0.04, 0.14),
    force: bool = False,
) -> dict[str, Any]:
    """Write the built-in foreground-segmentation set (see the module docstring).

    Args:
        out: new folder (missing or empty; with ``force``, an earlier set is replaced). The
            set is written to a temporary folder renamed to ``out`` at the end.
        variant: ``"texture"`` (objects painted with real-photo textures; hard for colour
            models), ``"flat"`` (one flat colour per object; GrabCut's easy case), ``"photo"``
            (tuning) or ``"photo-holdout"`` (reporting only; :mod:`maskgen.data.photo_sets`).
        seed: RNG seed; the same seed writes the same files.
        size: crop size ``S`` (images are ``S x S``; backgrounds too).
        n_train, n_test, n_backgrounds: how many images of each kind (None: 2000, 200, 2000;
            for the photo sets 400, 100, 400).
        shape_class: built-in silhouette class (``maskgen.data.builtin.silhouette_class_names``;
            None: bird, or the photo set's default class).
            The first 80 % of the class's shapes feed ``train/``, the rest ``test/``.
        margin: the box margin per side, drawn uniformly from this range (fraction of ``S``).

    Returns:
        the ``info.json`` dict.
    """
    from maskgen.data.builtin import silhouette_class_names
    from maskgen.data.photo_sets import PHOTO_RECIPES, photo_recipe

    if variant not in SEGMENTATION_VARIANTS:
        raise MaskgenError(
            f"--variant {variant}: unknown; choose {', '.join(SEGMENTATION_VARIANTS)}"
        )
    photo = variant in PHOTO_RECIPES
    dflt = (PHOTO_RECIPES[variant].n_train, 100, 400) if photo else (2000, 200, 2000)
    n_train = dflt[0] if n_train is None else n_train
    n_test = dflt[1] if n_test is None else n_test
    n_backgrounds = dflt[2] if n_backgrounds is None else n_backgrounds
    counts = dict(n_train=n_train, n_test=n_test, n_backgrounds=n_backgrounds)
    check_set_counts(size, counts, seed)
    if shape_class is not None and shape_class not in silhouette_class_names():
        names = ", ".join(silhouette_class_names())
        raise MaskgenError(f"--class {shape_class}: unknown (choose from {names})")
    if photo:
        margin = PHOTO_RECIPES[variant].margin
        shape_class = photo_recipe(variant, shape_class)[1]
    shape_class = shape_class or "bird"
    prepare_out_dir(out, force, marker="info.json")
    tr, te, bgs, readme = _set_samples(
        variant, seed, size, (n_train, n_test, n_backgrounds), shape_class, margin
    )
    info = {
        "kind": "segmentation-set",
        "variant": variant,
        "seed": seed,
        "size": size,
        "class": shape_class,
        "n_train": n_train,
        "n_test": n_test,
        "n_backgrounds": n_backgrounds,
        "background_photos": list(
            PHOTO_RECIPES[variant].backgrounds if photo else BACKGROUND_PHOTOS
        ),
        "object_texture_photos": (
            list(PHOTO_RECIPES[variant].textures)
            if photo
            else list(OBJECT_TEXTURE_PHOTOS)
            if variant == "texture"
            else None
        ),
        "margin": list(margin),
        "test_fg_fraction": float(np.mean([t[1].mean() for t in te])),
    }
    with staged_output(out, force, marker="info.json") as tmp:
        write_image_folder(tmp / "train" / "images", np.stack(tr))
        names = write_image_folder(tmp / "test" / "images", np.stack([t[0] for t in te]))
        masks = np.stack([t[1].astype(np.uint8) * 255 for t in te])
        write_image_folder(tmp / "test" / "masks", masks, names)
        write_image_folder(tmp / "backgrounds", np.stack(bgs))
        write_text(tmp / "README.md", readme)
        write_json(tmp / "info.json", info)
    return info


# ------------------------------------------------------------------------------ pedestrians
def find_vtest() -> Path | None:
    """``vtest.avi`` from Debian's ``opencv-doc`` (possibly gzip-compressed), or None."""
    root = Path("/usr/share/doc/opencv-doc")
    if not root.is_dir():
        return None
    for pat in ("**/vtest.avi", "**/vtest.avi.gz"):
        for p in sorted(root.glob(pat)):
            return p
    return None


def _open_video(path: Path) -> list[np.ndarray]:
    """All frames of a video as ``H x W x 3`` uint8 RGB (a ``.gz`` file is decompressed first)."""
    import gzip
    import shutil
    import tempfile

    import cv2

    if not path.is_file():
        raise MaskgenError(f"{path}: video not found")
    tmpdir = None
    src = path
    if path.suffix == ".gz":
        tmpdir = tempfile.TemporaryDirectory()
        src = Path(tmpdir.name) / path.stem
        try:
            with gzip.open(path, "rb") as f, open(src, "wb") as g:
                shutil.copyfileobj(f, g)
        except OSError:
            tmpdir.cleanup()
            raise MaskgenError(f"{path}: not a readable gzip file") from None
    try:
        cap = cv2.VideoCapture(str(src))
        frames = []
        while True:
            ok, fr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
        cap.release()
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    if len(frames) < 10:
        raise MaskgenError(f"{path}: could not read a video with at least 10 frames")
    return frames


def _detect_people(
    frames: list[np.ndarray], size: int, frame_step: int, min_height: int, margin: float
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]], list[tuple[int, int]]]:
    """Median background, ``(frame index, crop, mask)`` of each person-shaped foreground blob,
    and the boxes' ``(h, w)``."""
    import cv2

    stack = np.stack(frames[:: max(1, len(frames) // 60)])
    median = np.median(stack, axis=0).astype(np.uint8)
    H, W = median.shape[:2]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    med_f = median.astype(np.int16)
    crops: list[tuple[int, np.ndarray, np.ndarray]] = []
    box_sizes = []
    for fi in range(0, len(frames), frame_step):
        diff = np.abs(frames[fi].astype(np.int16) - med_f).max(axis=2)
        fg = (diff > 35).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel, iterations=2)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = stats[k]
            if h < min_height or not (1.4 <= h / max(w, 1) <= 4.5) or area < 0.3 * w * h:
                continue
            x0 = max(0, int(x - margin * w))
            y0 = max(0, int(y - margin * h))
            x1 = min(W, int(x + w + margin * w))
            y1 = min(H, int(y + h + margin * h))
            if x0 == 0 or y0 == 0 or x1 == W or y1 == H:
                continue  # cut by the frame border
            img = resize_rgb(np.ascontiguousarray(frames[fi][y0:y1, x0:x1]), size)
            m = (lab[y0:y1, x0:x1] == k).astype(np.uint8) * 255
            m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) > 127
            crops.append((fi, img, m))
            box_sizes.append((y1 - y0, x1 - x0))
    return median, crops, box_sizes


def _median_patches(
    median: np.ndarray, box_sizes: list[tuple[int, int]], n: int, size: int, seed: int
) -> list[np.ndarray]:
    """``n`` random patches of the median frame with the boxes' size distribution."""
    rng = np.random.default_rng(seed)
    H, W = median.shape[:2]
    bgs = []
    for _ in range(n):
        bh, bw = box_sizes[int(rng.integers(len(box_sizes)))]
        y = int(rng.integers(0, H - bh + 1))
        x = int(rng.integers(0, W - bw + 1))
        p = resize_rgb(np.ascontiguousarray(median[y : y + bh, x : x + bw]), size)
        bgs.append(p[:, ::-1] if rng.random() < 0.5 else p)
    return bgs


def _pedestrian_readme(video: str, n_train: int, n_test: int, test_fraction: float) -> str:
    return (
        "# Pedestrian crops (OpenCV vtest.avi)\n\n"
        f"Made by `maskgen data pedestrians --video {video}`. Static camera: the median of the "
        "frames is the background (`median_frame.png`); background subtraction (colour "
        "difference > 35, opening/closing, person-shaped blobs) gives the boxes.\n\n"
        f"- `train/images`: {n_train} crops from the first {int(100 * (1 - test_fraction))} % of the video.\n"
        f"- `test/images`: {n_test} crops from the rest.\n"
        "- `test/masks`: the background-subtraction masks. **They are a rough reference only, "
        "not ground truth**: shadows, people walking together, colours close to the background "
        "and the fixed threshold all make them wrong in places. Treat scores against them as "
        "agreement with a crude baseline.\n"
        "- `backgrounds`: patches of the median frame with the crops' size distribution.\n"
    )


def make_pedestrian_set(
    video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: int = 64,
    seed: int = 0,
    frame_step: int = 4,
    n_backgrounds: int = 2000,
    min_height: int = 50,
    margin: float = 0.12,
    test_fraction: float = 0.2,
    force: bool = False,
) -> dict[str, Any]:
    """Pedestrian crops from a static-camera video (e.g. OpenCV's ``vtest.avi``).

    The median of the frames is the background; pixels differing from it by more than a
    threshold (after opening/closing) form blobs; blobs at least ``min_height`` tall with a
    person-like aspect give boxes, which are grown by ``margin`` and cropped (resized to
    ``size``). Background patches are random boxes with the same size distribution cut from
    the median frame. The last ``test_fraction`` of the video gives ``test/``; its masks are
    the subtraction masks -- a **rough reference** (shadows, merged people, holes), not truth.
    ``out`` must be missing or empty (with ``force``, an earlier set is replaced); the set is
    written to a temporary folder renamed to ``out`` at the end.
    """
    check_set_counts(size, {"n_backgrounds": n_backgrounds}, seed)
    if frame_step < 1:
        raise MaskgenError(f"--frame-step {frame_step}: must be >= 1")
    require_file(video, "video")
    prepare_out_dir(out, force, marker="info.json")
    frames = _open_video(Path(video))
    median, crops, box_sizes = _detect_people(frames, size, frame_step, min_height, margin)
    if len(crops) < 10:
        raise MaskgenError(f"{video}: found only {len(crops)} people by background subtraction")
    split = int((1 - test_fraction) * len(frames))
    train = [c for c in crops if c[0] < split]
    test = [c for c in crops if c[0] >= split]
    if not train or not test:
        raise MaskgenError(f"{video}: people found only in one part of the video")
    bgs = _median_patches(median, box_sizes, n_backgrounds, size, seed)
    info = {
        "kind": "pedestrian-set",
        "video": str(video),
        "size": size,
        "seed": seed,
        "frames": len(frames),
        "frame_step": frame_step,
        "n_train": len(train),
        "n_test": len(test),
        "n_backgrounds": n_backgrounds,
        "test_masks": "rough reference from background subtraction, not ground truth",
    }
    with staged_output(out, force, marker="info.json") as tmp:
        write_image_folder(tmp / "train" / "images", np.stack([c[1] for c in train]))
        names = write_image_folder(tmp / "test" / "images", np.stack([c[1] for c in test]))
        masks = np.stack([c[2].astype(np.uint8) * 255 for c in test])
        write_image_folder(tmp / "test" / "masks", masks, names)
        write_image_folder(tmp / "backgrounds", np.stack(bgs))
        write_image(tmp / "median_frame.png", median)
        write_text(
            tmp / "README.md", _pedestrian_readme(str(video), len(train), len(test), test_fraction)
        )
        write_json(tmp / "info.json", info)
    return info


__all__ = [
    "BACKGROUND_PHOTOS",
    "IMAGE_EXTENSIONS",
    "OBJECT_TEXTURE_PHOTOS",
    "ImageFolder",
    "crop_boxes_from_coco",
    "find_vtest",
    "list_images",
    "load_image_folder",
    "load_mask_folder",
    "make_pedestrian_set",
    "make_segmentation_set",
    "resize_rgb",
    "staged_output",
    "write_image_folder",
]
