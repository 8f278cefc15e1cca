"""``maskgen cluster ...``: learn instance appearances and masks from one cluster image.

Independence prior, application 2 (Dai et al., AAAI 2019). Commands:

- ``train``: ``maskgen cluster train --image IMG --instance-size PX --out RUN [--preset cpu|crowd|
  fruit|seed] [--flips] [--device cuda] [--steps N]``; resumes automatically from RUN; works
  under ``torchrun``.
- ``sample``: ``maskgen cluster sample --model RUN --out DIR``: grids of learned appearances, soft
  masks, composites, the composition layers (paper appendix Fig. 9-11), single RGBA instances.
- ``evaluate``: ``maskgen cluster evaluate --model RUN --labels LABELS.png [--image IMG]``:
  single-object rate, best-match IoU against the best centred disk's, shape variety, object
  count (see :mod:`maskgen.independence.cluster_eval`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgen.errors import MaskgenError

BUILTIN_PREFIX = "builtin:"


def _load_image(spec: str):
    """An image path, or ``builtin:synthetic|coins|nuclei``; returns (image, default size, name)."""
    from maskgen.independence.cluster_patches import load_cluster_image

    if spec.startswith(BUILTIN_PREFIX):
        from maskgen.data.cluster_images import load_builtin

        c = load_builtin(spec[len(BUILTIN_PREFIX) :])
        return c.image, c.instance_size, spec
    return load_cluster_image(spec), None, spec


def cmd_train(args: argparse.Namespace) -> int:
    from maskgen.independence.cluster import train_cluster

    image, default_size, name = _load_image(args.image)
    size = args.instance_size if args.instance_size is not None else default_size
    if size is None:
        raise MaskgenError("--instance-size is required (width in px of the largest instance)")
    overrides = {
        "steps": args.steps,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "flips": args.flips,
        "layers": args.layers,
        "z_dim": args.z_dim,
        "area_target": args.area_target,
        "area_weight": args.area_weight,
        "info_weight": args.info_weight,
        "pad": args.pad,
        "background": args.background,
        "adv_loss": args.adv_loss,
        "lr_g": args.lr_g,
        "lr_d": args.lr_d,
        "alpha_prior": args.alpha_prior,
        "binary_weight": args.binary_weight,
        "prior_anneal": args.prior_anneal,
        "area_warmup": args.area_warmup,
        "r1_weight": args.r1_weight,
        "instance_noise": args.instance_noise,
        "noise_steps": args.noise_steps,
        "ema_decay": args.ema_decay,
    }
    model = train_cluster(
        image=image,
        instance_size=size,
        out=args.out,
        preset=args.preset,
        image_name=name,
        device=args.device,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        grid_every=args.grid_every,
        max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
        threads=args.threads,
        **overrides,
    )
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        if model is not None:
            print(f"model written to {model}")
        else:
            print(
                f"stopped before the last step; run the same command again to resume ({args.out})"
            )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from maskgen.independence.cluster_eval import write_samples

    image = None
    if args.image is not None:
        image = _load_image(args.image)[0]
    files = write_samples(
        args.model, args.out, num=args.num, seed=args.seed, image=image, force=args.force
    )
    print(f"wrote {len(files)} files to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from maskgen.core.io import refuse_overwrite, write_json
    from maskgen.engine import resolve_model_folder
    from maskgen.independence.cluster_eval import evaluate_cluster

    out = Path(args.out) if args.out else resolve_model_folder(args.model) / "metrics.json"
    refuse_overwrite(out, args.force)
    result = evaluate_cluster(
        args.model,
        args.labels,
        args.image,
        num_samples=args.num,
        seed=args.seed,
        foreground=args.foreground,
    )
    write_json(out, result)
    keys = [
        "single_object_rate",
        "best_match_iou_mean",
        "best_disk_iou",
        "beats_best_disk",
        "coverage_iou_mean",
        "disk_family_coverage_iou",
        "beats_disk_coverage",
        "mean_pairwise_iou",
        "true_count",
        "count_estimate",
        "count_from_label_foreground",
    ]
    print(json.dumps({k: result[k] for k in keys if k in result}))
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from maskgen.independence.cluster_config import PRESETS

    parser = subparsers.add_parser(
        "cluster", help="learn instance appearances and masks from one image of an object cluster"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train on one image (resumes automatically)",
        description="Train the independence-prior GAN on patches of one image. "
        "IMG may be a file or builtin:synthetic|coins|nuclei. Paper settings: "
        "--preset crowd|fruit|seed (Table 4); the default preset 'cpu' is sized "
        "for a 2-core CPU.",
    )
    t.add_argument("--image", required=True, metavar="IMG")
    t.add_argument(
        "--instance-size",
        type=float,
        default=None,
        metavar="PX",
        help="width in px of the largest instance (patch window = 1.5x)",
    )
    t.add_argument("--out", required=True, metavar="RUN")
    t.add_argument("--preset", default="cpu", choices=list(PRESETS))
    t.add_argument(
        "--flips",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal+vertical flips of real patches (preset default)",
    )
    t.add_argument("--device", default="cpu")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument(
        "--patch-size",
        type=int,
        default=None,
        metavar="P",
        help="patch and instance side in px (cpu preset 32; paper 64); --pad does not scale "
        "with it (paper: 26-32 px at 64)",
    )
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--layers", type=int, default=None, help="composition layers N")
    t.add_argument("--z-dim", type=int, default=None)
    t.add_argument("--area-target", type=float, default=None, help="a of eq. 7")
    t.add_argument("--area-weight", type=float, default=None, help="lambda of eq. 7")
    t.add_argument("--info-weight", type=float, default=None, help="beta (InfoGAN-like term)")
    t.add_argument("--pad", type=int, default=None, help="layout padding in px")
    t.add_argument("--background", choices=["disk", "black"], default=None)
    t.add_argument("--adv-loss", choices=["nonsaturating", "hinge"], default=None)
    t.add_argument("--lr-g", type=float, default=None)
    t.add_argument("--lr-d", type=float, default=None)
    t.add_argument(
        "--alpha-prior",
        type=float,
        default=None,
        help="not in the paper: centred-disk logit bias on alpha (cpu preset 4; 0 = off)",
    )
    t.add_argument(
        "--binary-weight",
        type=float,
        default=None,
        help="not in the paper: weight of mean(alpha*(1-alpha)) (cpu preset 5; 0 = off)",
    )
    t.add_argument(
        "--prior-anneal",
        type=int,
        default=None,
        metavar="STEPS",
        help="not in the paper: anneal the alpha prior linearly to 0 over the first STEPS steps, "
        "so the saved generator has none (cpu preset 1000 of 1500; 0 = fixed prior)",
    )
    t.add_argument(
        "--r1-weight",
        type=float,
        default=None,
        metavar="GAMMA",
        help="not in the paper: R1 gradient penalty on D, applied every 4 steps (0 = off)",
    )
    t.add_argument("--area-warmup", type=int, default=None, help="steps of linear lambda warm-up")
    t.add_argument("--instance-noise", type=float, default=None, help="std of noise on D inputs")
    t.add_argument("--noise-steps", type=int, default=None, help="steps to anneal instance noise")
    t.add_argument("--ema-decay", type=float, default=None, help="EMA of G weights (0 = off)")
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--grid-every", type=int, default=None)
    t.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop with a checkpoint after this long (rerun to continue)",
    )
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="picture grids and RGBA instances from a trained model")
    s.add_argument("--model", required=True, metavar="RUN")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--num", type=int, default=16, help="instances / composites per grid")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--image",
        default=None,
        metavar="IMG",
        help="training image: composites over its disk backgrounds (black otherwise)",
    )
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser(
        "evaluate",
        help="single-object rate, best-match IoU (vs the best disk), shape variety, count vs labels",
    )
    e.add_argument("--model", required=True, metavar="RUN")
    e.add_argument("--labels", required=True, metavar="LABELS.png")
    e.add_argument("--image", default=None, metavar="IMG", help="for the label-free count")
    e.add_argument("--out", default=None, metavar="metrics.json")
    e.add_argument("--num", type=int, default=256, help="generated layers to evaluate")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument(
        "--foreground",
        choices=["bright", "dark", "all"],
        default="bright",
        help="label-free foreground: Otsu brighter/darker class, or the whole image",
    )
    e.add_argument("--force", action="store_true")
    e.set_defaults(func=cmd_evaluate)
