"""``maskgen segment ...``: foreground segmentation with box-level labels (independence prior,
application 1): train, distill, predict, evaluate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _widths(text: str) -> list[int]:
    try:
        w = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not w or any(v < 1 for v in w):
        raise argparse.ArgumentTypeError(f"expected positive widths, got {text!r}")
    return w


def _cmd_train(args: argparse.Namespace) -> int:
    from maskgen.independence.segmentation import train_segmentation

    train_segmentation(
        images=args.images,
        backgrounds=args.backgrounds,
        out=args.out,
        boxes=args.boxes,
        box_margin=args.box_margin,
        preset=args.preset,
        size=args.size,
        unet_widths=args.unet_widths,
        disc=args.disc,
        steps=args.steps,
        batch_size=args.batch_size,
        lr_d=args.lr_d,
        lr_g=args.lr_g,
        area_weight=args.area_weight,
        area_target=args.area_target,
        area_warmup=args.area_warmup,
        instance_noise=args.instance_noise,
        ema=args.ema,
        loss=args.loss,
        seed=args.seed,
        device=args.device,
        log_every=args.log_every,
        ckpt_every=args.ckpt_every,
        threads=args.threads,
        stop_after=args.stop_after,
    )
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from maskgen.independence.distillation import distill

    distill(
        teacher=args.teacher,
        out=args.out,
        images=args.images,
        backgrounds=args.backgrounds,
        boxes=args.boxes,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        unet_widths=args.unet_widths,
        size=args.size,
        original_fraction=args.original_fraction,
        seed=args.seed,
        device=args.device,
        log_every=args.log_every,
        ckpt_every=args.ckpt_every,
        threads=args.threads,
        stop_after=args.stop_after,
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from maskgen.independence.predict import predict_folder

    s = predict_folder(
        args.model,
        args.images,
        args.out,
        device=args.device,
        threshold=args.threshold,
        force=args.force,
    )
    print(f"wrote {s['n_images']} soft and binary masks to {args.out}/soft and {args.out}/binary")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from maskgen.core.io import read_image, write_json
    from maskgen.data.segmentation_sets import list_images, load_mask_folder
    from maskgen.errors import MaskgenError
    from maskgen.independence.predict import evaluate_masks, grabcut_folder

    gt = load_mask_folder(args.gt)
    if args.method == "grabcut":
        if not args.images:
            raise MaskgenError("--method grabcut needs --images DIR (the box crops)")
        pred = grabcut_folder(args.images, inset=args.inset)
        where = f"{args.images} (grabcut)"
        if args.save_masks:
            from maskgen.core.io import write_image

            for n, m in pred.items():
                write_image(Path(args.save_masks) / f"{n}.png", m.astype("uint8") * 255)
    else:
        if not args.pred:
            raise MaskgenError("--pred DIR is required (or --method grabcut --images DIR)")
        pdir = Path(args.pred)
        if (pdir / "binary").is_dir():
            pdir = pdir / "binary"
        pred = {p.stem: read_image(p, "L") > 127 for p in list_images(pdir, "prediction folder")}
        where = str(pdir)
    res = evaluate_masks(pred, gt, where)
    res["method"] = args.method
    res["source"] = where
    res["gt"] = str(args.gt)
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


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--log-every", type=int, default=50, help="steps per metrics.jsonl line / image grid"
    )
    p.add_argument("--ckpt-every", type=int, default=250, help="steps per checkpoint")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="foreground segmentation from box crops (independence prior): train, distill, predict, evaluate",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train the foreground provider adversarially (paper eq. 6-7)",
        description="Train a UNet to predict the mask of box-cropped images by compositing its "
        "cut-outs on real backgrounds against an SN-GAN discriminator, with the mask-area "
        "penalty (Dai et al. 2019). Resumes automatically from --out.",
    )
    t.add_argument(
        "--images", required=True, help="folder of box-cropped images (or full images with --boxes)"
    )
    t.add_argument(
        "--boxes", default=None, help="COCO JSON with bbox per annotation to crop --images by"
    )
    t.add_argument("--box-margin", type=float, default=0.1, help="box growth per side with --boxes")
    t.add_argument(
        "--backgrounds", required=True, help="folder of background images (at least the crop size)"
    )
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument(
        "--preset",
        default="cpu",
        choices=["cpu", "paper", "tiny"],
        help="cpu: 64x64 narrow nets, stabilised (default); paper: Table 1 at 128x128, plain",
    )
    t.add_argument("--size", type=int, default=None, help="input size (preset's by default)")
    t.add_argument("--unet-widths", type=_widths, default=None, help="e.g. 32,64,128,128,128")
    t.add_argument(
        "--disc", default=None, help="discriminator preset (app1-cpu, app1-paper, app1-small, tiny)"
    )
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr-d", type=float, default=2e-4)
    t.add_argument("--lr-g", type=float, default=4e-4)
    t.add_argument(
        "--area-weight", type=float, default=1000.0, help="lambda of eq. 7 (paper: 1000)"
    )
    t.add_argument("--area-target", type=float, default=0.25, help="a of eq. 7 (paper: 0.25)")
    t.add_argument(
        "--area-warmup", type=int, default=None, help="steps of linear lambda warm-up (paper: 0)"
    )
    t.add_argument(
        "--instance-noise",
        type=float,
        default=None,
        help="D input noise std, annealed to 0 (paper: 0)",
    )
    t.add_argument(
        "--ema", type=float, default=None, help="EMA decay of the saved UNet (paper: 0 = off)"
    )
    t.add_argument("--loss", default="nonsaturating", choices=["nonsaturating", "hinge"])
    add_common(t)
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser(
        "distill",
        help="data distillation: a student learns the teacher's masks on new composites (eq. 8)",
    )
    d.add_argument(
        "--teacher", required=True, help="teacher run folder (segment train --out) or model folder"
    )
    d.add_argument("--out", required=True, help="student run folder")
    d.add_argument("--images", default=None, help="default: the teacher run's")
    d.add_argument("--backgrounds", default=None, help="default: the teacher run's")
    d.add_argument("--boxes", default=None)
    d.add_argument("--steps", type=int, default=600)
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument(
        "--unet-widths", type=_widths, default=None, help="student widths (default: teacher's)"
    )
    d.add_argument(
        "--size",
        type=int,
        default=None,
        help="student input size (default: native crop side, at most 2x the teacher's)",
    )
    d.add_argument(
        "--original-fraction",
        type=float,
        default=0.0,
        help="share of original images among the new composites (paper: 0)",
    )
    add_common(d)
    d.set_defaults(func=_cmd_distill)

    p = sub.add_parser("predict", help="soft and binary mask PNGs for a folder of box crops")
    p.add_argument("--model", required=True, help="model folder or segment/distill run folder")
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--threshold", type=float, default=None, help="binarisation threshold (model's, 0.5)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="overwrite an earlier prediction in --out")
    p.set_defaults(func=_cmd_predict)

    e = sub.add_parser(
        "evaluate",
        help="foreground/background IoU, 2-class mIoU, pixel accuracy (fixed polarity)",
    )
    e.add_argument("--pred", default=None, help="predicted masks (a predict --out folder, or PNGs)")
    e.add_argument("--gt", required=True, help="ground-truth masks (PNG, same names)")
    e.add_argument(
        "--method",
        default="model",
        choices=["model", "grabcut"],
        help="grabcut: run the OpenCV GrabCut baseline on --images instead of --pred",
    )
    e.add_argument("--images", default=None, help="box crops for --method grabcut")
    e.add_argument("--inset", type=int, default=3, help="GrabCut rectangle inset in pixels")
    e.add_argument("--save-masks", default=None, help="write GrabCut's masks here")
    e.add_argument(
        "--json", default=None, help="write all numbers (per image too) to this JSON file"
    )
    e.add_argument("--per-image", action="store_true", help="print one line per image")
    e.set_defaults(func=_cmd_evaluate)


__all__ = ["register"]
