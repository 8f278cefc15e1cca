"""``maskgen data cluster``: write a built-in cluster image (and its label map when known)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from maskgen.errors import MaskgenError


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """Write an ``H x W`` instance label map as a 16-bit grey PNG, atomically."""
    from PIL import Image

    from maskgen.core.io import atomic_path

    if labels.max(initial=0) > 65535:
        raise MaskgenError(f"{path}: more than 65535 instances do not fit a 16-bit PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")


def cmd_data_cluster(args: argparse.Namespace) -> int:
    from maskgen.core.io import refuse_overwrite, write_image, write_json
    from maskgen.data.cluster_images import load_builtin

    out = Path(args.out)
    for name in ("image.png", "labels.png", "info.json"):
        refuse_overwrite(out / name, args.force)
    kw = {}
    if args.kind == "synthetic":
        kw = {
            "size": args.size,
            "instance_size": args.instance_size,
            "shape": args.shape,
            "spacing": args.spacing,
            "rim": args.rim,
            "tint_jitter": args.tint_jitter,
        }
    elif any(
        v is not None
        for v in (
            args.size,
            args.instance_size,
            args.shape,
            args.spacing,
            args.rim,
            args.tint_jitter,
        )
    ):
        raise MaskgenError(
            "--size/--instance-size/--shape/--spacing/--rim/--tint-jitter apply to --kind "
            f"synthetic, not {args.kind}"
        )
    kw = {k: v for k, v in kw.items() if v is not None}
    c = load_builtin(args.kind, seed=args.seed, **kw)
    out.mkdir(parents=True, exist_ok=True)
    write_image(out / "image.png", c.image)
    info = {**c.info, "instance_size": c.instance_size, "image": "image.png"}
    if c.labels is not None:
        write_label_png(out / "labels.png", c.labels)
        info["labels"] = "labels.png"
    info["train"] = (
        f"maskgen cluster train --image {out / 'image.png'} --instance-size {c.instance_size} "
        f"--out RUN"
        + (" --flips" if args.kind != "synthetic" or args.shape in (None, "fruit", "seed") else "")
    )
    write_json(out / "info.json", info)
    print(
        f"wrote {out / 'image.png'}"
        + (f" and {out / 'labels.png'}" if c.labels is not None else "")
        + f" (instance size {c.instance_size} px)"
    )
    return 0


def add_cluster_data_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``maskgen data cluster`` to the ``data`` group."""
    p = subparsers.add_parser(
        "cluster",
        help="write a built-in cluster image: synthetic (with labels), coins, nuclei",
        description="Write a built-in image of a dense object cluster to DIR/image.png "
        "(plus DIR/labels.png, a 16-bit instance label map, for --kind synthetic) and "
        "DIR/info.json with the instance size to train with. nuclei needs the optional "
        "package mahotas: pip install 'maskgen[data]'.",
    )
    p.add_argument("--kind", required=True, choices=["synthetic", "coins", "nuclei"])
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--size", type=int, default=None, help="synthetic: image side in px (256)")
    p.add_argument(
        "--instance-size", type=int, default=None, help="synthetic: largest instance width (32)"
    )
    p.add_argument(
        "--shape",
        default=None,
        help="synthetic: fruit (default), seed (elongated ellipses) or a silhouette class "
        "(cat, dog, ...)",
    )
    p.add_argument(
        "--spacing",
        type=float,
        default=None,
        help="synthetic: grid pitch / instance size (0.68; smaller = denser, more occlusion)",
    )
    p.add_argument(
        "--rim",
        type=float,
        default=None,
        help="synthetic silhouettes: darkening of each instance's outline (0 = none)",
    )
    p.add_argument(
        "--tint-jitter", type=float, default=None, help="synthetic: per-instance colour std (0.06)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_data_cluster)
