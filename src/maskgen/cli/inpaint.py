"""``maskgen inpaint ...``: the learned inpainters of supplementary §3.3 (``train``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inpaint", help="learned inpainting (§3.3): train on your own images"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """``maskgen inpaint train``: both §3.3 inpainters from images and visible masks."""
    from maskgen.engine import RunOptions, add_config_arguments
    from maskgen.inpainting.training import InpaintConfig

    p = sub.add_parser(
        "train",
        help="train the background and instance inpainters from images + visible masks",
        description=(
            "Learn both inpainters of supplementary §3.3 from ordinary images and their VISIBLE "
            "instance masks (no amodal labels, no clean backgrounds): background holes are "
            "randomly placed, dilated instance masks; instance holes are synthetic occlusions of "
            "one complete instance by another's mask, filled with the class label. Writes "
            "OUT/model (use it with --inpainter OUT). Rerunning the same command resumes an "
            "interrupted run; a finished run is not retrained."
        ),
    )
    p.add_argument("--out", required=True, help="run folder (created; an existing run resumes)")
    add_config_arguments(p, InpaintConfig)
    add_config_arguments(p, RunOptions)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from maskgen.engine import RunOptions, config_from_args
    from maskgen.inpainting.training import InpaintConfig, train_inpainter

    cfg = config_from_args(InpaintConfig, args)
    opts = config_from_args(RunOptions, args)
    train_inpainter(cfg, opts, args.out)
    return 0
