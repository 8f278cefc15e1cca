"""``maskgen synth ...``: mask-conditioned instance synthesis of supplementary §3.4 (``train``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="instance synthesis into a new mask (§3.4): train on your own images"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """``maskgen synth train``: the §3.4 SPADE GAN from images and visible masks."""
    from maskgen.engine import RunOptions, add_config_arguments
    from maskgen.synthesis.training import SynthConfig

    p = sub.add_parser(
        "train",
        help="train the mask-conditioned instance synthesizer from images + visible masks",
        description=(
            "Learn to re-render an instance into a new mask (supplementary §3.4, GauGAN with "
            "SPADE layers modulated by the instance's full mask) from ordinary images and their "
            "VISIBLE instance masks: unoccluded instances (touching no other instance and not "
            "the border) are shown partly -- hidden by a random deformation of their own mask or "
            "by another instance's mask -- and learnt to be rendered whole. Writes OUT/model. "
            "Rerunning the same command resumes an interrupted run; a finished run is not "
            "retrained unless --force, which starts it over."
        ),
    )
    p.add_argument("--out", required=True, help="run folder (created; an existing run resumes)")
    p.add_argument(
        "--force", action="store_true", help="start over: remove an earlier synth run in --out"
    )
    add_config_arguments(p, SynthConfig)
    add_config_arguments(p, RunOptions)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from maskgen.engine import RunOptions, config_from_args
    from maskgen.synthesis.training import SynthConfig, train_synthesizer

    cfg = config_from_args(SynthConfig, args)
    opts = config_from_args(RunOptions, args)
    train_synthesizer(cfg, opts, args.out, force=args.force)
    return 0
