"""``maskgen amodal order``: which instance is in front, for every pair in occlusion.

The work is done by :func:`maskgen.editing.order.order_records` (completions with the
Amodal-VAE, then :func:`~maskgen.editing.order.occlusion_order`). Writes ``--out`` (JSON)::

    {"images": [{"image_id": ID, "pairs": [[front_ann_id, back_ann_id], ...],
                 "ranking": [ann_id, ...]}, ...],
     "info": {...how it was made...}}

``ranking`` lists every instance of the image, nearest the camera first. With ``--layers DIR``
each image is also decomposed into layers (:class:`maskgen.editing.scene.Scene`) in
``DIR/<image id>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from maskgen.amodal.refit import add_refit_arguments, refit_from_args, refit_info
from maskgen.cli.amodal_complete import SHIPPED_MODEL, check_model_arg
from maskgen.errors import MaskgenError


def add_order_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``order`` to the ``amodal`` group."""
    p = subparsers.add_parser(
        "order",
        help="occlusion order: which instance of each occluding pair is in front",
        description=(
            "Complete every instance with Amodal-VAE and decide, for every pair of instances in "
            "occlusion, which one is in front (the one the other's completion grows into), plus "
            "a per-image depth ranking (nearest first) that tolerates cycles."
        ),
    )
    p.add_argument("--masks", required=True, help="visible masks JSON (COCO, KINS or COCOA)")
    p.add_argument("--images", required=True, help="folder holding the images named in the JSON")
    p.add_argument(
        "--model", default=str(SHIPPED_MODEL), help="model folder (default: the shipped model)"
    )
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument(
        "--layers", default=None, metavar="DIR", help="also write each image's layers here"
    )
    p.add_argument(
        "--inpainter",
        default="telea",
        help="inpainter for --layers: telea (default), builtin or a learned inpainter's run",
    )
    p.add_argument(
        "--pair-net",
        default="shipped",
        help="pairwise order classifier: shipped (default), none, or a model/run folder made by "
        "amodal order-train",
    )
    p.add_argument(
        "--max-path",
        type=int,
        default=None,
        help="pairs whose visible masks do not touch are candidates when a path of at most this "
        "many pixel steps through visible pixels joins them (default 7 with a pair classifier, "
        "0 -- none -- with --pair-net none, the previous method)",
    )
    p.add_argument(
        "--min-far-score",
        type=float,
        default=None,
        help="such pairs are kept when their |score| is at least this (default 3.0)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help="overwrite --out (and --layers)")
    add_refit_arguments(p, on=True)
    p.set_defaults(func=run_order)


def add_order_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``order-train`` (the pairwise order classifier) to the ``amodal`` group."""
    from maskgen.editing.pairnet import PairTrainConfig
    from maskgen.engine import RunOptions, add_config_arguments

    p = subparsers.add_parser(
        "order-train",
        help="train the pairwise occlusion-order classifier from visible masks",
        description=(
            "Learn which instance of a touching pair is in front from synthetic occlusions of "
            "your VISIBLE masks (a complete instance pasted in front of or behind the others; "
            "no amodal or order labels). Writes OUT/model (use it with amodal order "
            "--pair-net OUT). Rerunning the same command resumes an interrupted run."
        ),
    )
    p.add_argument("--out", required=True, help="run folder (created; an existing run resumes)")
    add_config_arguments(p, PairTrainConfig)
    add_config_arguments(p, RunOptions)
    p.set_defaults(func=run_order_train)


def run_order_train(args: argparse.Namespace) -> int:
    from maskgen.editing.pairnet import PairTrainConfig, train_pairnet
    from maskgen.engine import RunOptions, config_from_args

    train_pairnet(
        config_from_args(PairTrainConfig, args), config_from_args(RunOptions, args), args.out
    )
    return 0


def run_order(args: argparse.Namespace) -> int:
    from maskgen.amodal.completion import check_images
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.cli.amodal_checks import check_range
    from maskgen.core.io import refuse_overwrite, write_json
    from maskgen.data.loader import load_dataset
    from maskgen.editing.order import (
        DEFAULT_MAX_PATH,
        DEFAULT_MIN_FAR_SCORE,
        DEFAULT_WEIGHTS,
        NO_PAIRNET_WEIGHTS,
        order_json,
        order_records,
    )
    from maskgen.editing.pairnet import PairOrderNet

    if args.max_path is not None:
        check_range("--max-path", args.max_path, 0, 64)
    if args.min_far_score is not None:
        check_range("--min-far-score", args.min_far_score, 0, 1e6)
    max_path = args.max_path
    if max_path is None:
        max_path = 0 if args.pair_net == "none" else DEFAULT_MAX_PATH
    min_far = DEFAULT_MIN_FAR_SCORE if args.min_far_score is None else args.min_far_score
    check_model_arg(args.model)
    net: Any = "shipped"
    weights = DEFAULT_WEIGHTS
    if args.pair_net == "none":
        net, weights = None, NO_PAIRNET_WEIGHTS
    elif args.pair_net != "shipped":
        net = PairOrderNet.from_folder(args.pair_net)
    out = Path(args.out)
    if out.is_dir():
        raise MaskgenError(f"{out}: is a folder; --out takes a JSON file name")
    refuse_overwrite(out, args.force)
    layers = Path(args.layers) if args.layers else None
    if layers is not None:
        from maskgen.cli.amodal_edit import check_out_dir, make_inpainter

        check_out_dir(layers, args.force)
        inpainter = make_inpainter(args.inpainter, args.device)
    dataset = load_dataset(args.masks)
    check_images(dataset, args.images, args.masks)
    predictor = AmodalPredictor.from_folder(
        args.model, device=args.device, refit=refit_from_args(args)
    )
    entries, n_pairs = [], 0
    # without the classifier: the previous method exactly (pairs keep their own decisions)
    follow = net is not None
    for rec, ids, order in order_records(
        dataset.images,
        predictor,
        weights,
        pairnet=net,
        follow_ranking=follow,
        max_path=max_path,
        min_far_score=min_far,
    ):
        entries.append(order_json(rec, ids, order))
        n_pairs += len(entries[-1]["pairs"])
        if layers is not None:
            _write_layers(args, rec, order, predictor, inpainter, layers / str(rec.id))
    info = {
        "model": str(args.model),
        "masks": str(args.masks),
        "pairs": "[front, back] annotation ids of the pairs judged in occlusion",
        "ranking": "every instance of the image, nearest the camera first",
        "method": "amodal-vae completions (maskgen.editing.order)",
        "weights": weights,
        "pair_net": str(args.pair_net),
        "non_touching_pairs": {"max_path": max_path, "min_far_score": min_far},
        "latent_refit": refit_info(predictor),
    }
    write_json(out, {"images": entries, "info": info})
    print(f"{len(entries)} images, {n_pairs} pairs in occlusion -> {out}")
    return 0


def _write_layers(
    args: argparse.Namespace, rec: Any, order: Any, predictor: Any, inpainter: Any, folder: Path
) -> None:
    """Decompose one image into layers (:class:`~maskgen.editing.scene.Scene`) in ``folder``."""
    from maskgen.amodal.completion import decode_visible
    from maskgen.core.io import read_image
    from maskgen.editing.scene import Scene

    if not rec.instances:
        return
    vm, _ = decode_visible(rec)
    image = read_image(Path(args.images) / rec.file_name)
    scene = Scene.from_image(
        image,
        vm,
        predictor,
        inpainter,
        labels=[int(i.category_id) for i in rec.instances],
        ids=[int(i.id) for i in rec.instances],
        order=order,  # the order written to --out, so that layers and pairs agree
    )
    scene.save_layers(folder)
