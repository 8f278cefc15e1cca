"""``maskgen amodal complete``: amodal masks (with samples and uncertainty) from visible masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskgen.amodal.io import SHIPPED_MODEL, check_model_arg  # noqa: F401 (re-exported)
from maskgen.amodal.refit import add_refit_arguments, refit_from_args


def add_complete_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``complete`` to the ``amodal`` group."""
    p = subparsers.add_parser(
        "complete",
        help="complete visible masks into amodal masks with a trained Amodal-VAE",
        description=(
            "Complete every instance of VISIBLE.json (COCO, KINS or COCOA; only the visible masks "
            "are read) into an amodal mask: the posterior mode, optional samples with a "
            "consistency score each, and an uncertainty figure. By default predicted invisible "
            "pixels are kept only under other instances' visible masks (--no-restrict turns this "
            "off); the visible mask is always OR-ed in. The protocol is written into the "
            "results' info."
        ),
    )
    p.add_argument(
        "--model", default=str(SHIPPED_MODEL), help="model folder (default: the shipped model)"
    )
    p.add_argument("--masks", required=True, help="visible masks JSON (COCO, KINS or COCOA)")
    p.add_argument("--images", required=True, help="folder holding the images named in the JSON")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument(
        "--samples", type=int, default=0, help="posterior samples per instance (default 0)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument(
        "--overlays", default=None, help="folder for overlay PNGs (visible blue, completed red)"
    )
    p.add_argument(
        "--no-restrict",
        action="store_true",
        help="keep predicted invisible pixels anywhere, not only under occluders",
    )
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument(
        "--amodal-boxes",
        default=None,
        metavar="FILE",
        help="known amodal boxes: JSON list of {id, amodal_bbox [x,y,w,h]} or an amodal GT file",
    )
    boxes.add_argument(
        "--gt-amodal-boxes",
        action="store_true",
        help="use the amodal boxes stored in --masks (known-box setting)",
    )
    p.add_argument(
        "--skip-empty",
        action="store_true",
        help="skip instances with empty visible masks (written as empty, flagged results) instead of failing",
    )
    p.add_argument(
        "--visible-source",
        choices=["gt", "predicted", "unknown"],
        default="unknown",
        help="what the input visible masks are, recorded in the results' protocol (default unknown)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--batch-size", type=int, default=1024, help="crops per forward pass (default 1024)"
    )
    p.add_argument("--force", action="store_true", help="overwrite --out and overlay files")
    add_refit_arguments(p, on=False)
    p.set_defaults(func=run_complete)


def _check_args(args: argparse.Namespace) -> Path | None:
    """Every flag and path checked before anything is read or written; the overlay folder."""
    from maskgen.cli.amodal_checks import (
        MAX_BATCH,
        MAX_SAMPLES,
        check_model,
        check_out_file,
        check_range,
        check_seed,
    )
    from maskgen.core.io import prepare_out_dir, require_dir, require_file

    check_range("--samples", args.samples, 0, MAX_SAMPLES)
    check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    check_seed("--seed", args.seed)
    check_model(args.model, args.device)
    require_file(args.masks, "visible masks JSON")
    require_dir(args.images, "images folder")
    if args.amodal_boxes:
        require_file(args.amodal_boxes, "amodal boxes JSON")
    check_out_file(args.out, args.force)
    if args.overlays is None:
        return None
    return prepare_out_dir(args.overlays, args.force)


def _overlay_writer(args: argparse.Namespace, overlays: Path | None):  # noqa: ANN202
    """``on_image`` callback of :func:`complete_dataset` streaming overlay PNGs (or None)."""
    from maskgen.amodal.completion import overlay_image
    from maskgen.core.io import read_image, write_image

    if overlays is None:
        return None

    def on_image(rec, item, insts, comps):  # noqa: ANN001
        image = read_image(Path(args.images) / rec.file_name)
        sel = item.complete if item.complete is not None else slice(None)
        img = overlay_image(image, item.visible_masks[sel], comps)
        name = Path(rec.file_name).with_suffix("").as_posix().replace("/", "__") + ".png"
        write_image(overlays / name, img)  # streamed: written as images finish

    return on_image


def run_complete(args: argparse.Namespace) -> int:
    from maskgen.amodal.completion import (
        check_images,
        complete_dataset,
        protocol_info,
        read_amodal_boxes,
    )
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.data.loader import load_dataset
    from maskgen.data.results import write_results

    overlays = _check_args(args)
    dataset = load_dataset(args.masks)
    check_images(dataset, args.images, args.masks)
    box_mode = "gt" if args.gt_amodal_boxes else ("file" if args.amodal_boxes else "predicted")
    boxes = read_amodal_boxes(args.amodal_boxes) if args.amodal_boxes else None
    predictor = AmodalPredictor.from_folder(
        args.model, device=args.device, batch_size=args.batch_size, refit=refit_from_args(args)
    )
    annotations, stats = complete_dataset(
        predictor,
        dataset,
        masks_path=str(args.masks),
        samples=args.samples,
        restrict=not args.no_restrict,
        box_mode=box_mode,
        boxes=boxes,
        seed=args.seed,
        skip_empty=args.skip_empty,
        on_image=_overlay_writer(args, overlays),
    )
    info = protocol_info(
        predictor,
        masks_path=str(args.masks),
        restrict=not args.no_restrict,
        box_mode=box_mode,
        samples=args.samples,
        seed=args.seed,
        visible_source=args.visible_source,
    )
    info["skipped_empty"] = stats["skipped_empty"]
    info["n_instances"] = stats["n_instances"]
    write_results(args.out, annotations, info)
    _report(args, stats, overlays)
    return 0


def _report(args: argparse.Namespace, stats: dict, overlays: Path | None) -> None:
    rate = stats["n_instances"] / max(stats["seconds"], 1e-9)
    skipped = stats["skipped_empty"]
    print(
        f"completed {stats['n_instances']} instances in {stats['n_images']} images "
        f"({rate:.0f} instances/s) -> {args.out}"
        + (f"; {len(skipped)} empty visible masks skipped" if skipped else "")
        + (f"; overlays in {overlays}" if overlays is not None else ""),
        file=sys.stdout,
    )
