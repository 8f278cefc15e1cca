"""``maskgen amodal edit``: erase instances from an image, complete what they hid and inpaint.

The scene-editing application of Amodal-VAE (supplementary Fig. 6); the work is done by
:func:`maskgen.editing.erase.erase_and_complete`. Writes into ``--out``:

- ``edited.png``: the edited image;
- ``before_after.png``: the input with the erased instance(s) outlined beside the edited image
  with the revealed object parts outlined;
- ``masks.json``: a results file (:mod:`maskgen.data.results`) with one entry per remaining
  instance: ``segmentation`` its amodal mask, plus ``visible_segmentation`` its new visible mask
  and ``revealed_area`` (pixels it gained).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.cli.amodal_complete import SHIPPED_MODEL, check_model_arg
from maskgen.errors import MaskgenError

OUTPUT_FILES = ("edited.png", "before_after.png", "masks.json")
ERASED_COLOUR = (0, 255, 255)  # cyan: outline of an erased instance (before)
REVEALED_COLOUR = (255, 230, 0)  # yellow: outline of an instance's revealed part (after)
MIN_FIGURE_HEIGHT = 256  # small images are enlarged (nearest neighbour) so outlines stay visible


def add_edit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``edit`` to the ``amodal`` group."""
    p = subparsers.add_parser(
        "edit",
        help="erase instances from an image, complete the shapes they hid and inpaint",
        description=(
            "Scene editing (Amodal-VAE supplementary Fig. 6): remove the --erase instance(s) "
            "from one image, complete the remaining instances' shapes with Amodal-VAE, show the "
            "completed parts the erased instances hid (a pixel claimed by several completions "
            "goes to the most probable one) and inpaint them from each object's own visible "
            "pixels, and the rest of the erased area from the background (OpenCV Telea "
            "inpainting, a CPU stand-in for the paper's learned inpainter)."
        ),
    )
    p.add_argument(
        "--model", default=str(SHIPPED_MODEL), help="model folder (default: the shipped model)"
    )
    p.add_argument("--masks", required=True, help="visible masks JSON (COCO, KINS or COCOA)")
    p.add_argument("--images", required=True, help="folder holding the images named in the JSON")
    p.add_argument(
        "--image", required=True, metavar="ID_OR_FILE_NAME", help="the image: its id or file name"
    )
    p.add_argument(
        "--erase",
        required=True,
        nargs="+",
        type=int,
        metavar="ANN_ID",
        help="annotation id(s) of the instance(s) to remove",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    p.set_defaults(func=run_edit)


def find_image(dataset: Any, key: str, masks_path: str) -> Any:
    """The image record whose id (an integer ``key``) or file name (or its last part) is ``key``.

    Raises:
        MaskgenError: no such image, or the file name is ambiguous.
    """
    if key.strip().lstrip("-").isdigit():
        for rec in dataset.images:
            if rec.id == int(key):
                return rec
    hits = [rec for rec in dataset.images if rec.file_name == key]
    if not hits:
        hits = [rec for rec in dataset.images if Path(rec.file_name).name == key]
    if len(hits) > 1:
        raise MaskgenError(
            f"--image {key}: {len(hits)} images of {masks_path} have that file name; give the id"
        )
    if not hits:
        raise MaskgenError(f"--image {key}: no image with that id or file name in {masks_path}")
    return hits[0]


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MaskgenError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MaskgenError(f"{out}: already exists; pass --force to overwrite it")


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Draw the outline of ``mask`` (``H x W`` bool, canvas size) onto ``canvas`` in place."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 1)


def before_after(
    image: np.ndarray, edited: np.ndarray, erased: np.ndarray, revealed_parts: np.ndarray
) -> np.ndarray:
    """Side-by-side figure: input with erased instances outlined | edited, revealed parts outlined.

    Args:
        image, edited: ``H x W x 3`` uint8.
        erased: ``E x H x W`` bool visible masks of the erased instances.
        revealed_parts: ``M x H x W`` bool revealed pixels given to each remaining instance.

    Returns:
        ``h x (2 w + gap) x 3`` uint8, enlarged by an integer factor when ``H`` is small.
    """
    s = max(1, -(-MIN_FIGURE_HEIGHT // image.shape[0]))

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, s, axis=-2), s, axis=-1) if a.ndim == 3 else a

    def up_img(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.repeat(np.repeat(a, s, axis=0), s, axis=1))

    left, right = up_img(image), up_img(edited)
    for m in up(erased):
        _outline(left, m, ERASED_COLOUR)
    for m in up(revealed_parts):
        if m.any():
            _outline(right, m, REVEALED_COLOUR)
    gap = np.full((left.shape[0], 4 * s if s < 4 else 8, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def run_edit(args: argparse.Namespace) -> int:
    from maskgen.amodal.completion import check_images, decode_visible, protocol_info
    from maskgen.editing.erase import erase_and_complete
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.core.io import read_image, write_image
    from maskgen.core.rle import encode_rle
    from maskgen.data.loader import load_dataset
    from maskgen.data.results import result_annotation, write_results
    from maskgen.data.types import Dataset

    check_model_arg(args.model)
    out = Path(args.out)
    _check_out_dir(out, args.force)
    dataset = load_dataset(args.masks)
    rec = find_image(dataset, args.image, args.masks)
    ids = [int(inst.id) for inst in rec.instances]
    erase_ids = list(dict.fromkeys(args.erase))
    for a in erase_ids:
        if a not in ids:
            raise MaskgenError(
                f"--erase {a}: annotation {a} is not an instance of image id {rec.id} "
                f"({rec.file_name}) in {args.masks}; its instances are {ids}"
            )
    if len(erase_ids) == len(ids):
        raise MaskgenError(
            f"--erase {' '.join(map(str, erase_ids))}: erases every instance of image id "
            f"{rec.id} ({rec.file_name}); at least one must remain to be completed"
        )
    # Only this image is read: check just its file (exists, size as the JSON says).
    check_images(Dataset(images=[rec], categories=dataset.categories), args.images, args.masks)
    image = read_image(Path(args.images) / rec.file_name)
    try:
        vm, _ = decode_visible(rec)
    except ValueError as e:
        raise MaskgenError(f"{args.masks}: image id {rec.id}: {e}") from None
    predictor = AmodalPredictor.from_folder(args.model, device=args.device)
    erase_idx = [ids.index(a) for a in erase_ids]
    result = erase_and_complete(image, vm, erase_idx, predictor)

    revealed_parts = result.revealed_masks()
    entries = []
    for j, k in enumerate(result.kept.tolist()):
        inst = rec.instances[k]
        comp = result.completions.get(k)
        e = result_annotation(
            int(inst.id),
            int(rec.id),
            int(inst.category_id),
            result.amodal_masks[j],
            score=None if comp is None else round(float(comp.consistency), 6),
            uncertainty=None if comp is None else round(float(comp.uncertainty), 6),
        )
        e["visible_segmentation"] = encode_rle(result.visible_masks[j])
        e["revealed_area"] = int(revealed_parts[j].sum())
        entries.append(e)
    info = protocol_info(
        predictor,
        masks_path=str(args.masks),
        restrict=True,
        box_mode="predicted",
        samples=0,
        seed=0,
    )
    info["edit"] = {
        "image_id": int(rec.id),
        "file_name": rec.file_name,
        "erased": erase_ids,
        "revealed_pixels": int(result.revealed.sum()),
        "assignment": (
            "a revealed pixel inside remaining instances' completed amodal masks goes to the "
            "one with the highest decoder probability there; the rest is background"
        ),
        "inpainting": (
            "cv2.inpaint (Telea): each instance from its own visible pixels, the background "
            "from visible background pixels (CPU stand-in for a learned inpainter)"
        ),
        "segmentation": "amodal mask; visible_segmentation: the new visible mask",
    }
    erased_masks = vm[np.asarray(erase_idx)]
    out.mkdir(parents=True, exist_ok=True)
    write_image(out / "edited.png", result.image)
    write_image(
        out / "before_after.png", before_after(image, result.image, erased_masks, revealed_parts)
    )
    write_results(out / "masks.json", entries, info)
    n_obj = int((result.assignment >= 0).sum())
    print(
        f"erased {len(erase_ids)} instance(s) from {rec.file_name}: {int(result.revealed.sum())} "
        f"pixels revealed, {n_obj} given to completed objects, "
        f"{int(result.revealed.sum()) - n_obj} to background -> {out}"
    )
    return 0
