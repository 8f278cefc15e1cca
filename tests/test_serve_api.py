"""``maskgen serve``: every API endpoint and every bad request, with Starlette's in-process client.

The scene is the shipped example (built-in test scene 000021: dog 213 in front of sheep 211,
elephant 212 alone).
"""

from __future__ import annotations

import io
import json
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from _serve import BASE, client
from maskgen.core.rle import decode_segmentation
from maskgen.serve.example import EXAMPLE_IMAGE, EXAMPLE_MASKS

DOG, ELEPHANT, SHEEP = 213, 212, 211


@pytest.fixture(scope="module")
def c():
    with client() as cl:
        yield cl


@pytest.fixture
def scene(c):
    r = c.post("/api/scenes/example")
    assert r.status_code == 200, r.text
    return r.json()


def op(c, sid, **body):
    return c.post(f"/api/scenes/{sid}/ops", json=body)


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def err(r, status, *needles):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    msg = r.json()["error"]
    assert "Traceback" not in r.text and "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def png(r) -> np.ndarray:
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def ids(state):
    return [i["id"] for i in state["instances"]]


def by_id(state, iid):
    return next(i for i in state["instances"] if i["id"] == iid)


def upload(c, image: bytes, masks: bytes | None = None, **fields):
    files = {"image": ("scene.png", image, "image/png")}
    if masks is not None:
        files["masks"] = ("masks.json", masks, "application/json")
    return c.post("/api/scenes", files=files, data=fields)


# ------------------------------------------------------------------------------ happy paths


def test_page_and_static_assets(c):
    r = c.get("/")
    assert r.status_code == 200 and "<canvas" in r.text and "/static/app.js" in r.text
    assert "http" not in r.text.replace(BASE, "")  # no CDN: nothing loaded from elsewhere
    for name, kind in [("app.js", "javascript"), ("style.css", "css")]:
        r = c.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert c.get("/favicon.ico").status_code == 204
    assert r.headers["x-frame-options"] == "DENY"


def test_open_example(scene):
    assert scene["width"] == scene["height"] == 256
    assert sorted(ids(scene)) == [SHEEP, ELEPHANT, DOG]
    assert [i["order"] for i in scene["instances"]] == [0, 1, 2]
    # The dog is judged in front of the sheep it covers.
    assert ids(scene).index(DOG) < ids(scene).index(SHEEP)
    sheep = by_id(scene, SHEEP)
    assert sheep["amodal_area"] > sheep["visible_area"] > 0  # completed behind the dog
    assert sheep["visible"] and sheep["amodal"] and sheep["candidates"] > 1
    assert not scene["can_undo"] and not scene["can_redo"]


def test_render_matches_input_before_edits(c, scene):
    img = png(c.get(f"/api/scenes/{scene['scene_id']}/render.png"))
    src = np.asarray(Image.open(EXAMPLE_IMAGE).convert("RGB"))
    assert img.shape == (256, 256, 3)
    # Visible pixels are the input's; the rest differs at most where a completion was painted.
    assert (img == src).all(axis=2).mean() > 0.97


def test_get_state(c, scene):
    assert ok(c.get(f"/api/scenes/{scene['scene_id']}"))["instances"] == scene["instances"]


def test_erase_undo_redo(c, scene):
    sid = scene["scene_id"]
    before = png(c.get(f"/api/scenes/{sid}/render.png"))
    st = ok(op(c, sid, op="erase", instance=DOG))
    assert DOG not in ids(st) and st["can_undo"] and st["version"] == 1
    after = png(c.get(f"/api/scenes/{sid}/render.png"))
    assert (before != after).any(axis=2).sum() > 1000
    # The sheep now shows (part of) what the dog hid.
    assert by_id(st, SHEEP)["visible_area"] > by_id(scene, SHEEP)["visible_area"]
    st = ok(op(c, sid, op="undo"))
    assert DOG in ids(st) and st["can_redo"]
    assert (png(c.get(f"/api/scenes/{sid}/render.png")) == before).all()
    st = ok(op(c, sid, op="redo"))
    assert DOG not in ids(st) and not st["can_redo"]


def test_move(c, scene):
    sid = scene["scene_id"]
    x, y, w, h = by_id(scene, ELEPHANT)["bbox"]
    st = ok(op(c, sid, op="move", instance=ELEPHANT, dx=40, dy=-30))
    e = by_id(st, ELEPHANT)
    assert e["bbox"] == [x + 40, y - 30, w, h] and (e["dx"], e["dy"]) == (40, -30)
    # Moving past the border cuts the layer; moving back restores it.
    st = ok(op(c, sid, op="move", instance=ELEPHANT, dx=1000, dy=0))
    assert by_id(st, ELEPHANT)["amodal_area"] == 0
    st = ok(op(c, sid, op="move", instance=ELEPHANT, dx=-1040, dy=30))
    assert by_id(st, ELEPHANT)["bbox"] == [x, y, w, h]


def test_front_and_back(c, scene):
    sid = scene["scene_id"]
    st = ok(op(c, sid, op="front", instance=SHEEP))
    assert ids(st)[0] == SHEEP
    assert by_id(st, SHEEP)["visible_area"] == by_id(st, SHEEP)["amodal_area"]
    st = ok(op(c, sid, op="back", instance=SHEEP))
    assert ids(st)[-1] == SHEEP


def test_samples_cycle_and_choose(c, scene):
    sid = scene["scene_id"]
    n = by_id(scene, SHEEP)["candidates"]
    detail = ok(c.get(f"/api/scenes/{sid}/instances/{SHEEP}"))
    assert len(detail["candidates"]) == n and detail["candidates"][0]["kind"] == "mode"
    assert all(0 <= cand["score"] <= 1 and cand["polygons"] for cand in detail["candidates"])
    st = ok(op(c, sid, op="sample", instance=SHEEP))
    assert by_id(st, SHEEP)["choice"] == 1
    st = ok(op(c, sid, op="sample", instance=SHEEP, k=n - 1))
    assert by_id(st, SHEEP)["choice"] == n - 1
    st = ok(op(c, sid, op="sample", instance=SHEEP))
    assert by_id(st, SHEEP)["choice"] == 0  # cycles back to the mode
    assert by_id(st, SHEEP)["score"] == detail["candidates"][0]["score"]


def test_amodal_box(c, scene):
    sid = scene["scene_id"]
    st = ok(op(c, sid, op="amodal_box", instance=SHEEP, box=[140, 125, 256, 215]))
    s = by_id(st, SHEEP)
    assert s["box_source"] == "supplied"
    assert s["amodal_box"] == [140, 125, 256, 215]
    x, y, w, h = s["bbox"]
    assert x >= 140 and y >= 125 and x + w <= 256 and y + h <= 215
    # A box drawn on a moved object is taken where it is drawn.
    ok(op(c, sid, op="move", instance=ELEPHANT, dx=50, dy=0))
    e0 = by_id(scene, ELEPHANT)["bbox"]
    st = ok(
        op(c, sid, op="amodal_box", instance=ELEPHANT,
           box=[e0[0] + 50, e0[1], e0[0] + e0[2] + 50, e0[1] + e0[3]])
    )  # fmt: skip
    assert by_id(st, ELEPHANT)["amodal_box"][0] == e0[0] + 50


def test_uncertainty_png(c, scene):
    img = png(c.get(f"/api/scenes/{scene['scene_id']}/instances/{SHEEP}/uncertainty.png"))
    assert img.shape == (256, 256, 4) and img[..., 3].max() > 0


def test_export_coco(c, scene):
    sid = scene["scene_id"]
    ok(op(c, sid, op="erase", instance=DOG))
    ok(op(c, sid, op="move", instance=ELEPHANT, dx=10, dy=0))
    r = c.get(f"/api/scenes/{sid}/export")
    assert "attachment" in r.headers["content-disposition"]
    ex = ok(r)
    anns = {a["id"]: a for a in ex["annotations"]}
    assert set(anns) == {SHEEP, ELEPHANT}
    assert ex["images"][0]["width"] == 256 and ex["categories"]
    for a in anns.values():
        amodal = decode_segmentation(a["segmentation"], 256, 256)
        vis = decode_segmentation(a["visible_segmentation"], 256, 256)
        assert (vis <= amodal).all() and a["area"] == amodal.sum()
        assert sorted([a["depth"], a["order"]]) in ([0, 1], [1, 0])
    assert anns[ELEPHANT]["bbox"][0] == by_id(scene, ELEPHANT)["bbox"][0] + 10


def test_export_kins_reads_back(c, scene, tmp_path):
    from maskgen.data.loader import load_dataset

    sid = scene["scene_id"]
    ok(op(c, sid, op="erase", instance=DOG))
    r = c.get(f"/api/scenes/{sid}/export?format=kins2020")
    assert r.status_code == 200
    (tmp_path / "k.json").write_bytes(r.content)
    ds = load_dataset(tmp_path / "k.json")
    assert ds.layout == "kins-2020" and ds.has_amodal
    assert sorted(i.id for i in ds.images[0].instances) == [SHEEP, ELEPHANT]
    # An export opens again as a scene (the KINS reader of the CLI reads it).
    st = ok(upload(c, EXAMPLE_IMAGE.read_bytes(), r.content))
    assert sorted(ids(st)) == [SHEEP, ELEPHANT]


def test_layers_zip(c, scene):
    sid = scene["scene_id"]
    ok(op(c, sid, op="erase", instance=ELEPHANT))
    z = zipfile.ZipFile(io.BytesIO(c.get(f"/api/scenes/{sid}/layers.zip").content))
    names = set(z.namelist())
    assert {"edited.png", "background.png", "masks.json", "manifest.json"} <= names
    layers = sorted(n for n in names if n.startswith("layer_"))
    assert layers == [f"layer_{SHEEP}.png", f"layer_{DOG}.png"]
    rgba = np.asarray(Image.open(z.open(layers[0])))
    assert rgba.shape == (256, 256, 4) and rgba[..., 3].any()
    assert json.loads(z.read("masks.json"))["annotations"]


def test_upload_image_and_masks(c):
    st = ok(upload(c, EXAMPLE_IMAGE.read_bytes(), EXAMPLE_MASKS.read_bytes()))
    assert sorted(ids(st)) == [SHEEP, ELEPHANT, DOG] and len(st["scene_id"]) == 16


def test_upload_polygons(c):
    polys = [
        {"points": [20, 20, 80, 20, 80, 80, 20, 80], "label": 3},
        {"points": [60, 60, 120, 60, 120, 120, 60, 120]},
    ]
    r = c.post(
        "/api/scenes",
        files={"image": ("x.png", EXAMPLE_IMAGE.read_bytes(), "image/png")},
        data={"polygons": json.dumps(polys)},
    )
    st = ok(r)
    assert sorted(ids(st)) == [1, 2]
    # The later polygon is on top: the first one's visible part loses the overlap.
    assert by_id(st, 1)["visible_area"] == 60 * 60 - 20 * 20


def test_sessions_are_evicted():
    with client(max_scenes=2) as cl:
        first = ok(cl.post("/api/scenes/example"))["scene_id"]
        ok(cl.post("/api/scenes/example"))
        ok(cl.post("/api/scenes/example"))
        err(cl.get(f"/api/scenes/{first}"), 404, "not found")


def test_concurrent_ops_on_one_scene_are_serialised(c, scene):
    sid = scene["scene_id"]
    x0 = by_id(scene, ELEPHANT)["bbox"][0]
    codes = []

    def move():
        codes.append(op(c, sid, op="move", instance=ELEPHANT, dx=1, dy=0).status_code)

    threads = [threading.Thread(target=move) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 8
    st = ok(c.get(f"/api/scenes/{sid}"))
    assert by_id(st, ELEPHANT)["bbox"][0] == x0 + 8 and st["version"] == 8


# ------------------------------------------------------------------------------ bad requests


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"op": "fly", "instance": DOG}, 400, "unknown operation"),
        ({"instance": DOG}, 400, "unknown operation"),
        ({"op": "erase"}, 400, "instance: expected"),
        ({"op": "erase", "instance": "213"}, 400, "instance: expected"),
        ({"op": "erase", "instance": 999}, 404, "instance 999"),
        ({"op": "move", "instance": DOG, "dx": "a", "dy": 0}, 400, "dx"),
        ({"op": "move", "instance": DOG, "dx": 1.5, "dy": 0}, 400, "dx"),
        ({"op": "move", "instance": DOG, "dx": 1}, 400, "dy"),
        ({"op": "move", "instance": DOG, "dx": 10**9, "dy": 0}, 400, "out of range"),
        ({"op": "sample", "instance": DOG, "k": 99}, 400, "k: 99 out of range"),
        ({"op": "amodal_box", "instance": DOG}, 400, "box: expected"),
        ({"op": "amodal_box", "instance": DOG, "box": [10, 10, 5, 5]}, 400, "empty"),
        ({"op": "amodal_box", "instance": DOG, "box": [0, 0, "x", 5]}, 400, "box: expected"),
        ({"op": "amodal_box", "instance": DOG, "box": [300, 10, 400, 50]}, 400, "outside"),
        ({"op": "amodal_box", "instance": DOG, "box": [0, 0, 1e300, 50]}, 400, "4 times"),
        ({"op": "reshape", "instance": DOG}, 400, "kind: expected"),
        ({"op": "reshape", "instance": DOG, "kind": "scale", "scale": 0}, 400, "scale"),
        ({"op": "reshape", "instance": DOG, "kind": "scale", "scale": "x"}, 400, "scale"),
        ({"op": "reshape", "instance": DOG, "kind": "rotate"}, 400, "degrees"),
        ({"op": "reshape", "instance": DOG, "kind": "sample", "k": 99}, 400, "k: 99"),
        ({"op": "reshape", "instance": DOG, "kind": "prior", "seed": -1}, 400, "seed"),
        ({"op": "reshape", "instance": DOG, "kind": "mask", "mask": "/etc/passwd"}, 400, "mask"),
        (
            {
                "op": "reshape",
                "instance": DOG,
                "kind": "mask",
                "mask": {"size": [3, 3], "counts": [9]},
            },
            400,
            "mask",
        ),
        (
            {"op": "reshape", "instance": DOG, "kind": "mask", "mask": "data:image/png;base64,xx"},
            400,
            "PNG",
        ),
        ({"op": "undo"}, 400, "nothing to undo"),
        ({"op": "redo"}, 400, "nothing to redo"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_ops(c, scene, body, status, needle):
    sid = scene["scene_id"]
    err(c.post(f"/api/scenes/{sid}/ops", json=body), status, needle)
    st = ok(c.get(f"/api/scenes/{sid}"))
    assert st["instances"] == scene["instances"] and st["version"] == 0  # unchanged


def test_erased_instance_cannot_be_edited(c, scene):
    sid = scene["scene_id"]
    ok(op(c, sid, op="erase", instance=DOG))
    err(op(c, sid, op="move", instance=DOG, dx=1, dy=1), 404, "erased")
    err(c.get(f"/api/scenes/{sid}/instances/{DOG}"), 404, "erased")


def test_bad_json_body(c, scene):
    sid = scene["scene_id"]
    r = c.post(f"/api/scenes/{sid}/ops", content=b"{not json",
               headers={"content-type": "application/json"})  # fmt: skip
    err(r, 400, "not valid JSON")
    err(c.post(f"/api/scenes/{sid}/ops", content=b"\xff\xfe"), 400, "not valid JSON")


@pytest.mark.parametrize(
    "path",
    [
        "/api/scenes/..%2F..%2Fetc%2Fpasswd/render.png",
        "/api/scenes/%2e%2e/export",
        "/api/scenes/../../etc/passwd",
        "/api/scenes/0123456789abcdef/render.png",  # well formed, unknown
        "/api/scenes/ABCDEF0123456789/export",
        "/static/..%2F__init__.py",
        "/static/__init__.py",
        "/static/%2e%2e%2fapp.py",
        "/static/",
        "/etc/passwd",
    ],
)
def test_path_like_ids_are_not_found(c, path):
    err(c.get(path), 404)


def test_bad_instance_id_in_path(c, scene):
    sid = scene["scene_id"]
    err(c.get(f"/api/scenes/{sid}/instances/..%2F1"), 404, "not found")
    err(c.get(f"/api/scenes/{sid}/instances/12a"), 404, "not found")


def test_unknown_export_format(c, scene):
    err(c.get(f"/api/scenes/{scene['scene_id']}/export?format=../x"), 400, "format")


def test_method_not_allowed(c):
    err(c.get("/api/scenes"), 405)


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 90, 90)).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_uploads(c):
    img = EXAMPLE_IMAGE.read_bytes()
    masks = EXAMPLE_MASKS.read_bytes()
    err(c.post("/api/scenes", json={"image": "x"}), 400, "multipart")
    err(c.post("/api/scenes", files={"masks": ("m.json", masks)}), 400, "image: missing")
    err(upload(c, b"", masks), 400, "image: the uploaded file is empty")
    err(upload(c, b"GIF89a not really", masks), 400, "image:")
    err(upload(c, masks, masks), 400, "image: not an image")
    err(upload(c, img), 400, "masks: missing")
    err(upload(c, img, b"{oops"), 400, "masks (masks.json)", "JSON")
    err(upload(c, img, b"[]"), 400, "masks (masks.json)", "results file")
    err(upload(c, img, b'{"annotations": [{"bbox": [1, 2, 3, 4]}]}'), 400, "masks (masks.json)")
    bad_segm = json.loads(masks)
    bad_segm["annotations"][0]["segmentation"] = {"size": [256, 256], "counts": 5}
    err(upload(c, img, json.dumps(bad_segm).encode()), 400, "masks (masks.json)")
    err(upload(c, _png(128, 128), masks), 400, "256x256", "128x128")
    err(upload(c, img, masks, image_id="77"), 400, "image_id")
    r = c.post(
        "/api/scenes",
        files={"image": ("x.png", img, "image/png"), "masks": ("m.json", masks)},
        data={"polygons": '[{"points": [1, 1, 9, 1, 9, 9]}]'},
    )
    err(r, 400, "not both")
    for bad, needle in [
        ("not json", "not valid JSON"),
        ("{}", "non-empty list"),
        ('[{"points": [1, 2]}]', "polygons[0]"),
        ('[{"points": [-50, -50, -40, -50, -40, -40]}]', "empty or outside"),
    ]:
        r = c.post("/api/scenes", files={"image": ("x.png", img)}, data={"polygons": bad})
        err(r, 400, needle)


def test_error_text_names_no_server_path(c):
    msg = err(upload(c, EXAMPLE_IMAGE.read_bytes(), b"{oops"), 400)
    assert "/tmp" not in msg and "maskgen-serve-" not in msg


def test_reshape_op_over_http(c, scene):
    sid = scene["scene_id"]
    w0 = by_id(scene, SHEEP)["bbox"][2]
    st = ok(op(c, sid, op="reshape", instance=SHEEP, kind="scale", scale=0.5))
    assert st["version"] == 1 and abs(by_id(st, SHEEP)["bbox"][2] - w0 / 2) <= 2
    st = ok(op(c, sid, op="reshape", instance=SHEEP, kind="flip"))
    assert st["can_undo"] and ok(op(c, sid, op="undo"))["version"] == 3
    assert png(c.get(f"/api/scenes/{sid}/render.png")).shape[:2] == (256, 256)
