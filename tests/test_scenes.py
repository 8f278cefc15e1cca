"""Synthetic scenes: exact ground truth, round trips, determinism, shape sources, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgen.cli.main import main
from maskgen.core.metrics import OCCLUSION_BUCKETS, occlusion_bucket
from maskgen.data.builtin import texture_images
from maskgen.data.loader import load_dataset
from maskgen.data.scenes import (
    SceneConfig,
    annotate,
    complete_by_rule,
    generate_scenes,
    render_scene,
)
from maskgen.data.shapes import ShapeSet, load_shapes, split_shape_pools
from maskgen.errors import MaskgenError

TINY = [
    "--num-images-train", "6", "--num-images-val", "2", "--num-images-test", "3",
    "--image-size", "96", "--min-shape-size", "16", "--max-shape-size", "48",
]  # fmt: skip


def _tiny_cfg(seed: int = 0) -> SceneConfig:
    return SceneConfig(
        image_size=96,
        num_images={"train": 6, "val": 2, "test": 3},
        min_shape_size=16,
        max_shape_size=48,
        seed=seed,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "tiny"
    assert main(["data", "scenes", "--out", str(out), *TINY]) == 0
    return out


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_writes_expected_files(tiny: Path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        pngs = sorted((tiny / "images" / split).glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(n)]
        img = np.asarray(Image.open(pngs[0]))
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert (tiny / "annotations" / f"{split}_kins2020.json").is_file()
        assert (tiny / "annotations" / f"{split}_coco.json").is_file()
    raw = json.loads((tiny / "annotations" / "train_kins2020.json").read_text())
    ann = raw["annotations"][0]
    for key in ("a_segm", "i_segm", "a_bbox", "i_bbox", "a_area", "i_area", "oco_id", "ico_id"):
        assert key in ann
    assert isinstance(ann["a_segm"]["counts"], str)
    assert [c["name"] for c in raw["categories"]][:2] == ["bear", "bird"]
    assert not list(tiny.parent.glob(".tiny.*")), "temporary folders left behind"


def test_kins_round_trip_and_exact_visibility(tiny: Path):
    """Masks read back from the KINS file equal the regenerated scene's masks exactly."""
    cfg = _tiny_cfg()
    pools, _ = split_shape_pools(load_shapes("builtin"))
    textures = list(texture_images().values())
    for split_index, split in enumerate(("train", "val", "test")):
        ds = load_dataset(
            tiny / "annotations" / f"{split}_kins2020.json", image_root=tiny / "images" / split
        )
        assert ds.layout == "kins-2020" and ds.has_amodal
        coco = load_dataset(tiny / "annotations" / f"{split}_coco.json")
        assert coco.layout == "coco" and coco.num_instances() == ds.num_instances()
        for i, rec in enumerate(ds.images):
            scene = render_scene(
                np.random.default_rng([cfg.seed, split_index, i]), pools[split], cfg, textures
            )
            # The shared compositing gives visible = amodal minus the union of masks in front.
            for layer in range(len(scene.amodal)):
                front = (
                    scene.amodal[layer + 1 :].any(axis=0)
                    if layer + 1 < len(scene.amodal)
                    else False
                )
                assert np.array_equal(scene.visible[layer], scene.amodal[layer] & ~front)
            # The image shows exactly that stack.
            png = np.asarray(Image.open(tiny / "images" / split / rec.file_name))
            assert np.array_equal(png, scene.image)
            # Every annotation is its layer's exact masks; dropped layers are the tiny ones.
            annotated = {inst.extra["oco_id"]: inst for inst in rec.instances}
            assert all(inst.extra["ico_id"] == inst.extra["oco_id"] for inst in rec.instances)
            for layer in range(len(scene.amodal)):
                v_area, a_area = int(scene.visible[layer].sum()), int(scene.amodal[layer].sum())
                if layer not in annotated:
                    assert v_area < 20 or v_area < 0.1 * a_area
                    continue
                inst = annotated[layer]
                assert np.array_equal(rec.amodal_mask(inst), scene.amodal[layer])
                assert np.array_equal(rec.visible_mask(inst), scene.visible[layer])
                assert inst.category_id == scene.labels[layer] + 1
                x0, y0, x1, y1 = inst.amodal_box
                rows, cols = np.nonzero(scene.amodal[layer])
                assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            # Among annotated instances, visible <= amodal minus annotated masks in front.
            insts = sorted(rec.instances, key=lambda t: t.extra["oco_id"])
            for k, inst in enumerate(insts):
                front = np.zeros((rec.height, rec.width), dtype=bool)
                for other in insts[k + 1 :]:
                    front |= rec.amodal_mask(other)
                vis, amo = rec.visible_mask(inst), rec.amodal_mask(inst)
                assert not (vis & ~(amo & ~front)).any()


def test_summary_counts_are_consistent(tiny: Path):
    summary = json.loads((tiny / "summary.json").read_text())
    total = 0
    for split in ("train", "val", "test"):
        st = summary["splits"][split]
        ds = load_dataset(tiny / "annotations" / f"{split}_kins2020.json")
        assert st["annotated_instances"] == ds.num_instances()
        assert sum(st["occlusion_histogram"].values()) == st["annotated_instances"]
        assert st["drawn_instances"] == st["annotated_instances"] + st["dropped_small_visible"]
        assert st["complete_by_rule"] <= st["occlusion_histogram"]["0"]
        # Recompute the histogram from the file.
        hist = dict.fromkeys(OCCLUSION_BUCKETS, 0)
        for rec in ds.images:
            for inst in rec.instances:
                a = int(rec.amodal_mask(inst).sum())
                hist[occlusion_bucket(a - int(rec.visible_mask(inst).sum()), a)] += 1
        assert hist == st["occlusion_histogram"]
        total += st["annotated_instances"]
    assert total > 20
    assert summary["config"]["seed"] == 0 and not summary["shape_pools_shared_between_splits"]


def test_same_seed_same_files_other_seed_differs(tiny: Path, tmp_path: Path):
    again = tmp_path / "again"
    assert main(["data", "scenes", "--out", str(again), *TINY]) == 0
    assert _tree_digest(again) == _tree_digest(tiny)
    other = tmp_path / "other"
    generate_scenes(other, cfg=_tiny_cfg(seed=1), progress=False)
    a, b = _tree_digest(other), _tree_digest(tiny)
    assert a.keys() == b.keys() and a["images/train/000000.png"] != b["images/train/000000.png"]


def test_workers_do_not_change_output(tiny: Path, tmp_path: Path):
    out = tmp_path / "par"
    generate_scenes(out, cfg=_tiny_cfg(), workers=2, progress=False)
    assert _tree_digest(out) == _tree_digest(tiny)


def test_default_mix_has_complete_and_heavily_occluded_instances():
    """At the default settings: >= 25 % complete by the stage-1 rule, >= 15 % over half hidden."""
    cfg = SceneConfig()
    pools, _ = split_shape_pools(load_shapes("builtin"))
    textures = list(texture_images(["grass"]).values())
    n = complete = heavy = 0
    for i in range(60):
        scene = render_scene(np.random.default_rng([123, 0, i]), pools["train"], cfg, textures)
        _, st = annotate(scene, i, 1, "x.png", cfg)
        n += st["annotated_instances"]
        complete += st["complete_by_rule"]
        heavy += sum(r > 0.5 for r in st["ratios"])
    assert n > 250
    assert complete / n >= 0.25
    assert heavy / n >= 0.15


def test_complete_by_rule_hand_made():
    a = np.zeros((20, 20), dtype=bool)
    a[2:6, 2:6] = True
    b = np.zeros_like(a)
    b[2:6, 7:10] = True  # one empty column between a and b: not touching
    c = np.zeros_like(a)
    c[10:14, 10:14] = True
    d = np.zeros_like(a)
    d[14:16, 14:16] = True  # diagonal contact with c
    e = np.zeros_like(a)
    e[17:20, 0:3] = True  # on the border
    assert complete_by_rule([a, b, c, d, e]) == [True, True, False, False, False]
    b2 = np.zeros_like(a)
    b2[2:6, 6:9] = True  # shares an edge with a
    assert complete_by_rule([a, b2]) == [False, False]


def test_split_pools_are_disjoint():
    rng = np.random.default_rng(0)
    masks = [rng.random((5, 6)) < 0.9 for _ in range(57)]
    labels = np.repeat([0, 1, 2], 19)
    shapes = ShapeSet(masks, labels, ["a", "b", "c"], "test")
    pools, shared = split_shape_pools(shapes)
    assert not shared
    keys = {
        s: {m.tobytes() + bytes([int(lab)]) for m, lab in zip(p.masks, p.labels, strict=True)}
        for s, p in pools.items()
    }
    assert sum(len(p) for p in pools.values()) == 57
    assert (
        not keys["train"] & keys["test"]
        and not keys["train"] & keys["val"]
        and not keys["val"] & keys["test"]
    )
    assert sorted(np.unique(pools["test"].labels)) == [0, 1, 2]
    builtin, _ = split_shape_pools(load_shapes("builtin"))
    assert [len(builtin[s]) for s in ("train", "val", "test")] == [7192, 898, 898]


def test_shapes_from_folder_and_npz(tmp_path: Path):
    folder = tmp_path / "shapes"
    (folder / "star").mkdir(parents=True)
    blob = np.zeros((40, 40), dtype=np.uint8)
    blob[8:30, 10:25] = 255
    Image.fromarray(blob).save(folder / "white_on_black.png")
    Image.fromarray(255 - blob).save(folder / "star" / "black_on_white.png")
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[5:15, 5:35, 3] = 255
    Image.fromarray(rgba).save(folder / "star" / "alpha.png")
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(folder / "blank.png")
    s = load_shapes(folder)
    assert len(s) == 3 and s.class_names == ["shape", "star"]
    assert sorted(m.shape for m in s.masks) == [(10, 30), (22, 15), (22, 15)]
    assert all(m.all() for m in s.masks)
    arr = np.zeros((4, 30, 30), dtype=np.uint8)
    arr[:, 5:20, 5:12] = 1
    np.savez(
        tmp_path / "shapes.npz",
        masks=arr,
        labels=np.array([0, 1, 1, 0]),
        class_names=np.array(["x", "y"]),
    )
    s2 = load_shapes(tmp_path / "shapes.npz")
    assert len(s2) == 4 and s2.class_names == ["x", "y"] and s2.masks[0].shape == (15, 7)
    # A user's npz drives a whole (tiny) scene set.
    out = tmp_path / "user_scenes"
    cfg = SceneConfig(
        image_size=64,
        num_images={"train": 2, "val": 1, "test": 1},
        min_shape_size=12,
        max_shape_size=32,
    )
    summary = generate_scenes(out, shapes=tmp_path / "shapes.npz", cfg=cfg, progress=False)
    assert (
        summary["categories"] == ["x", "y"]
        and summary["shape_pools_shared_between_splits"] is False
    )
    assert load_dataset(out / "annotations" / "train_kins2020.json").num_instances() > 0


# ---------------------------------------------------------------------------- bad input


def _run_err(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskgen: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_shapes_path(tmp_path: Path, capsys):
    out = tmp_path / "o"
    err = _run_err(
        capsys, ["data", "scenes", "--out", str(out), "--shapes", str(tmp_path / "nope"), *TINY]
    )
    assert "nope: shapes path not found" in err
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no image files" in _run_err(
        capsys, ["data", "scenes", "--out", str(out), "--shapes", str(empty), *TINY]
    )
    Image.fromarray(np.zeros((30, 30), dtype=np.uint8)).save(empty / "blank.png")
    assert "no usable shapes" in _run_err(
        capsys, ["data", "scenes", "--out", str(out), "--shapes", str(empty), *TINY]
    )
    np.save(tmp_path / "zeros.npy", np.zeros((3, 20, 20), dtype=np.uint8))
    assert "no usable shapes" in _run_err(
        capsys,
        ["data", "scenes", "--out", str(out), "--shapes", str(tmp_path / "zeros.npy"), *TINY],
    )
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert "bad.npz: cannot read" in _run_err(
        capsys, ["data", "scenes", "--out", str(out), "--shapes", str(tmp_path / "bad.npz"), *TINY]
    )
    np.save(tmp_path / "vec.npy", np.ones(5))
    assert "N x H x W" in _run_err(
        capsys, ["data", "scenes", "--out", str(out), "--shapes", str(tmp_path / "vec.npy"), *TINY]
    )
    (tmp_path / "x.txt").write_text("hi")
    assert "not a folder or a .npy/.npz" in _run_err(
        capsys, ["data", "scenes", "--out", str(out), "--shapes", str(tmp_path / "x.txt"), *TINY]
    )
    assert not out.exists()


def test_out_exists_needs_force(tiny: Path, tmp_path: Path, capsys):
    out = tmp_path / "scn"
    generate_scenes(out, cfg=_tiny_cfg(), progress=False)
    before = _tree_digest(out)
    err = _run_err(capsys, ["data", "scenes", "--out", str(out), *TINY, "--seed", "5"])
    assert "folder is not empty; pass --force" in err
    assert _tree_digest(out) == before
    # --force replaces a scenes folder (with the new seed's content).
    assert main(["data", "scenes", "--out", str(out), *TINY, "--seed", "5", "--force"]) == 0
    after = _tree_digest(out)
    assert after.keys() == before.keys() and after != before
    # ... but never a folder that is not a scenes folder.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    err = _run_err(capsys, ["data", "scenes", "--out", str(precious), *TINY, "--force"])
    assert (
        "not an earlier result of this command (no summary.json)" in err
        and (precious / "thesis.tex").read_text() == "x"
    )
    f = tmp_path / "file"
    f.write_text("x")
    assert "not a folder" in _run_err(capsys, ["data", "scenes", "--out", str(f), *TINY])
    # An existing empty folder is fine.
    empty = tmp_path / "emptyout"
    empty.mkdir()
    assert main(["data", "scenes", "--out", str(empty), *TINY]) == 0
    assert _tree_digest(empty) == _tree_digest(tiny)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--image-size", "20", "--min-shape-size", "24"],
            "--image-size 20: smaller than the smallest shape",
        ),
        (
            ["--min-shape-size", "40", "--max-shape-size", "30"],
            "--max-shape-size 30: smaller than --min-shape-size 40",
        ),
        (["--min-shape-size", "4"], "--min-shape-size 4: must be at least 8"),
        (["--num-images-train", "-1"], "--num-images-train -1: must not be negative"),
        (
            ["--num-images-train", "0", "--num-images-val", "0", "--num-images-test", "0"],
            "nothing to generate",
        ),
        (["--workers", "0", "--small"], "--workers 0"),
    ],
)
def test_nonsensical_sizes(tmp_path: Path, capsys, flags: list[str], message: str):
    out = tmp_path / "o"
    err = _run_err(capsys, ["data", "scenes", "--out", str(out), *flags])
    assert message in err
    assert not out.exists()


def test_config_validate_direct():
    with pytest.raises(MaskgenError, match="image-size"):
        SceneConfig(image_size=10, min_shape_size=24).validate()
