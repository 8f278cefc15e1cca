"""benchmarks/independence_ablation.py without training: run lists, the table's target counts,
and re-recording a finished (read-only) result folder with --from-results."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location(
        "independence_ablation", REPO / "benchmarks/independence_ablation.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(set_name, conf, seed, teacher, student):
    return {
        "set": set_name,
        "config": conf,
        "seed": seed,
        "teacher_fg_iou": teacher,
        "student_fg_iou": student,
        "realism": teacher / 2,
        "sec_per_iter": 0.1,
        "cpu_s": 480.0,
    }


def test_default_runs_fit_one_wave(ablation):
    runs = ablation.DEFAULT_RUNS
    assert len(runs) == 15 and len(set(runs)) == 15
    assert all(c in ablation.CONFIGS for _, c, _ in runs)


def test_cross_runs_and_unknown_config(ablation):
    runs = ablation.cross_runs("photo-holdout", "cpu,mild", "0,1")
    assert runs == [
        ("photo-holdout", "cpu", 0),
        ("photo-holdout", "cpu", 1),
        ("photo-holdout", "mild", 0),
        ("photo-holdout", "mild", 1),
    ]
    with pytest.raises(SystemExit, match="unknown configuration nope"):
        ablation.cross_runs("photo", "cpu,nope", "0")


def test_table_counts_seeds_meeting_the_targets(ablation):
    refs = {"photo-holdout": {"grabcut": 0.5, "circle": 0.5}}
    runs = [
        _run("photo-holdout", "cpu", 0, 0.66, 0.49),  # teacher >= 0.65, student < GrabCut
        _run("photo-holdout", "cpu", 1, 0.60, 0.70),
        _run("photo-holdout", "cpu", 2, 0.64, 0.50),  # student == GrabCut counts as met
    ]
    row = ablation.table(runs, refs)[2]
    assert "| 0.600-0.660 | 0.660 / 0.600 / 0.640 |" in row
    assert "| 2 of 3 | 1 of 3 |" in row


def test_from_results_rebuilds_from_a_read_only_folder(ablation, tmp_path, capsys):
    out = tmp_path / "ablation"
    out.mkdir()
    summary = {
        "runs": [_run("photo-holdout", "mild", s, 0.6 + s / 100, 0.7) for s in (2, 0, 1)],
        "references": {"photo-holdout": {"grabcut": 0.493, "circle": 0.498}},
        "wall_s": 420.0,
        "jobs": 15,
        "machine": "some 16-core CPU, 1 torch thread per run",
        "grid_rows": {"photo-holdout": ["teacher cpu", "student mild"]},
        "command": "python benchmarks/independence_ablation.py --out X --jobs 15",
    }
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "grid-photo-holdout.png").write_bytes(b"png")
    before = sorted(p.name for p in out.iterdir())
    os.chmod(out, stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert ablation.main(["--out", str(out), "--from-results", "--no-record"]) == 0
    finally:
        os.chmod(out, stat.S_IRWXU)
    text = capsys.readouterr().out
    assert "| photo-holdout | mild | 0,1,2 | 0.600-0.620 | 0.600 / 0.610 / 0.620 |" in text
    assert "3 of 3 | 0 of 3 | 0.493 | 0.498 |" in text
    assert "some 16-core CPU" in text and "![grid-photo-holdout]" in text
    assert "photo-holdout: teacher cpu, student mild" in text
    assert sorted(p.name for p in out.iterdir()) == before


def test_from_results_without_summary_fails(ablation, tmp_path):
    with pytest.raises(SystemExit, match="summary.json not found"):
        ablation.main(["--out", str(tmp_path), "--from-results", "--no-record"])


def test_targets_need_every_seed_and_three_seeds(ablation):
    refs = {
        "photo-holdout": {"grabcut": 0.5, "circle": 0.5},
        "texture": {"grabcut": 0.6, "circle": 0.4},
    }
    runs = [_run("photo-holdout", "cpu", s, 0.66, 0.5 + s / 10) for s in range(3)]
    runs += [_run("texture", "cpu", s, 0.5, 0.6 - s / 100) for s in range(3)]
    runs += [_run("photo-holdout", "mild", s, 0.7, 0.7) for s in range(2)]
    lines = ablation.targets(runs, refs)
    assert lines[0] == (
        "- photo-holdout, `cpu`: student >= GrabCut 0.500: MET (3 of 3 seeds); "
        "teacher >= circle + 0.15 = 0.650: MET (3 of 3 seeds)"
    )
    assert "fewer than 3 seeds: no claim" in lines[1]  # mild: 2 seeds only
    assert lines[2] == "- texture, `cpu`: student >= GrabCut 0.600: NOT MET (1 of 3 seeds)"


def test_refine_rows_apart_and_only_for_refined_runs(ablation, capsys, tmp_path):
    refs = {"photo-holdout": {"grabcut": 0.5, "circle": 0.5}}
    runs = [_run("photo-holdout", "cpu", s, 0.6, 0.55) for s in range(3)]
    assert ablation.refine_table(runs, refs) == []  # recorded before --refine: no rows
    for r, v in zip(runs, (0.7, 0.45, 0.8), strict=True):
        r.update(teacher_refined_fg_iou=v - 0.1, student_refined_fg_iou=v)
    row = ablation.refine_table(runs, refs)[2]
    assert "| 0.450-0.800 | 0.700 / 0.450 / 0.800 | 2 of 3 | 0.550-0.550 | 0.500 |" in row
    out = tmp_path / "abl"
    out.mkdir()
    summary = {
        "runs": runs,
        "references": refs,
        "wall_s": 60.0,
        "jobs": 1,
        "machine": "m",
        "grid_rows": {},
        "command": "c",
    }
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "grid-photo-holdout.png").write_bytes(b"png")
    args = ["--out", str(out), "--from-results", "--no-record", "--section", "indep-3seed"]
    assert ablation.main(args) == 0
    text = capsys.readouterr().out
    assert "--refine" in text and "figures/indep-3seed_grid-photo-holdout.png" in text
    # the unrefined targets stay unrefined: the student's 0.55 meets GrabCut at every seed
    assert "student >= GrabCut 0.500: MET (3 of 3 seeds)" in text


def test_refine_tuning_section():
    spec = importlib.util.spec_from_file_location(
        "refine_tuning", REPO / "benchmarks/refine_tuning.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod._label("/x/runs/s0-student/model") == "s0-student"
    assert mod._label("/x/runs/s0-teacher") == "s0-teacher"
    res = {"s0-student": {"plain": 0.56, "0.7/0.3/1": 0.595, "0.9/0.1/1": 0.515}}
    lines = mod.section(res, 0.679, 30.0)
    assert "GrabCut from the box 0.679" in lines[0] and "0.5 CPU min" in lines[0]
    assert lines[2] == "| model | unrefined | 0.7/0.3/1 | 0.9/0.1/1 |"
    assert lines[4] == "| s0-student | 0.560 | 0.595 | 0.515 |"


def test_grid_plan_draws_the_refined_student(ablation):
    runs = [("photo-holdout", c, s) for c in ("cpu", "mild") for s in (1, 2)]
    runs.append(("texture", "cpu", 2))
    here, rows = ablation.grid_plan(runs, "cpu,mild")
    assert here == {"photo-holdout": ["cpu", "mild"], "texture": ["cpu"]}
    assert rows["photo-holdout"][-2:] == ["student mild", "student mild + refine"]
    assert rows["texture"] == ["teacher cpu", "student cpu", "student cpu + refine"]


def test_add_refine_needs_work(ablation, tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"runs": [], "command": "c"}))
    with pytest.raises(SystemExit, match="--add-refine: needs --work"):
        ablation.main(["--out", str(tmp_path), "--from-results", "--add-refine", "--no-record"])


def _curve(conf, seed, points):
    keys = ("area threshold", "test soft area", "test area at 0.5", "test true area")
    pts = {str(k): {**dict(zip(ablation_rules(), v, strict=True)), **dict.fromkeys(keys, 0.25)}
           for k, v in points.items()}  # fmt: skip
    return {"set": "photo", "config": conf, "seed": seed, "points": pts}


def ablation_rules():
    return ("0.5", "area", "flip 0.5", "flip area")


def test_curve_table_means_only_over_shared_steps(ablation):
    assert ablation_rules() == ablation.RULES
    res = [
        _curve("cpu", 0, {3000: (0.60, 0.59, 0.62, 0.61), 6000: (0.64, 0.63, 0.66, 0.65)}),
        _curve("cpu", 1, {3000: (0.62, 0.61, 0.64, 0.63)}),  # stopped before 6000
    ]
    lines = ablation.curve_lines(res, {"photo": {"grabcut": 0.68, "circle": 0.45}})
    assert "| photo | cpu | 0 | 6000 | 0.640 | 0.630 | 0.660 | 0.650 |" in lines[3]
    means = [x for x in lines if x.startswith("| photo | cpu | ")]
    assert "| photo | cpu | 3000 | 0,1 | 0.610 | 0.600 | 0.630 | 0.620 |" in means
    assert not any(x.startswith("| photo | cpu | 6000 | 0,1") for x in means)
    assert "circle + 0.15 = 0.600" in lines[-1]


def test_area_threshold_matches_the_share(ablation):
    import numpy as np

    soft = np.linspace(0, 1, 1001)
    t = ablation.area_threshold(soft, 0.25)
    assert abs((soft >= t).mean() - 0.25) < 0.002


def test_curve_needs_sets_and_configs(ablation, tmp_path):
    with pytest.raises(SystemExit, match="--curve: needs --sets and --configs"):
        ablation.main(["--out", str(tmp_path), "--curve", "2,4", "--no-record"])


def test_curve_from_results_trains_nothing(ablation, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    r = _curve("cpu", 0, {3000: (0.60, 0.59, 0.62, 0.61)})
    (work / "results" / "photo-cpu-s0-curve6000.json").write_text(json.dumps(r))
    monkeypatch.setattr(ablation, "make_set", lambda *a: None)
    monkeypatch.setattr(ablation, "references", lambda d: {"grabcut": 0.68, "circle": 0.45})
    monkeypatch.setattr(ablation, "curve_one", lambda *a: pytest.fail("trained"))
    args = ["--out", str(tmp_path / "out"), "--work", str(work), "--curve", "3000,6000",
            "--sets", "photo", "--configs", "cpu", "--seeds", "0,1", "--from-results",
            "--no-record"]  # fmt: skip
    assert ablation.main(args) == 0
    text = (tmp_path / "out" / "curve.md").read_text()
    assert "1 teacher runs" in text and "| photo | cpu | 0 | 3000 | 0.600 |" in text
