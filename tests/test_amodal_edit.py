"""Scene editing (supplementary Fig. 6): ``erase_and_complete`` and ``maskgen amodal edit``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _amodal_tiny import assert_one_line_error, run_cli, save_tiny_model, tiny_scenes
from maskgen.amodal.io import SHIPPED_MODEL
from maskgen.amodal.predictor import AmodalPredictor, Completion, ImageInput
from maskgen.core.rle import decode_segmentation
from maskgen.editing.erase import BACKGROUND, UNCHANGED, erase_and_complete
from maskgen.errors import MaskgenError

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)


class FullBoxStub(nn.Module):
    """Decodes a full box (p ~ 1 everywhere in the amodal-box frame); the box head returns the
    visible box. Used with supplied amodal boxes, so a completion is exactly
    ``box & (visible | occluders)`` under the predictor's restriction."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_partial(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(y.shape[0], 8), torch.zeros(y.shape[0], 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full((z.shape[0], 1, 28, 28), 8.0)

    def predict_amodal_box(self, y: torch.Tensor, **kw: object) -> torch.Tensor:
        return torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(y.shape[0], 1)


def square_scene() -> tuple[np.ndarray, np.ndarray]:
    """40 x 40: a red square (instance 0, rows/cols 8:28) whose lower-right part is hidden by a
    green square in front (instance 1, rows 14:34, cols 18:38), on a blue background."""
    img = np.empty((40, 40, 3), np.uint8)
    img[:] = BLUE
    m = np.zeros((2, 40, 40), bool)
    m[0, 8:28, 8:28] = True
    m[1, 14:34, 18:38] = True
    m[0] &= ~m[1]
    img[m[0]] = RED
    img[m[1]] = GREEN
    return img, m


def test_erase_front_square_completes_and_inpaints_the_back_one() -> None:
    img, m = square_scene()
    pred = AmodalPredictor(FullBoxStub(), threshold=0.5)
    boxes = np.array([[8, 8, 28, 28], [np.nan] * 4])
    res = erase_and_complete(img, m, [1], pred, amodal_boxes=boxes)

    full = np.zeros((40, 40), bool)
    full[8:28, 8:28] = True
    assert res.kept.tolist() == [0] and res.erased.tolist() == [1]
    np.testing.assert_array_equal(res.revealed, m[1])
    np.testing.assert_array_equal(res.amodal_masks[0], full)
    # the back square's visible mask grows into the revealed region: it is whole again
    np.testing.assert_array_equal(res.visible_masks[0], full)
    assert ((res.assignment == 0) == (full & m[1])).all()
    assert ((res.assignment == BACKGROUND) == (m[1] & ~full)).all()
    assert ((res.assignment == UNCHANGED) == ~m[1]).all()
    # its revealed pixels take its own colour; the rest of the erased square the background's
    diff = np.abs(res.image.astype(int) - np.array(RED))[full & m[1]]
    assert diff.max() <= 2
    diff = np.abs(res.image.astype(int) - np.array(BLUE))[m[1] & ~full]
    assert diff.max() <= 2
    # nothing changes outside the revealed region; no green is left
    np.testing.assert_array_equal(res.image[~m[1]], img[~m[1]])
    assert not (np.abs(res.image.astype(int) - np.array(GREEN)).sum(axis=2) < 60).any()


class FakePredictor:
    """Returns hand-made completions (full-image amodal masks and probabilities) and records
    the inputs it was given."""

    def __init__(self, amodal: np.ndarray, prob: np.ndarray) -> None:
        self.amodal, self.prob = amodal, prob
        self.seen: list[ImageInput] = []
        self.kwargs: dict[str, object] = {}

    def complete_images(self, images, **kwargs):  # noqa: ANN001, ANN201
        self.kwargs = kwargs
        for item in images:
            self.seen.append(item)
            h, w = item.visible_masks.shape[1:]
            out = []
            for k in np.flatnonzero(item.complete):
                a = self.amodal[k] | item.visible_masks[k]
                out.append(
                    Completion(
                        (h, w), (0, 0, w, h), a, a, self.prob[k].astype(np.float32),
                        np.zeros((0, h, w), bool), np.zeros(0), np.zeros(4), np.zeros(4),
                        "supplied", 1.0, 1.0, np.zeros(8, np.float32), np.ones(8, np.float32),
                    )
                )  # fmt: skip
            yield out


def test_overlapping_claims_go_to_the_most_probable_completion() -> None:
    """Two back instances both complete into the erased one; each revealed pixel goes to the
    completion with the higher probability there. The erased mask is still passed as an
    occluder, and only the remaining instances are completed."""
    h, w = 10, 12
    vm = np.zeros((3, h, w), bool)
    vm[0, 2:8, 0:3] = True  # left instance
    vm[1, 2:8, 9:12] = True  # right instance
    vm[2, 2:8, 3:9] = True  # erased, between them
    amodal = np.zeros((3, h, w), bool)
    amodal[0, 2:8, 0:8] = True  # left completion reaches cols 3..7
    amodal[1, 2:8, 5:12] = True  # right completion reaches cols 5..8
    prob = np.zeros((3, h, w), np.float32)
    prob[0] = np.linspace(0.9, 0.2, w)[None]  # left: confident near itself
    prob[1] = np.linspace(0.2, 0.9, w)[None]
    img = np.zeros((h, w, 3), np.uint8)
    img[vm[0]], img[vm[1]], img[vm[2]] = RED, BLUE, GREEN
    fake = FakePredictor(amodal, prob)
    res = erase_and_complete(img, vm, [2], fake)  # type: ignore[arg-type]

    item = fake.seen[0]
    assert item.visible_masks.shape == (3, h, w) and item.complete.tolist() == [True, True, False]
    assert fake.kwargs["restrict_to_occluders"] is True
    row = res.assignment[4]
    # cols 3-4: only the left claims; 5 (0.58 vs 0.52): left; 6-8: right wins or alone
    assert row[3:9].tolist() == [0, 0, 0, 1, 1, 1]
    assert (res.assignment[[0, 1, 8, 9]] == UNCHANGED).all()
    # (Telea may be off by a grey level or two even on flat colours)
    assert np.abs(res.image[4, 3:6].astype(int) - RED).max() <= 2
    assert np.abs(res.image[4, 6:9].astype(int) - BLUE).max() <= 2
    np.testing.assert_array_equal(res.revealed_masks()[0], res.assignment == 0)


def test_library_rejects_bad_selections() -> None:
    img, m = square_scene()
    pred = AmodalPredictor(FullBoxStub(), threshold=0.5)
    with pytest.raises(MaskgenError, match="nothing left"):
        erase_and_complete(img, m, [0, 1], pred)
    with pytest.raises(MaskgenError, match="out of range"):
        erase_and_complete(img, m, [5], pred)
    with pytest.raises(MaskgenError, match="no instance"):
        erase_and_complete(img, m, [], pred)


# ------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, threshold=0.3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=4, seed=3)


def _first_image(scenes: Path) -> tuple[dict, list[dict]]:
    """An image with at least two instances and its annotations."""
    d = json.loads((scenes / "annotations/test_coco.json").read_text())
    for im in d["images"]:
        anns = [a for a in d["annotations"] if a["image_id"] == im["id"]]
        if len(anns) >= 2:
            return im, anns
    raise AssertionError("no image with two instances")


def _edit_args(model: Path, scenes: Path, image: str, erase: list[int], out: Path) -> list[str]:
    return [
        "amodal", "edit", "--model", str(model),
        "--masks", str(scenes / "annotations/test_coco.json"),
        "--images", str(scenes / "images/test"), "--image", image,
        "--erase", *map(str, erase), "--out", str(out),
    ]  # fmt: skip


def test_edit_cli_end_to_end(
    tiny_model_dir: Path, scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from maskgen.core.io import read_image

    im, anns = _first_image(scenes)
    erase = anns[-1]["id"]
    out = tmp_path / "edit"
    rc, stdout, err = run_cli(
        _edit_args(tiny_model_dir, scenes, im["file_name"], [erase], out), capsys
    )
    assert rc == 0, err
    assert "pixels revealed" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["before_after.png", "edited.png", "masks.json"]
    h, w = im["height"], im["width"]
    before = read_image(scenes / "images/test" / im["file_name"])
    edited = read_image(out / "edited.png")
    fig = read_image(out / "before_after.png")
    assert edited.shape == (h, w, 3) and fig.shape[0] >= h and fig.shape[1] > 2 * fig.shape[0]
    d = json.loads((out / "masks.json").read_text())
    assert d["info"]["edit"]["erased"] == [erase] and d["info"]["method"] == "amodal-vae"
    assert [a["id"] for a in d["annotations"]] == [a["id"] for a in anns[:-1]]
    erased = decode_segmentation(anns[-1]["segmentation"], h, w)
    grown = np.zeros((h, w), bool)
    for a, src in zip(d["annotations"], anns[:-1], strict=True):
        old = decode_segmentation(src["segmentation"], h, w)
        new = decode_segmentation(a["visible_segmentation"], h, w)
        amodal = decode_segmentation(a["segmentation"], h, w)
        assert (new >= old).all() and (amodal >= new).all()
        assert not (new & ~old & ~erased).any()  # grows only into the erased area
        assert a["revealed_area"] == int((new & ~old).sum())
        grown |= new & ~old
    # pixels outside the erased instance are untouched
    np.testing.assert_array_equal(edited[~erased], before[~erased])
    # by id, same result; an existing --out needs --force
    args = _edit_args(tiny_model_dir, scenes, str(im["id"]), [erase], out)
    rc, _, err = run_cli(args, capsys)
    assert_one_line_error(rc, err, str(out), "--force")
    rc, _, err = run_cli(args + ["--force"], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(read_image(out / "edited.png"), edited)


@pytest.mark.parametrize(
    "case", ["unknown-image", "erase-not-in-image", "erase-all", "missing-file", "wrong-size"]
)
def test_edit_cli_bad_input(
    case: str,
    tiny_model_dir: Path,
    scenes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from PIL import Image

    sc = tmp_path / "sc"
    shutil.copytree(scenes, sc)
    im, anns = _first_image(sc)
    name, erase = im["file_name"], [anns[0]["id"]]
    needles: tuple[str, ...]
    if case == "unknown-image":
        name, needles = "nope.png", ("--image nope.png", "test_coco.json")
    elif case == "erase-not-in-image":
        erase, needles = [987654], ("--erase 987654", f"image id {im['id']}")
    elif case == "erase-all":
        erase, needles = [a["id"] for a in anns], ("every instance",)
    elif case == "missing-file":
        (sc / "images/test" / name).unlink()
        needles = (name, "not found")
    else:
        Image.new("RGB", (im["width"] + 6, im["height"])).save(sc / "images/test" / name)
        needles = (name, f"{im['width'] + 6}x{im['height']}", f"{im['width']}x{im['height']}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    # with --force (so the refusal is the input check, not the existing folder) ...
    rc, _, err = run_cli(_edit_args(tiny_model_dir, sc, name, erase, out) + ["--force"], capsys)
    assert_one_line_error(rc, err, *needles)
    # ... nothing is written
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ------------------------------------------------------------------------------ shipped model


def test_shipped_model_edits_a_builtin_scene(tmp_path: Path) -> None:
    """On a fresh built-in scene, erasing an occluder with the shipped model reveals pixels of
    the instance it hid, mostly inside that instance's true amodal mask."""
    from maskgen.core.io import read_image
    from maskgen.data.loader import load_dataset
    from maskgen.data.scenes import SceneConfig, generate_scenes

    out = tmp_path / "s"
    generate_scenes(
        out, cfg=SceneConfig(num_images={"train": 0, "val": 0, "test": 4}, seed=11), progress=False
    )
    gt = load_dataset(out / "annotations/test_kins2020.json")
    # the (image, occluder a, hidden b) triple where a hides the most pixels of b, among those
    # where a hides 10-50 % of b (a moderately occluded object, as in Fig. 6)
    best = None
    for rec in gt.images:
        vis = [rec.visible_mask(i) for i in rec.instances]
        amo = [rec.amodal_mask(i) for i in rec.instances]
        for a in range(len(vis)):
            for b in range(len(vis)):
                hidden = int((amo[b] & vis[a]).sum()) if a != b else 0
                if 0.1 <= hidden / amo[b].sum() <= 0.5 and (best is None or hidden > best[0]):
                    best = (hidden, rec, a, b, vis, amo)
    assert best is not None and best[0] > 300
    _, rec, a, b, vis, amo = best
    image = read_image(out / "images/test" / rec.file_name)
    res = erase_and_complete(image, np.stack(vis), [a], AmodalPredictor.from_folder(SHIPPED_MODEL))
    j = int(np.flatnonzero(res.kept == b)[0])
    gained = res.visible_masks[j] & ~vis[b]
    assert gained.sum() > 0.2 * (amo[b] & vis[a]).sum()
    assert (gained & amo[b]).sum() > 0.6 * gained.sum()
    assert (res.visible_masks[j] <= res.amodal_masks[j]).all()
    np.testing.assert_array_equal(res.image[~res.revealed], image[~res.revealed])
