"""Bad input: one line naming the file and the instance, exit 2, nothing written."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maskgen.cli.main import main
from maskgen.core.rle import encode_rle
from maskgen.data.loader import load_dataset
from maskgen.errors import MaskgenError

H, W = 10, 12


def _good() -> dict[str, Any]:
    a = np.zeros((H, W), bool)
    a[2:8, 2:9] = True
    v = a.copy()
    v[5:8, 5:9] = False
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [
            {
                "id": 20, "image_id": 1, "category_id": 1,
                "a_segm": encode_rle(a), "i_segm": encode_rle(v),
                "a_bbox": [2, 2, 7, 6], "i_bbox": [2, 2, 7, 6], "a_area": 42, "i_area": 30,
                "oco_id": 1, "ico_id": 1,
            }
        ],
    }  # fmt: skip


def _mutate(fn) -> Any:
    obj = copy.deepcopy(_good())
    fn(obj)
    return obj


def _ann(obj: dict) -> dict:
    return obj["annotations"][0]


def _set(key: str, value: Any):
    def f(obj: dict) -> None:
        _ann(obj)[key] = value

    return f


CASES: dict[str, tuple[Any, str]] = {
    # name: (file content: str = raw text, or object; expected message fragment after the path)
    "malformed": ('{"images": [}', r"malformed JSON at line 1"),
    "truncated": (json.dumps(_good())[:150], r"malformed JSON at line 1"),
    "rle_size": (_mutate(_set("a_segm", encode_rle(np.ones((H + 1, W), bool)))), r"annotation 20 \(image 1\): a_segm: RLE size 11x12 disagrees with image size 10x12"),
    "empty_mask": (_mutate(_set("a_segm", encode_rle(np.zeros((H, W), bool)))), r"annotation 20 \(image 1\): a_segm: empty mask"),
    "empty_polygon": (_mutate(_set("a_segm", [])), r"annotation 20 \(image 1\): a_segm: empty mask"),
    "odd_polygon": (_mutate(_set("a_segm", [[1, 2, 3, 4, 5]])), r"annotation 20 \(image 1\): a_segm: polygon needs an even number"),
    "polygon_outside": (_mutate(_set("a_segm", [[50, 50, 60, 50, 60, 60]])), r"annotation 20 \(image 1\): a_segm: polygon lies outside"),
    "box_outside": (_mutate(_set("a_bbox", [40, 40, 5, 5])), r"annotation 20 \(image 1\): a_bbox: box \[40, 40, 5, 5\] lies outside the 10x12 image"),
    "visible_box_past_border": (_mutate(_set("i_bbox", [8, 2, 7, 6])), r"annotation 20 \(image 1\): i_bbox: box \[8, 2, 7, 6\] lies outside the 10x12 image"),
    "rle_counts_overflow": (_mutate(_set("a_segm", {"size": [H, W], "counts": "T3T3"})), r"annotation 20 \(image 1\): amodal mask: RLE counts cover \d+ pixels, expected 120"),
    "rle_counts_truncated": (_mutate(_set("i_segm", {"size": [H, W], "counts": "P1o"})), r"annotation 20 \(image 1\): visible mask: RLE counts string is truncated"),
    "box_no_area": (_mutate(_set("i_bbox", [2, 2, 0, 5])), r"annotation 20 \(image 1\): i_bbox: box \[2, 2, 0, 5\] has no area"),
    "unknown_image": (_mutate(_set("image_id", 99)), r"annotation 20 \(image 99\): refers to unknown image id 99"),
    "missing_key": (_mutate(lambda o: _ann(o).pop("category_id")), r"annotation 20 \(image 1\): missing key 'category_id'"),
    "unknown_layout": (_mutate(lambda o: o.update(annotations=[{"id": 1, "image_id": 1, "mask": "x"}])), r"unknown annotation layout \(annotation keys: id, image_id, mask\)"),
    "not_object": ("[1, 2, 3]", r"unknown annotation layout \(top level is a list"),
    "bad_image_size": (_mutate(lambda o: o["images"][0].update(height=0)), r"image 1: height/width must be positive integers"),
    "duplicate_id": (_mutate(lambda o: o["annotations"].append(copy.deepcopy(o["annotations"][0]))), r"annotation 20 \(image 1\): duplicate annotation id"),
}  # fmt: skip


def _write_case(path: Path, content: Any) -> None:
    path.write_text(content if isinstance(content, str) else json.dumps(content))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_gt_via_cli(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    content, fragment = CASES[name]
    gt = tmp_path / "gt.json"
    _write_case(gt, content)
    out = tmp_path / "out"
    rc = main(["amodal", "evaluate", "--gt", str(gt), "--method", "raw", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"maskgen: error: {gt}: "), lines[0]
    import re

    assert re.search(fragment, lines[0]), lines[0]
    assert not out.exists()


def test_missing_gt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "nope.json"
    rc = main(
        ["amodal", "evaluate", "--gt", str(gt), "--method", "raw", "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"maskgen: error: {gt}: ground-truth JSON not found"
    assert not (tmp_path / "o").exists()


def test_good_file_loads() -> None:
    # The fixture itself is valid, so the failures above come from the mutation alone.
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "gt.json"
        _write_case(p, _good())
        ds = load_dataset(p)
        assert ds.layout == "kins-2020" and ds.num_instances() == 1


@pytest.mark.parametrize(
    "ann, fragment",
    [
        ({"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [5, 3]}}, r"annotation 3 \(image 1\): segmentation: uncompressed RLE counts sum to 8, expected 120"),
        ({"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [120]}}, r"annotation 3 \(image 1\): segmentation: empty mask"),
        ({"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"counts": "abc"}}, r"annotation 3 \(image 1\): segmentation: RLE needs 'size' and 'counts'"),
        ({"id": 3, "image_id": 1, "category_id": 1, "segmentation": "oops"}, r"annotation 3 \(image 1\): segmentation: segmentation must be"),
    ],
)  # fmt: skip
def test_bad_coco_annotations(tmp_path: Path, ann: dict, fragment: str) -> None:
    obj = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [ann],
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(MaskgenError, match=fragment):
        load_dataset(p, layout="coco")
