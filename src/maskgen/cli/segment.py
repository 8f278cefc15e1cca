"""``maskgen segment ...``: foreground segmentation with box-level labels (independence prior,
application 1): train, distill, predict, evaluate.

The flags of ``train`` and ``distill`` are generated from
:class:`~maskgen.independence.segmentation.SegmentConfig` /
:class:`~maskgen.independence.distillation.DistillConfig` and the engine's
:class:`~maskgen.engine.RunOptions`; every value is checked before any file is written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _cmd_train(args: argparse.Namespace) -> int:
    from maskgen.engine import RunOptions, config_from_args
    from maskgen.independence.segmentation import SegmentConfig, train_segmentation

    cfg = config_from_args(SegmentConfig, args)
    opts = config_from_args(RunOptions, args)
    train_segmentation(cfg, args.out, opts)
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from maskgen.engine import RunOptions, config_from_args
    from maskgen.independence.distillation import DistillConfig, distill

    cfg = config_from_args(DistillConfig, args)
    opts = config_from_args(RunOptions, args)
    distill(cfg, args.out, opts)
    return 0


def _refine_config(args: argparse.Namespace) -> Any:
    """The :class:`RefineConfig` of ``predict``'s flags; ``--refine-*`` needs ``--refine``."""
    import dataclasses

    from maskgen.engine import config_from_args
    from maskgen.engine.config import flag_name
    from maskgen.errors import MaskgenError
    from maskgen.independence.refine import RefineConfig

    if not args.refine:
        for f in dataclasses.fields(RefineConfig):
            if f.name != "refine" and getattr(args, f.name, None) is not None:
                raise MaskgenError(f"{flag_name(f.name)}: only with --refine")
    return config_from_args(RefineConfig, args)


def _cmd_predict(args: argparse.Namespace) -> int:
    from maskgen.engine.distributed import check_device
    from maskgen.independence.predict import predict_folder

    refine = _refine_config(args)
    s = predict_folder(
        args.model,
        args.images,
        args.out,
        device=str(check_device(args.device)),
        threshold=args.threshold,
        force=args.force,
        refine=refine,
        tta=args.tta,
    )
    how = " (binary refined by GrabCut)" if refine.refine else ""
    print(
        f"wrote {s['n_images']} soft and binary masks to {args.out}/soft and {args.out}/binary"
        + how
    )
    return 0


def _check_evaluate_outputs(args: argparse.Namespace) -> None:
    """``--json`` and ``--save-masks`` refuse to overwrite earlier results without --force."""
    from maskgen.core.io import prepare_out_dir, refuse_overwrite
    from maskgen.errors import MaskgenError

    if args.json:
        js = Path(args.json)
        if js.is_dir():
            raise MaskgenError(f"--json {js}: is a folder, expected a JSON file name")
        refuse_overwrite(js, args.force)
        if js.parent != Path("") and js.parent.exists() and not js.parent.is_dir():
            raise MaskgenError(f"--json {js}: {js.parent} is a file, not a folder")
    if args.save_masks:
        if args.method != "grabcut":
            raise MaskgenError("--save-masks: only with --method grabcut (predict writes masks)")
        prepare_out_dir(args.save_masks, args.force, marker=None)
    if args.inset < 0:
        raise MaskgenError(f"--inset {args.inset}: must be >= 0")


def _predictions(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The masks to score: GrabCut's on ``--images`` or the PNGs under ``--pred``."""
    from maskgen.core.io import require_dir
    from maskgen.data.segmentation_sets import load_mask_folder
    from maskgen.errors import MaskgenError
    from maskgen.independence.predict import grabcut_folder

    if args.method == "grabcut":
        if not args.images:
            raise MaskgenError("--method grabcut needs --images DIR (the box crops)")
        require_dir(args.images, "image folder")
        return grabcut_folder(args.images, inset=args.inset), f"{args.images} (grabcut)"
    if not args.pred:
        raise MaskgenError("--pred DIR is required (or --method grabcut --images DIR)")
    pdir = require_dir(args.pred, "prediction folder")
    if (pdir / "binary").is_dir():
        pdir = pdir / "binary"
    if pdir.resolve() == Path(args.gt).resolve():
        raise MaskgenError(f"--pred {args.pred}: is the ground-truth folder (--gt)")
    return load_mask_folder(pdir, what="prediction folder", strict=False), str(pdir)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from maskgen.core.io import require_dir, write_json
    from maskgen.data.segmentation_sets import load_mask_folder, staged_output
    from maskgen.independence.predict import evaluate_masks

    _check_evaluate_outputs(args)
    gt = load_mask_folder(require_dir(args.gt, "ground-truth mask folder"))
    pred, where = _predictions(args)
    res = evaluate_masks(pred, gt, where)
    res.update(method=args.method, source=where, gt=str(args.gt))
    if args.save_masks:
        from maskgen.core.io import write_image

        with staged_output(args.save_masks, args.force) as tmp:
            for n, m in pred.items():
                write_image(tmp / f"{n}.png", m.astype("uint8") * 255)
    if args.json:
        write_json(args.json, res)
    if args.per_image:
        for n, m in res["per_image"].items():
            print(f"{n}\t" + "\t".join(f"{k} {v:.4f}" for k, v in m.items()))
    print(f"{res['n_images']} images ({args.method}; foreground = mask, fixed polarity)")
    for level in ("dataset", "per_image_mean"):
        m = res[level]
        print(
            f"{level:15s} fg_iou {m['fg_iou']:.4f}  bg_iou {m['bg_iou']:.4f}  "
            f"miou {m['miou']:.4f}  pixel_acc {m['pixel_acc']:.4f}"
        )
    if args.json:
        print(f"details in {args.json}", file=sys.stderr)
    return 0


def _threshold(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number in [0, 1]")
    return v


def _add_trainer(sub: argparse._SubParsersAction, name: str, cls: type, func, **kw: Any) -> None:
    from maskgen.engine import RunOptions, add_config_arguments

    p = sub.add_parser(name, **kw)
    p.add_argument("--out", required=True, help="run folder (rerun the command to resume)")
    add_config_arguments(p, cls)
    add_config_arguments(p, RunOptions)
    p.set_defaults(func=func)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from maskgen.independence.distillation import DistillConfig
    from maskgen.independence.segmentation import SegmentConfig

    _add_trainer(
        sub,
        "train",
        SegmentConfig,
        _cmd_train,
        help="train the foreground provider adversarially (paper eq. 6-7)",
        description="Train a UNet to predict the mask of box-cropped images by compositing its "
        "cut-outs on real backgrounds against an SN-GAN discriminator, with the mask-area "
        "penalty (Dai et al. 2019). Presets: cpu (32x32 narrow nets, stabilised; default), "
        "paper (Table 1 at 128x128, plain), tiny (tests). Resumes automatically from --out.",
    )
    _add_trainer(
        sub,
        "distill",
        DistillConfig,
        _cmd_distill,
        help="data distillation: a student learns the teacher's masks on new composites (eq. 8)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    from maskgen.engine import add_config_arguments
    from maskgen.independence.refine import RefineConfig
    from maskgen.independence.tta import TTA_CHOICES

    parser = subparsers.add_parser(
        "segment",
        help="foreground segmentation from box crops (independence prior): train, distill, predict, evaluate",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_train(sub)

    p = sub.add_parser("predict", help="soft and binary mask PNGs for a folder of box crops")
    p.add_argument("--model", required=True, help="model folder or segment/distill run folder")
    p.add_argument("--images", required=True, help="folder of box crops")
    p.add_argument("--out", required=True, help="new folder for soft/ and binary/ masks")
    p.add_argument(
        "--threshold", type=_threshold, default=None, help="binarisation threshold (model's, 0.5)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default=None,
        help="test-time augmentation: flip (mean with the mirror image's mask) or none "
        "(default: the one saved with the model)",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier prediction in --out")
    add_config_arguments(p, RefineConfig)
    p.set_defaults(func=_cmd_predict)

    e = sub.add_parser(
        "evaluate",
        help="foreground/background IoU, 2-class mIoU, pixel accuracy (fixed polarity)",
    )
    e.add_argument("--pred", default=None, help="predicted masks (a predict --out folder, or PNGs)")
    e.add_argument("--gt", required=True, help="ground-truth masks (PNG, 0/255, same names)")
    e.add_argument(
        "--method",
        default="model",
        choices=["model", "grabcut"],
        help="grabcut: run the OpenCV GrabCut baseline on --images instead of --pred",
    )
    e.add_argument("--images", default=None, help="box crops for --method grabcut")
    e.add_argument("--inset", type=int, default=3, help="GrabCut rectangle inset in pixels")
    e.add_argument("--save-masks", default=None, help="write GrabCut's masks to this new folder")
    e.add_argument(
        "--json", default=None, help="write all numbers (per image too) to this JSON file"
    )
    e.add_argument("--per-image", action="store_true", help="print one line per image")
    e.add_argument("--force", action="store_true", help="overwrite --json / --save-masks")
    e.set_defaults(func=_cmd_evaluate)


__all__ = ["register"]
