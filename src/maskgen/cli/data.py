"""``maskgen data ...`` commands: built-in and derived data sets."""

from __future__ import annotations

import argparse

from maskgen.cli.data_cluster import add_cluster_data_parsers
from maskgen.cli.data_edit_cases import add_edit_cases_parser
from maskgen.cli.data_reshape_cases import add_reshape_cases_parser
from maskgen.cli.data_segment import add_segment_data_parsers

SMALL_COUNTS = {"train": 40, "val": 10, "test": 10}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="make built-in data sets (scenes, segmentation, clusters)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_scenes_parser(sub)
    add_edit_cases_parser(sub)
    add_reshape_cases_parser(sub)
    add_segment_data_parsers(sub)
    add_cluster_data_parsers(sub)


def add_scenes_parser(sub: argparse._SubParsersAction) -> None:
    """``maskgen data scenes``: synthetic layered scenes with exact amodal ground truth."""
    from maskgen.data.scenes import SceneConfig

    d = SceneConfig()
    p = sub.add_parser(
        "scenes",
        help="synthetic scenes of shapes with exact amodal ground truth (KINS 2020 + COCO JSON)",
        description=(
            "Generate RGB scenes of shapes at random scale, position and depth order, with exact "
            "amodal and visible masks: DIR/images/{train,val,test}/NNNNNN.png, "
            "DIR/annotations/{split}_kins2020.json and {split}_coco.json, DIR/summary.json. "
            "Same seed, same files."
        ),
    )
    p.add_argument(
        "--out", required=True, help="output folder (refused if it exists, unless --force)"
    )
    p.add_argument(
        "--shapes",
        default="builtin",
        help="'builtin' (animal silhouettes), a folder of mask images, or a .npy/.npz of N x H x W masks",
    )
    for split in ("train", "val", "test"):
        p.add_argument(
            f"--num-images-{split}",
            type=int,
            default=None,
            help=f"images in the {split} split (default {d.num_images[split]}; --small: {SMALL_COUNTS[split]})",
        )
    p.add_argument("--small", action="store_true", help="a tiny data set for quick tests")
    p.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        help="image side in px (default %(default)s)",
    )
    p.add_argument(
        "--min-shape-size",
        type=int,
        default=d.min_shape_size,
        help="shortest longer-side of a shape, px (default %(default)s)",
    )
    p.add_argument(
        "--max-shape-size",
        type=int,
        default=d.max_shape_size,
        help="longest longer-side of a shape, px, capped at the image size (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes; the output does not depend on it (default 1)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing scenes folder")
    p.set_defaults(func=run_scenes)


def run_scenes(args: argparse.Namespace) -> int:
    from maskgen.data.scenes import SceneConfig, format_summary, generate_scenes
    from maskgen.errors import MaskgenError

    base = SMALL_COUNTS if args.small else SceneConfig().num_images
    counts = {}
    for split in ("train", "val", "test"):
        given = getattr(args, f"num_images_{split}")
        counts[split] = base[split] if given is None else given
    if args.workers < 1:
        raise MaskgenError(f"--workers {args.workers}: must be at least 1")
    cfg = SceneConfig(
        image_size=args.image_size,
        num_images=counts,
        min_shape_size=args.min_shape_size,
        max_shape_size=args.max_shape_size,
        seed=args.seed,
    )
    summary = generate_scenes(
        args.out, shapes=args.shapes, cfg=cfg, force=args.force, workers=args.workers
    )
    print(format_summary(summary))
    print(f"wrote {args.out} in {summary['seconds']:.1f} s")
    return 0
