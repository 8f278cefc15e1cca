"""Classical amodal baselines (raw visible mask, convex hull) on amodal ground truth.

    python benchmarks/amodal_baselines.py [--gt GT.json] [--out DIR] [--generate] [--no-record]

Default ground truth: the built-in scenes' test split,
``benchmarks/data/scenes/annotations/test_kins2020.json``; ``--generate`` makes it first with
``maskgen data scenes --out benchmarks/data/scenes`` (seed 0, default sizes) when it is missing.
Evaluates both baselines with :func:`maskgen.evaluation.evaluate_predictions` (every metric of
docs/design.md, "Evaluation"; overall and by occlusion bucket), writes each report folder under ``--out``
(``metrics.json``, ``metrics.md``, ``iou_vs_visible.png``, ``per_instance.csv``), prints one
Markdown section and records it as section ``amodal-baselines`` of ``benchmarks/RESULTS.md``
through ``benchmarks/_record.py`` (unless ``--no-record``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENES = "benchmarks/data/scenes"
DEFAULT_GT = f"{DEFAULT_SCENES}/annotations/test_kins2020.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gt", default=DEFAULT_GT, help=f"amodal ground truth (default {DEFAULT_GT})"
    )
    parser.add_argument(
        "--out", default="runs/amodal_baselines", help="report folders go here (replaced)"
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="generate the built-in scenes when the default GT is missing",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not write benchmarks/RESULTS.md"
    )
    args = parser.parse_args(argv)

    from maskgen.data.loader import load_dataset
    from maskgen.evaluation import BASELINES, baseline_protocol, evaluate_predictions, write_report
    from maskgen.evaluation.report import markdown_report

    gt_path = Path(args.gt)
    if not gt_path.is_absolute():
        gt_path = REPO / gt_path
    if not gt_path.exists() and args.gt == DEFAULT_GT and args.generate:
        cmd = ["maskgen", "data", "scenes", "--out", str(REPO / DEFAULT_SCENES)]
        print("generating:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    if not gt_path.exists():
        print(
            f"{args.gt}: not found; generate it with 'maskgen data scenes --out {DEFAULT_SCENES}' "
            "or pass --generate / --gt",
            file=sys.stderr,
        )
        return 2

    gt = load_dataset(gt_path)
    parts = [
        f"Ground truth: `{args.gt}` ({gt.layout}, {len(gt.images)} images, {gt.num_instances()} instances). "
        "Both baselines take the GT visible masks and work on the whole image; IoU in percent.",
        "",
    ]
    out_root = Path(args.out)
    for name in BASELINES:
        t0 = time.perf_counter()
        result = evaluate_predictions(gt, BASELINES[name], baseline_protocol(name))
        seconds = time.perf_counter() - t0
        write_report(result, out_root / name, force=True)
        body = markdown_report(result, title=f"{name}", heading="####").replace(
            f"- Ground truth: {gt_path} ", f"- Ground truth: {args.gt} "
        )
        parts.append(body)
        parts.append(
            f"Evaluation time: {seconds:.1f} s ({gt.num_instances() / max(seconds, 1e-9):.0f} instances/s, "
            "counts on run-length encodings, one process; the 2-core machine was shared with other work).\n"
        )
    markdown = "\n".join(parts)
    print(markdown)
    if not args.no_record:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from _record import record_section

        command = "python benchmarks/amodal_baselines.py" + (
            "" if args.gt == DEFAULT_GT else f" --gt {args.gt}"
        )
        path = record_section("amodal-baselines", markdown, command=command)
        print(f"recorded section amodal-baselines in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
