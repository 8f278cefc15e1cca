"""``maskgen cluster ...``: learn instance appearances and masks from one cluster image.

Independence prior, application 2 (Dai et al., AAAI 2019). Commands:

- ``train``: ``maskgen cluster train --image IMG --out RUN [--instance-size PX]
  [--preset cpu|quality|crowd|fruit|seed]`` plus one flag per
  :class:`~maskgen.independence.cluster_config.ClusterConfig` field and the engine's run
  options (``--device``, ``--threads``, ``--max-minutes``, ...); resumes automatically from RUN;
  works under ``torchrun``.
- ``sample``: ``maskgen cluster sample --model RUN --out DIR``: grids of learned appearances, soft
  masks, composites, the composition layers (paper appendix Fig. 9-11), single RGBA instances.
- ``evaluate``: ``maskgen cluster evaluate --model RUN --labels LABELS.png [--image IMG]``:
  single-object rate, best-match IoU against the best centred disk's, shape variety, object
  count (see :mod:`maskgen.independence.cluster_eval`).

Every input is checked before anything is written; every problem is one line
``maskgen: error: <input>: <problem>`` and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgen.errors import MaskgenError

BUILTIN_PREFIX = "builtin:"
BUILTIN_KINDS = ("synthetic", "coins", "nuclei")
#: Most generated instances ``sample``/``evaluate`` accept (metrics compare all pairs of masks
#: with every instance: memory grows with the count).
MAX_NUM = 4096
MAX_SEED = 2**31 - 1


def int_in(low: int, high: int):
    """An argparse type: an integer in ``[low, high]`` (a one-line error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value}: must be between {low} and {high}")
        return value

    parse.__name__ = "int"
    return parse


def _load_image(spec: str):
    """An image path, or ``builtin:synthetic|coins|nuclei``; returns (image, default size, name)."""
    from maskgen.independence.cluster_patches import load_cluster_image

    if spec.startswith(BUILTIN_PREFIX):
        from maskgen.data.cluster_images import load_builtin

        kind = spec[len(BUILTIN_PREFIX) :]
        if kind not in BUILTIN_KINDS:
            raise MaskgenError(
                f"--image {spec}: unknown built-in image (choose from "
                + ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_KINDS)
                + ")"
            )
        c = load_builtin(kind)
        return c.image, c.instance_size, spec
    return load_cluster_image(spec), None, spec


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from maskgen.engine import RunOptions, config_from_args
    from maskgen.independence.cluster import train_cluster
    from maskgen.independence.cluster_config import ClusterConfig

    cfg = config_from_args(ClusterConfig, args)  # every flag checked before the image is read
    opts = config_from_args(RunOptions, args)
    image, default_size, name = _load_image(args.image)
    if cfg.instance_size is None:
        if default_size is None:
            raise MaskgenError(
                "--instance-size: required for an image file (width in px of the largest instance)"
            )
        cfg = config_from_args(ClusterConfig, args, instance_size=float(default_size))
    model = train_cluster(image, cfg, args.out, opts=opts, image_name=name)
    if int(os.environ.get("RANK", "0")) == 0:
        if model is not None:
            print(f"model written to {model}")
        else:
            print(f"paused before the last step; run the same command again to resume ({args.out})")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from maskgen.independence.cluster_eval import write_samples

    image = None if args.image is None else _load_image(args.image)[0]
    files = write_samples(
        args.model, args.out, num=args.num, seed=args.seed, image=image, force=args.force
    )
    print(f"wrote {len(files)} files to {args.out}")
    return 0


SUMMARY_KEYS = (
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
)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from maskgen.core.io import refuse_overwrite, write_json
    from maskgen.engine import resolve_model_folder
    from maskgen.independence.cluster_eval import evaluate_cluster

    out = Path(args.out) if args.out else resolve_model_folder(args.model) / "metrics.json"
    if out.is_dir():
        raise MaskgenError(f"{out}: is a folder, expected a JSON file path for --out")
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
    print(json.dumps({k: result[k] for k in SUMMARY_KEYS if k in result}))
    print(f"wrote {out}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from maskgen.engine import RunOptions, add_config_arguments
    from maskgen.independence.cluster_config import ClusterConfig

    t = sub.add_parser(
        "train",
        help="train on one image (resumes automatically)",
        description="Train the independence-prior GAN on patches of one image. "
        "IMG may be a file or builtin:synthetic|coins|nuclei. Paper settings: "
        "--preset crowd|fruit|seed (Table 4); the default preset 'cpu' is sized "
        "for a 2-core CPU; 'quality' (64x64 patches, 16 layers, ~3x the time) learned "
        "shapes on the built-in seed cluster, not on the others; 'shapes' ('quality' with "
        "--ground-jitter 1 --jitter-at composite --density matched) learns the giraffe's shapes "
        "(set --area-target to the objects' relative area). "
        "Rerun the same command to resume.",
    )
    t.add_argument("--image", required=True, metavar="IMG", help="the cluster image")
    t.add_argument("--out", required=True, metavar="RUN", help="run folder (resumed if it exists)")
    add_config_arguments(t, ClusterConfig)
    add_config_arguments(t, RunOptions)
    t.set_defaults(func=cmd_train)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="picture grids and RGBA instances from a trained model")
    s.add_argument("--model", required=True, metavar="RUN", help="model folder or run folder")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument(
        "--num", type=int_in(1, MAX_NUM), default=16, help="instances / composites per grid"
    )
    s.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="random seed")
    s.add_argument(
        "--image",
        default=None,
        metavar="IMG",
        help="training image: composites over its disk backgrounds (black otherwise)",
    )
    s.add_argument("--force", action="store_true", help="replace an earlier sample folder")
    s.set_defaults(func=cmd_sample)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "evaluate",
        help="single-object rate, best-match IoU (vs the best disk), shape variety, count vs labels",
    )
    e.add_argument("--model", required=True, metavar="RUN", help="model folder or run folder")
    e.add_argument(
        "--labels", required=True, metavar="LABELS.png", help="instance label map of the image"
    )
    e.add_argument("--image", default=None, metavar="IMG", help="for the label-free count")
    e.add_argument(
        "--out", default=None, metavar="metrics.json", help="default: MODEL/metrics.json"
    )
    e.add_argument(
        "--num", type=int_in(2, MAX_NUM), default=256, help="generated layers to evaluate"
    )
    e.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="random seed")
    e.add_argument(
        "--foreground",
        choices=["bright", "dark", "all"],
        default="bright",
        help="label-free foreground: Otsu brighter/darker class, or the whole image",
    )
    e.add_argument("--force", action="store_true", help="overwrite an earlier metrics file")
    e.set_defaults(func=cmd_evaluate)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cluster", help="learn instance appearances and masks from one image of an object cluster"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_sample(sub)
    _add_evaluate(sub)
