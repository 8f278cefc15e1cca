"""Amodal evaluation: the harness, the classical baselines and the reports.

Public API::

    evaluate_predictions(gt, predict, protocol, *, progress=None) -> dict
    evaluate_results_file(gt, results_path, *, progress=None) -> dict
    predictions_from_results(gt, results, source="results") -> predictor
    raw_visible(image, instance) -> H x W bool
    convex_hull_baseline(image, instance) -> H x W bool
    BASELINES, baseline_protocol(name) -> dict
    markdown_report(result, title=None, command=None) -> str
    plot_iou_vs_visible(result, path)
    write_report(result, out_dir, force=False, command=None) -> list[Path]

The metric definitions are in :mod:`maskgen.core.metrics` (``docs/design.md``, "Evaluation").
"""

from maskgen.evaluation.baselines import (
    BASELINES,
    baseline_protocol,
    convex_hull_baseline,
    raw_visible,
)
from maskgen.evaluation.harness import (
    DEFINITIONS,
    Predictor,
    check_amodal_gt,
    evaluate_predictions,
    evaluate_results_file,
    predictions_from_results,
)
from maskgen.evaluation.report import markdown_report, plot_iou_vs_visible, write_report

__all__ = [
    "BASELINES",
    "DEFINITIONS",
    "Predictor",
    "baseline_protocol",
    "check_amodal_gt",
    "convex_hull_baseline",
    "evaluate_predictions",
    "evaluate_results_file",
    "markdown_report",
    "plot_iou_vs_visible",
    "predictions_from_results",
    "raw_visible",
    "write_report",
]
