"""End-to-end ``maskgen amodal evaluate`` on a hand-written KINS-2020 file, values by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskgen.cli.main import main
from maskgen.core.rle import encode_rle
from maskgen.data.loader import load_dataset
from maskgen.data.results import result_annotation, write_results
from maskgen.errors import MaskgenError
from maskgen.evaluation import (
    baseline_protocol,
    convex_hull_baseline,
    evaluate_predictions,
    markdown_report,
    raw_visible,
)


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# Image 1 (8x8):
#   instance 1: amodal = rows 1-4 x cols 1-4 (16 px). Instance 2 hides rows 3-4 x cols 3-4
#     (4 px), so visible = an L of 12 px; occlusion 4/16 = 25 % -> bucket (0,25].
#     Convex hull of the L (OpenCV, boundary pixels included) adds pixel (row 3, col 3): 13 px.
#   instance 2: rows 3-5 x cols 3-5 (9 px), unoccluded -> bucket 0; its hull is itself.
# Image 2 (6x6):
#   instance 3: amodal = rows 0-3 x cols 0-1 (8 px), visible row 0 x cols 0-1 (2 px);
#     occlusion 6/8 = 75 % -> bucket (50,100]; the hull of a rectangle is itself.
A1 = _rect(8, 8, 1, 5, 1, 5)
V1 = A1 & ~_rect(8, 8, 3, 5, 3, 5)
A2 = _rect(8, 8, 3, 6, 3, 6)
A3 = _rect(6, 6, 0, 4, 0, 2)
V3 = _rect(6, 6, 0, 1, 0, 2)


def _gt(path: Path) -> Path:
    obj = {
        "images": [
            {"id": 1, "file_name": "1.png", "height": 8, "width": 8},
            {"id": 2, "file_name": "2.png", "height": 6, "width": 6},
        ],
        "categories": [{"id": 1, "name": "shape"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "a_segm": [[1, 1, 5, 1, 5, 5, 1, 5]], "i_segm": encode_rle(V1),
             "a_bbox": [1, 1, 4, 4], "i_bbox": [1, 1, 4, 4], "a_area": 16, "i_area": 12, "oco_id": 1, "ico_id": 1},
            {"id": 2, "image_id": 1, "category_id": 1, "a_segm": encode_rle(A2), "i_segm": [[3, 3, 6, 3, 6, 6, 3, 6]],
             "a_bbox": [3, 3, 3, 3], "i_bbox": [3, 3, 3, 3], "a_area": 9, "i_area": 9, "oco_id": 2, "ico_id": 2},
            {"id": 3, "image_id": 2, "category_id": 1, "a_segm": encode_rle(A3), "i_segm": encode_rle(V3),
             "a_bbox": [0, 0, 2, 4], "i_bbox": [0, 0, 2, 1], "a_area": 8, "i_area": 2, "oco_id": 1, "ico_id": 1},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(obj))
    return path


# raw (P = V):
#   inst 1: full I=12 U=16; invisible P\V=∅, A\V=4 px -> I=0 U=4
#   inst 2: full I=9 U=9;   invisible I=0 U=0 (adds nothing)
#   inst 3: full I=2 U=8;   invisible I=0 U=6
#   full dataset (12+9+2)/(16+9+8) = 23/33; full mean (12/16 + 1 + 2/8)/3 = 2/3
#   invisible dataset 0/(4+6) = 0; invisible mean over occluded {1, 3} = 0
RAW = {
    "overall": dict(n_instances=3, n_occluded=2, full_iou_dataset=23 / 33, full_iou_mean=2 / 3, invisible_iou_dataset=0.0, invisible_iou_mean=0.0),
    "0": dict(n_instances=1, n_occluded=0, full_iou_dataset=1.0, full_iou_mean=1.0, invisible_iou_dataset=None, invisible_iou_mean=None),
    "(0,25]": dict(n_instances=1, n_occluded=1, full_iou_dataset=0.75, full_iou_mean=0.75, invisible_iou_dataset=0.0, invisible_iou_mean=0.0),
    "(25,50]": dict(n_instances=0, n_occluded=0, full_iou_dataset=None, full_iou_mean=None, invisible_iou_dataset=None, invisible_iou_mean=None),
    "(50,100]": dict(n_instances=1, n_occluded=1, full_iou_dataset=0.25, full_iou_mean=0.25, invisible_iou_dataset=0.0, invisible_iou_mean=0.0),
}  # fmt: skip
# convex hull: inst 1 gains pixel (3,3), inside A and outside V:
#   inst 1: full I=13 U=16; invisible P\V = 1 px, A\V = 4 px -> I=1 U=4 (0.25)
#   full dataset (13+9+2)/33 = 24/33; full mean (13/16 + 1 + 1/4)/3 = 2.0625/3
#   invisible dataset (1+0)/(4+6) = 0.1; invisible mean (0.25 + 0)/2 = 0.125
HULL = {
    "overall": dict(n_instances=3, n_occluded=2, full_iou_dataset=24 / 33, full_iou_mean=2.0625 / 3, invisible_iou_dataset=0.1, invisible_iou_mean=0.125),
    "(0,25]": dict(n_instances=1, n_occluded=1, full_iou_dataset=13 / 16, full_iou_mean=13 / 16, invisible_iou_dataset=0.25, invisible_iou_mean=0.25),
    "(50,100]": dict(n_instances=1, n_occluded=1, full_iou_dataset=0.25, full_iou_mean=0.25, invisible_iou_dataset=0.0, invisible_iou_mean=0.0),
}  # fmt: skip


def _check(metrics: dict, expected: dict) -> None:
    for group, values in expected.items():
        got = metrics["overall"] if group == "overall" else metrics["buckets"][group]
        for k, v in values.items():
            if v is None:
                assert got[k] is None, (group, k)
            else:
                assert got[k] == pytest.approx(v), (group, k, got[k], v)


@pytest.mark.parametrize("method, expected", [("raw", RAW), ("convex-hull", HULL)])
def test_cli_baselines_by_hand(
    tmp_path: Path, method: str, expected: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = _gt(tmp_path / "gt.json")
    out = tmp_path / method
    assert main(["amodal", "evaluate", "--gt", str(gt), "--method", method, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    _check(m, expected)
    assert m["protocol"]["method"] == method and m["protocol"]["visible_source"] == "gt"
    assert m["protocol"]["or_visible"] is True and m["protocol"]["baseline"] is True
    assert m["ground_truth"]["layout"] == "kins-2020" and m["ground_truth"]["n_instances"] == 3
    md = (out / "metrics.md").read_text()
    assert "ground-truth visible masks" in md and "Crop convention: none (whole image)" in md
    assert "OR-ed with the visible mask: yes" in md and "baseline" in md
    png = (out / "iou_vs_visible.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    rows = (out / "per_instance.csv").read_text().splitlines()
    assert rows[0] == "id,image_id,bucket,visible_ratio,full_iou,invisible_iou" and len(rows) == 4
    assert "| all | 3 | 2 |" in capsys.readouterr().out
    # An existing --out is refused without --force, kept as it was, and replaced with it.
    before = (out / "metrics.json").read_text()
    assert main(["amodal", "evaluate", "--gt", str(gt), "--method", method, "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before
    assert (
        main(
            [
                "amodal",
                "evaluate",
                "--gt",
                str(gt),
                "--method",
                method,
                "--out",
                str(out),
                "--force",
            ]
        )
        == 0
    )


def test_cli_pred_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = _gt(tmp_path / "gt.json")
    # Perfect predictions except instance 3, which predicts rows 0-2 (6 px of 8):
    #   inst 3 full 6/8; invisible P\V = rows 1-2 (4 px), A\V = rows 1-3 (6 px) -> 4/6.
    #   full dataset (16+9+6)/(16+9+8) = 31/33; invisible dataset (4+0+4)/(4+0+6) = 8/10;
    #   invisible mean (1 + 4/6)/2.
    anns = [
        result_annotation(1, 1, 1, A1, uncertainty=0.1),
        result_annotation(2, 1, 1, A2),
        result_annotation(3, 2, 1, _rect(6, 6, 0, 3, 0, 2)),
    ]
    info = {
        "visible_source": "predicted",
        "crop": "tight box, 28x28",
        "or_visible": False,
        "method": "test",
    }
    write_results(tmp_path / "r.json", anns, info)
    out = tmp_path / "ev"
    assert (
        main(
            [
                "amodal",
                "evaluate",
                "--gt",
                str(gt),
                "--pred",
                str(tmp_path / "r.json"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    _check(
        m,
        {
            "overall": dict(
                full_iou_dataset=31 / 33,
                full_iou_mean=(1 + 1 + 0.75) / 3,
                invisible_iou_dataset=0.8,
                invisible_iou_mean=(1 + 4 / 6) / 2,
            )
        },
    )
    assert m["protocol"]["visible_source"] == "predicted" and m["protocol"]["or_visible"] is False
    md = (out / "metrics.md").read_text()
    assert (
        "predicted visible masks" in md
        and "tight box, 28x28" in md
        and "OR-ed with the visible mask: no" in md
    )

    # A missing prediction is an error naming the file and the instance; nothing written.
    write_results(tmp_path / "short.json", anns[:2], info)
    rc = main(
        [
            "amodal",
            "evaluate",
            "--gt",
            str(gt),
            "--pred",
            str(tmp_path / "short.json"),
            "--out",
            str(tmp_path / "e2"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert (
        rc == 2
        and err
        == f"maskgen: error: {tmp_path / 'short.json'}: no prediction for 1 of 3 GT annotations (e.g. id 3)"
    )
    assert not (tmp_path / "e2").exists()
    # A prediction of the wrong size names the instance.
    bad = [anns[0], anns[1], result_annotation(3, 2, 1, np.ones((8, 8), bool))]
    write_results(tmp_path / "bad.json", bad, info)
    rc = main(
        [
            "amodal",
            "evaluate",
            "--gt",
            str(gt),
            "--pred",
            str(tmp_path / "bad.json"),
            "--out",
            str(tmp_path / "e3"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert (
        rc == 2
        and "bad.json: result for annotation 3 (image 2): RLE size 8x8 disagrees with image size 6x6"
        in err
    )
    assert not (tmp_path / "e3").exists()


def test_malformed_rle_prediction_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "zzzz" parses as RLE but its runs cover far more than the 6x6 image; pycocotools would
    # write past the mask, so the harness checks the counts first.
    gt = _gt(tmp_path / "gt.json")
    anns = [
        result_annotation(1, 1, 1, A1),
        result_annotation(2, 1, 1, A2),
        result_annotation(3, 2, 1, A3),
    ]
    anns[2]["segmentation"] = {"size": [6, 6], "counts": "zzzz"}
    write_results(tmp_path / "r.json", anns, {"method": "x"})
    rc = main(
        [
            "amodal",
            "evaluate",
            "--gt",
            str(gt),
            "--pred",
            str(tmp_path / "r.json"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert (
        rc == 2
        and "r.json: result for annotation 3 (image 2): RLE" in err
        and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "o").exists()


def test_gt_without_amodal_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "1.png", "height": 8, "width": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(A1)}],
    }
    p = tmp_path / "coco.json"
    p.write_text(json.dumps(coco))
    rc = main(
        ["amodal", "evaluate", "--gt", str(p), "--method", "raw", "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    assert "coco.json: no amodal masks (layout coco)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_api_matches_cli(tmp_path: Path) -> None:
    gt = load_dataset(_gt(tmp_path / "gt.json"))
    r = evaluate_predictions(gt, raw_visible, baseline_protocol("raw"), progress=False)
    _check(r, RAW)
    assert [p["id"] for p in r["per_instance"]] == [1, 2, 3]
    assert [p["image_id"] for p in r["per_instance"]] == [1, 1, 2]
    h = evaluate_predictions(
        gt, convex_hull_baseline, baseline_protocol("convex-hull"), progress=False
    )
    _check(h, HULL)
    assert "| all | 3 | 2 | 72.73 |" in markdown_report(h)  # 24/33 = 72.73 %
    with pytest.raises(MaskgenError, match=r"prediction for annotation 1 \(image 1\) is \(2, 2\)"):
        evaluate_predictions(
            gt, lambda im, inst: np.zeros((2, 2), bool), {"method": "x"}, progress=False
        )


def test_subprocess_entry_point(tmp_path: Path) -> None:
    gt = _gt(tmp_path / "gt.json")
    out = tmp_path / "sub"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "maskgen",
            "amodal",
            "evaluate",
            "--gt",
            str(gt),
            "--method",
            "raw",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    _check(json.loads((out / "metrics.json").read_text()), RAW)


@pytest.mark.parametrize("fmt", ["kins-old", "cocoa"])
def test_same_metrics_from_every_amodal_format(tmp_path: Path, fmt: str) -> None:
    from maskgen.data.cocoa import write_cocoa
    from maskgen.data.kins import write_kins_old

    gt = load_dataset(_gt(tmp_path / "gt.json"))
    out = tmp_path / f"{fmt}.json"
    (write_kins_old if fmt == "kins-old" else write_cocoa)(gt, out)
    other = load_dataset(out)
    assert other.layout == fmt
    r = evaluate_predictions(
        other, convex_hull_baseline, baseline_protocol("convex-hull"), progress=False
    )
    _check(r, HULL)
