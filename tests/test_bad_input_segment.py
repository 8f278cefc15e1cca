"""Bad input to ``segment train|distill|predict|evaluate`` and ``data segmentation-set|
pedestrians``: every case exits 2 with exactly one ``maskgen: error:`` line, leaves the earlier
results it names byte-identical, and (for a fresh ``--out``) creates nothing.

Each case is ``(id, build)``; ``build(e)`` returns ``(argv, needle, protect)`` where ``e`` holds
the shared fixtures (a tiny data set, a trained tiny teacher, earlier outputs to protect).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests._cli import check_bad_input, run_cli

from maskgen.data.segmentation_sets import make_segmentation_set

RUN = ["--preset", "tiny", "--steps", "2", "--threads", "1", "--quiet"]


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def e(tmp_path_factory) -> types.SimpleNamespace:
    root = tmp_path_factory.mktemp("segbad")
    s = root / "set"
    make_segmentation_set(s, "flat", seed=0, size=32, n_train=8, n_test=3, n_backgrounds=4)
    ns = types.SimpleNamespace(root=root, set=s, imgs=s / "train/images", bgs=s / "backgrounds")
    ns.test_imgs, ns.gt = s / "test/images", s / "test/masks"
    ns.teacher = root / "teacher"
    train = ["segment", "train", "--images", ns.imgs, "--backgrounds", ns.bgs, *RUN]
    assert run_cli([*train, "--out", ns.teacher], _NoCap())[0] == 0
    ns.pred = root / "pred"
    predict = ["segment", "predict", "--model", ns.teacher, "--images", ns.test_imgs]
    assert run_cli([*predict, "--out", ns.pred], _NoCap())[0] == 0
    ns.json = root / "eval.json"
    ns.json.write_text('{"earlier": true}\n')
    ns.masks = root / "grabcut_masks"
    _png(ns.masks / "000000.png", np.zeros((32, 32), np.uint8))
    ns.afile = root / "a_file.txt"
    ns.afile.write_text("not a folder\n")
    ns.other = root / "someone_else"
    (ns.other / "notes.txt").parent.mkdir()
    (ns.other / "notes.txt").write_text("keep me\n")
    ns.small_bgs = root / "small_bgs"
    _png(ns.small_bgs / "a.png", np.zeros((20, 20, 3), np.uint8))
    ns.soft = root / "soft_gt"
    _png(ns.soft / "000000.png", np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1)))
    ns.amodal = root / "amodal_run"
    ns.amodal.mkdir()
    (ns.amodal / "config.json").write_text(
        json.dumps({"kind": "amodal-vae", "format": "maskgen-run", "config": {}})
    )
    ns.coco_dir = root / "coco_dir"
    ns.coco_dir.mkdir()
    ns.fresh = root / "fresh"  # never created by a failing case
    ns.train = train
    ns.distill = ["segment", "distill", "--teacher", ns.teacher, "--threads", "1", "--quiet"]
    ns.predict = predict
    ns.evaluate = ["segment", "evaluate", "--pred", ns.pred, "--gt", ns.gt]
    ns.grabcut = ["segment", "evaluate", "--method", "grabcut", "--images", ns.test_imgs]
    ns.segset = ["data", "segmentation-set", "--size", "32", "--n-train", "2", "--n-test", "1"]
    ns.peds = ["data", "pedestrians", "--n-backgrounds", "2"]
    return ns


class _NoCap:
    """A stand-in for capsys in the module fixture (run_cli only calls readouterr)."""

    def readouterr(self) -> tuple[str, str]:
        return "", ""


def _train(e, *extra: object, out: object = None) -> list:
    return [*e.train, "--out", out if out is not None else e.fresh, *extra]


def _distill(e, *extra: object, out: object = None) -> list:
    return [*e.distill, "--out", out if out is not None else e.fresh, *extra]


def _predict(e, *extra: object, out: object = None) -> list:
    return [*e.predict, "--out", out if out is not None else e.fresh, *extra]


CASES = [
    # ------------------------------------------------------------------ segment train
    ("train-device-cuda", lambda e: (_train(e, "--device", "cuda:99"), "--device", [])),
    ("train-device-unknown", lambda e: (_train(e, "--device", "tpu"), "expected cpu or cuda", [])),
    ("train-seed-negative", lambda e: (_train(e, "--seed", "-1"), "--seed -1", [])),
    ("train-steps-zero", lambda e: (_train(e, "--steps", "0"), "--steps 0", [])),
    ("train-steps-negative", lambda e: (_train(e, "--steps", "-5"), "--steps -5", [])),
    ("train-steps-huge", lambda e: (_train(e, "--steps", "10000000000"), "--steps", [])),
    ("train-batch-zero", lambda e: (_train(e, "--batch-size", "0"), "--batch-size 0", [])),
    ("train-batch-huge", lambda e: (_train(e, "--batch-size", "100000"), "--batch-size", [])),
    (
        "train-batch-memory",
        lambda e: (_train(e, "--batch-size", "4096", "--size", "1024"), "fit in memory", []),
    ),
    ("train-ema-one", lambda e: (_train(e, "--ema-decay", "1"), "--ema-decay 1", [])),
    ("train-ema-above-one", lambda e: (_train(e, "--ema-decay", "1.5"), "--ema-decay", [])),
    ("train-ema-nan", lambda e: (_train(e, "--ema-decay", "nan"), "finite", [])),
    ("train-area-target-above-one", lambda e: (_train(e, "--area-target", "1.5"), "<= 1", [])),
    ("train-area-target-nan", lambda e: (_train(e, "--area-target", "nan"), "finite", [])),
    ("train-lr-zero", lambda e: (_train(e, "--lr-g", "0"), "--lr-g 0", [])),
    ("train-lr-inf", lambda e: (_train(e, "--lr-d", "inf"), "finite", [])),
    ("train-noise-negative", lambda e: (_train(e, "--instance-noise", "-0.1"), ">= 0", [])),
    ("train-noise-steps-zero", lambda e: (_train(e, "--noise-steps", "0"), "--noise-steps", [])),
    ("train-size-indivisible", lambda e: (_train(e, "--size", "36"), "not divisible", [])),
    ("train-size-tiny", lambda e: (_train(e, "--size", "8"), "--size 8", [])),
    ("train-widths-zero", lambda e: (_train(e, "--unet-widths", "0,4"), "--unet-widths", [])),
    ("train-widths-text", lambda e: (_train(e, "--unet-widths", "a,b"), "unet-widths", [])),
    ("train-disc-unknown", lambda e: (_train(e, "--disc", "nope"), "--disc", [])),
    ("train-loss-unknown", lambda e: (_train(e, "--loss", "wgan"), "--loss", [])),
    ("train-betas-one", lambda e: (_train(e, "--betas", "0.5"), "two values", [])),
    ("train-betas-one-upper", lambda e: (_train(e, "--betas", "0.5,1.0"), "--betas", [])),
    ("train-box-margin-negative", lambda e: (_train(e, "--box-margin", "-1"), ">= 0", [])),
    ("train-checkpoint-every-zero", lambda e: (_train(e, "--checkpoint-every", "0"), ">= 1", [])),
    ("train-log-every-zero", lambda e: (_train(e, "--log-every", "0"), "--log-every 0", [])),
    ("train-max-minutes-zero", lambda e: (_train(e, "--max-minutes", "0"), "--max-minutes", [])),
    ("train-threads-zero", lambda e: (_train(e, "--threads", "0"), "--threads 0", [])),
    ("train-old-flag", lambda e: (_train(e, "--ckpt-every", "5"), "unrecognized", [])),
    (
        "train-images-missing",
        lambda e: (["segment", "train", "--backgrounds", e.bgs, "--out", e.fresh], "--images", []),
    ),
    (
        "train-images-not-found",
        lambda e: (_train(e, "--images", e.root / "nope"), "not found", []),
    ),
    ("train-images-is-file", lambda e: (_train(e, "--images", e.afile), "not a folder", [])),
    ("train-backgrounds-is-file", lambda e: (_train(e, "--backgrounds", e.afile), "folder", [])),
    (
        "train-backgrounds-too-small",
        lambda e: (_train(e, "--backgrounds", e.small_bgs), "smaller than the 32x32 crop", []),
    ),
    (
        "train-boxes-is-folder",
        lambda e: (_train(e, "--boxes", e.coco_dir), "is a folder, expected", [e.coco_dir]),
    ),
    (
        "train-out-is-file",
        lambda e: (_train(e, out=e.afile), "exists and is not a folder", [e.afile]),
    ),
    (
        "train-out-foreign-folder",
        lambda e: (_train(e, out=e.other), "not a maskgen run", [e.other]),
    ),
    (
        "train-out-other-config",
        lambda e: (
            _train(e, "--area-target", "0.3", out=e.teacher),
            "different config",
            [e.teacher],
        ),
    ),
    (
        "train-out-other-kind",
        lambda e: (_train(e, out=e.amodal), "not a segment run", [e.amodal]),
    ),
    # ---------------------------------------------------------------- segment distill
    (
        "distill-teacher-not-found",
        lambda e: (
            ["segment", "distill", "--teacher", e.root / "nope", "--out", e.fresh],
            "not found",
            [],
        ),
    ),
    (
        "distill-teacher-is-file",
        lambda e: (["segment", "distill", "--teacher", e.afile, "--out", e.fresh], "is a file", []),
    ),
    (
        "distill-teacher-amodal",
        lambda e: (
            ["segment", "distill", "--teacher", e.amodal, "--out", e.fresh],
            "not a segment run",
            [e.amodal],
        ),
    ),
    ("distill-fraction", lambda e: (_distill(e, "--original-fraction", "1.5"), "<= 1", [])),
    ("distill-size-indivisible", lambda e: (_distill(e, "--size", "40"), "not divisible", [])),
    ("distill-device", lambda e: (_distill(e, "--device", "cuda:99"), "--device", [])),
    ("distill-steps-zero", lambda e: (_distill(e, "--steps", "0"), "--steps 0", [])),
    ("distill-lr-negative", lambda e: (_distill(e, "--lr", "-1"), "--lr -1", [])),
    ("distill-seed-negative", lambda e: (_distill(e, "--seed", "-3"), "--seed -3", [])),
    (
        "distill-out-is-teacher",
        lambda e: (_distill(e, out=e.teacher), "not a segment-distill run", [e.teacher]),
    ),
    ("distill-out-is-file", lambda e: (_distill(e, out=e.afile), "not a folder", [e.afile])),
    # ---------------------------------------------------------------- segment predict
    ("predict-threshold-high", lambda e: (_predict(e, "--threshold", "1.5"), "[0, 1]", [])),
    ("predict-threshold-nan", lambda e: (_predict(e, "--threshold", "nan"), "finite", [])),
    (
        "predict-out-earlier-result",
        lambda e: (_predict(e, out=e.pred), "pass --force", [e.pred]),
    ),
    ("predict-out-is-file", lambda e: (_predict(e, out=e.afile), "not a folder", [e.afile])),
    (
        "predict-force-foreign-folder",
        lambda e: (_predict(e, "--force", out=e.other), "not an earlier result", [e.other]),
    ),
    (
        "predict-model-is-image",
        lambda e: (
            [
                "segment",
                "predict",
                "--model",
                e.imgs / "000000.png",
                "--images",
                e.test_imgs,
                "--out",
                e.fresh,
            ],
            "not a model folder",
            [],
        ),
    ),
    (
        "predict-model-is-data",
        lambda e: (
            ["segment", "predict", "--model", e.set, "--images", e.test_imgs, "--out", e.fresh],
            "not a model folder",
            [e.set],
        ),
    ),
    (
        "predict-images-is-file",
        lambda e: (
            ["segment", "predict", "--model", e.teacher, "--images", e.afile, "--out", e.fresh],
            "not a folder",
            [],
        ),
    ),
    ("predict-device", lambda e: (_predict(e, "--device", "cuda:99"), "--device", [])),
    ("predict-device-unknown", lambda e: (_predict(e, "--device", "gpu0"), "--device", [])),
    # --------------------------------------------------------------- segment evaluate
    (
        "evaluate-json-exists",
        lambda e: ([*e.evaluate, "--json", e.json], "pass --force", [e.json, e.pred]),
    ),
    (
        "evaluate-json-is-folder",
        lambda e: ([*e.evaluate, "--json", e.other], "is a folder", [e.other]),
    ),
    (
        "evaluate-save-masks-exists",
        lambda e: (
            [*e.grabcut, "--gt", e.gt, "--save-masks", e.masks],
            "pass --force",
            [e.masks],
        ),
    ),
    (
        "evaluate-save-masks-is-file",
        lambda e: ([*e.grabcut, "--gt", e.gt, "--save-masks", e.afile], "not a folder", [e.afile]),
    ),
    (
        "evaluate-gt-is-photo",
        lambda e: (["segment", "evaluate", "--pred", e.pred, "--gt", e.test_imgs], "colour", []),
    ),
    (
        "evaluate-gt-is-soft",
        lambda e: (["segment", "evaluate", "--pred", e.pred, "--gt", e.soft], "not a binary", []),
    ),
    (
        "evaluate-pred-is-photo",
        lambda e: (["segment", "evaluate", "--pred", e.test_imgs, "--gt", e.gt], "colour", []),
    ),
    (
        "evaluate-pred-is-gt",
        lambda e: (["segment", "evaluate", "--pred", e.gt, "--gt", e.gt], "ground-truth", [e.gt]),
    ),
    (
        "evaluate-pred-is-file",
        lambda e: (["segment", "evaluate", "--pred", e.afile, "--gt", e.gt], "is a file", []),
    ),
    (
        "evaluate-gt-not-found",
        lambda e: (
            ["segment", "evaluate", "--pred", e.pred, "--gt", e.root / "x"],
            "not found",
            [],
        ),
    ),
    (
        "evaluate-inset-too-large",
        lambda e: ([*e.grabcut, "--gt", e.gt, "--inset", "100"], "--inset 100", []),
    ),
    (
        "evaluate-inset-negative",
        lambda e: ([*e.grabcut, "--gt", e.gt, "--inset", "-1"], ">= 0", []),
    ),
    (
        "evaluate-grabcut-no-images",
        lambda e: (["segment", "evaluate", "--method", "grabcut", "--gt", e.gt], "--images", []),
    ),
    # ------------------------------------------------------------------------ data
    ("segset-out-earlier", lambda e: ([*e.segset, "--out", e.set], "pass --force", [e.set])),
    ("segset-out-is-file", lambda e: ([*e.segset, "--out", e.afile], "not a folder", [e.afile])),
    (
        "segset-force-foreign",
        lambda e: ([*e.segset, "--out", e.other, "--force"], "not an earlier result", [e.other]),
    ),
    ("segset-size-small", lambda e: ([*e.segset, "--out", e.fresh, "--size", "8"], "--size 8", [])),
    (
        "segset-n-train-zero",
        lambda e: ([*e.segset, "--out", e.fresh, "--n-train", "0"], ">= 1", []),
    ),
    (
        "segset-n-test-negative",
        lambda e: ([*e.segset, "--out", e.fresh, "--n-test", "-4"], "--n-test -4", []),
    ),
    (
        "segset-huge-count",
        lambda e: ([*e.segset, "--out", e.fresh, "--n-train", "100000000"], "GiB", []),
    ),
    ("segset-seed-negative", lambda e: ([*e.segset, "--out", e.fresh, "--seed", "-1"], ">= 0", [])),
    (
        "segset-class-unknown",
        lambda e: ([*e.segset, "--out", e.fresh, "--class", "unicorn"], "--class", []),
    ),
    (
        "segset-variant-unknown",
        lambda e: ([*e.segset, "--out", e.fresh, "--variant", "x"], "--variant", []),
    ),
    (
        "peds-video-not-found",
        lambda e: ([*e.peds, "--video", e.root / "none.avi", "--out", e.fresh], "not found", []),
    ),
    (
        "peds-video-is-folder",
        lambda e: ([*e.peds, "--video", e.other, "--out", e.fresh], "is a folder", [e.other]),
    ),
    (
        "peds-frame-step-zero",
        lambda e: (
            [*e.peds, "--video", e.afile, "--out", e.fresh, "--frame-step", "0"],
            ">= 1",
            [],
        ),
    ),
    (
        "peds-backgrounds-zero",
        lambda e: (
            [*e.peds, "--video", e.afile, "--out", e.fresh, "--n-backgrounds", "0"],
            ">= 1",
            [],
        ),
    ),
    (
        "peds-size-huge",
        lambda e: ([*e.peds, "--video", e.afile, "--out", e.fresh, "--size", "5000"], "--size", []),
    ),
    (
        "peds-out-earlier",
        lambda e: ([*e.peds, "--video", e.afile, "--out", e.set], "pass --force", [e.set]),
    ),
    (
        "peds-video-not-a-video",
        lambda e: ([*e.peds, "--video", e.afile, "--out", e.fresh], "video", []),
    ),
]


@pytest.mark.parametrize("build", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(e, build, capsys) -> None:
    argv, needle, protect = build(e)
    check_bad_input([str(a) for a in argv], capsys, needle, protect=[Path(p) for p in protect])
    assert not e.fresh.exists(), "a failed start left an output folder behind"
    leftovers = [p.name for p in e.root.iterdir() if p.name.endswith((".partial", ".old"))]
    assert not leftovers, leftovers


def test_case_count() -> None:
    assert len(CASES) >= 45 and len({c[0] for c in CASES}) == len(CASES)
