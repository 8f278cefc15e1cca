"""``maskgen amodal train``: the three Amodal-VAE stages, threshold tuning and the model folder.

Flags are generated from :class:`maskgen.amodal.training.TrainConfig` (what is trained) and
:class:`maskgen.engine.RunOptions` (device, threads, intervals, time budget), plus ``--out`` and
the two architecture shortcuts ``--widths`` / ``--fc-dim``. Every value is checked before the
data are read and before the run folder is created.
"""

from __future__ import annotations

import argparse
import sys

from maskgen.errors import MaskgenError


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``amodal`` group."""
    from maskgen.amodal.training import TrainConfig
    from maskgen.engine import RunOptions, add_config_arguments

    p = subparsers.add_parser(
        "train",
        help="train an Amodal-VAE (three stages) from visible instance masks",
        description=(
            "Train Amodal-VAE on the VISIBLE masks of a COCO/KINS/COCOA file (amodal labels, if "
            "present, are never read): stage 1 shape prior on complete instances, stage 2 "
            "partial encoder + box head on synthetic occlusion, stage 3 fine-tuning on real "
            "instances with the loss on known pixels only. Rerunning the same command resumes an "
            "interrupted run. Works under torchrun (gloo on CPU). Writes OUT/model."
        ),
    )
    p.add_argument("--out", required=True, help="run folder (created; an existing run resumes)")
    add_config_arguments(p, TrainConfig)
    add_config_arguments(p, RunOptions)
    for action in p._actions:  # generated flags default to None; --data is not optional
        if action.dest == "data":
            action.required = True
    p.add_argument(
        "--widths", default=None, help="model conv widths, two comma-separated (default 16,32)"
    )
    p.add_argument("--fc-dim", type=int, default=None, help="model FC width (default 256)")
    p.set_defaults(func=run_train)


def _model_config(args: argparse.Namespace) -> dict:
    """The architecture dict from ``--widths`` / ``--fc-dim`` (checked by TrainConfig.check)."""
    from maskgen.amodal.model import AmodalVAEConfig

    model = AmodalVAEConfig()
    if args.widths:
        try:
            model.widths = tuple(int(v) for v in args.widths.split(","))
        except ValueError:
            raise MaskgenError(f"--widths {args.widths}: expected integers like 16,32") from None
    if args.fc_dim is not None:
        model.fc_dim = args.fc_dim
    return model.to_dict()


def run_train(args: argparse.Namespace) -> int:
    import torch

    from maskgen.amodal.io import check_device
    from maskgen.amodal.training import TrainConfig, check_out_folder, train
    from maskgen.core.io import require_file
    from maskgen.data.loader import load_dataset
    from maskgen.engine import (
        RunOptions,
        config_from_args,
        init_distributed,
        seed_everything,
        shutdown_distributed,
    )

    cfg = config_from_args(
        TrainConfig, args, model=_model_config(args), data=str(args.data), val=args.val or ""
    )
    opts = config_from_args(RunOptions, args)
    check_device(opts.device)  # one line for every unusable --device, before any work
    require_file(cfg.data, "annotations file")
    if cfg.val:
        require_file(cfg.val, "annotations file")
    check_out_folder(args.out)
    ctx = init_distributed(opts.device)
    try:
        dataset = load_dataset(cfg.data)
        val = load_dataset(cfg.val) if cfg.val else None
        seed_everything(cfg.seed, ctx.rank)
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        elif ctx.device.type == "cpu" and ctx.world_size > 1:
            torch.set_num_threads(max(1, torch.get_num_threads() // ctx.world_size))
        log = (lambda _m: None) if opts.quiet else _log
        summary = train(dataset, args.out, cfg, ctx, val_dataset=val, log=log, opts=opts)
    finally:
        shutdown_distributed()
    if ctx.is_main and summary.get("paused"):
        _log(f"training paused; rerun the same command to continue ({args.out})")
    elif ctx.is_main and not summary.get("already_done"):
        _log(
            f"model written to {args.out}/model (threshold {summary['validation']['threshold']:.2f})"
        )
    return 0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
