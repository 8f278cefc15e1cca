"""``maskgen amodal train``: the three Amodal-VAE stages, threshold tuning and the model folder."""

from __future__ import annotations

import argparse
import sys

from maskgen.errors import MaskgenError


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``amodal`` group."""
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
    p.add_argument("--data", required=True, help="training annotations JSON (COCO, KINS or COCOA)")
    p.add_argument(
        "--val",
        default=None,
        help="validation JSON for the threshold (default: hold out --val-fraction of --data)",
    )
    p.add_argument("--out", required=True, help="run folder (created; an existing run resumes)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; use 1 when other jobs share the CPU)",
    )
    p.add_argument(
        "--preset",
        default="cpu",
        choices=["cpu", "paper"],
        help="cpu: sized for <= 15 min on 2 cores (default); paper: supplementary §3.1 settings",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    p.add_argument("--batch-size", type=int, default=None)
    for k in (1, 2, 3):
        p.add_argument(f"--stage{k}-steps", type=int, default=None, help=f"stage {k} steps")
        p.add_argument(f"--stage{k}-lr", type=float, default=None, help=f"stage {k} Adam lr")
    p.add_argument(
        "--kl-schedule-scale",
        type=float,
        default=None,
        help="stretch of the KL annealing schedule (eq. 1): t_begin*s, alpha^(1/s); 1 = paper "
        "(cpu preset: 0.5)",
    )
    p.add_argument(
        "--box-quantile",
        type=float,
        default=None,
        help="quantile of the box head's pinball loss, in (0, 1) (default 0.15; 0.5 = L1)",
    )
    p.add_argument("--stage1-pool", type=int, default=None, help="augmented stage-1 crops")
    p.add_argument("--stage2-pool", type=int, default=None, help="synthetic stage-2 samples")
    p.add_argument("--val-fraction", type=float, default=None, help="held-out share (0.1)")
    p.add_argument("--val-samples", type=int, default=None, help="threshold-tuning samples")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument(
        "--widths", default=None, help="model conv widths, comma-separated (default 16,32)"
    )
    p.add_argument("--fc-dim", type=int, default=None, help="model FC width (default 256)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from maskgen.amodal.model import AmodalVAEConfig
    from maskgen.amodal.training import make_config, train
    from maskgen.data.loader import load_dataset
    from maskgen.engine import init_distributed, seed_everything, shutdown_distributed

    model = AmodalVAEConfig()
    if args.widths:
        try:
            model.widths = tuple(int(v) for v in args.widths.split(","))
        except ValueError:
            raise MaskgenError(f"--widths {args.widths}: expected integers like 16,32") from None
        if len(model.widths) != 2 or min(model.widths) < 1:
            raise MaskgenError(f"--widths {args.widths}: expected two positive integers")
    if args.fc_dim is not None:
        model.fc_dim = args.fc_dim
    for name in ("batch_size", "stage1_steps", "stage2_steps", "stage3_steps", "val_samples"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise MaskgenError(f"--{name.replace('_', '-')} {v}: must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise MaskgenError(f"--threads {args.threads}: must be at least 1")
    if args.box_quantile is not None and not 0 < args.box_quantile < 1:
        raise MaskgenError(f"--box-quantile {args.box_quantile}: must be in (0, 1)")
    if args.val_fraction is not None and not 0 <= args.val_fraction < 1:
        raise MaskgenError(f"--val-fraction {args.val_fraction}: must be in [0, 1)")
    cfg = make_config(
        args.preset,
        seed=args.seed,
        batch_size=args.batch_size,
        stage1_steps=args.stage1_steps,
        stage2_steps=args.stage2_steps,
        stage3_steps=args.stage3_steps,
        stage1_lr=args.stage1_lr,
        stage2_lr=args.stage2_lr,
        stage3_lr=args.stage3_lr,
        kl_schedule_scale=args.kl_schedule_scale,
        box_quantile=args.box_quantile,
        stage1_pool=args.stage1_pool,
        stage2_pool=args.stage2_pool,
        val_fraction=args.val_fraction,
        val_samples=args.val_samples,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        model=model.to_dict(),
        data=str(args.data),
        val=str(args.val) if args.val else "",
    )
    dataset = load_dataset(args.data)
    val = load_dataset(args.val) if args.val else None
    ctx = init_distributed(args.device)
    try:
        seed_everything(cfg.seed, ctx.rank)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        elif ctx.device.type == "cpu" and ctx.world_size > 1:
            torch.set_num_threads(max(1, torch.get_num_threads() // ctx.world_size))
        summary = train(dataset, args.out, cfg, ctx, val_dataset=val, log=_log)
    finally:
        shutdown_distributed()
    if ctx.is_main and not summary.get("already_done"):
        _log(
            f"model written to {args.out}/model (threshold {summary['validation']['threshold']:.2f})"
        )
    return 0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
