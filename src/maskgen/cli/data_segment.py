"""``maskgen data`` commands for the segment application: ``segmentation-set`` (built-in,
exact ground truth) and ``pedestrians`` (real crops from a static-camera video).

Both check their numbers and ``--out`` before any work, write to a temporary folder renamed into
place at the end (a crash leaves nothing that blocks the rerun) and replace an earlier set of
the same command only with ``--force``."""

from __future__ import annotations

import argparse


def _cmd_segmentation_set(args: argparse.Namespace) -> int:
    from maskgen.data.segmentation_sets import make_segmentation_set

    info = make_segmentation_set(
        args.out,
        variant=args.variant,
        seed=args.seed,
        size=args.size,
        n_train=args.n_train,
        n_test=args.n_test,
        n_backgrounds=args.n_backgrounds,
        shape_class=args.shape_class,
        force=args.force,
    )
    print(
        f"wrote {info['n_train']} train, {info['n_test']} test (with masks) and "
        f"{info['n_backgrounds']} background images ({args.variant}, {info['class']}) to "
        f"{args.out}"
    )
    return 0


def _cmd_pedestrians(args: argparse.Namespace) -> int:
    from maskgen.data.segmentation_sets import find_vtest, make_pedestrian_set
    from maskgen.errors import MaskgenError

    video = args.video
    if video is None:
        found = find_vtest()
        if found is None:
            raise MaskgenError(
                "no --video given and vtest.avi not found under /usr/share/doc/opencv-doc "
                "(install Debian's opencv-doc, or pass --video PATH)"
            )
        video = str(found)
    info = make_pedestrian_set(
        video,
        args.out,
        size=args.size,
        seed=args.seed,
        frame_step=args.frame_step,
        n_backgrounds=args.n_backgrounds,
        force=args.force,
    )
    print(
        f"wrote {info['n_train']} train and {info['n_test']} test pedestrian crops, "
        f"{info['n_backgrounds']} backgrounds to {args.out} (test masks: rough reference only)"
    )
    return 0


def add_segment_data_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add this application's data commands to the ``data`` group."""
    p = subparsers.add_parser(
        "segmentation-set",
        help="built-in box-crop segmentation set with exact masks (texture or flat objects)",
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--variant",
        default="texture",
        choices=["texture", "flat", "photo", "photo-holdout"],
        help="texture: objects painted with real-photo textures (hard for colour "
        "models); flat: one flat colour per object (GrabCut's easy case); photo: a few "
        "hundred photo-textured crops with shading, shadows and camera noise (tuning set); "
        "photo-holdout: the same made differently (other classes, photos, sizes; report only)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=None, help="default 2000 (photo sets: 400)")
    p.add_argument("--n-test", type=int, default=None, help="default 200 (photo sets: 100)")
    p.add_argument("--n-backgrounds", type=int, default=None, help="default 2000 (photo sets: 400)")
    p.add_argument(
        "--class",
        dest="shape_class",
        default=None,
        help="built-in silhouette class (default bird; photo: horse, photo-holdout: cow)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace an earlier set in --out (info.json)"
    )
    p.set_defaults(func=_cmd_segmentation_set)

    q = subparsers.add_parser(
        "pedestrians",
        help="pedestrian crops + backgrounds from a static-camera video (OpenCV vtest.avi)",
    )
    q.add_argument(
        "--video",
        default=None,
        help="video file (.avi, or .avi.gz); default: vtest.avi from Debian opencv-doc",
    )
    q.add_argument("--out", required=True)
    q.add_argument("--size", type=int, default=64)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--frame-step", type=int, default=4)
    q.add_argument("--n-backgrounds", type=int, default=2000)
    q.add_argument(
        "--force", action="store_true", help="replace an earlier set in --out (info.json)"
    )
    q.set_defaults(func=_cmd_pedestrians)
