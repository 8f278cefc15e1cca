"""``maskgen amodal evaluate``: the amodal evaluation harness.

    maskgen amodal evaluate --gt GT.json (--pred RESULTS.json | --method raw|convex-hull)
                            --out DIR [--force] [--layout auto|kins-2020|kins-old|cocoa]

Writes ``DIR/metrics.json``, ``DIR/metrics.md``, ``DIR/iou_vs_visible.png`` and
``DIR/per_instance.csv`` (see :mod:`maskgen.evaluation.report`) and prints the Markdown table.
Every input is read and every metric computed before anything is written; a non-empty ``DIR``
is refused unless ``--force``, and even then only an earlier report (with ``metrics.json``) is
replaced.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from maskgen.core.io import prepare_out_dir, require_file
from maskgen.data.loader import LAYOUTS, load_dataset
from maskgen.evaluation import (
    BASELINES,
    baseline_protocol,
    evaluate_predictions,
    evaluate_results_file,
    markdown_report,
    write_report,
)


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``amodal`` group."""
    p = subparsers.add_parser(
        "evaluate",
        help="score amodal masks against KINS/COCOA ground truth (all metrics, by occlusion)",
        description=(
            "Score amodal completions (a results file from 'maskgen amodal complete', or a classical "
            "baseline) against amodal ground truth: full and invisible IoU, dataset-level and "
            "per-instance mean, overall and by occlusion ratio (0, <=25%%, <=50%%, >50%%)."
        ),
    )
    p.add_argument(
        "--gt",
        required=True,
        metavar="GT.json",
        help="amodal ground truth: KINS (old or 2020 layout) or COCOA JSON",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--pred",
        metavar="RESULTS.json",
        help="results file written by 'maskgen amodal complete' (or a COCO result list with GT ids)",
    )
    src.add_argument(
        "--method",
        choices=sorted(BASELINES),
        help="evaluate a classical baseline from the GT visible masks",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (metrics.json, metrics.md, iou_vs_visible.png, per_instance.csv)",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite the report files in an existing --out"
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=("auto", *LAYOUTS),
        help="GT layout (default: detect from the keys)",
    )
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from maskgen.evaluation.harness import check_amodal_gt
    from maskgen.evaluation.report import REPORT_MARKER

    require_file(args.gt, "ground-truth JSON")
    if args.pred is not None:
        require_file(args.pred, "results JSON")
    prepare_out_dir(args.out, args.force, marker=REPORT_MARKER)
    gt = load_dataset(args.gt, args.layout)
    check_amodal_gt(gt)
    if args.pred is not None:
        result = evaluate_results_file(gt, args.pred)
    else:
        result = evaluate_predictions(gt, BASELINES[args.method], baseline_protocol(args.method))
    command = "maskgen amodal evaluate " + " ".join(
        shlex.quote(a)
        for a in (
            ["--gt", args.gt]
            + (["--pred", args.pred] if args.pred else ["--method", args.method])
            + ["--out", args.out]
        )
    )
    files = write_report(result, args.out, force=args.force, command=command)
    sys.stdout.write(markdown_report(result))
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0
