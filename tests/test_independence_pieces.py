"""Issue 12's small-data GAN pieces of application 1 (augment, regularizers, fg shift, restarts
with the label-free selection), each through ``segment train`` at a tiny config, the selection
criterion on a labelled toy case, and bad input for every new flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli import check_bad_input, run_cli
from maskgen.independence.augment import (
    AugmentedDiscriminator,
    diff_augment,
    parse_policy,
    shift_layer,
)
from maskgen.independence.regularizers import (
    area_bounds_penalty,
    binarisation_loss,
    main_component,
    outside_main_component,
    r1_penalty,
    ramp_weight,
)
from maskgen.independence.selection import composite_realism, roc_auc

TINY = ["--preset", "tiny", "--threads", "1", "--log-every", "2", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    from maskgen.data.segmentation_sets import make_segmentation_set

    d = tmp_path_factory.mktemp("pieces") / "set"
    make_segmentation_set(d, "photo", seed=1, size=32, n_train=16, n_test=4, n_backgrounds=8)
    return d


def _train(tiny_set: Path, out: Path, capsys, *flags: str) -> list[dict]:
    argv = ["segment", "train", "--images", tiny_set / "train/images"]
    argv += ["--backgrounds", tiny_set / "backgrounds", "--out", out, "--steps", "6", *TINY]
    rc, _, err = run_cli([*argv, *flags], capsys)
    assert rc == 0, err
    assert (out / "model" / "DONE").exists() or (out / "DONE").exists() or (out / "model").is_dir()
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ unit checks
def test_policy_parsing():
    assert parse_policy("none") == () and parse_policy("") == ()
    assert parse_policy("cutout,color") == ("color", "cutout")


def test_augment_is_differentiable_and_keeps_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, ("color", "translation", "cutout"), g)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    d = AugmentedDiscriminator(torch.nn.Conv2d(3, 1, 3), ("translation",), g)
    assert d(torch.rand(2, 3, 16, 16)).shape == (2, 1, 14, 14)
    assert list(d.parameters())  # the wrapped D's parameters, for the optimiser / freezing


def test_shift_uncovers_background():
    g = torch.Generator().manual_seed(0)
    layer = torch.ones(8, 4, 16, 16)
    out, t = shift_layer(layer, g, 0.25)
    for i in range(8):
        ty, tx = (int(v) for v in t[i])
        assert out[i, 3].sum() == (16 - abs(ty)) * (16 - abs(tx))
    same, _ = shift_layer(layer, g, 0.0)
    assert torch.equal(same, layer)


def test_regularizers():
    inside = torch.full((2, 1, 8, 8), 0.3)
    assert float(area_bounds_penalty([inside], 0.1, 0.5)) == 0.0
    assert float(area_bounds_penalty([torch.ones(2, 1, 8, 8)], 0.1, 0.5)) == pytest.approx(0.25)
    assert float(area_bounds_penalty([torch.zeros(2, 1, 8, 8)], 0.1, 0.5)) == pytest.approx(0.01)
    half, hard = torch.full((1, 1, 4, 4), 0.5), torch.ones(1, 1, 4, 4)
    for kind in ("product", "entropy"):
        assert float(binarisation_loss(half, kind)) == pytest.approx(0.25, rel=1e-4)
        assert float(binarisation_loss(hard, kind)) < 1e-4
    assert ramp_weight(0, 100, 2.0, 0.3, 0.8) == 0.0
    assert ramp_weight(55, 100, 2.0, 0.3, 0.8) == pytest.approx(1.0)
    assert ramp_weight(90, 100, 2.0, 0.3, 0.8) == 2.0
    d = torch.nn.Conv2d(3, 1, 3)
    assert float(r1_penalty(d, torch.rand(2, 3, 8, 8)).detach()) > 0


def test_outside_main_component_penalises_fragments_only():
    m = np.zeros((3, 12, 12), bool)
    m[0, 1:4, 1:4] = True  # 9 px, the main piece
    m[0, 8:10, 8:10] = True  # 4 px fragment
    m[1, 2:6, 2:6] = True
    m[1, 5, 5] = False  # 15 px, one piece
    m[1, 7, 7] = True  # two px from it diagonally: a 1 px fragment
    keep = main_component(m, grow=0)
    assert keep[0].sum() == 9 and not keep[0, 8:10, 8:10].any()
    assert keep[1].sum() == 15 and not keep[1, 7, 7]
    assert keep[2].all()  # an empty mask: nothing to choose, nothing penalised
    # Diagonal neighbours are one object (8-connected); one mask never joins another.
    d = np.zeros((2, 6, 6), bool)
    d[0, 1, 1] = d[0, 2, 2] = d[1, 3, 3] = True
    assert main_component(d, grow=0)[0].sum() == 2
    assert main_component(np.ones((1, 5, 5), bool), grow=1).all()
    a = torch.from_numpy(m[:1].astype(np.float32) * 0.9).requires_grad_()
    share = outside_main_component(a, grow=0)
    assert share.item() == pytest.approx(4 / 13)
    share.backward()
    # The gradient lowers alpha off the main piece (fragments and faint haze alike), never on it.
    assert (a.grad[0, 8:10, 8:10] > 0).all() and (a.grad[0, 1:4, 1:4] == 0).all()
    assert float(a.grad[0, 0, 11]) == pytest.approx(float(a.grad[0, 8, 8]))
    one = m[1:2].copy()
    one[0, 7, 7] = False
    assert float(outside_main_component(torch.from_numpy(one.astype(np.float32)), grow=1)) == 0


# ---------------------------------------------------------------- each piece through the CLI
@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--augment", "color,translation,cutout", "--augment-p", "0.5"], "loss_d"),
        (["--r1-weight", "1", "--r1-every", "2"], "loss_r1"),
        (["--area-penalty", "bounds", "--area-bounds", "0.2,0.4"], "loss_bounds"),
        (["--binary-kind", "entropy", "--binary-schedule", "ramp", "--binary-ramp", "0,0.5"],
         "loss_binary"),
        (["--fg-shift", "0.1"], "loss_g"),
        (["--preset", "shapes", "--unet-widths", "8,16,16", "--disc", "tiny",
          "--batch-size", "8"], "loss_r1"),
    ],
)  # fmt: skip
def test_piece_through_cli(tiny_set, tmp_path, capsys, flags, key):
    rows = _train(tiny_set, tmp_path / "run", capsys, *flags)
    assert any(key in r for r in rows)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    text = json.dumps(cfg)
    for f in flags[::2]:
        if f != "--preset":
            assert f[2:].replace("-", "_") in text


def test_pieces_off_in_paper_preset():
    from maskgen.engine import make_config
    from maskgen.independence.segmentation import SegmentConfig

    p = make_config(SegmentConfig, "paper", images="i", backgrounds="b")
    assert (p.augment, p.r1_weight, p.area_penalty, p.fg_shift, p.restarts) == (
        "none",
        0.0,
        "target",
        0.0,
        1,
    )
    s = make_config(SegmentConfig, "shapes", images="i", backgrounds="b")
    assert s.r1_weight > 0 and s.area_penalty == "bounds" and s.fg_shift > 0


def test_restarts_keep_the_best_by_the_label_free_score(tiny_set, tmp_path, capsys, monkeypatch):
    import maskgen.independence.restarts as restarts

    monkeypatch.setattr(restarts, "SCORE_STEPS", 5)
    out = tmp_path / "run"
    _train(tiny_set, out, capsys, "--restarts", "2", "--restart-steps", "2")
    sel = json.loads((out / "selection.json").read_text())
    assert [c["seed"] for c in sel["candidates"]] == [0, 1]
    best = max(sel["candidates"], key=lambda c: c["realism"])
    assert sel["best_seed"] == best["seed"]
    assert (out / "model").is_dir()
    # rerun: finished, nothing retrained
    rc, _, err = run_cli(
        ["segment", "train", "--images", tiny_set / "train/images", "--backgrounds",
         tiny_set / "backgrounds", "--out", out, "--steps", "6", "--restarts", "2",
         "--restart-steps", "2", *TINY],
        capsys,
    )  # fmt: skip
    assert rc == 0 and "already finished" in err


# -------------------------------------------------- the criterion on a labelled toy case
def test_realism_ranks_exact_masks_above_wrong_ones(tmp_path):
    """Exact masks must score above eroded / dilated masks and centred disks of the right area,
    and the score must order the candidates as their IoU does (Spearman > 0)."""
    import cv2

    from maskgen.data.segmentation_sets import (
        load_image_folder,
        load_mask_folder,
        make_segmentation_set,
    )

    torch.set_num_threads(1)
    d = tmp_path / "toy"
    make_segmentation_set(d, "photo", seed=3, size=32, n_train=2, n_test=120, n_backgrounds=60)
    imgs = load_image_folder(d / "test/images", 32, "t").images
    gt = np.stack(list(load_mask_folder(d / "test/masks").values())).astype(np.float32)
    bgs = load_image_folder(d / "backgrounds", 32, "b").images
    k = np.ones((3, 3), np.uint8)
    yy, xx = np.mgrid[:32, :32]

    def disk(m):
        return ((yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= m.sum() / np.pi).astype(np.float32)

    cands = {
        "exact": gt,
        "dilated": np.stack([cv2.dilate(m, k, iterations=2) for m in gt]),
        "eroded": np.stack([cv2.erode(m, k, iterations=2) for m in gt]),
        "disk": np.stack([disk(m) for m in gt]),
    }
    iou = {
        n: float(np.mean([((a > 0.5) & (g > 0.5)).sum() / ((a > 0.5) | (g > 0.5)).sum()
                          for a, g in zip(c, gt, strict=True)]))
        for n, c in cands.items()
    }  # fmt: skip
    score = {
        n: composite_realism(imgs, c, bgs, steps=200, seed=0)["realism"] for n, c in cands.items()
    }
    assert max(score, key=score.get) == "exact", score
    names = list(cands)
    ri = np.argsort(np.argsort([iou[n] for n in names]))
    rs = np.argsort(np.argsort([score[n] for n in names]))
    assert np.corrcoef(ri, rs)[0, 1] > 0, (iou, score)


def test_roc_auc_is_the_share_of_correctly_ordered_pairs():
    # Also the AUC of benchmarks/cluster_probe.py.
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5


# ----------------------------------------------------------------------- bad input, new flags
BAD = [
    (["--tta", "mirror"], "--tta"),
    (["--augment", "colour"], "--augment colour"),
    (["--augment", "color,color"], "--augment"),
    (["--augment-p", "1.5"], "--augment-p"),
    (["--r1-weight", "-1"], "--r1-weight"),
    (["--r1-every", "0"], "--r1-every"),
    (["--area-penalty", "exact"], "--area-penalty"),
    (["--area-bounds", "0.5,0.1"], "--area-bounds"),
    (["--area-bounds", "0.2"], "--area-bounds"),
    (["--area-bounds", "0.2,1.5"], "--area-bounds"),
    (["--binary-kind", "l1"], "--binary-kind"),
    (["--binary-schedule", "late"], "--binary-schedule"),
    (["--binary-ramp", "0.9,0.1"], "--binary-ramp"),
    (["--fg-shift", "0.9"], "--fg-shift"),
    (["--restarts", "0"], "--restarts"),
    (["--restarts", "40"], "--restarts"),
    (["--restarts", "2", "--restart-steps", "6"], "--restart-steps"),
    (["--restart-steps", "0"], "--restart-steps"),
]


@pytest.mark.parametrize(("flags", "needle"), BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_new_flags(tiny_set, tmp_path, capsys, flags, needle):
    out = tmp_path / "run"
    argv = ["segment", "train", "--images", tiny_set / "train/images"]
    argv += ["--backgrounds", tiny_set / "backgrounds", "--out", out, "--steps", "6", *TINY]
    check_bad_input([*argv, *flags], capsys, needle)
    assert not out.exists()


# ------------------------------------------------ the same pieces in the cluster trainer
@pytest.fixture(scope="module")
def cluster_image(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cl") / "data"
    argv = ["data", "cluster", "--kind", "synthetic", "--size", "80", "--instance-size", "20"]
    from maskgen.cli.main import main

    assert main([*argv, "--out", str(out)]) == 0
    return out / "image.png"


def _cluster_argv(image: Path, out: Path) -> list:
    return ["cluster", "train", "--image", image, "--instance-size", "20", "--out", out,
            "--steps", "4", "--preset", "tiny", "--log-every", "2", "--checkpoint-every", "2"]  # fmt: skip


def test_cluster_fragment_weight_through_cli(cluster_image, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli([*_cluster_argv(cluster_image, out), "--fragment-weight", "5"], capsys)
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["fragment_weight"] == 5
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    shares = [r["fragment_loss"] for r in rows if "fragment_loss" in r]
    assert shares and all(0 <= v <= 1 for v in shares)


def test_cluster_augment_and_area_bounds_through_cli(cluster_image, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _cluster_argv(cluster_image, out)
    flags = ["--augment", "color,translation", "--area-penalty", "both"]
    rc, _, err = run_cli([*argv, *flags, "--area-bounds", "0.05,0.4", "--r1-weight", "1"], capsys)
    assert rc == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert "color,translation" in json.dumps(cfg) and "both" in json.dumps(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))


def test_cluster_restarts_keep_the_label_free_best_and_resume(cluster_image, tmp_path, capsys):
    """``--restarts 2``: two full runs, scored without labels, the rule's pick saved; a run
    paused inside the restarts resumes with the same command, and a finished one trains
    nothing."""
    from maskgen.independence.cluster import ClusterGenerator
    from maskgen.independence.selection import rank_generators

    out = tmp_path / "run"
    argv = [*_cluster_argv(cluster_image, out), "--restarts", "2"]
    rc, stdout, err = run_cli([*argv, "--stop-after", "2"], capsys)
    assert rc == 0 and "paused" in stdout and not (out / "model").exists()
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert "restart 1/2 (seed 0): resuming" in err  # the paused restart went on
    sel = json.loads((out / "selection.json").read_text())
    cands = sel["candidates"]
    assert [c["seed"] for c in cands] == [0, 1]
    assert all(0 <= c["single_object"] <= 1 and 0 <= c["pairwise"] <= 1 for c in cands)
    assert sel["best_seed"] == cands[rank_generators(cands)]["seed"]
    g = ClusterGenerator.from_folder(out / "model")
    assert g.config.seed == sel["best_seed"] and g.config.restarts == 2
    assert {p.name.split("grid")[0] for p in (out / "grids").glob("*.png")} == {
        "restart0-",
        "restart1-",
    }
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0 and "restart" not in err  # finished: nothing retrained


def test_rank_generators_agrees_with_coverage_on_a_labelled_toy_case():
    """Three generators on toy instances of varied shapes (ellipses of many orientations):
    fragments, one blob for every z, and the true shapes. The label-free rule must pick the one
    whose masks cover the true shapes best (coverage IoU, which needs the labels), and rank
    fragments below a blob."""
    from maskgen.independence.cluster_eval import coverage_iou
    from maskgen.independence.selection import generator_selection_score, rank_generators

    p, area = 32, 0.12
    yy, xx = np.mgrid[:p, :p] - (p - 1) / 2

    def ellipse(angle: float, a: float = 9.0, b: float = 4.0) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * xx + s * yy, -s * xx + c * yy
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    truth = [ellipse(t) for t in np.linspace(0, np.pi, 24, endpoint=False)]
    disk = xx**2 + yy**2 <= 6.0**2
    split = ellipse(0.0) & (np.abs(xx) > 2)  # one ellipse cut in two pieces
    candidates = {
        "fragments": np.stack([np.roll(split, k % 5, axis=0) for k in range(48)]),
        "blob": np.stack([disk] * 48),
        "shapes": np.stack([truth[k % 24] for k in range(48)]),
    }
    scores = [generator_selection_score(m, area) for m in candidates.values()]
    cover = [coverage_iou(m, truth, 2 * p).mean() for m in candidates.values()]
    assert scores[0]["single_object"] == 0 and scores[1]["single_object"] == 1
    assert (
        list(candidates)[rank_generators(scores)] == "shapes" == list(candidates)[np.argmax(cover)]
    )
    assert rank_generators(scores[:2]) == 1  # a whole blob beats fragments
    assert rank_generators([scores[0], scores[0]]) == 0  # ties: the first


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--augment", "rotate"], "--augment rotate"),
        (["--augment-p", "-0.1"], "--augment-p"),
        (["--area-penalty", "x"], "--area-penalty"),
        (["--area-bounds", "0.3,0.3"], "--area-bounds"),
        (["--fragment-weight", "-1"], "--fragment-weight"),
        (["--fragment-weight", "nan"], "--fragment-weight"),
        (["--d-field", "global"], "--d-field"),
        (["--jitter-at", "patch"], "--jitter-at"),
        (["--restarts", "0"], "--restarts"),
        (["--restarts", "17"], "--restarts"),
        (["--restarts", "2", "--seed", str(2**31 - 1)], "--restarts"),
    ],
)
def test_cluster_bad_new_flags(cluster_image, tmp_path, capsys, flags, needle):
    out = tmp_path / "run"
    check_bad_input([*_cluster_argv(cluster_image, out), *flags], capsys, needle)
    assert not out.exists()


# ------------------------------------------------------------- flip test-time augmentation
def test_flip_average_is_mirror_symmetric_and_exact_for_symmetric_models():
    from maskgen.independence.tta import flip_average

    x = torch.rand(3, 3, 8, 8)
    # a model that only sees the left edge: its mask is not mirror-symmetric, the average is
    left = lambda im: im[:, :1] * (torch.arange(8.0) < 2)  # noqa: E731
    m = flip_average(left, x)
    assert torch.allclose(flip_average(left, x.flip(-1)), m.flip(-1))  # flip-equivariant
    assert not torch.allclose(m, left(x))
    same = lambda im: im[:, :1]  # noqa: E731  (pixel-wise: commutes with the flip)
    assert torch.allclose(flip_average(same, x), same(x))


def test_tta_flip_through_cli(tiny_set, tmp_path, capsys):
    """``--tta flip`` is stored with the model; predictions are then the flip average (and
    differ from one pass), ``--tta none`` keeps one pass."""
    from maskgen.independence.predict import Segmenter, SegmentPredictor

    _train(tiny_set, tmp_path / "run", capsys, "--tta", "flip")
    header = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert header["tta"] == "flip"
    model = Segmenter.from_folder(tmp_path / "run")
    assert model.tta == "flip"
    crops = np.stack([np.asarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3)),
                                 np.uint8) for i in range(3)])  # fmt: skip
    flipped = SegmentPredictor(model).predict(crops)
    model.tta = "none"
    one = SegmentPredictor(model).predict(crops)
    mirror = SegmentPredictor(model).predict(crops[:, :, ::-1].copy())[:, :, ::-1]
    assert np.allclose(flipped, 0.5 * (one + mirror), atol=1e-5)
    assert not np.allclose(flipped, one, atol=1e-4)
    rc, _, err = run_cli(
        ["segment", "predict", "--model", tmp_path / "run", "--images",
         tiny_set / "test/images", "--out", tmp_path / "pred"], capsys)  # fmt: skip
    assert rc == 0, err
    assert json.loads((tmp_path / "pred" / "predict.json").read_text())["tta"] == "flip"
    # predict --tta none overrides the saved flip: one pass, recorded
    rc, _, err = run_cli(
        ["segment", "predict", "--model", tmp_path / "run", "--images",
         tiny_set / "test/images", "--out", tmp_path / "pred1", "--tta", "none"], capsys)  # fmt: skip
    assert rc == 0, err
    assert json.loads((tmp_path / "pred1" / "predict.json").read_text())["tta"] == "none"
    assert SegmentPredictor.from_folder(tmp_path / "run", tta="none").model.tta == "none"
    from maskgen.core.io import read_image

    soft = sorted((tmp_path / "pred" / "soft").glob("*.png"))
    assert any(
        (read_image(f, "L") != read_image(tmp_path / "pred1" / "soft" / f.name, "L")).any()
        for f in soft
    )
    out = tmp_path / "pred2"
    check_bad_input(
        ["segment", "predict", "--model", tmp_path / "run", "--images",
         tiny_set / "test/images", "--out", out, "--tta", "mirror"], capsys, "--tta")  # fmt: skip
    assert not out.exists()


def test_tta_flip_and_6000_steps_in_cpu_paper_one_pass():
    from maskgen.engine import make_config
    from maskgen.independence.segmentation import SegmentConfig

    cpu = make_config(SegmentConfig, "cpu", images="i", backgrounds="b")
    assert (cpu.tta, cpu.steps) == ("flip", 6000)
    assert make_config(SegmentConfig, "paper", images="i", backgrounds="b").tta == "none"
