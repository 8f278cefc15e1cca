"""``maskgen amodal order`` and the edit operations of ``maskgen amodal edit`` on tiny scenes
with a tiny untrained model: output formats, each operation, layers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _amodal_tiny import assert_one_line_error, run_cli, save_tiny_model, tiny_scenes
from maskgen.core.io import read_image
from maskgen.core.rle import decode_segmentation


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, threshold=0.3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=4, seed=3)


def _image(scenes: Path) -> tuple[dict, list[int]]:
    d = json.loads((scenes / "annotations/test_coco.json").read_text())
    for im in d["images"]:
        ids = [a["id"] for a in d["annotations"] if a["image_id"] == im["id"]]
        if len(ids) >= 3:
            return im, ids
    raise AssertionError("no image with three instances")


def _order_args(model: Path, scenes: Path, out: Path) -> list[str]:
    return [
        "amodal", "order", "--model", str(model),
        "--masks", str(scenes / "annotations/test_coco.json"),
        "--images", str(scenes / "images/test"), "--out", str(out),
    ]  # fmt: skip


def test_order_cli_format(model: Path, scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "order.json"
    rc, stdout, err = run_cli(
        _order_args(model, scenes, out) + ["--layers", str(tmp_path / "L")], capsys
    )
    assert rc == 0, err
    d = json.loads(out.read_text())
    coco = json.loads((scenes / "annotations/test_coco.json").read_text())
    assert [e["image_id"] for e in d["images"]] == [im["id"] for im in coco["images"]]
    for e in d["images"]:
        ids = sorted(a["id"] for a in coco["annotations"] if a["image_id"] == e["image_id"])
        assert sorted(e["ranking"]) == ids
        for f, b in e["pairs"]:
            assert f in ids and b in ids and f != b
    # layers of every image, each re-compositing its input exactly
    from maskgen.editing.scene import Scene

    for im in coco["images"]:
        sc = Scene.load_layers(tmp_path / "L" / str(im["id"]))
        np.testing.assert_array_equal(
            sc.render(), read_image(scenes / "images/test" / im["file_name"])
        )
    assert d["info"]["non_touching_pairs"] == {"max_path": 7, "min_far_score": 3.0}
    rc, _, err = run_cli(_order_args(model, scenes, out), capsys)
    assert_one_line_error(rc, err, str(out), "--force")
    # the flags reach the decision: without non-touching pairs, never more pairs listed
    rc, _, err = run_cli(_order_args(model, scenes, out) + ["--max-path", "0", "--force"], capsys)
    assert rc == 0, err
    d0 = json.loads(out.read_text())
    assert d0["info"]["non_touching_pairs"]["max_path"] == 0
    n0 = sum(len(e["pairs"]) for e in d0["images"])
    assert n0 <= sum(len(e["pairs"]) for e in d["images"])


@pytest.mark.parametrize(
    "case", ["missing-masks", "missing-image", "bad-inpainter", "max-path", "far-score"]
)
def test_order_cli_bad_input(case: str, model: Path, scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import shutil

    sc = tmp_path / "sc"
    shutil.copytree(scenes, sc)
    out = tmp_path / "order.json"
    args = _order_args(model, sc, out)
    if case == "missing-masks":
        args[args.index("--masks") + 1] = str(sc / "nope.json")
        needles: tuple[str, ...] = ("nope.json",)
    elif case == "missing-image":
        (sc / "images/test/000000.png").unlink()
        needles = ("000000.png", "not found")
    elif case == "max-path":
        args += ["--max-path", "-1"]
        needles = ("--max-path -1", "must be in")
    elif case == "far-score":
        args += ["--min-far-score", "nan"]
        needles = ("--min-far-score nan", "must be in")
    else:
        args += ["--layers", str(tmp_path / "L"), "--inpainter", "nowhere"]
        needles = ("--inpainter nowhere",)
    rc, _, err = run_cli(args, capsys)
    assert_one_line_error(rc, err, *needles)
    assert not out.exists()


def _edit(model: Path, scenes: Path, im: dict, out: Path, *ops: str) -> list[str]:
    return [
        "amodal", "edit", "--model", str(model),
        "--masks", str(scenes / "annotations/test_coco.json"),
        "--images", str(scenes / "images/test"), "--image", im["file_name"],
        *ops, "--out", str(out),
    ]  # fmt: skip


@pytest.mark.parametrize("op", ["move", "front", "back", "sample", "several"])
def test_edit_operations(op: str, model: Path, scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    im, ids = _image(scenes)
    a, b = ids[0], ids[1]
    ops = {
        "move": ["--move", str(a), "3", "-2"],
        "front": ["--front", str(a)],
        "back": ["--back", str(b)],
        "sample": ["--sample", str(a), "1"],
        "several": ["--erase", str(ids[-1]), "--move", str(a), "1", "1", "--front", str(b)],
    }[op]
    out = tmp_path / "e"
    rc, stdout, err = run_cli(
        _edit(model, scenes, im, out, *ops, "--layers", str(tmp_path / "L")), capsys
    )
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["before_after.png", "edited.png", "masks.json"]
    d = json.loads((out / "masks.json").read_text())
    h, w = im["height"], im["width"]
    kept = [i for i in ids if not (op == "several" and i == ids[-1])]
    assert [e["id"] for e in d["annotations"]] == kept
    union = np.zeros((h, w), int)
    for e in d["annotations"]:
        vis = decode_segmentation(e["visible_segmentation"], h, w)
        assert (decode_segmentation(e["segmentation"], h, w) >= vis).all()
        union += vis
    assert union.max() <= 1  # new visible masks stay disjoint
    from maskgen.editing.scene import Scene

    edited = read_image(out / "edited.png")
    np.testing.assert_array_equal(Scene.load_layers(tmp_path / "L").render(), edited)
    if op == "move":  # the moved instance's pixels moved with it
        e = next(e for e in d["annotations"] if e["id"] == a)
        vis = decode_segmentation(e["visible_segmentation"], h, w)
        assert vis.any()


@pytest.mark.parametrize("case", ["no-op", "erased-then-moved", "negative-sample", "unknown-move"])
def test_edit_bad_operations(case: str, model: Path, scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    im, ids = _image(scenes)
    ops, needles = {
        "no-op": ([], ("no operation",)),
        "erased-then-moved": (
            ["--erase", str(ids[0]), "--move", str(ids[0]), "1", "1"],
            (f"--move {ids[0]}", "erased"),
        ),
        "negative-sample": (["--sample", str(ids[0]), "-1"], ("--sample", "0 or more")),
        "unknown-move": (["--move", "987654", "1", "1"], ("--move 987654",)),
    }[case]
    out = tmp_path / "e"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc, _, err = run_cli(_edit(model, scenes, im, out, *ops, "--force"), capsys)
    assert_one_line_error(rc, err, *needles)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
