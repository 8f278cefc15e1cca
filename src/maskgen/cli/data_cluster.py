"""``maskgen data cluster``: write a built-in cluster image (and its label map when known).

Every flag is checked before anything is rendered; the files are written into a hidden staging
folder beside ``--out`` and moved into place only when all of them exist, so a crash half-way
leaves nothing that blocks the rerun. ``--out`` may be missing or empty; an earlier result of
this command (it holds ``info.json``) is replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from maskgen.errors import MaskgenError

#: Files this command writes; ``info.json`` (written last) marks a finished earlier result.
OUTPUT_FILES = ("image.png", "labels.png", "info.json")
#: Refuse synthetic clusters whose rendering would need more memory than this (bytes).
MAX_RENDER_BYTES = 4 * 2**30
SYNTHETIC_FLAGS = ("size", "instance_size", "shape", "spacing", "rim", "tint_jitter")


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """Write an ``H x W`` instance label map as a 16-bit grey PNG, atomically."""
    from PIL import Image

    from maskgen.core.io import atomic_path

    if labels.max(initial=0) > 65535:
        raise MaskgenError(f"{path}: more than 65535 instances do not fit a 16-bit PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")


def _check_range(flag: str, value: float | None, low: float, high: float, low_open=False):
    if value is None:
        return
    if value != value or (value <= low if low_open else value < low) or value > high:
        rel = ">" if low_open else ">="
        raise MaskgenError(f"{flag} {value:g}: must be {rel} {low:g} and <= {high:g}")


def synthetic_kwargs(args: argparse.Namespace) -> dict:
    """The synthetic renderer's keyword arguments from the flags, validated up front.

    Raises:
        MaskgenError: a value out of range, an unknown shape, or a cluster too large to render.
    """
    from maskgen.data.cluster_images import cluster_shapes

    _check_range("--size", args.size, 16, 8192)
    _check_range("--instance-size", args.instance_size, 6, 8192)
    _check_range("--spacing", args.spacing, 0.0, 4.0, low_open=True)
    _check_range("--rim", args.rim, 0.0, 1.0)
    _check_range("--tint-jitter", args.tint_jitter, 0.0, 1.0)
    if args.shape is not None and args.shape not in cluster_shapes():
        raise MaskgenError(
            f"--shape {args.shape}: unknown (choose from {', '.join(cluster_shapes())})"
        )
    kw = {k: getattr(args, k) for k in SYNTHETIC_FLAGS if getattr(args, k) is not None}
    size, inst = kw.get("size", 256), kw.get("instance_size", 32)
    if inst > size:
        raise MaskgenError(f"--instance-size {inst}: larger than the image side --size {size}")
    pitch = kw.get("spacing", 0.68) * inst
    objects = (size / pitch + 2) * (size / (0.866 * pitch) + 2)
    need = objects * size * size * 20  # per object: alpha, colour, masks over the whole image
    if need > MAX_RENDER_BYTES:
        raise MaskgenError(
            f"--size {size}: ~{objects:.0f} objects at --instance-size {inst} would need "
            f"~{need / 2**30:.0f} GiB to render (limit {MAX_RENDER_BYTES / 2**30:.0f}); use a "
            "smaller --size or a larger --instance-size / --spacing"
        )
    return kw


def _write_staged(out: Path, c, args: argparse.Namespace) -> None:
    """Write the image, labels and info.json into a staging folder, then move them into ``out``."""
    from maskgen.core.io import write_image, write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_image(stage / "image.png", c.image)
        info = {**c.info, "instance_size": c.instance_size, "image": "image.png"}
        if c.labels is not None:
            write_label_png(stage / "labels.png", c.labels)
            info["labels"] = "labels.png"
        flips = args.kind != "synthetic" or args.shape in (None, "fruit", "seed")
        info["train"] = (
            f"maskgen cluster train --image {out / 'image.png'} --instance-size "
            f"{c.instance_size} --out RUN" + (" --flips" if flips else "")
        )
        write_json(stage / "info.json", info)
        out.mkdir(exist_ok=True)
        if c.labels is None and (out / "labels.png").is_file():
            (out / "labels.png").unlink()  # a stale label map of an earlier synthetic image
        for name in OUTPUT_FILES:  # info.json last: it marks a complete result
            if (stage / name).is_file():
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def cmd_data_cluster(args: argparse.Namespace) -> int:
    from maskgen.core.io import prepare_out_dir
    from maskgen.data.cluster_images import load_builtin

    out = prepare_out_dir(args.out, args.force, marker="info.json")
    if args.seed < 0:
        raise MaskgenError(f"--seed {args.seed}: must be >= 0")
    if args.kind == "synthetic":
        kw = synthetic_kwargs(args)
    else:
        given = [
            f"--{k.replace('_', '-')}" for k in SYNTHETIC_FLAGS if getattr(args, k) is not None
        ]
        if given:
            raise MaskgenError(f"{'/'.join(given)}: apply to --kind synthetic, not {args.kind}")
        kw = {}
    c = load_builtin(args.kind, seed=args.seed, **kw)
    _write_staged(out, c, args)
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
    p.add_argument(
        "--force", action="store_true", help="replace an earlier result of this command in DIR"
    )
    p.set_defaults(func=cmd_data_cluster)
