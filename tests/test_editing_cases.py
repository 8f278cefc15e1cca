"""``maskgen data edit-cases``: exact editing ground truth re-drawn from the scenes' seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _amodal_tiny import assert_one_line_error, run_cli, tiny_scenes
from maskgen.core.io import read_image
from maskgen.core.rle import decode_segmentation


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=4, seed=3)


def test_edit_cases_are_exact(scenes: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "cases"
    rc, _, err = run_cli(
        ["data", "edit-cases", "--scenes", str(scenes), "--out", str(out), "--min-hidden", "5"],
        capsys,
    )
    assert rc == 0, err
    d = json.loads((out / "cases.json").read_text())
    assert d["cases"] and [c["case_id"] for c in d["cases"]] == list(range(len(d["cases"])))
    coco = json.loads((scenes / "annotations/test_coco.json").read_text())
    for c in d["cases"]:
        im = next(i for i in coco["images"] if i["id"] == c["image_id"])
        h, w = im["height"], im["width"]
        before = read_image(scenes / "images/test" / c["file_name"])
        target = read_image(out / c["target"])
        revealed = decode_segmentation(c["revealed"], h, w)
        erased = next(a for a in coco["annotations"] if a["id"] == c["erase_id"])
        np.testing.assert_array_equal(revealed, decode_segmentation(erased["segmentation"], h, w))
        np.testing.assert_array_equal(target[~revealed], before[~revealed])  # only R changes
        anns = {a["id"]: a for a in coco["annotations"] if a["image_id"] == c["image_id"]}
        assert sorted(v["id"] for v in c["new_visible"]) == sorted(set(anns) - {c["erase_id"]})
        for v in c["new_visible"]:
            new = decode_segmentation(v["segmentation"], h, w)
            old = decode_segmentation(anns[v["id"]]["segmentation"], h, w)
            assert (new >= old).all() and not (new & ~old & ~revealed).any()
    rc, _, err = run_cli(["data", "edit-cases", "--scenes", str(scenes), "--out", str(out)], capsys)
    assert_one_line_error(rc, err, str(out), "--force")


def test_edit_cases_bad_input(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    rc, _, err = run_cli(
        ["data", "edit-cases", "--scenes", str(tmp_path), "--out", str(tmp_path / "o")], capsys
    )
    assert_one_line_error(rc, err, str(tmp_path), "summary.json")
    assert not (tmp_path / "o").exists()
