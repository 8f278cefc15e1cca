"""``maskgen demo``: built-in scenes -> completion -> evaluation -> summary and pictures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _amodal_tiny import save_tiny_model
from maskgen.cli.main import main


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=2, threshold=0.5)


def _demo(out: Path, model: Path, *extra: str) -> int:
    return main(
        [
            "demo",
            "--out",
            str(out),
            "--model",
            str(model),
            "--num-images",
            "4",
            "--image-size",
            "96",
            "--samples",
            "2",
            *extra,
        ]
    )


def test_demo_fast_end_to_end(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert _demo(out, tiny_model_dir) == 0
    printed = capsys.readouterr().out
    assert "summary.md" in printed and "samples_grid.png" in printed
    summary = (out / "summary.md").read_text()
    for row in ("raw visible mask (baseline)", "convex hull (baseline)", "**Amodal-VAE** (mode)"):
        assert row in summary
    assert "occluder" in summary.lower() or "other instances' visible masks" in summary
    res = json.loads((out / "results.json").read_text())
    gt = json.loads((out / "scenes/annotations/test_kins2020.json").read_text())
    assert len(res["annotations"]) == len(gt["annotations"]) > 0
    assert all(len(a["samples"]) == 2 for a in res["annotations"])
    for name in ("amodal-vae", "raw", "convex-hull"):
        m = json.loads((out / "eval" / name / "metrics.json").read_text())
        assert m["overall"]["n_instances"] == len(gt["annotations"])
    # the raw baseline's full IoU in the summary is the harness's number
    raw = json.loads((out / "eval/raw/metrics.json").read_text())["overall"]
    assert f"{100 * raw['full_iou_dataset']:.2f}" in summary
    assert len(list((out / "overlays").glob("*.png"))) == 4
    assert (out / "samples_grid.png").exists() or "(0 occluded instances)" in summary
    # refuses to overwrite without --force, replaces with it
    assert _demo(out, tiny_model_dir) == 2
    assert "--force" in capsys.readouterr().err
    assert _demo(out, tiny_model_dir, "--force") == 0


def test_demo_refuses_foreign_folder_and_missing_model(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert _demo(foreign, tiny_model_dir, "--force") == 2
    assert "not an earlier result of this command" in capsys.readouterr().err
    assert (foreign / "thesis.tex").read_text() == "precious"
    assert _demo(tmp_path / "d2", tmp_path / "no-model") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no-model" in err


def test_demo_default_with_shipped_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    capsys.readouterr()
    vae = json.loads((out / "eval/amodal-vae/metrics.json").read_text())["overall"]
    hull = json.loads((out / "eval/convex-hull/metrics.json").read_text())["overall"]
    raw = json.loads((out / "eval/raw/metrics.json").read_text())["overall"]
    assert vae["full_iou_dataset"] > raw["full_iou_dataset"]
    assert vae["invisible_iou_dataset"] > hull["invisible_iou_dataset"]
