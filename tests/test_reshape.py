"""Re-shaping instances (issue 14, supplementary §3.4): materials of the built-in scenes (draws
unchanged, rendered into any mask), exact re-shape cases and ``maskgen data reshape-cases``, the
baselines and the editor's choice, ``Scene.reshape``, every ``maskgen amodal edit --reshape``
form end to end, the serve ``reshape`` op, and bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _amodal_tiny import save_tiny_model, tiny_scenes
from _cli import check_bad_input, run_cli
from _inpaint_tiny import make_tiny_scenes
from maskgen.errors import MaskgenError

# sha256 (first 32 hex) of a scene's arrays, made by the generator before materials were
# recorded: the scenes must not change (same random draws, same order).
SCENE_HASHES = {
    (0, 2, 0): "be787326cb29db68c97787994d7a9796",
    (0, 2, 1): "4b1133339a28cf69fd475def7be4aedc",
    (3, 0, 5): "eb7146a5a3e989466873c31f7e3f5b00",
    (7, 1, 2): "e60431634a5355065e1d4d25283cf498",
    (0, 2, 7): "51dd161a1fd1fde192f53ffc9d821572",
}


def _draw(seed: int, split: int, i: int):  # noqa: ANN202
    from maskgen.data.builtin import texture_images
    from maskgen.data.scenes import SceneConfig, render_scene
    from maskgen.data.shapes import SPLITS, load_shapes, split_shape_pools

    pools = split_shape_pools(load_shapes("builtin"))[0]
    cfg = SceneConfig(image_size=96, min_shape_size=16, max_shape_size=60)
    rng = np.random.default_rng([seed, split, i])
    return render_scene(rng, pools[SPLITS[split]], cfg, list(texture_images().values()))


@pytest.mark.parametrize("key", sorted(SCENE_HASHES))
def test_scenes_are_byte_identical(key) -> None:
    sc = _draw(*key)
    h = hashlib.sha256()
    for a in (sc.image, sc.amodal, sc.visible, sc.labels, sc.shape_ids, sc.colours, sc.background):
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest()[:32] == SCENE_HASHES[key]
    assert len(sc.materials) == len(sc.amodal)


def test_material_field_reproduces_and_extends_the_layers() -> None:
    from maskgen.data.builtin import texture_images
    from maskgen.data.materials import MaterialField

    textures = list(texture_images().values())
    kinds = set()
    for key in SCENE_HASHES:
        sc = _draw(*key)
        for k, m in enumerate(sc.materials):
            kinds.add(m.kind)
            f = MaterialField(m, textures, sc.colours[k])
            x0, y0, w, h = m.origin
            box = np.zeros(sc.amodal.shape[1:], bool)
            box[y0 : y0 + h, x0 : x0 + w] = True
            d = np.abs(f.render(box)[box] - sc.colours[k][box])
            # flat: exact; texture: OpenCV's fixed-point resize rounds differently by <= 1 level
            assert d.max() <= (1e-3 if m.kind == "flat" else 1.5) and d.mean() < 0.3
            everywhere = f.render(np.ones_like(box))
            assert np.isfinite(everywhere).all() and everywhere[~box].std() > 1.0
    assert kinds == {"flat", "texture"}


# ------------------------------------------------------------------------------ cases


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=6, seed=3)


@pytest.fixture(scope="module")
def cases(scenes: Path) -> list:
    from maskgen.data.reshape_cases import reshape_cases

    return list(reshape_cases(scenes, "test"))


def test_reshape_cases_are_exact(cases: list) -> None:
    from maskgen.editing.reshape import warp_fill

    assert {c.kind for c in cases} == {"shape", "tps", "scale", "rotate", "flip"}
    for c in cases:
        old, new = c.visible, c.new_mask
        assert (c.new_visible <= new).all() and c.new_visible.any()
        assert not np.array_equal(old, new)
        # Nothing else changes: outside the old and new shapes the target is the scene.
        assert (c.target[~(old | new)] == c.image[~(old | new)]).all()
        if c.rigid:  # the material moves with the object: the exact warp is (nearly) the truth
            out = warp_fill(c.image, old, new, c.transform)
            inner = c.new_visible & ~_edge(new)
            err = np.abs(out[inner].astype(float) - c.target[inner]).mean()
            assert err < 12, (c.kind, err)
        else:  # the material stays: shared pixels keep their colours
            shared = old & c.new_visible
            assert (c.target[shared] == c.image[shared]).all()


def _edge(m: np.ndarray) -> np.ndarray:
    import cv2

    return m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def test_data_reshape_cases_cli(scenes: Path, cases: list, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from maskgen.core.io import read_image
    from maskgen.core.rle import decode_segmentation

    out = tmp_path / "rc"
    argv = ["data", "reshape-cases", "--scenes", scenes, "--out", out, "--kinds", "tps,flip"]
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0, err
    d = json.loads((out / "cases.json").read_text())
    want = [c for c in cases if c.kind in ("tps", "flip")]
    assert [e["kind"] for e in d["cases"]] == [c.kind for c in want]
    e, c = d["cases"][0], want[0]
    assert (read_image(out / e["target"]) == c.target).all()
    assert (decode_segmentation(e["new_mask"], *c.new_mask.shape) == c.new_mask).all()
    assert all((e["transform"] is None) == (e["kind"] == "tps") for e in d["cases"])
    check_bad_input(argv, capsys, "already exists", protect=[out])
    check_bad_input([*argv[:-1], "tps,wobble", "--force"], capsys, "--kinds", protect=[out])
    check_bad_input([*argv, "--split", "dev", "--force"], capsys, "--split", protect=[out])
    check_bad_input(["data", "reshape-cases", "--scenes", tmp_path, "--out", tmp_path / "x"],
                    capsys, "not a scenes folder")  # fmt: skip


# ------------------------------------------------------------------------------ methods


def test_parse_spec_and_user_masks(tmp_path: Path) -> None:
    from maskgen.editing.reshape import ReshapeSpec, parse_spec, read_user_mask

    assert parse_spec("3:flip") == (3, ReshapeSpec("flip"))
    assert parse_spec("3:scale=1.5") == (3, ReshapeSpec("scale", 1.5))
    assert parse_spec("3:rotate=-30") == (3, ReshapeSpec("rotate", -30.0))
    assert parse_spec("3:sample=2") == (3, ReshapeSpec("sample", 2))
    assert parse_spec("3:prior=7") == (3, ReshapeSpec("prior", 7))
    assert parse_spec("3:mask=a.png")[1] == ReshapeSpec("mask", "a.png")
    for bad, needle in [
        ("flip", "expected ID:KIND"), ("3:bend", "unknown kind"), ("3:scale", "needs a value"),
        ("3:scale=0", "scale must be"), ("3:scale=-1", "scale must be"),
        ("3:scale=nan", "finite"), ("3:rotate=inf", "finite"), ("3:scale=x", "a number"),
        ("3:sample=-1", "integer >= 0"), ("3:prior=1.5", "integer >= 0"), ("3:flip=1", "no value"),
    ]:  # fmt: skip
        with pytest.raises(MaskgenError, match=needle):
            parse_spec(bad)
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 5:20] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    assert (read_user_mask(tmp_path / "m.png", (20, 30)) == (m > 0)).all()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30)).save(tmp_path / "grey.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for name, needle in [("m.png", "must be the image's size"), ("empty.png", "empty"),
                         ("grey.png", "not a mask"), ("junk.png", "not a readable image"),
                         ("missing.png", "no such file")]:  # fmt: skip
        shape = (21, 30) if name == "m.png" else (20, 30)
        with pytest.raises(MaskgenError, match=needle):
            read_user_mask(tmp_path / name, shape)


def test_baselines_and_the_editors_choice(cases: list, synth) -> None:  # noqa: ANN001
    from maskgen.editing.reshape import (
        known_plus_mean,
        mean_fill,
        push_pull_fill,
        reshape_appearance,
        warp_fill,
    )

    c = next(c for c in cases if c.kind == "shape")
    outside = ~c.new_mask
    for out in (
        mean_fill(c.image, c.visible, c.new_mask),
        known_plus_mean(c.image, c.visible, c.new_mask),
        push_pull_fill(c.image, c.visible, c.new_mask),
        warp_fill(c.image, c.visible, c.new_mask),
    ):
        assert out.shape == c.image.shape and out.dtype == np.uint8
        assert (out[outside] == c.image[outside]).all()
    mean = c.image[c.visible].mean(0)
    assert np.abs(mean_fill(c.image, c.visible, c.new_mask)[c.new_mask] - mean).max() <= 0.5
    shared = c.new_mask & c.visible
    assert (known_plus_mean(c.image, c.visible, c.new_mask)[shared] == c.image[shared]).all()
    assert (push_pull_fill(c.image, c.visible, c.new_mask)[shared] == c.image[shared]).all()
    r = reshape_appearance(c.image, c.visible, c.new_mask, None, synth)
    assert r.method == "synthesis" and (r.image[outside] == c.image[outside]).all()
    assert (r.image[shared] == c.image[shared]).all()  # observed pixels are kept
    flip = next(c for c in cases if c.kind == "flip")
    r = reshape_appearance(flip.image, flip.visible, flip.new_mask, flip.transform, synth)
    assert r.method == "warp"
    with pytest.raises(MaskgenError, match="needs a synthesizer"):
        reshape_appearance(c.image, c.visible, c.new_mask, None, None)


# ------------------------------------------------------------------------------ the scene


def _square_scene():  # noqa: ANN202
    from maskgen.editing.scene import Scene
    from test_editing_scene import OraclePredictor, square_scene

    img, v, a = square_scene()
    return img, Scene.from_image(img, v, OraclePredictor(a), samples=2)


def test_scene_reshape_rigid_and_masks(synth) -> None:  # noqa: ANN001
    img, scene = _square_scene()
    red = np.array([200, 30, 30])
    area = scene.amodal_masks()[0].sum()
    assert scene.reshape(0, "scale=1.5") == "warp"
    assert abs(scene.amodal_masks()[0].sum() / area - 2.25) < 0.15
    assert scene.layers[0].samples.shape[0] == 2  # the samples moved with it
    assert scene.reshape(0, "rotate=45") == "warp"
    assert scene.reshape(0, "flip") == "warp"
    out = scene.render()
    shows = scene.visible_masks()[0]
    assert np.abs(out[shows & ~_edge(shows)].astype(int) - red).max() <= 2
    # A user's mask: synthesised; the old shape's uncovered pixels show the plate (blue).
    img, scene = _square_scene()
    new = np.zeros((40, 40), bool)
    new[2:10, 2:30] = True
    assert scene.reshape(0, new, synthesizer=synth) == "synthesis"
    assert (scene.amodal_masks()[0] == new).all()
    out = scene.render()
    # was red, now the inpainted plate (from the blue background)
    assert np.abs(out[20:24, 10:14].astype(int) - (30, 30, 200)).mean() < 20
    assert scene.visible_masks()[1].sum() == 20 * 20  # the green square is untouched
    # A posterior sample (kept at decomposition) is a new full mask too.
    img, scene = _square_scene()
    assert scene.reshape(0, "sample=1", synthesizer=synth) == "synthesis"


def test_scene_reshape_errors(synth) -> None:  # noqa: ANN001
    img, scene = _square_scene()
    before = scene.render()
    for what, needle in [
        ("sample=5", "out of range"), ("prior=1", "needs the Amodal-VAE predictor"),
        ("bend=1", "unknown kind"), ("scale=0", "scale must be"),
        (np.zeros((10, 10), bool), "image's size"), (np.zeros((40, 40), bool), "empty"),
    ]:  # fmt: skip
        with pytest.raises(MaskgenError, match=needle):
            scene.reshape(0, what, synthesizer=synth)
    with pytest.raises(MaskgenError, match="needs a synthesizer"):
        scene.reshape(0, "sample=0")
    with pytest.raises(MaskgenError, match="out of range"):
        scene.reshape(7, "flip")
    assert (scene.render() == before).all()


# ------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, threshold=0.3)


def _edit_argv(model: Path, scenes: Path, synth_arg: str) -> tuple[list, list[int], dict]:
    d = json.loads((scenes / "annotations/test_coco.json").read_text())
    im = next(
        im for im in d["images"]
        if sum(a["image_id"] == im["id"] for a in d["annotations"]) >= 2
    )  # fmt: skip
    ids = [a["id"] for a in d["annotations"] if a["image_id"] == im["id"]]
    argv = [
        "amodal", "edit", "--model", model, "--masks", scenes / "annotations/test_coco.json",
        "--images", scenes / "images/test", "--image", im["id"], "--synth", synth_arg,
    ]  # fmt: skip
    return argv, ids, im


def test_cli_every_reshape_form(model, scenes, synth_arg, tmp_path, capsys) -> None:  # noqa: ANN001
    from maskgen.core.io import read_image

    argv, ids, im = _edit_argv(model, scenes, synth_arg)
    mask = np.zeros((im["height"], im["width"]), np.uint8)
    mask[10:30, 12:40] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    forms = {
        "sample=1": "synthesis", "prior=3": "synthesis", f"mask={tmp_path / 'm.png'}": "synthesis",
        "scale=1.3": "warp", "rotate=30": "warp", "flip": "warp",
    }  # fmt: skip
    for n, (spec, method) in enumerate(forms.items()):
        out = tmp_path / f"o{n}"
        rc, _, err = run_cli([*argv, "--reshape", f"{ids[0]}:{spec}", "--out", out], capsys)
        assert rc == 0, err
        info = json.loads((out / "masks.json").read_text())["info"]["edit"]
        assert info["reshape"] == [
            {"id": ids[0], "spec": info["reshape"][0]["spec"], "method": method}
        ]
        edited = read_image(out / "edited.png")
        assert edited.shape == (im["height"], im["width"], 3)
        if spec.startswith("mask="):
            d = json.loads((out / "masks.json").read_text())
            e = next(a for a in d["annotations"] if a["id"] == ids[0])
            from maskgen.core.rle import decode_segmentation

            assert (decode_segmentation(e["segmentation"], *mask.shape) == (mask > 0)).all()
    # Combined with other operations, repeated, in command-line order.
    out = tmp_path / "combo"
    rc, _, err = run_cli([*argv, "--reshape", f"{ids[0]}:flip", "--move", ids[1], 3, 0,
                          "--reshape", f"{ids[1]}:sample=0", "--out", out], capsys)  # fmt: skip
    assert rc == 0, err
    info = json.loads((out / "masks.json").read_text())["info"]["edit"]
    assert [r["method"] for r in info["reshape"]] == ["warp", "synthesis"]


def test_cli_reshape_bad_input(model, scenes, synth_arg, tmp_path, capsys) -> None:  # noqa: ANN001
    argv, ids, im = _edit_argv(model, scenes, synth_arg)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    done = tmp_path / "done"
    done.mkdir()
    (done / "edited.png").write_bytes(b"earlier result")
    a = ids[0]
    for spec, needle in [
        ("999:flip", "annotation 999"), ("x:flip", "expected ID:KIND"),
        (f"{a}:wobble", "unknown kind"), (f"{a}:scale=0", "scale must be"),
        (f"{a}:scale=-2", "scale must be"), (f"{a}:scale=inf", "finite"),
        (f"{a}:rotate=nan", "finite"), (f"{a}:sample=-1", "integer"),
        (f"{a}:mask={tmp_path / 'nope.png'}", "no such file"),
        (f"{a}:mask={tmp_path / 'small.png'}", "image's size"),
    ]:  # fmt: skip
        check_bad_input([*argv, "--reshape", spec, "--out", done, "--force"], capsys, needle,
                        protect=[done])  # fmt: skip
    check_bad_input([*argv, "--reshape", f"{a}:flip", "--out", done], capsys, "already exists",
                    protect=[done])  # fmt: skip
    bad_synth = [*argv[:-1], str(tmp_path / "no-model")]
    check_bad_input([*bad_synth, "--reshape", f"{a}:prior=1", "--out", done, "--force"], capsys,
                    "--synth", protect=[done])  # fmt: skip
    check_bad_input([*argv, "--erase", a, "--reshape", f"{a}:flip", "--out", done, "--force"],
                    capsys, "erased", protect=[done])  # fmt: skip


def test_cli_reshape_texture_option(model, scenes, synth_arg, tmp_path, capsys) -> None:  # noqa: ANN001
    from dataclasses import asdict

    from maskgen.core.io import read_image
    from maskgen.synthesis.transfer import TextureOptions

    argv, ids, im = _edit_argv(model, scenes, synth_arg)
    mask = np.zeros((im["height"], im["width"]), np.uint8)
    mask[8:40, 8:44] = 255  # a big new shape: most of it is not the instance's visible pixels
    Image.fromarray(mask).save(tmp_path / "m.png")
    op = ["--reshape", f"{ids[0]}:mask={tmp_path / 'm.png'}"]
    edited, infos = {}, {}
    for mode in ("none", "transfer"):
        out = tmp_path / mode
        rc, _, err = run_cli([*argv, *op, "--texture", mode, "--out", out], capsys)
        assert rc == 0, err
        edited[mode] = read_image(out / "edited.png")
        infos[mode] = json.loads((out / "masks.json").read_text())["info"]["edit"]
    assert infos["none"]["synthesizer_texture"]["texture"] == "none"
    assert infos["transfer"]["synthesizer_texture"] == asdict(TextureOptions())  # the defaults
    assert not np.array_equal(edited["none"], edited["transfer"])
    done = tmp_path / "done"
    done.mkdir()
    for flags, needle in [
        (["--texture", "wild"], "--texture"), (["--texture-patch", "0"], "--texture-patch 0"),
        (["--texture-sigma", "nan"], "--texture-sigma nan"),
        (["--texture-guide", "-1"], "--texture-guide -1"),
    ]:  # fmt: skip
        check_bad_input([*argv, *op, *flags, "--out", done, "--force"], capsys, needle,
                        protect=[done])  # fmt: skip


# ------------------------------------------------------------------------------ serve


def test_serve_reshape_ops(synth) -> None:  # noqa: ANN001
    from _serve import predictor
    from maskgen.core.rle import encode_rle
    from maskgen.inpainting import TeleaInpainter
    from maskgen.serve.session import Session
    from test_serve_session import DOG, example_inputs

    image, masks, ids, labels, depth, cats = example_inputs()
    s = Session("0" * 16, image, masks, ids, labels, predictor(), TeleaInpainter(),
                categories=cats, samples=2, synthesizer=synth)  # fmt: skip
    i = s.index(DOG)
    before = s.rendered().amodal[DOG].copy()
    s.apply({"op": "reshape", "instance": DOG, "kind": "flip"})
    flipped = s.rendered().amodal[DOG]
    assert (
        not np.array_equal(flipped, before)
        and abs(int(flipped.sum()) - int(before.sum())) < 0.05 * before.sum()
    )
    s.apply({"op": "reshape", "instance": DOG, "kind": "scale", "scale": 0.5})
    assert s.rendered().amodal[DOG].sum() < 0.4 * before.sum()
    s.apply({"op": "reshape", "instance": DOG, "kind": "rotate", "degrees": 20})
    s.apply({"op": "reshape", "instance": DOG, "kind": "sample", "k": 1})
    s.apply({"op": "reshape", "instance": DOG, "kind": "prior", "seed": 4})
    new = np.zeros((s.height, s.width), bool)
    new[100:140, 60:150] = True
    s.apply({"op": "reshape", "instance": DOG, "kind": "mask", "mask": encode_rle(new)})
    assert (s.rendered().amodal[DOG] == new).all()
    buf = io.BytesIO()
    Image.fromarray((~new).astype(np.uint8) * 255).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    s.apply({"op": "reshape", "instance": DOG, "kind": "mask", "mask": url})
    assert (s.rendered().amodal[DOG] == ~new).all()
    assert s.candidates(i)[0][0] == "mode"
    for _ in range(7):
        s.apply({"op": "undo"})
    assert (s.rendered().amodal[DOG] == before).all() and (s.rendered().image == image).all()


# ------------------------------------------------------------------------------ synthesizer


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthesizer trained by ``maskgen synth train`` on the shared tiny scenes."""
    from maskgen.cli.main import main

    scenes = make_tiny_scenes(tmp_path_factory)
    out = tmp_path_factory.mktemp("synth") / "run"
    argv = [
        "synth", "train", "--data", scenes / "annotations/train_coco.json",
        "--images", scenes / "images/train", "--out", out,
        "--preset", "tiny", "--quiet", "--threads", "1",
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return out


@pytest.fixture(scope="module")
def synth(synth_run: Path):  # noqa: ANN201
    from maskgen.synthesis import load_synthesizer

    return load_synthesizer(synth_run)


@pytest.fixture
def synth_arg(synth_run: Path) -> str:
    return str(synth_run)
