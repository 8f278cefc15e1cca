"""Readers and writers: round trips for every format and encoding, layout detection, results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskgen.core.rle import encode_rle
from maskgen.data.coco import read_coco, write_coco
from maskgen.data.cocoa import parse_depth_constraint, read_cocoa, write_cocoa
from maskgen.data.kins import read_kins, write_kins2020, write_kins_old
from maskgen.data.loader import detect_layout, load_dataset
from maskgen.data.results import read_results, result_annotation, write_results
from maskgen.data.types import Dataset, ImageRecord, Instance
from maskgen.errors import MaskgenError

H, W = 12, 16


def _rect(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _poly(y0: int, y1: int, x0: int, x1: int) -> list[list[float]]:
    """Polygon (pixel-corner coordinates) of the rectangle rows y0..y1-1, cols x0..x1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _uncompressed(mask: np.ndarray) -> dict:
    """Uncompressed RLE: column-major run lengths starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = int(v), 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


IMAGES = [
    {"id": 1, "file_name": "a.png", "height": H, "width": W},
    {"id": 2, "file_name": "b.png", "height": H, "width": W},
]
CATS = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]

# Three masks, one per encoding.
M_POLY = _rect(1, 5, 2, 8)  # polygon
M_RLE = _rect(3, 9, 6, 12)  # compressed RLE
M_UNC = _rect(0, 2, 0, 3)  # uncompressed RLE


def _coco_obj() -> dict:
    return {
        "images": IMAGES,
        "categories": CATS,
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "segmentation": _poly(1, 5, 2, 8),
                "bbox": [2, 1, 6, 4],
                "area": 24,
                "iscrowd": 0,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "segmentation": encode_rle(M_RLE),
                "bbox": [6, 3, 6, 6],
                "area": 36,
                "iscrowd": 0,
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "segmentation": _uncompressed(M_UNC),
                "iscrowd": 0,
            },
        ],
    }


def test_uncompressed_helper_matches_pycocotools() -> None:
    rle = mask_utils.frPyObjects(_uncompressed(M_UNC), H, W)
    assert (mask_utils.decode(rle).astype(bool) == M_UNC).all()


def test_coco_round_trip_all_encodings(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.json", _coco_obj())
    ds = read_coco(src)
    assert ds.layout == "coco" and ds.num_instances() == 3 and not ds.has_amodal
    im1, im2 = ds.images
    assert [i.id for i in im1.instances] == [10, 11]
    # Masks stay encoded until asked for.
    assert isinstance(im1.instances[0].visible_segm, list)
    expected = {10: M_POLY, 11: M_RLE, 12: M_UNC}
    for im in ds.images:
        for inst in im.instances:
            assert (im.visible_mask(inst) == expected[inst.id]).all()
    np.testing.assert_array_equal(im1.instances[0].visible_box, [2, 1, 8, 5])
    # No bbox in the file: computed from the mask (cols 0-2, rows 0-1).
    np.testing.assert_array_equal(im2.instances[0].visible_box, [0, 0, 3, 2])

    write_coco(ds, tmp_path / "out.json")
    raw = json.loads((tmp_path / "out.json").read_text())
    assert all(isinstance(a["segmentation"]["counts"], str) for a in raw["annotations"])
    assert [a["bbox"] for a in raw["annotations"]] == [[2, 1, 6, 4], [6, 3, 6, 6], [0, 0, 3, 2]]
    assert [a["area"] for a in raw["annotations"]] == [24, 36, 6]
    back = read_coco(tmp_path / "out.json")
    for im in back.images:
        for inst in im.instances:
            assert (im.visible_mask(inst) == expected[inst.id]).all()
    assert back.categories == CATS


def _kins_masks() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    # id -> (visible, amodal)
    a1 = _rect(2, 8, 2, 10)
    v1 = a1 & ~_rect(5, 8, 6, 10)
    return {
        20: (v1, a1),
        21: (_rect(5, 9, 6, 12), _rect(5, 9, 6, 12)),
        22: (np.zeros((H, W), bool), _rect(0, 3, 0, 4)),  # fully occluded: empty visible mask
    }


def _kins2020_obj(poly_amodal: bool = True) -> dict:
    m = _kins_masks()
    anns = [
        {
            "id": 20, "image_id": 1, "category_id": 1,
            "a_segm": _poly(2, 8, 2, 10) if poly_amodal else encode_rle(m[20][1]),
            "i_segm": encode_rle(m[20][0]), "a_bbox": [2, 2, 8, 6], "i_bbox": [2, 2, 8, 6],
            "a_area": 48, "i_area": 36, "oco_id": 3, "ico_id": 1, "iscrowd": 0,
        },
        {
            "id": 21, "image_id": 1, "category_id": 2,
            "a_segm": _uncompressed(m[21][1]), "i_segm": _uncompressed(m[21][0]),
            "a_bbox": [6, 5, 6, 4], "i_bbox": [6, 5, 6, 4], "a_area": 24, "i_area": 24, "oco_id": 1, "ico_id": 2,
        },
        {
            "id": 22, "image_id": 2, "category_id": 1,
            "a_segm": encode_rle(m[22][1]), "i_segm": encode_rle(m[22][0]),
            "a_bbox": [0, 0, 4, 3], "i_bbox": [0, 0, 0, 0], "a_area": 12, "i_area": 0, "oco_id": 2, "ico_id": 2,
        },
    ]  # fmt: skip
    return {"images": IMAGES, "categories": CATS, "annotations": anns}


def _check_kins(ds: Dataset) -> None:
    m = _kins_masks()
    assert ds.num_instances() == 3 and ds.has_amodal
    for im in ds.images:
        for inst in im.instances:
            assert (im.visible_mask(inst) == m[inst.id][0]).all(), inst.id
            assert (im.amodal_mask(inst) == m[inst.id][1]).all(), inst.id
    inst20 = ds.images[0].instances[0]
    np.testing.assert_array_equal(inst20.amodal_box, [2, 2, 10, 8])
    assert inst20.extra["oco_id"] == 3 and inst20.extra["ico_id"] == 1
    assert ds.images[1].instances[0].visible_box is None  # empty visible mask, [0,0,0,0] box


def _to_old(obj: dict) -> dict:
    ren = {
        "a_segm": "segmentation",
        "i_segm": "inmodal_seg",
        "a_bbox": "bbox",
        "i_bbox": "inmodal_bbox",
        "a_area": "area",
        "i_area": "inmodal_area",
    }
    return {
        **obj,
        "annotations": [{ren.get(k, k): v for k, v in a.items()} for a in obj["annotations"]],
    }


@pytest.mark.parametrize("layout", ["kins-2020", "kins-old"])
@pytest.mark.parametrize("poly_amodal", [True, False])
def test_kins_round_trip(tmp_path: Path, layout: str, poly_amodal: bool) -> None:
    obj = _kins2020_obj(poly_amodal)
    if layout == "kins-old":
        obj = _to_old(obj)
    src = _write(tmp_path / "in.json", obj)
    ds = read_kins(src)
    assert ds.layout == layout
    _check_kins(ds)
    assert load_dataset(src).layout == layout
    for writer, out_layout in ((write_kins2020, "kins-2020"), (write_kins_old, "kins-old")):
        out = tmp_path / f"{out_layout}.json"
        writer(ds, out)
        back = load_dataset(out)
        assert back.layout == out_layout
        _check_kins(back)
    raw = json.loads((tmp_path / "kins-2020.json").read_text())
    a = raw["annotations"][0]
    assert set(a) == {
        "id",
        "image_id",
        "category_id",
        "a_segm",
        "i_segm",
        "a_bbox",
        "i_bbox",
        "a_area",
        "i_area",
        "iscrowd",
        "oco_id",
        "ico_id",
    }
    assert isinstance(a["a_segm"]["counts"], str) and isinstance(a["i_segm"]["counts"], str)
    assert (a["a_bbox"], a["i_bbox"], a["a_area"], a["i_area"]) == (
        [2, 2, 8, 6],
        [2, 2, 8, 6],
        48,
        36,
    )
    assert raw["annotations"][2]["i_bbox"] == [0, 0, 0, 0]


def test_kins_writer_uses_depth_and_builds_boxes(tmp_path: Path) -> None:
    a = _rect(1, 4, 1, 5)
    v = _rect(1, 3, 1, 5)
    ds = Dataset(
        images=[
            ImageRecord(
                7,
                "x.png",
                H,
                W,
                [Instance(1, 1, visible_segm=encode_rle(v), amodal_segm=encode_rle(a), depth=4)],
            )
        ],
        categories=CATS,
    )
    write_kins2020(ds, tmp_path / "k.json")
    ann = json.loads((tmp_path / "k.json").read_text())["annotations"][0]
    assert ann["oco_id"] == 4 and ann["a_bbox"] == [1, 1, 4, 3] and ann["i_bbox"] == [1, 1, 4, 2]
    assert ann["a_area"] == 12 and ann["i_area"] == 8


def _cocoa_obj() -> dict:
    # Image 1: region 1 (order 1, in front) a car, fully visible; region 2 (order 2) a person
    # partly hidden behind region 1. depth_constraint "1-2": region 1 occludes region 2.
    front = _rect(2, 6, 2, 8)
    back_amodal = _rect(4, 10, 6, 12)
    back_visible = back_amodal & ~front
    return {
        "images": IMAGES[:1],
        "annotations": [
            {
                "id": 5, "image_id": 1, "size": 2, "depth_constraint": "1-2",
                "regions": [
                    {"segmentation": [2, 2, 8, 2, 8, 6, 2, 6], "area": 24, "order": 1, "occlude_rate": 0.0, "name": "car", "isStuff": 0},
                    {"segmentation": [6, 4, 12, 4, 12, 10, 6, 10], "area": 36, "order": 2, "occlude_rate": 4 / 36, "name": "person", "isStuff": 0,
                     "visible_mask": encode_rle(back_visible), "invisible_mask": encode_rle(back_amodal & front)},
                ],
            }
        ],
    }  # fmt: skip


def test_cocoa_read_and_round_trip(tmp_path: Path) -> None:
    src = _write(tmp_path / "cocoa.json", _cocoa_obj())
    ds = read_cocoa(src)
    assert ds.layout == "cocoa" and load_dataset(src).layout == "cocoa"
    im = ds.images[0]
    front, back = im.instances
    assert (front.id, back.id) == (5001, 5002)  # 1000 * annotation id + region number
    assert {c["name"]: c["id"] for c in ds.categories} == {"car": 1, "person": 2}
    assert (front.category_id, back.category_id) == (1, 2)
    assert front.depth > back.depth  # order 1 is nearest
    assert back.occluded_by == [5001] and front.occluded_by == []
    assert (im.visible_mask(front) == _rect(2, 6, 2, 8)).all()  # no visible_mask: fully visible
    assert (im.amodal_mask(back) == _rect(4, 10, 6, 12)).all()
    assert im.visible_mask(back).sum() == 36 - 4  # rows 4-5, cols 6-7 hidden
    write_cocoa(ds, tmp_path / "out.json")
    raw = json.loads((tmp_path / "out.json").read_text())
    regions = raw["annotations"][0]["regions"]
    assert "visible_mask" not in regions[0] and "visible_mask" in regions[1]
    assert raw["annotations"][0]["depth_constraint"] == "1-2"
    back_ds = read_cocoa(tmp_path / "out.json")
    for a, b in zip(ds.images[0].instances, back_ds.images[0].instances, strict=True):
        assert a.id == b.id and a.occluded_by == b.occluded_by
        assert (im.visible_mask(a) == back_ds.images[0].visible_mask(b)).all()
        assert (im.amodal_mask(a) == back_ds.images[0].amodal_mask(b)).all()


def test_parse_depth_constraint() -> None:
    assert parse_depth_constraint("1-2,3-1") == [(1, 2), (3, 1)]
    assert parse_depth_constraint("") == []
    with pytest.raises(ValueError):
        parse_depth_constraint("1-x")


def test_detect_layout() -> None:
    assert detect_layout(_coco_obj()) == "coco"
    assert detect_layout(_kins2020_obj()) == "kins-2020"
    assert detect_layout(_to_old(_kins2020_obj())) == "kins-old"
    assert detect_layout(_cocoa_obj()) == "cocoa"
    assert detect_layout({"images": [], "annotations": [{"mask": 1}]}) is None
    assert detect_layout([1, 2]) is None


def test_explicit_layout_mismatch_names_the_key(tmp_path: Path) -> None:
    src = _write(tmp_path / "k.json", _kins2020_obj())
    with pytest.raises(
        MaskgenError, match=r"k\.json: annotation 20 \(image 1\): missing key 'inmodal_seg'"
    ):
        load_dataset(src, layout="kins-old")
    with pytest.raises(MaskgenError, match="unknown layout"):
        load_dataset(src, layout="lvis")


def test_results_round_trip(tmp_path: Path) -> None:
    m = _rect(2, 5, 3, 9)
    s1 = _rect(2, 6, 3, 9)
    ann = result_annotation(20, 1, 1, m, score=0.9, uncertainty=0.25, samples=[(m, 1.0), (s1, 0.5)])
    assert ann["bbox"] == [3, 2, 6, 3]
    info = {
        "visible_source": "gt",
        "crop": "tight box, 28x28",
        "or_visible": True,
        "method": "amodal-vae",
        "threshold": 0.1,
    }
    write_results(tmp_path / "r.json", [ann], info)
    got_info, got = read_results(tmp_path / "r.json")
    assert got_info == info
    assert set(got) == {20}
    from maskgen.core.rle import decode_segmentation

    assert (decode_segmentation(got[20]["segmentation"], H, W) == m).all()
    assert (decode_segmentation(got[20]["samples"][1]["segmentation"], H, W) == s1).all()
    assert got[20]["uncertainty"] == 0.25 and got[20]["samples"][1]["consistency"] == 0.5
    # A plain COCO result list: protocol unknown.
    _write(
        tmp_path / "plain.json",
        [{"id": 20, "image_id": 1, "category_id": 1, "segmentation": encode_rle(m), "score": 1.0}],
    )
    info2, got2 = read_results(tmp_path / "plain.json")
    assert (
        info2["visible_source"] == "unknown"
        and info2["or_visible"] == "unknown"
        and set(got2) == {20}
    )


def test_results_bad_input(tmp_path: Path) -> None:
    m = _rect(2, 5, 3, 9)
    _write(tmp_path / "noid.json", [{"image_id": 3, "segmentation": encode_rle(m)}])
    with pytest.raises(
        MaskgenError, match=r"noid\.json: result at index 0 \(image 3\): missing 'id'"
    ):
        read_results(tmp_path / "noid.json")
    a = result_annotation(1, 1, 1, m)
    _write(tmp_path / "dup.json", {"info": {}, "annotations": [a, a]})
    with pytest.raises(MaskgenError, match="annotation 1: duplicate id"):
        read_results(tmp_path / "dup.json")
    with pytest.raises(MaskgenError, match="visible_source"):
        write_results(tmp_path / "x.json", [a], {"visible_source": "maybe"})
    assert not (tmp_path / "x.json").exists()


def test_writer_refuses_incomplete_dataset_and_writes_nothing(tmp_path: Path) -> None:
    ds = Dataset(
        images=[ImageRecord(1, "a.png", H, W, [Instance(3, 1, visible_segm=encode_rle(M_RLE))])],
        categories=CATS,
    )
    with pytest.raises(MaskgenError, match=r"annotation 3 \(image 1\): no amodal mask"):
        write_kins2020(ds, tmp_path / "k.json")
    assert list(tmp_path.iterdir()) == []


def test_image_files_checked_when_asked(tmp_path: Path) -> None:
    src = _write(tmp_path / "c.json", _coco_obj())
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"")
    with pytest.raises(MaskgenError, match=r"b\.png: image file not found \(image 2"):
        load_dataset(src, image_root=tmp_path / "img")
    assert load_dataset(src).num_instances() == 3


def test_rle_counts_decoder_matches_pycocotools() -> None:
    from maskgen.data.coco import rle_counts

    rng = np.random.default_rng(1)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < rng.random()
        c = rle_counts(encode_rle(m)["counts"])
        assert sum(c) == h * w and sum(c[1::2]) == int(m.sum())
        # Rebuild the mask from the runs (column-major, starting with zeros).
        flat = np.repeat(np.arange(len(c)) % 2, c).astype(bool)
        assert (m == flat.reshape((w, h)).T).all()
    with pytest.raises(ValueError, match="truncated"):
        rle_counts("0o")  # 'o' (63) has the continuation bit set and nothing follows
    with pytest.raises(ValueError, match="invalid character"):
        rle_counts("ab c")


def test_amodal_box_may_cross_the_border_visible_may_not(tmp_path: Path) -> None:
    # The object continues past the right border: its amodal box [2, 2, 20, 6] ends at x = 22 > 16.
    obj = _kins2020_obj()
    obj["annotations"][0]["a_bbox"] = [2, 2, 20, 6]
    ds = read_kins(_write(tmp_path / "k.json", obj))
    np.testing.assert_array_equal(ds.images[0].instances[0].amodal_box, [2, 2, 22, 8])
    obj["annotations"][0]["i_bbox"] = [2, 2, 20, 6]
    with pytest.raises(
        MaskgenError, match=r"annotation 20 \(image 1\): i_bbox: box .* lies outside"
    ):
        read_kins(_write(tmp_path / "k2.json", obj))


def test_write_coco_leaves_out_fully_occluded(tmp_path: Path) -> None:
    ds = read_kins(_write(tmp_path / "k.json", _kins2020_obj()))
    write_coco(ds, tmp_path / "c.json")
    back = read_coco(tmp_path / "c.json")
    # Instance 22 has an empty visible mask: not listed; its image stays.
    assert [i.id for im in back.images for i in im.instances] == [20, 21]
    assert len(back.images) == 2
    m = _kins_masks()
    im = back.images[0]
    assert all((im.visible_mask(i) == m[i.id][0]).all() for i in im.instances)
