"""Does application 2's label-free selection rule agree with the labelled metrics?

``cluster train --restarts K`` keeps, of ``K`` runs, the one ranked first by
:func:`maskgen.independence.selection.rank_generators` on
:func:`~maskgen.independence.selection.generator_selection_score` -- numbers that need no
labels. This script takes finished runs of ``benchmarks/cluster_bench.py`` (any settings,
seeds and synthetic clusters), computes for each the label-free score exactly as the restarts
do and the labelled metrics exactly as the bench does, and reports

- every run's numbers;
- Spearman's rank correlation, over all runs, between the rule's order (one scalar: the
  one-object share below the 80 % bar, else ``2 - pairwise``, so that any run over the bar
  ranks above every run under it) and each labelled metric;
- for each setting trained at several seeds, which seed the rule keeps and which seed is best
  by each labelled metric.

Usage::

    python benchmarks/cluster_selection.py --works '/tmp/w2/*-[0-9]'
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTION = "cluster-selection"


def find_runs(works: list[Path]) -> list[dict]:
    """Finished bench runs: ``{"work", "run", "data", "shape", "label", "seed"}`` each."""
    found = []
    for work in works:
        for timing in sorted(work.glob("timing-synthetic-*.json")):
            m = re.fullmatch(r"timing-synthetic-(\w+)-(.+)-seed(\d+)\.json", timing.name)
            run = work / timing.name.replace("timing-", "run-").replace(".json", "")
            if not m or not (run / "DONE").is_file():
                continue
            shape, label, seed = m.group(1), m.group(2), int(m.group(3))
            data = work / f"synthetic-{shape}"
            found.append(dict(work=work, run=run, data=data, shape=shape, label=label, seed=seed))
    return found


def label_free(run: Path) -> dict:
    """The restarts' score of the saved generator (the same masks, the same rule)."""
    from maskgen.independence.cluster import SELECTION_MASKS, ClusterPredictor
    from maskgen.independence.selection import generator_selection_score

    pred = ClusterPredictor.from_folder(run)
    masks = pred.masks(SELECTION_MASKS, seed=0)
    return generator_selection_score(masks, pred.config.area_target)


def labelled(r: dict, refs: dict) -> dict:
    """The bench's labelled metrics of the saved generator (``cluster_bench``'s definitions)."""
    from cluster_bench import complete_shapes, generator_metrics

    from maskgen.independence.cluster_eval import best_disk, coverage_iou, disk_family_coverage

    m = generator_metrics(r["run"], r["data"], r["work"], trained=True, prior_scale=None)
    p, win = m["patch_size"], m["window"]
    key = (r["shape"], str(r["data"]))
    if key not in refs:
        full = complete_shapes(r["shape"], r["data"], win, p)
        refs[key] = dict(
            full=full,
            disk=best_disk(full, p, canvas=2 * p)[1],
            disks_cov=disk_family_coverage(full, p, canvas=2 * p),
        )
    ref = refs[key]
    from maskgen.independence.cluster_eval import best_match_iou

    complete = float(np.mean(best_match_iou(m["_masks"], ref["full"], canvas=2 * p)))
    cover = float(np.mean(coverage_iou(m["_masks"], ref["full"], canvas=2 * p)))
    return dict(
        single=m["single_object_rate"],
        complete=complete,
        complete_minus_disk=complete - ref["disk"],
        cover_minus_disks=cover - ref["disks_cov"],
        pairwise=m["mean_pairwise_iou"],
        paint=m["dark_share"],
    )


def rule_key(s: dict) -> float:
    """One scalar in the rule's order (higher = kept first)."""
    from maskgen.independence.selection import MIN_SINGLE_OBJECT

    if s["single_object"] >= MIN_SINGLE_OBJECT:
        return 2.0 - s["pairwise"]
    return s["single_object"]


METRICS = [
    ("single", "one-object share (labelled A_ref)", 1),
    ("complete_minus_disk", "complete-shape IoU - best disk", 1),
    ("cover_minus_disks", "coverage IoU - disks", 1),
    ("pairwise", "mean pairwise IoU (lower = more varied)", -1),
    ("paint", "background-colour paint (lower = better)", -1),
]


def report(rows: list[dict]) -> str:
    from scipy.stats import spearmanr

    from maskgen.independence.selection import rank_generators

    lines = [
        "| cluster | setting | seed | label-free one-object | label-free pairwise | one-object "
        "| complete - disk | coverage - disks | pairwise | paint |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, m = r["free"], r["lab"]
        lines.append(
            f"| {r['shape']} | `{r['label']}` | {r['seed']} | {s['single_object']:.1%} "
            f"| {s['pairwise']:.3f} | {m['single']:.1%} | {m['complete_minus_disk']:+.3f} "
            f"| {m['cover_minus_disks']:+.3f} | {m['pairwise']:.3f} | {m['paint']:.1%} |"
        )
    keys = [rule_key(r["free"]) for r in rows]
    lines += ["", f"Spearman's rho of the rule's order against each labelled metric, {len(rows)} runs "
              "(positive = the rule ranks runs as the metric does; the sign of the 'lower is "
              "better' metrics is turned):", ""]  # fmt: skip
    for key, name, sign in METRICS:
        rho = spearmanr(keys, [sign * r["lab"][key] for r in rows])[0]
        lines.append(f"- {name}: rho = {rho:+.2f}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["label"]), []).append(r)
    lines += ["", "Settings trained at several seeds: the seed the rule keeps and the seed best "
              "by each labelled metric:", "",
              "| cluster | setting | seeds | rule keeps | best one-object | best complete | "
              "best coverage | most varied | least paint |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    agree = [0] * len(METRICS)
    multi = [g for g in groups.values() if len(g) >= 2]
    for g in multi:
        kept = g[rank_generators([r["free"] for r in g])]["seed"]
        best = []
        for j, (key, _, sign) in enumerate(METRICS):
            vals = [sign * r["lab"][key] for r in g]
            top = [r["seed"] for r, v in zip(g, vals, strict=True) if v == max(vals)]
            agree[j] += kept in top
            best.append(",".join(map(str, top)))
        seeds = ",".join(str(r["seed"]) for r in g)
        lines.append(
            f"| {g[0]['shape']} | `{g[0]['label']}` | {seeds} | {kept} | " + " | ".join(best) + " |"
        )
    counts = "; ".join(
        f"{name.split(' (')[0]} {n} of {len(multi)}"
        for (_, name, _), n in zip(METRICS, agree, strict=True)
    )
    lines += ["", f"Of these {len(multi)} settings, the rule keeps the best seed by: {counts}."]
    off = [r for r in rows if abs(r["free"]["single_object"] - r["lab"]["single"]) > 0.2]
    lines += ["", "The label-free one-object share takes its reference area from `--area-target` "
              "(a P^2), the labelled one from the true instances (90th percentile of their areas); "
              f"they differ by more than 0.2 at {len(off)} of {len(rows)} runs"
              + (": " + ", ".join(f"`{r['label']}` seed {r['seed']}" for r in off) if off else "")
              + "."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--works",
        required=True,
        help="glob of cluster_bench --work folders, e.g. '/tmp/w2/*-[0-9]'",
    )
    ap.add_argument("--record", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import glob

    runs = find_runs([Path(p) for p in sorted(glob.glob(args.works))])
    if not runs:
        raise SystemExit("no finished cluster_bench runs under --works")
    refs: dict = {}
    for r in runs:
        r["free"], r["lab"] = label_free(r["run"]), labelled(r, refs)
        print(json.dumps({k: r[k] for k in ("shape", "label", "seed", "free", "lab")}), flush=True)
    md = report(runs)
    print(md)
    if args.record:
        from _record import record_section

        cmd = f"python benchmarks/cluster_selection.py --works '{args.works}'"
        record_section(SECTION, md, cmd)


if __name__ == "__main__":
    main()
