"""The supplementary's analyses (``maskgen amodal analyze``) and the visible-mask corruptions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _amodal_tiny import save_tiny_model, tiny_scenes
from maskgen.amodal.analysis import group_gap_ci, local_counts, sigma_group
from maskgen.amodal.corruption import CorruptionConfig, corrupt_mask, corrupt_masks
from maskgen.amodal.predictor import AmodalPredictor
from maskgen.cli.main import main
from maskgen.core.metrics import instance_counts


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=1, threshold=0.4)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=6, seed=5)


def disk(h: int = 60, r: int = 20) -> np.ndarray:
    yy, xx = np.mgrid[:h, :h]
    return (yy - h / 2) ** 2 + (xx - h / 2) ** 2 < r * r


def test_corruption_is_seeded_and_moderate() -> None:
    m = disk()
    a = corrupt_mask(m, seed=3, index=7)
    b = corrupt_mask(m, seed=3, index=7)
    c = corrupt_mask(m, seed=4, index=7)
    assert a.dtype == bool and a.shape == m.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    iou = (a & m).sum() / (a | m).sum()
    assert 0.6 < iou < 0.99
    # each component can be switched off; all off is the identity
    off = CorruptionConfig(jitter_px=0, morph_frac=0, drop_prob=0)
    np.testing.assert_array_equal(corrupt_mask(m, 0, 0, off), m)
    dropped = corrupt_mask(m, 0, 0, CorruptionConfig(jitter_px=0, morph_frac=0, drop_prob=0.5))
    assert not (dropped & ~m).any() and 0.4 < dropped.sum() / m.sum() < 0.6
    # never empties a mask; empty stays empty
    tiny = np.zeros((20, 20), bool)
    tiny[10, 10] = True
    assert corrupt_mask(tiny, 0, 0, CorruptionConfig(morph_frac=0.9, drop_prob=0.99)).any()
    assert not corrupt_mask(np.zeros((5, 5), bool)).any()
    many = corrupt_masks(np.stack([m, m]), seed=3, start_index=7)
    np.testing.assert_array_equal(many[0], a)


def test_sigma_groups() -> None:
    assert sigma_group(0, 100) == "0"
    assert sigma_group(1, 100) == "1-50"
    assert sigma_group(50, 100) == "1-50"
    assert sigma_group(51, 100) == ">50"


def test_local_counts_match_metrics(tiny_model_dir: Path) -> None:
    pred = AmodalPredictor.from_folder(tiny_model_dir)
    m = np.zeros((2, 40, 40), bool)
    m[0, 8:30, 6:30] = True
    m[1, 4:36, 20:26] = True
    m[0] &= ~m[1]
    amodal = np.zeros((40, 40), bool)
    amodal[8:30, 6:30] = True
    comps = pred.complete_image(m, samples=3, restrict_to_occluders=False)
    c = comps[0]
    assert local_counts(c, None, amodal, m[0]) == instance_counts(c.amodal_mask, amodal, m[0])
    for s in range(3):
        assert local_counts(c, s, amodal, m[0]) == instance_counts(c.samples[s], amodal, m[0])


def test_analyze_cli_writes_every_file(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from maskgen.data.loader import load_dataset
    from maskgen.evaluation.baselines import raw_visible
    from maskgen.evaluation.harness import evaluate_predictions

    gt_path = scenes / "annotations/test_kins2020.json"
    out = tmp_path / "an"
    rc = main(
        [
            "amodal",
            "analyze",
            "--model",
            str(tiny_model_dir),
            "--gt",
            str(gt_path),
            "--out",
            str(out),
            "--samples",
            "4",
        ]
    )
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert "Fig. 4" in text and "Table 1" in text
    for name in (
        "analysis.json",
        "prior_samples.png",
        "posterior_sigma.png",
        "miou_vs_visible.png",
        "gt_vs_corrupted.png",
    ):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "analysis.json").read_text())
    n = res["n_instances"]
    gt = load_dataset(gt_path)
    assert n == gt.num_instances()
    f4 = res["fig4_posterior_sigma"]
    assert sum(g["n"] for g in f4["groups"].values()) == n
    assert len(f4["plotted_latents"]) == 15 and len(f4["mean_sigma_all_latents"]) == 64
    assert set(f4["gaps"]) == {"0 -> 1-50", "1-50 -> >50"}
    assert isinstance(f4["finding_significant"], bool)
    f1 = res["fig1_miou_vs_visible_ratio"]
    assert sum(b["n"] for b in f1["bins"]) == n
    o = f1["overall"]
    assert o["best_of_k_full_iou_mean"] >= 0 and isinstance(
        f1["finding_gap_shrinks_with_visibility"], bool
    )
    # Table 1's "raw GT visible mask" row is exactly the harness's raw baseline
    raw = evaluate_predictions(gt, raw_visible, {"method": "raw"}, progress=False)["overall"]
    t1 = res["table1_gt_vs_corrupted"]
    for k in ("full_iou_dataset", "full_iou_mean", "invisible_iou_dataset"):
        assert t1["gt_visible"]["raw_input_mask"]["overall"][k] == pytest.approx(raw[k])
    # corrupted masks score below GT ones as raw inputs
    assert (
        t1["corrupted_visible"]["raw_input_mask"]["overall"]["full_iou_mean"]
        < t1["gt_visible"]["raw_input_mask"]["overall"]["full_iou_mean"]
    )
    assert res["protocol"]["restrict_to_occluders"] is True
    # refuses to overwrite; --force replaces
    rc = main(
        [
            "amodal",
            "analyze",
            "--model",
            str(tiny_model_dir),
            "--gt",
            str(gt_path),
            "--out",
            str(out),
            "--samples",
            "0",
        ]
    )
    assert rc == 2 and "--force" in capsys.readouterr().err


def test_analyze_needs_amodal_ground_truth(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "amodal",
            "analyze",
            "--model",
            str(tiny_model_dir),
            "--gt",
            str(scenes / "annotations/test_coco.json"),
            "--out",
            str(tmp_path / "a"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "amodal" in err
    assert not (tmp_path / "a" / "analysis.json").exists()


def test_group_gap_ci_separates_real_gaps_from_noise():
    rng = np.random.default_rng(0)
    a = rng.normal(0.20, 0.02, 500)
    clear = group_gap_ci(a, rng.normal(0.22, 0.02, 500))
    assert clear["gap"] == pytest.approx(0.02, abs=0.005) and clear["ci95"][0] > 0
    none = group_gap_ci(a, rng.normal(0.20, 0.02, 500))
    assert none["ci95"][0] < 0 < none["ci95"][1]
    assert group_gap_ci(a, np.zeros(0))["gap"] is None
