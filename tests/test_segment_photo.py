"""The photo segmentation sets of issue 12: ``data segmentation-set --variant photo`` (tuning)
and ``--variant photo-holdout`` (reporting only, made differently)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _cli import check_bad_input, run_cli
from maskgen.data.photo_sets import PHOTO_RECIPES
from maskgen.data.segmentation_sets import load_image_folder, load_mask_folder


def _make(tmp: Path, variant: str, *extra: str, capsys) -> Path:
    out = tmp / variant
    argv = ["data", "segmentation-set", "--variant", variant, "--out", out, "--size", "32"]
    argv += ["--n-train", "6", "--n-test", "4", "--n-backgrounds", "5", *extra]
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert variant in stdout
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    from maskgen.data.segmentation_sets import make_segmentation_set

    tmp = tmp_path_factory.mktemp("photo")
    out = {}
    for v in ("photo", "photo-holdout"):
        out[v] = tmp / v
        make_segmentation_set(out[v], v, size=32, n_train=6, n_test=4, n_backgrounds=5)
    return out


def test_layout_masks_and_info(sets):
    for v, d in sets.items():
        info = json.loads((d / "info.json").read_text())
        assert info["variant"] == v and info["class"] == PHOTO_RECIPES[v].default_class
        assert len(list((d / "train/images").glob("*.png"))) == 6
        assert len(list((d / "backgrounds").glob("*.png"))) == 5
        masks = load_mask_folder(d / "test/masks")
        imgs = load_image_folder(d / "test/images", 32, "test images")
        assert len(masks) == 4 and imgs.images.shape == (4, 32, 32, 3)
        fg = np.mean([m.mean() for m in masks.values()])
        assert 0.05 < fg < 0.9  # an object, not empty, not everything
        assert "reporting only" in (d / "README.md").read_text() or v == "photo"


def test_the_two_sets_are_made_differently():
    a, b = PHOTO_RECIPES["photo"], PHOTO_RECIPES["photo-holdout"]
    assert not set(a.classes) & set(b.classes)
    pools_a, pools_b = set(a.textures) | set(a.backgrounds), set(b.textures) | set(b.backgrounds)
    assert not pools_a & pools_b
    assert not set(a.textures) & set(a.backgrounds)
    assert not set(b.textures) & set(b.backgrounds)
    assert a.margin != b.margin and a.max_rotation != b.max_rotation


def test_same_seed_same_set_other_seed_other_set(sets, tmp_path, capsys):
    again = _make(tmp_path, "photo", capsys=capsys)
    for f in ("train/images/000000.png", "test/masks/000000.png"):
        assert (again / f).read_bytes() == (sets["photo"] / f).read_bytes()
    other = _make(tmp_path / "s1", "photo", "--seed", "1", capsys=capsys)
    assert (other / "train/images/000000.png").read_bytes() != (
        sets["photo"] / "train/images/000000.png"
    ).read_bytes()


def test_class_choice_and_split_by_class(tmp_path, capsys):
    d = _make(tmp_path, "photo-holdout", "--class", "giraffe", capsys=capsys)
    assert json.loads((d / "info.json").read_text())["class"] == "giraffe"
    check_bad_input(
        ["data", "segmentation-set", "--variant", "photo-holdout", "--class", "horse",
         "--out", tmp_path / "x", "--size", "32", "--n-train", "2", "--n-test", "1"],
        capsys, "--class horse", "photo-holdout",
    )  # fmt: skip
    check_bad_input(
        ["data", "segmentation-set", "--variant", "photo", "--class", "nosuch",
         "--out", tmp_path / "y"],
        capsys, "--class nosuch",
    )  # fmt: skip
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bad_counts_and_overwrite(sets, tmp_path, capsys):
    base = ["data", "segmentation-set", "--variant", "photo", "--size", "32"]
    check_bad_input([*base, "--out", tmp_path / "z", "--n-train", "0"], capsys, "--n-train")
    check_bad_input(
        [*base, "--out", sets["photo-holdout"], "--n-train", "2", "--n-test", "1"],
        capsys,
        str(sets["photo-holdout"]),
        protect=[sets["photo-holdout"]],
    )
    check_bad_input([*base, "--variant", "photos", "--out", tmp_path / "w"], capsys, "--variant")
