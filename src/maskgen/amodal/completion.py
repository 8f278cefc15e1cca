"""Amodal completion of a whole data set: visible masks in, a results file (and overlays) out.

What ``maskgen amodal complete`` runs. Only *visible* masks of the input are used, whatever its
format (COCO, KINS old/2020, COCOA); amodal masks in the file are never read, and amodal boxes
only when asked for (``box_mode="gt"``, the "known amodal box" setting).

Input checks (each a one-line :class:`~maskgen.errors.MaskgenError` naming the file and the
instance; nothing is written):

- every image file exists under ``images_dir`` and its pixel size equals the JSON's
  ``width x height`` (read from the file header only);
- an instance with an **empty visible mask** (KINS and COCOA allow them for fully occluded
  objects) is an error by default; with ``skip_empty=True`` it is skipped and its id listed in
  the results' info (``skipped_empty``). It still cannot occlude anything (it has no pixels).
  Zero-area boxes in the input are rejected by the readers themselves.
- ``box_mode="gt"`` needs an amodal box (or amodal mask) for every completed instance;
  ``box_mode="file"`` needs one per instance id in the boxes file.

Output: one result per completed instance (see :func:`completion_annotation`) written with
:func:`maskgen.data.results.write_results`, whose ``info`` holds the protocol: model, threshold,
GT-or-predicted visible masks, crop convention, restriction, OR-with-visible, box source, samples.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.amodal.predictor import AmodalPredictor, Completion, ImageInput
from maskgen.amodal.refit import refit_info
from maskgen.core.boxes import mask_to_box, xywh_to_xyxy, xyxy_to_xywh
from maskgen.core.io import read_json
from maskgen.core.rle import encode_rle
from maskgen.data.types import Dataset, ImageRecord
from maskgen.errors import MaskgenError

__all__ = [
    "check_images",
    "read_amodal_boxes",
    "complete_dataset",
    "protocol_info",
    "completion_annotation",
    "overlay_image",
    "CROP_CONVENTION",
    "skipped_annotation",
]

CROP_CONVENTION = (
    "visible mask tightly cropped to its visible box, resized to 28x28 (bilinear, cell centres); "
    "decoder output in the amodal-box frame pasted back with maskgen.core.masks.paste_mask"
)


def image_path(images_dir: str | os.PathLike[str], record: ImageRecord) -> Path:
    return Path(images_dir) / record.file_name


def check_images(
    dataset: Dataset, images_dir: str | os.PathLike[str], masks_path: str = ""
) -> None:
    """Check that every image file exists and has the size the masks JSON states.

    Raises:
        MaskgenError: ``"<image path>: ..."`` naming the image id and the masks file.
    """
    from PIL import Image, UnidentifiedImageError

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise MaskgenError(f"{images_dir}: images folder not found")
    for rec in dataset.images:
        p = image_path(images_dir, rec)
        where = f"image id {rec.id} of {masks_path}" if masks_path else f"image id {rec.id}"
        if not p.is_file():
            raise MaskgenError(f"{p}: image file not found ({where})")
        try:
            with Image.open(p) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise MaskgenError(
                f"{p}: cannot read image ({e.__class__.__name__}; {where})"
            ) from None
        if (h, w) != (rec.height, rec.width):
            raise MaskgenError(
                f"{p}: image is {w}x{h} but {masks_path or 'the masks JSON'} says "
                f"{rec.width}x{rec.height} (image id {rec.id}); masks do not match the images"
            )


def read_amodal_boxes(path: str | os.PathLike[str]) -> dict[int, np.ndarray]:
    """Read known amodal boxes keyed by annotation id.

    Accepted: a JSON list of ``{"id": ANNOTATION_ID, "amodal_bbox": [x, y, w, h]}`` (``"bbox"``
    also accepted), or ``{"annotations": [...]}`` holding such entries, or any amodal ground
    truth file the loader reads (KINS/COCOA: the amodal box, else the amodal mask's box).

    Returns:
        ``{annotation id: (4,) (x0, y0, x1, y1)}``.
    """
    obj = read_json(path)
    entries = obj if isinstance(obj, list) else None
    if isinstance(obj, dict) and "annotations" in obj and isinstance(obj["annotations"], list):
        anns = obj["annotations"]
        if anns and all(isinstance(a, dict) and "amodal_bbox" in a for a in anns):
            entries = anns
    if entries is not None:
        out: dict[int, np.ndarray] = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "id" not in e or not ("amodal_bbox" in e or "bbox" in e):
                raise MaskgenError(f"{path}: entry {i} needs 'id' and 'amodal_bbox' [x, y, w, h]")
            b = e.get("amodal_bbox", e.get("bbox"))
            if not (isinstance(b, list) and len(b) == 4):
                raise MaskgenError(f"{path}: entry {i} (id {e['id']}): box must be [x, y, w, h]")
            box = xywh_to_xyxy(np.asarray(b, dtype=np.float64))
            if not (box[2] > box[0] and box[3] > box[1]):
                raise MaskgenError(f"{path}: entry {i} (id {e['id']}): box {b} has no area")
            out[int(e["id"])] = box
        return out
    from maskgen.data.loader import load_dataset

    ds = load_dataset(path)
    out = {}
    for rec in ds.images:
        for inst in rec.instances:
            box = gt_amodal_box(rec, inst)
            if box is not None:
                out[int(inst.id)] = box
    return out


def gt_amodal_box(rec: ImageRecord, inst: Any) -> np.ndarray | None:
    """The instance's amodal box, else the tight box of its amodal mask, else None."""

    if inst.amodal_box is not None:
        return np.asarray(inst.amodal_box, dtype=np.float64)
    if inst.amodal_segm is not None:
        m = rec.amodal_mask(inst)
        if m.any():
            return mask_to_box(m)
    return None


def protocol_info(
    predictor: AmodalPredictor,
    *,
    masks_path: str,
    restrict: bool,
    box_mode: str,
    samples: int,
    seed: int,
    visible_source: str = "unknown",
) -> dict[str, Any]:
    """The protocol every results file states (``docs/design.md``, "Evaluation" and "Conventions"; keys of
    :data:`maskgen.data.results.PROTOCOL_FIELDS` first)."""
    return {
        "method": "amodal-vae",
        "visible_source": visible_source,
        "crop": CROP_CONVENTION,
        "or_visible": True,
        "restrict_to_occluders": bool(restrict),
        "restriction": (
            "predicted invisible pixels kept only under other instances' visible masks; "
            "amodal extent beyond the image border is cut"
            if restrict
            else "none (predicted pixels kept anywhere in the image)"
        ),
        "amodal_boxes": {
            "predicted": "predicted by the model's box head",
            "gt": "known amodal boxes from the input file",
            "file": "known amodal boxes from a boxes file",
        }[box_mode],
        "prediction": "posterior mean (mode) of q2 decoded, thresholded at p >= threshold"
        + ("" if getattr(predictor, "refit", None) is None else "; the latent refitted first"),
        "latent_refit": refit_info(predictor),
        "model": predictor.source,
        "threshold": predictor.threshold,
        "input_masks": str(masks_path),
        "samples": int(samples),
        "sample_seed": int(seed),
        "consistency": "|S n V| / (|V| + |S n B|), B = visible background; on the raw sample",
        "uncertainty": "mean posterior standard deviation over the latents",
    }


def completion_annotation(rec: ImageRecord, inst: Any, comp: Completion) -> dict[str, Any]:
    """One result entry (layout of :mod:`maskgen.data.results`, plus Amodal-VAE extras).

    Built from a :class:`~maskgen.amodal.predictor.Completion`, whose RLE and box come from one
    pycocotools pass (the generic :func:`maskgen.data.results.result_annotation` takes an
    ``H x W`` mask instead).

    Keys: ``id`` (the input annotation id), ``image_id``, ``category_id``, ``segmentation``
    (amodal mask, compressed RLE), ``bbox`` (``[x, y, w, h]`` of the amodal mask), ``area``,
    ``score`` (= ``consistency`` of the mode), ``consistency``, ``uncertainty``, ``amodal_box``
    (``[x, y, w, h]`` of the box the decoder's frame was pasted into), ``box_source`` and, with
    samples, ``samples``: ``[{"segmentation": RLE, "consistency": float}, ...]``.
    """
    rle, bbox = comp.rle_and_box()
    ann: dict[str, Any] = {
        "id": int(inst.id),
        "image_id": int(rec.id),
        "category_id": int(inst.category_id),
        "segmentation": rle,
        "bbox": bbox,
        "area": comp.area,
        "score": round(float(comp.consistency), 6),
        "consistency": round(float(comp.consistency), 6),
        "uncertainty": round(float(comp.uncertainty), 6),
        "amodal_box": [round(float(v), 3) for v in xyxy_to_xywh(comp.amodal_box)],
        "box_source": comp.box_source,
    }
    if comp.num_samples:
        ann["samples"] = [
            {"segmentation": comp.rle(k), "consistency": round(float(c), 6)}
            for k, c in enumerate(comp.sample_consistency)
        ]
    return ann


def skipped_annotation(rec: ImageRecord, inst: Any) -> dict[str, Any]:
    """Result entry of an instance skipped for an empty visible mask: an empty mask, flagged, so
    evaluation still sees every instance (and counts it as a miss)."""
    return {
        "id": int(inst.id),
        "image_id": int(rec.id),
        "category_id": int(inst.category_id),
        "segmentation": encode_rle(np.zeros((rec.height, rec.width), bool)),
        "bbox": [0.0] * 4,
        "area": 0,
        "skipped": "empty visible mask",
    }


def decode_visible(rec: ImageRecord) -> tuple[np.ndarray, np.ndarray | None]:
    """All visible masks of an image: ``(K x H x W bool, K x 4 tight boxes or None)``.

    One pycocotools call (and boxes straight from the RLEs) when every mask is a compressed RLE
    of the image's size; otherwise each segmentation is decoded on its own (a missing mask is all
    False) and the boxes are left to the predictor.
    """
    from pycocotools import mask as mask_utils

    segs = [inst.visible_segm for inst in rec.instances]
    size = [rec.height, rec.width]
    if segs and all(
        isinstance(s, dict)
        and isinstance(s.get("counts"), (str, bytes))
        and list(s["size"]) == size
        for s in segs
    ):
        rles = [
            {
                "size": size,
                "counts": s["counts"].encode("ascii")
                if isinstance(s["counts"], str)
                else s["counts"],
            }
            for s in segs
        ]
        # H x W x K Fortran-ordered uint8 of 0/1 -> K x H x W bool view, no copy
        masks = np.moveaxis(mask_utils.decode(rles), 2, 0).view(bool)
        xywh = np.asarray(mask_utils.toBbox(rles), dtype=np.float64).reshape(-1, 4)
        return masks, xywh_to_xyxy(xywh)
    return np.stack([rec.visible_mask(inst) for inst in rec.instances]), None


def _image_inputs(
    dataset: Dataset,
    masks_path: str,
    box_mode: str,
    boxes: dict[int, np.ndarray] | None,
    skip_empty: bool,
    skipped: list[int],
    visible_override: Callable[[ImageRecord], np.ndarray] | None = None,
) -> Iterator[tuple[ImageRecord, ImageInput, list[Any]]]:
    for rec in dataset.images:
        if not rec.instances:
            yield rec, ImageInput(np.zeros((0, rec.height, rec.width), bool)), []
            continue
        vboxes = None
        if visible_override is not None:
            vm = visible_override(rec)
        else:
            try:
                vm, vboxes = decode_visible(rec)
            except ValueError as e:
                raise MaskgenError(f"{masks_path}: image id {rec.id}: {e}") from None
        # Non-empty masks: from the RLE boxes when known (vm is a strided view of pycocotools'
        # output, and flattening it would copy every mask).
        sel = vboxes[:, 2] > vboxes[:, 0] if vboxes is not None else vm.any(axis=(1, 2))
        for inst, ok in zip(rec.instances, sel, strict=True):
            if not ok:
                if not skip_empty:
                    raise MaskgenError(
                        f"{masks_path}: annotation {inst.id} (image id {rec.id}, "
                        f"{rec.file_name}): empty visible mask, nothing to complete "
                        "(pass --skip-empty to skip such instances)"
                    )
                skipped.append(int(inst.id))
        ab = None
        if box_mode != "predicted":
            ab = np.full((len(rec.instances), 4), np.nan)
            for k, inst in enumerate(rec.instances):
                if not sel[k]:
                    continue
                if box_mode == "gt":
                    b = gt_amodal_box(rec, inst)
                    src = masks_path
                else:
                    b = None if boxes is None else boxes.get(int(inst.id))
                    src = "the amodal boxes file"
                if b is None:
                    raise MaskgenError(
                        f"{src}: annotation {inst.id} (image id {rec.id}) has no amodal box"
                    )
                ab[k] = b
        yield (
            rec,
            ImageInput(vm, ab, sel, vboxes),
            [i for i, ok in zip(rec.instances, sel, strict=True) if ok],
        )


def _image_annotations(
    rec: ImageRecord, insts: list[Any], comps: list[Completion]
) -> list[dict[str, Any]]:
    """Result entries of one image in file order (skipped empty instances flagged)."""
    done = {int(inst.id): c for inst, c in zip(insts, comps, strict=True)}
    out = []
    for inst in rec.instances:
        c = done.get(int(inst.id))
        out.append(
            completion_annotation(rec, inst, c) if c is not None else skipped_annotation(rec, inst)
        )
    return out


def complete_dataset(
    predictor: AmodalPredictor,
    dataset: Dataset,
    *,
    masks_path: str = "",
    samples: int = 0,
    restrict: bool = True,
    box_mode: str = "predicted",
    boxes: dict[int, np.ndarray] | None = None,
    seed: int = 0,
    skip_empty: bool = False,
    on_image: Callable[[ImageRecord, ImageInput, list[Any], list[Completion]], None] | None = None,
    make_annotations: bool = True,
    visible_override: Callable[[ImageRecord], np.ndarray] | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Complete every instance of ``dataset`` from its visible masks.

    Args:
        predictor: the loaded model.
        dataset: any loaded data set; only visible masks are read (amodal boxes only with
            ``box_mode="gt"``).
        box_mode: ``"predicted"``, ``"gt"`` (amodal boxes of the input) or ``"file"``
            (``boxes``, keyed by annotation id).
        on_image: called per image with ``(record, input, completed instances, completions)``
            (overlays, analyses).
        make_annotations: build result entries (off for analyses that only need ``on_image``).
        visible_override: give the visible masks of an image (``K x H x W`` bool) instead of
            decoding them (analyses: corrupted masks).

    Returns:
        ``(annotations, stats)``; stats has ``n_images``, ``n_instances``, ``skipped_empty``,
        ``seconds``.
    """
    import sys

    from tqdm.auto import tqdm

    if box_mode not in ("predicted", "gt", "file"):
        raise ValueError(f"unknown box_mode {box_mode!r}")
    skipped: list[int] = []
    annotations: list[dict[str, Any]] = []
    meta: list[tuple[ImageRecord, ImageInput, list[Any]]] = []
    n_done = 0
    t0 = time.perf_counter()

    def inputs() -> Iterator[ImageInput]:
        for rec, item, insts in _image_inputs(
            dataset, masks_path, box_mode, boxes, skip_empty, skipped, visible_override
        ):
            meta.append((rec, item, insts))
            yield item

    stream = predictor.complete_images(
        inputs(), samples=samples, restrict_to_occluders=restrict, seed=seed
    )
    total = dataset.num_instances()
    with tqdm(
        total=total,
        desc="complete",
        unit="inst",
        file=sys.stderr,
        disable=None if progress else True,
    ) as bar:
        for i, comps in enumerate(stream):
            rec, item, insts = meta[i]
            meta[i] = None  # type: ignore[call-overload]  # free the masks
            if make_annotations:
                annotations += _image_annotations(rec, insts, comps)
            if on_image is not None:
                on_image(rec, item, insts, comps)
            n_done += len(comps)
            bar.update(len(rec.instances))
    stats = {
        "n_images": len(dataset.images),
        "n_instances": n_done,
        "skipped_empty": skipped,
        "seconds": time.perf_counter() - t0,
    }
    return annotations, stats


# -------------------------------------------------------------------------------- overlays
VISIBLE_COLOUR = np.array([40, 140, 255], dtype=np.float32)  # blue: the visible mask
INVISIBLE_COLOUR = np.array([255, 80, 40], dtype=np.float32)  # orange-red: completed part


def overlay_image(
    image: np.ndarray, visible: np.ndarray, completions: list[Completion], alpha: float = 0.55
) -> np.ndarray:
    """Image with each instance's visible mask (blue) and predicted invisible part (red) drawn.

    Args:
        image: ``H x W x 3`` uint8.
        visible: ``K x H x W`` bool visible masks of the completed instances (same order).
        completions: their completions.

    Returns:
        ``H x W x 3`` uint8. Amodal outlines are drawn in white.
    """
    import cv2

    out = image.astype(np.float32).copy()
    vis_any = np.zeros(image.shape[:2], bool)
    inv_any = np.zeros(image.shape[:2], bool)
    for v, c in zip(visible, completions, strict=True):
        vis_any |= v
        inv_any |= c.amodal_mask & ~v
    # Completed (invisible) parts are drawn over whatever hides them; each pixel is blended once.
    vis_only = vis_any & ~inv_any
    out[vis_only] = (1 - alpha) * out[vis_only] + alpha * VISIBLE_COLOUR
    out[inv_any] = (1 - alpha) * out[inv_any] + alpha * INVISIBLE_COLOUR
    res = np.clip(out, 0, 255).astype(np.uint8)
    for c in completions:
        contours, _ = cv2.findContours(
            c.amodal_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(res, contours, -1, (255, 255, 255), 1)
    return res
