"""benchmarks/cluster_selection.py without training: finding bench runs, the rule's scalar order
and the report's agreement counts on made-up rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "cluster_selection", REPO / "benchmarks/cluster_selection.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(label, seed, single, pairwise, lab_single, complete, cover):
    lab = dict(single=lab_single, complete=0.6 + complete, complete_minus_disk=complete,
               cover_minus_disks=cover, pairwise=pairwise, paint=0.05 * (seed + 1))  # fmt: skip
    free = {"single_object": single, "pairwise": pairwise}
    return {"shape": "horse", "label": label, "seed": seed, "free": free, "lab": lab}


def test_rule_key_puts_every_whole_run_above_every_broken_one(bench):
    broken = bench.rule_key({"single_object": 0.79, "pairwise": 0.1})
    blob = bench.rule_key({"single_object": 0.8, "pairwise": 0.99})
    varied = bench.rule_key({"single_object": 0.9, "pairwise": 0.5})
    assert broken < blob < varied


def test_report_counts_where_the_rule_keeps_the_best_seed(bench):
    rows = [
        _row("a", 0, 0.5, 0.3, 0.5, -0.2, -0.1),  # broken
        _row("a", 1, 0.9, 0.6, 0.9, -0.02, 0.05),  # whole and varied: the rule's pick
        _row("a", 2, 1.0, 0.9, 1.0, -0.01, -0.02),  # whole blob: best complete, not coverage
        _row("b", 0, 1.0, 0.5, 1.0, 0.0, 0.01),
    ]
    md = bench.report(rows)
    assert "| horse | `a` | 0,1,2 | 1 |" in md  # one multi-seed setting, seed 1 kept
    assert "coverage IoU - disks 1 of 1" in md and "complete-shape IoU - best disk 0 of 1" in md
    assert "4 runs" in md and "at 0 of 4 runs" in md


def test_find_runs_reads_only_finished_bench_runs(bench, tmp_path):
    work = tmp_path / "w"
    for seed, done in ((0, True), (1, False)):
        run = work / f"run-synthetic-horse-qx-seed{seed}"
        run.mkdir(parents=True)
        (work / f"timing-synthetic-horse-qx-seed{seed}.json").write_text("{}")
        if done:
            (run / "DONE").write_text("")
    found = bench.find_runs([work])
    assert [(r["shape"], r["label"], r["seed"]) for r in found] == [("horse", "qx", 0)]
    assert found[0]["data"] == work / "synthetic-horse"
