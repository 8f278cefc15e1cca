"""Amodal completion: the numpy predictor, dataset completion and ``maskgen amodal complete``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _amodal_tiny import assert_one_line_error, run_cli, save_tiny_model, tiny_scenes
from maskgen.amodal.completion import overlay_image
from maskgen.amodal.io import SHIPPED_MODEL
from maskgen.amodal.predictor import AmodalPredictor, ImageInput, consistency_score


class BoxStub(nn.Module):
    """Contract stub: decodes a full box (p ~ 1 everywhere) and predicts the visible box grown
    by ``grow`` (relative units) on every side; latent 8-d, sigma = 0.5 everywhere."""

    def __init__(self, grow: float = 0.5, logit: float = 6.0) -> None:
        super().__init__()
        self.grow = grow
        self.logit = logit
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_partial(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = y.shape[0]
        mu = y.flatten(1)[:, :8] * 0 + y.mean(dim=(1, 2, 3))[:, None]
        return mu, torch.full((n, 8), float(np.log(0.25)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full((z.shape[0], 1, 28, 28), self.logit) + 0 * z[:, :1, None, None]

    def predict_amodal_box(self, y: torch.Tensor, **kw: object) -> torch.Tensor:
        g = self.grow
        return torch.tensor([[-g, -g, 1 + g, 1 + g]]).repeat(y.shape[0], 1)


def two_instances() -> np.ndarray:
    """Instance 0: a square partly hidden by instance 1 (a bar in front of it), 40 x 40."""
    m = np.zeros((2, 40, 40), bool)
    m[0, 10:30, 10:30] = True
    m[1, 5:35, 22:28] = True
    m[0] &= ~m[1]
    return m


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, threshold=0.3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=5, seed=3)


# ------------------------------------------------------------------------------ predictor


def test_consistency_score_exact() -> None:
    v = np.zeros((10, 10), bool)
    v[2:6, 2:6] = True  # 16 px
    others = np.zeros_like(v)
    others[2:6, 6:9] = True
    s = np.zeros_like(v)
    s[2:6, 2:8] = True  # covers V, 8 px under the occluder (unknown, not counted)
    assert consistency_score(s, v, others) == 1.0
    s[0, 0] = True  # one pixel on visible background
    assert consistency_score(s, v, others) == pytest.approx(16 / 17)
    half = v.copy()
    half[2:4] = False  # covers 8 of 16 visible pixels
    assert consistency_score(half, v, others) == pytest.approx(8 / 16)


def test_restriction_keeps_invisible_pixels_only_under_occluders() -> None:
    m = two_instances()
    pred = AmodalPredictor(BoxStub(grow=0.5), threshold=0.5)
    on = pred.complete_image(m, restrict_to_occluders=True)
    off = pred.complete_image(m, restrict_to_occluders=False)
    others0 = m[1]
    for c in on:
        assert c.amodal_mask.shape == (40, 40) and c.amodal_mask.dtype == bool
    # visible mask always OR-ed in
    assert (on[0].amodal_mask >= m[0]).all() and (off[0].amodal_mask >= m[0]).all()
    # restricted: every predicted invisible pixel lies under the other instance's visible mask
    inv = on[0].amodal_mask & ~m[0]
    assert inv.any() and not (inv & ~others0).any()
    # and the occluded strip of the square is filled in
    assert on[0].amodal_mask[10:30, 22:28].all()
    # unrestricted: the grown box spills onto the background
    assert (off[0].amodal_mask & ~m[0] & ~others0).sum() > 100
    # raw masks are the same; only post-processing differs
    assert (on[0].raw_mask == off[0].raw_mask).all()


def test_paste_uses_the_predicted_box_and_stays_inside_the_image() -> None:
    m = np.zeros((1, 30, 50), bool)
    m[0, 0:10, 40:50] = True  # in the corner: the grown box leaves the image
    c = AmodalPredictor(BoxStub(grow=0.5), threshold=0.5).complete_image(
        m, restrict_to_occluders=False
    )[0]
    np.testing.assert_allclose(c.amodal_box, [35, -5, 55, 15])
    assert c.box_source == "predicted"
    assert c.amodal_mask.shape == (30, 50)
    assert c.amodal_mask[0:15, 35:50].all() and c.amodal_mask.sum() == 15 * 15


def test_supplied_amodal_boxes() -> None:
    m = two_instances()
    boxes = np.array([[10, 10, 30, 30], [np.nan] * 4])
    cs = AmodalPredictor(BoxStub(grow=0.5), threshold=0.5).complete_image(
        m, amodal_boxes=boxes, restrict_to_occluders=False
    )
    assert cs[0].box_source == "supplied" and cs[1].box_source == "predicted"
    np.testing.assert_array_equal(cs[0].amodal_mask, np.pad(np.ones((20, 20), bool), 10))


def test_samples_consistency_and_uncertainty() -> None:
    m = two_instances()
    cs = AmodalPredictor(BoxStub(grow=0.5), threshold=0.5).complete_image(m, samples=3)
    for c in cs:
        assert c.samples.shape == (3, 40, 40)
        assert c.sample_consistency.shape == (3,)
        assert ((c.sample_consistency >= 0) & (c.sample_consistency <= 1)).all()
        assert c.uncertainty == pytest.approx(0.5)
    # grown box spills onto visible background: consistency below 1, exactly as defined
    v, others = m[0], m[1]
    assert cs[0].consistency == pytest.approx(consistency_score(cs[0].raw_mask, v, others))
    assert cs[0].consistency < 1


def test_tiny_model_batches_and_seeds(tiny_model_dir: Path) -> None:
    pred = AmodalPredictor.from_folder(tiny_model_dir, batch_size=2)
    assert pred.threshold == pytest.approx(0.3)
    m = two_instances()
    imgs = [ImageInput(m), ImageInput(m[::-1].copy()), ImageInput(m)]
    a = list(pred.complete_images(imgs, samples=2, seed=5, return_probability=True))
    pred.batch_size = 64
    b = list(pred.complete_images(imgs, samples=2, seed=5, chunk_instances=1))
    assert [len(x) for x in a] == [2, 2, 2]
    for ca, cb in zip(a[0] + a[2], b[0] + b[2], strict=True):
        assert ca.mu.shape == (64,) and ca.sigma.shape == (64,)
        np.testing.assert_allclose(ca.mu, cb.mu, atol=1e-5)
        assert ca.probability.shape == (40, 40) and ca.probability.max() <= 1
        assert (ca.amodal_mask >= 0).all() and (ca.amodal_mask | True).all()
    # samples depend on the instance's position in the call, not on batching
    assert (a[0][0].samples == b[0][0].samples).all()
    np.testing.assert_array_equal(a[0][0].sample_consistency, b[0][0].sample_consistency)
    # neither the pipelining nor the chunk size changes anything
    pred.pipeline = False
    c = list(pred.complete_images(imgs, samples=2, seed=5, chunk_instances=4))
    for ca, cc in zip(sum(a, []), sum(c, []), strict=True):
        np.testing.assert_array_equal(ca.amodal_mask, cc.amodal_mask)
        np.testing.assert_array_equal(ca.samples, cc.samples)


def test_overlay_colours() -> None:
    m = two_instances()
    c = AmodalPredictor(BoxStub(), threshold=0.5).complete_image(m)
    img = overlay_image(np.zeros((40, 40, 3), np.uint8), m, c)
    assert img.shape == (40, 40, 3) and img.dtype == np.uint8
    assert img[15, 12, 2] > img[15, 12, 0]  # visible part of instance 0: blue
    assert img[15, 24, 0] > img[15, 24, 2]  # its completion under instance 1: red


# ------------------------------------------------------------------------------ CLI


def test_complete_then_evaluate(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = tmp_path / "res.json"
    rc, out, err = run_cli(
        [
            "amodal", "complete", "--model", str(tiny_model_dir),
            "--masks", str(scenes / "annotations/test_coco.json"),
            "--images", str(scenes / "images/test"), "--out", str(res),
            "--samples", "2", "--overlays", str(tmp_path / "ov"), "--visible-source", "gt",
        ],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    d = json.loads(res.read_text())
    gt = json.loads((scenes / "annotations/test_coco.json").read_text())
    assert {a["id"] for a in d["annotations"]} == {a["id"] for a in gt["annotations"]}
    assert d["info"]["restrict_to_occluders"] is True and d["info"]["or_visible"] is True
    assert d["info"]["visible_source"] == "gt" and d["info"]["samples"] == 2
    a0 = d["annotations"][0]
    assert len(a0["samples"]) == 2 and 0 <= a0["consistency"] <= 1 and a0["uncertainty"] > 0
    assert len(list((tmp_path / "ov").glob("*.png"))) == len(gt["images"])
    # refuses to overwrite
    rc, _, err = run_cli(
        ["amodal", "complete", "--model", str(tiny_model_dir), "--masks", str(scenes / "annotations/test_coco.json"),
         "--images", str(scenes / "images/test"), "--out", str(res)],
        capsys,
    )  # fmt: skip
    assert rc == 2 and "already exists" in err
    # the harness scores it
    rc, out, err = run_cli(
        ["amodal", "evaluate", "--gt", str(scenes / "annotations/test_kins2020.json"), "--pred", str(res),
         "--out", str(tmp_path / "ev")],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    m = json.loads((tmp_path / "ev/metrics.json").read_text())
    assert m["overall"]["n_instances"] == len(gt["annotations"])
    # the visible mask is OR-ed in, so the full IoU is at least |V|/|P u A| > 0 everywhere
    rows = (tmp_path / "ev/per_instance.csv").read_text().splitlines()[1:]
    assert len(rows) == len(gt["annotations"])
    assert all(float(r.split(",")[4]) > 0 for r in rows)


def test_no_restrict_and_gt_boxes_recorded(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = tmp_path / "r.json"
    rc, _, err = run_cli(
        ["amodal", "complete", "--model", str(tiny_model_dir), "--masks", str(scenes / "annotations/test_kins2020.json"),
         "--images", str(scenes / "images/test"), "--out", str(res), "--no-restrict", "--gt-amodal-boxes"],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    d = json.loads(res.read_text())
    assert d["info"]["restrict_to_occluders"] is False
    assert "known amodal boxes" in d["info"]["amodal_boxes"]
    gt = {
        a["id"]: a
        for a in json.loads((scenes / "annotations/test_kins2020.json").read_text())["annotations"]
    }
    for a in d["annotations"]:
        assert a["box_source"] == "supplied"
        np.testing.assert_allclose(a["amodal_box"], gt[a["id"]]["a_bbox"], atol=1e-3)


# ------------------------------------------------------------------------------ bad input


def _copy_scenes(scenes: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "sc"
    shutil.copytree(scenes, dst)
    return dst


def _complete_args(model: Path, masks: Path, images: Path, out: Path) -> list[str]:
    return [
        "amodal",
        "complete",
        "--model",
        str(model),
        "--masks",
        str(masks),
        "--images",
        str(images),
        "--out",
        str(out),
    ]


def test_image_size_mismatch_names_file(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    sc = _copy_scenes(scenes, tmp_path)
    name = json.loads((sc / "annotations/test_coco.json").read_text())["images"][2]["file_name"]
    Image.new("RGB", (70, 64)).save(sc / "images/test" / name)
    rc, _, err = run_cli(
        _complete_args(
            tiny_model_dir,
            sc / "annotations/test_coco.json",
            sc / "images/test",
            tmp_path / "o.json",
        ),
        capsys,
    )
    assert_one_line_error(rc, err, name, "70x64", "64x64")
    assert not (tmp_path / "o.json").exists()


def test_missing_image(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = _copy_scenes(scenes, tmp_path)
    name = json.loads((sc / "annotations/test_coco.json").read_text())["images"][0]["file_name"]
    (sc / "images/test" / name).unlink()
    rc, _, err = run_cli(
        _complete_args(
            tiny_model_dir,
            sc / "annotations/test_coco.json",
            sc / "images/test",
            tmp_path / "o.json",
        ),
        capsys,
    )
    assert_one_line_error(rc, err, name, "not found")


def test_empty_visible_mask(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from maskgen.core.rle import encode_rle

    sc = _copy_scenes(scenes, tmp_path)
    masks = sc / "annotations/test_kins2020.json"
    d = json.loads(masks.read_text())
    victim = d["annotations"][3]
    im = next(i for i in d["images"] if i["id"] == victim["image_id"])
    victim["i_segm"] = encode_rle(np.zeros((im["height"], im["width"]), bool))
    victim["i_bbox"] = [0, 0, 0, 0]
    victim["i_area"] = 0
    masks.write_text(json.dumps(d))
    out = tmp_path / "o.json"
    rc, _, err = run_cli(_complete_args(tiny_model_dir, masks, sc / "images/test", out), capsys)
    assert_one_line_error(
        rc, err, f"annotation {victim['id']}", "empty visible mask", "--skip-empty"
    )
    assert not out.exists()
    # --skip-empty: completed, the skipped instance flagged with an empty mask, evaluation works
    rc, _, err = run_cli(
        _complete_args(tiny_model_dir, masks, sc / "images/test", out) + ["--skip-empty"], capsys
    )
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert r["info"]["skipped_empty"] == [victim["id"]]
    skipped = next(a for a in r["annotations"] if a["id"] == victim["id"])
    assert skipped["skipped"] == "empty visible mask" and skipped["area"] == 0


def test_zero_area_box(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = _copy_scenes(scenes, tmp_path)
    masks = sc / "annotations/test_coco.json"
    d = json.loads(masks.read_text())
    d["annotations"][1]["bbox"][2] = 0
    masks.write_text(json.dumps(d))
    rc, _, err = run_cli(
        _complete_args(tiny_model_dir, masks, sc / "images/test", tmp_path / "o.json"), capsys
    )
    assert_one_line_error(rc, err, "no area")


def test_zero_area_amodal_box_file(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = json.loads((scenes / "annotations/test_coco.json").read_text())
    boxes = [{"id": a["id"], "amodal_bbox": a["bbox"]} for a in d["annotations"]]
    boxes[0]["amodal_bbox"] = [3, 3, 0, 5]
    f = tmp_path / "boxes.json"
    f.write_text(json.dumps(boxes))
    args = _complete_args(
        tiny_model_dir,
        scenes / "annotations/test_coco.json",
        scenes / "images/test",
        tmp_path / "o.json",
    )
    rc, _, err = run_cli(args + ["--amodal-boxes", str(f)], capsys)
    assert_one_line_error(rc, err, str(f), "no area")
    boxes[0]["amodal_bbox"] = d["annotations"][0]["bbox"]
    f.write_text(json.dumps(boxes[1:]))
    rc, _, err = run_cli(args + ["--amodal-boxes", str(f)], capsys)
    assert_one_line_error(rc, err, f"annotation {boxes[0]['id']}", "no amodal box")
    f.write_text(json.dumps(boxes))
    rc, _, err = run_cli(args + ["--amodal-boxes", str(f)], capsys)
    assert rc == 0, err


def test_model_folder_missing_weights(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "m"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.safetensors").unlink()
    rc, _, err = run_cli(
        _complete_args(
            bad, scenes / "annotations/test_coco.json", scenes / "images/test", tmp_path / "o.json"
        ),
        capsys,
    )
    assert_one_line_error(rc, err, "model.safetensors")
    rc, _, err = run_cli(
        _complete_args(
            tmp_path / "nope",
            scenes / "annotations/test_coco.json",
            scenes / "images/test",
            tmp_path / "o.json",
        ),
        capsys,
    )
    assert_one_line_error(rc, err, "nope")


# ------------------------------------------------------------------------------ shipped model


def test_shipped_model_loads_and_completes() -> None:
    pred = AmodalPredictor.from_folder(SHIPPED_MODEL)
    m = two_instances()
    cs = pred.complete_image(m, samples=4)
    assert len(cs) == 2
    for c, v in zip(cs, m, strict=True):
        assert c.amodal_mask.shape == (40, 40) and (c.amodal_mask >= v).all()
        assert 0 < c.uncertainty < 2 and 0 <= c.consistency <= 1
        # a trained model's mode covers most of the visible evidence
        assert (c.raw_mask & v).sum() >= 0.5 * v.sum()
    # the occluded square is partly completed under the bar (where it is hidden), nowhere else
    assert cs[0].amodal_mask[12:28, 22:28].mean() > 0.3
    assert not (cs[0].amodal_mask & ~m[0] & ~m[1]).any()


def test_shipped_model_beats_the_raw_mask_on_fresh_scenes(tmp_path: Path) -> None:
    """On unseen built-in scenes (test-split shapes, another seed) the shipped model's mode
    completes occluded instances better than the visible mask alone."""
    from maskgen.amodal.completion import complete_dataset
    from maskgen.core.metrics import instance_counts
    from maskgen.data.loader import load_dataset
    from maskgen.data.scenes import SceneConfig, generate_scenes

    out = tmp_path / "s"
    generate_scenes(
        out, cfg=SceneConfig(num_images={"train": 0, "val": 0, "test": 12}, seed=77), progress=False
    )
    gt = load_dataset(out / "annotations/test_kins2020.json")
    pred = AmodalPredictor.from_folder(SHIPPED_MODEL)
    ours, raw = [], []

    def on_image(rec, item, insts, comps):  # noqa: ANN001
        for inst, c in zip(insts, comps, strict=True):
            a, v = rec.amodal_mask(inst), rec.visible_mask(inst)
            if (a & ~v).sum() > 0.2 * a.sum():
                ours.append(instance_counts(c.amodal_mask, a, v).full_iou)
                raw.append(instance_counts(v, a, v).full_iou)

    complete_dataset(pred, gt, on_image=on_image, make_annotations=False, progress=False)
    assert len(ours) >= 10
    assert np.mean(ours) > np.mean(raw) + 0.05


def test_complete_reads_cocoa_and_kins_old(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any supported format works; only the visible masks are used (same results as COCO)."""
    from maskgen.data.cocoa import write_cocoa
    from maskgen.data.kins import write_kins_old
    from maskgen.data.loader import load_dataset

    gt = load_dataset(scenes / "annotations/test_kins2020.json")
    ref = tmp_path / "ref.json"
    rc, _, err = run_cli(
        _complete_args(
            tiny_model_dir, scenes / "annotations/test_kins2020.json", scenes / "images/test", ref
        ),
        capsys,
    )
    assert rc == 0, err
    want = {a["id"]: a["segmentation"] for a in json.loads(ref.read_text())["annotations"]}
    write_kins_old(gt, tmp_path / "old.json")
    rc, _, err = run_cli(
        _complete_args(
            tiny_model_dir, tmp_path / "old.json", scenes / "images/test", tmp_path / "o1.json"
        ),
        capsys,
    )
    assert rc == 0, err
    got = {
        a["id"]: a["segmentation"]
        for a in json.loads((tmp_path / "o1.json").read_text())["annotations"]
    }
    assert got == want
    write_cocoa(gt, tmp_path / "cocoa.json")
    rc, _, err = run_cli(
        _complete_args(
            tiny_model_dir, tmp_path / "cocoa.json", scenes / "images/test", tmp_path / "o2.json"
        ),
        capsys,
    )
    assert rc == 0, err
    got = json.loads((tmp_path / "o2.json").read_text())["annotations"]
    assert len(got) == len(want)


def test_amodal_fields_of_the_input_are_never_used(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from maskgen.core.rle import encode_rle

    src = scenes / "annotations/test_kins2020.json"
    d = json.loads(src.read_text())
    sizes = {i["id"]: (i["height"], i["width"]) for i in d["images"]}
    for a in d["annotations"]:
        h, w = sizes[a["image_id"]]
        a["a_segm"] = encode_rle(np.ones((h, w), bool))  # nonsense amodal masks and boxes
        a["a_bbox"] = [0, 0, w, h]
        a["a_area"] = h * w
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    outs = []
    for i, masks in enumerate((src, bad)):
        out = tmp_path / f"o{i}.json"
        rc, _, err = run_cli(
            _complete_args(tiny_model_dir, masks, scenes / "images/test", out), capsys
        )
        assert rc == 0, err
        outs.append(
            {a["id"]: a["segmentation"] for a in json.loads(out.read_text())["annotations"]}
        )
    assert outs[0] == outs[1]


def test_model_folder_mismatched_weights(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "m"
    shutil.copytree(tiny_model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["config"]["fc_dim"] = 24  # the weights were saved with fc_dim 16
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.json"
    rc, _, err = run_cli(
        _complete_args(bad, scenes / "annotations/test_coco.json", scenes / "images/test", out),
        capsys,
    )
    assert_one_line_error(rc, err, str(bad))
    assert not out.exists()
