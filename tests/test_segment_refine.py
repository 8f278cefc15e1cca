"""``--refine`` (issue 12, item 5): GrabCut seeded with the learned soft mask. The labels it is
seeded with, that it sharpens a blurred blob on a toy crop, its fall-backs, the Python
predictor, a tiny ``segment predict --refine`` through the CLI, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskgen.cli.main import main
from maskgen.independence.predict import Segmenter, SegmentPredictor
from maskgen.independence.providers import UNET_PRESETS
from maskgen.independence.refine import RefineConfig, refine_mask, refine_masks, seed_labels

ON = RefineConfig(refine=True)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _toy_crop(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 64 x 64 crop: a red non-convex 'L' shape on a noisy blue-green background."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((64, 64), bool)
    gt[14:50, 16:30] = True
    gt[36:50, 16:48] = True
    lo, hi = np.array([0, 90, 120]), np.array([60, 160, 200])
    img = rng.integers(lo, hi, (64, 64, 3)).astype(np.uint8)
    img[gt] = np.clip(rng.normal((200, 40, 40), 12, (int(gt.sum()), 3)), 0, 255).astype(np.uint8)
    return img, gt


def _blob(gt: np.ndarray) -> np.ndarray:
    """A soft, blurred blob of the object's area and centre (what a weak teacher paints)."""
    h, w = gt.shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = np.argwhere(gt).mean(0)
    r = np.sqrt(gt.sum() / np.pi)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return (1 / (1 + np.exp((d - r) / 3.0))).astype(np.float32)


def test_seed_labels_confident_and_probable():
    soft = np.full((9, 9), 0.6, np.float32)
    soft[2:7, 2:7] = 0.95  # confident foreground block
    soft[:, 0] = 0.05  # confident background column
    soft[0, 5:] = 0.4
    lab = seed_labels(soft, 0.5, RefineConfig(refine=True, refine_erode=0))
    assert lab[4, 4] == cv2.GC_FGD and lab[0, 0] == cv2.GC_BGD
    assert lab[0, 6] == cv2.GC_PR_BGD and lab[8, 8] == cv2.GC_PR_FGD
    eroded = seed_labels(soft, 0.5, RefineConfig(refine=True, refine_erode=1))
    assert eroded[2, 2] == cv2.GC_PR_FGD and eroded[4, 4] == cv2.GC_FGD  # the edge is untrusted
    assert (eroded == cv2.GC_FGD).sum() == 9


def test_refine_sharpens_a_blurred_blob():
    """On crops where colour separates the object, GrabCut seeded by a circle-like soft blob
    recovers much of the true (non-convex) shape; the thresholded blob cannot."""
    gains = []
    for seed in range(3):
        img, gt = _toy_crop(seed)
        soft = _blob(gt)
        before = _iou(soft >= 0.5, gt)
        after = _iou(refine_mask(img, soft, 0.5, ON), gt)
        gains.append(after - before)
        assert after > before + 0.1, (seed, before, after)
    assert min(gains) > 0.1


def test_refine_falls_back_to_the_threshold():
    img, gt = _toy_crop()
    empty = np.zeros(gt.shape, np.float32)
    assert not refine_mask(img, empty, 0.5, ON).any()  # nothing foreground-ish: unchanged
    full = np.ones(gt.shape, np.float32)
    assert refine_mask(img, full, 0.5, ON).all()
    flat = np.full_like(img, 128)
    out = refine_mask(flat, _blob(gt), 0.5, ON)  # degenerate colours: no crash, a bool mask
    assert out.shape == gt.shape and out.dtype == bool
    assert refine_masks(np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 8, 8)), 0.5, ON).shape == (
        0,
        8,
        8,
    )


def test_refine_masks_checks_its_input():
    img, gt = _toy_crop()
    with pytest.raises(ValueError, match="do not match"):
        refine_masks(img[None], _blob(gt)[None, :32], 0.5, ON)
    with pytest.raises(ValueError, match="uint8"):
        refine_masks(img[None].astype(np.float32), _blob(gt)[None], 0.5, ON)
    from maskgen.errors import MaskgenError

    with pytest.raises(MaskgenError, match="must lie between"):
        refine_masks(img[None], _blob(gt)[None], 0.95, ON)


@pytest.fixture(scope="module")
def model_and_crops(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained tiny segmenter's model folder and a folder of three toy crops."""
    import torch

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("refine")
    Segmenter(UNET_PRESETS["tiny"]).eval().save_folder(d / "model", stage="teacher")
    (d / "crops").mkdir()
    for i in range(3):
        Image.fromarray(_toy_crop(i)[0][:40, :48]).save(d / "crops" / f"c{i}.png")
    return d / "model", d / "crops"


def test_python_predictor_refine(model_and_crops):
    model, crops = model_and_crops
    pred = SegmentPredictor.from_folder(model)
    x = np.stack([np.asarray(Image.open(p)) for p in sorted(crops.glob("*.png"))])
    soft = pred.predict(x)
    plain = pred.predict_binary(x)
    assert np.array_equal(plain, soft >= 0.5)
    assert np.array_equal(pred.predict_binary(x, refine=RefineConfig()), plain)  # refine off
    ref = pred.predict_binary(x, refine=ON)
    assert ref.shape == x.shape[:3] and ref.dtype == bool
    assert np.array_equal(ref, refine_masks(x, soft, 0.5, ON))


def test_predict_refine_cli(model_and_crops, tmp_path, capsys):
    model, crops = model_and_crops
    out = tmp_path / "pred"
    argv = ["segment", "predict", "--model", str(model), "--images", str(crops), "--out", str(out)]
    assert main([*argv, "--refine", "--refine-erode", "0", "--refine-iterations", "3"]) == 0
    assert "refined by GrabCut" in capsys.readouterr().out
    info = json.loads((out / "predict.json").read_text())
    assert info["refine"] == {
        "refine": True,
        "refine_sure_fg": 0.7,
        "refine_sure_bg": 0.3,
        "refine_erode": 0,
        "refine_iterations": 3,
    }
    cfg = RefineConfig(refine=True, refine_erode=0, refine_iterations=3)
    pred = SegmentPredictor.from_folder(model)
    for p in sorted(crops.glob("*.png")):
        x = np.asarray(Image.open(p))[None]
        want = refine_masks(x, pred.predict(x), 0.5, cfg)[0]
        got = np.asarray(Image.open(out / "binary" / p.name)) == 255
        assert got.shape == (40, 48) and np.array_equal(got, want)
    assert main([*argv[:-1], str(tmp_path / "plain")]) == 0  # without --refine: no record
    assert json.loads((tmp_path / "plain/predict.json").read_text())["refine"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--refine", "--refine-sure-bg", "0.95"], "--refine-sure-bg 0.95: must be below"),
        (["--refine-erode", "2"], "--refine-erode: only with --refine"),
        (["--no-refine", "--refine-iterations", "2"], "--refine-iterations: only with --refine"),
        (["--refine", "--refine-iterations", "0"], "--refine-iterations 0: must be >= 1"),
        (["--refine", "--refine-sure-fg", "nan"], "--refine-sure-fg nan: must be a finite"),
        (["--refine", "--refine-sure-fg", "0.4"], "threshold 0.5 must lie between"),
        (["--refine", "--threshold", "0.05"], "threshold 0.05 must lie between"),
    ],
)
def test_predict_refine_bad_input(model_and_crops, tmp_path, capsys, extra, message):
    model, crops = model_and_crops
    out = tmp_path / "never"
    argv = ["segment", "predict", "--model", str(model), "--images", str(crops), "--out", str(out)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maskgen: error: ") and message in err[0], err
    assert not out.exists()  # refused before any file is written
