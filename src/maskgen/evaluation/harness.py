"""The amodal evaluation harness: ground truth + a predictor -> every metric (``docs/design.md``, "Evaluation").

Public API::

    evaluate_predictions(gt: Dataset, predict: Callable[[ImageRecord, Instance], np.ndarray],
                         protocol: dict, *, progress: bool | None = None) -> dict
    predictions_from_results(gt: Dataset, results: dict[int, dict], source: str = "results")
        -> Callable[[ImageRecord, Instance], np.ndarray]
    evaluate_results_file(gt: Dataset, results_path) -> dict
    check_amodal_gt(gt: Dataset) -> None

``predict(image, instance)`` returns the predicted amodal mask of one GT instance as ``H x W``
bool (``H x W`` = the image's size), or as a COCO RLE dict of that size. Images are visited one at
a time; the counts are computed on run-length encodings
(:func:`maskgen.core.metrics.instance_counts_rle`), so GT masks are never decoded and memory stays
flat for KINS-size files. RLE predictions from a results file are checked for well-formed counts
(sum ``H*W``) before use.

Missing predictions are an **error**, not zeros: :func:`predictions_from_results` refuses a
results file that lacks some GT instance (or holds ids the GT does not know), naming the count
and the first ids, because a silently shrunken test set makes numbers incomparable.

The returned dict (also what ``metrics.json`` holds)::

    {"protocol": {...}, "ground_truth": {"path", "layout", "n_images", "n_instances"},
     "definitions": {...}, "overall": {...}, "buckets": {"0": {...}, "(0,25]": {...}, ...},
     "per_instance": [{"id", "image_id", "bucket", "visible_ratio", "full_iou",
                       "invisible_iou"}, ...]}

Each group holds ``n_instances``, ``n_occluded``, ``full_iou_dataset``, ``full_iou_mean``,
``invisible_iou_dataset``, ``invisible_iou_mean`` (see :mod:`maskgen.core.metrics`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from maskgen.core.metrics import AmodalAccumulator, instance_counts_rle, to_rle
from maskgen.data.coco import rle_counts
from maskgen.data.results import PROTOCOL_FIELDS, read_results
from maskgen.data.types import Dataset, ImageRecord, Instance
from maskgen.errors import MaskgenError

__all__ = [
    "DEFINITIONS",
    "Predictor",
    "check_amodal_gt",
    "evaluate_predictions",
    "evaluate_results_file",
    "predictions_from_results",
]

Predictor = Callable[[ImageRecord, Instance], "np.ndarray | dict[str, Any]"]

DEFINITIONS: dict[str, str] = {
    "full_iou_dataset": "sum over instances of |P∩A| / sum of |P∪A|",
    "full_iou_mean": "mean over all instances of |P∩A|/|P∪A|",
    "invisible_iou_dataset": "sum of |(P\\V)∩(A\\V)| / sum of |(P\\V)∪(A\\V)| over all instances (pixels outside the GT visible mask only)",
    "invisible_iou_mean": "mean over occluded instances (A\\V non-empty) of |(P\\V)∩(A\\V)|/|(P\\V)∪(A\\V)|",
    "occlusion_ratio": "|A\\V|/|A| (= 1 - |V|/|A|); buckets '0': exactly 0, '(0,25]', '(25,50]', '(50,100]' in percent, right-closed",
    "symbols": "P prediction, A GT amodal mask, V GT visible mask",
}


def check_amodal_gt(gt: Dataset) -> None:
    """Raise :class:`MaskgenError` unless every GT instance has an amodal mask."""
    if not gt.has_amodal:
        raise MaskgenError(
            f"{gt.source or 'ground truth'}: no amodal masks (layout {gt.layout or 'unknown'}); "
            "evaluation needs amodal ground truth (KINS or COCOA)"
        )
    for im in gt.images:
        for inst in im.instances:
            if inst.amodal_segm is None:
                raise MaskgenError(
                    f"{gt.source}: annotation {inst.id} (image {im.id}): no amodal mask"
                )


def _check_counts(segm: dict[str, Any], height: int, width: int, where: str) -> None:
    """Refuse an RLE whose runs do not cover exactly ``height * width`` pixels.

    pycocotools does not bound-check run lengths, so a malformed ``counts`` string could make it
    write or read past its buffers; a one-line error is the right answer instead.
    """
    counts = segm["counts"]
    try:
        total = sum(counts) if isinstance(counts, list) else sum(rle_counts(counts))
    except ValueError as e:
        raise MaskgenError(f"{where}: {e}") from None
    if total != height * width:
        raise MaskgenError(f"{where}: RLE counts cover {total} pixels, expected {height * width}")


def _gt_rle(gt: Dataset, im: ImageRecord, inst: Instance, segm: Any, which: str) -> dict[str, Any]:
    if isinstance(segm, dict) and not isinstance(segm.get("counts"), list):
        where = f"{gt.source}: annotation {inst.id} (image {im.id}): {which} mask"
        _check_counts(segm, im.height, im.width, where)
    return to_rle(segm, im.height, im.width)


def evaluate_predictions(
    gt: Dataset,
    predict: Predictor,
    protocol: dict[str, Any],
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Score ``predict`` on every GT instance; returns the metrics dict of the module docstring.

    Args:
        gt: ground truth with amodal masks (KINS or COCOA).
        predict: ``(image, instance) -> H x W`` bool predicted amodal mask (or its COCO RLE).
        protocol: ``visible_source`` ("gt" | "predicted"), ``crop``, ``or_visible``,
            ``method`` and anything else worth reporting; missing fields become "unknown".
        progress: tqdm bar (None: only on a terminal).

    Raises:
        MaskgenError: GT without amodal masks, or a prediction of the wrong shape.
    """
    check_amodal_gt(gt)
    proto = dict(protocol)
    for k in PROTOCOL_FIELDS:
        proto.setdefault(k, "unknown")
    acc = AmodalAccumulator(keep_instances=True)
    image_ids: list[int] = []
    bar = tqdm(
        gt.images, desc="evaluate", unit="image", disable=None if progress is None else not progress
    )
    for im in bar:
        for inst in im.instances:
            a = _gt_rle(gt, im, inst, inst.amodal_segm, "amodal")
            v = _gt_rle(gt, im, inst, inst.visible_segm, "visible")
            out = predict(im, inst)
            if isinstance(out, dict):
                if list(out.get("size", [])) != [im.height, im.width]:
                    raise MaskgenError(
                        f"prediction for annotation {inst.id} (image {im.id}) has size {out.get('size')}, expected {im.height}x{im.width}"
                    )
                p = to_rle(out, im.height, im.width)
            else:
                arr = np.asarray(out)
                if arr.shape != (im.height, im.width):
                    raise MaskgenError(
                        f"prediction for annotation {inst.id} (image {im.id}) is {arr.shape}, expected {im.height}x{im.width}"
                    )
                p = mask_utils.encode(np.asfortranarray(arr.astype(np.uint8, copy=False)))
            acc.add(instance_counts_rle(p, a, v), inst.id)
            image_ids.append(im.id)
    summary = acc.summary()
    per_instance = [
        dict(rec, image_id=iid) for rec, iid in zip(acc.instances, image_ids, strict=True)
    ]
    return {
        "protocol": proto,
        "ground_truth": {
            "path": gt.source,
            "layout": gt.layout,
            "n_images": len(gt.images),
            "n_instances": gt.num_instances(),
        },
        "definitions": DEFINITIONS,
        "overall": summary["overall"],
        "buckets": summary["buckets"],
        "per_instance": per_instance,
    }


def predictions_from_results(
    gt: Dataset, results: dict[int, dict[str, Any]], source: str = "results"
) -> Predictor:
    """A predictor reading each GT instance's amodal mask from a parsed results file.

    Raises:
        MaskgenError: some GT instances have no result, or some results name no GT instance.
    """
    gt_ids = {inst.id for im in gt.images for inst in im.instances}
    missing = sorted(gt_ids - results.keys())
    if missing:
        raise MaskgenError(
            f"{source}: no prediction for {len(missing)} of {len(gt_ids)} GT annotations "
            f"(e.g. id {', '.join(map(str, missing[:5]))})"
        )
    unknown = sorted(results.keys() - gt_ids)
    if unknown:
        raise MaskgenError(
            f"{source}: {len(unknown)} predictions name annotations not in the ground truth "
            f"(e.g. id {', '.join(map(str, unknown[:5]))})"
        )

    def predict(im: ImageRecord, inst: Instance) -> dict[str, Any]:
        entry = results[inst.id]
        where = f"{source}: result for annotation {inst.id} (image {im.id})"
        if "image_id" in entry and entry["image_id"] != im.id:
            raise MaskgenError(
                f"{where}: image_id {entry['image_id']} but the GT instance is in image {im.id}"
            )
        segm = entry["segmentation"]
        if isinstance(segm, dict):
            h, w = (int(x) for x in segm["size"])
            if (h, w) != (im.height, im.width):
                raise MaskgenError(
                    f"{where}: RLE size {h}x{w} disagrees with image size {im.height}x{im.width}"
                )
            _check_counts(segm, h, w, where)
            return segm
        try:
            return to_rle(segm, im.height, im.width)
        except Exception:
            raise MaskgenError(f"{where}: polygons cannot be read") from None

    return predict


def evaluate_results_file(
    gt: Dataset, results_path: str | os.PathLike[str], *, progress: bool | None = None
) -> dict[str, Any]:
    """Evaluate a results file (see :mod:`maskgen.data.results`); its ``info`` is the protocol."""
    info, results = read_results(results_path)
    check_amodal_gt(gt)
    predict = predictions_from_results(gt, results, str(results_path))
    proto = dict(info)
    proto.setdefault("baseline", False)
    proto["results_file"] = str(results_path)
    return evaluate_predictions(gt, predict, proto, progress=progress)
