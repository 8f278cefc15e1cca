"""``maskgen synth train``: every bad input is one line ``maskgen: error: ...``, exit 2, nothing
overwritten, and a refused start leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _cli import check_bad_input, run_cli
from _inpaint_tiny import make_tiny_scenes
from test_synth import synth_args


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_tiny_scenes(tmp_path_factory)


def _data(scenes: Path) -> Path:
    return scenes / "annotations" / "train_coco.json"


# (extra flags, needles): config values refused before anything is read or written.
BAD_FLAGS = [
    (["--steps", "0"], ["--steps 0", ">= 1"]),
    (["--batch-size", "0"], ["--batch-size 0"]),
    (["--lr", "0"], ["--lr 0", "> 0"]),
    (["--d-lr", "nan"], ["--d-lr nan", "finite"]),
    (["--beta1", "1"], ["--beta1 1", "< 1"]),
    (["--width", "1"], ["--width 1"]),
    (["--crop-size", "30"], ["--crop-size 30", "multiple of 4"]),
    (["--crop-size", "8"], ["--crop-size 8", ">= 16"]),
    (["--d-scales", "4"], ["--d-scales 4", "--crop-size 32"]),
    (["--l1-weight", "-1"], ["--l1-weight -1"]),
    (["--kl-weight", "-0.5"], ["--kl-weight -0.5"]),
    (["--preset", "huge"], ["--preset", "huge"]),
    (["--threads", "0"], ["--threads 0"]),
    (["--bogus-flag", "1"], ["unrecognized arguments"]),
]


@pytest.mark.parametrize("extra,needles", BAD_FLAGS, ids=[" ".join(f[0]) for f in BAD_FLAGS])
def test_bad_flag(scenes: Path, tmp_path: Path, capsys, extra, needles) -> None:
    out = tmp_path / "run"
    check_bad_input(synth_args(scenes, out, *extra), capsys, *needles)
    assert not out.exists(), "a refused start left a folder behind"


def test_missing_data_and_images(scenes: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = synth_args(scenes, out)
    i, j = base.index("--data"), base.index("--images")
    check_bad_input(base[:i] + base[i + 2 :], capsys, "--data: required")
    check_bad_input(base[:j] + base[j + 2 :], capsys, "--images: required")
    bad = list(base)
    bad[i + 1] = str(tmp_path / "nope.json")
    check_bad_input(bad, capsys, "nope.json", "not found")
    bad[i + 1] = str(tmp_path)
    check_bad_input(bad, capsys, "is a folder")
    bad = list(base)
    bad[j + 1] = str(_data(scenes))
    check_bad_input(bad, capsys, "is a file")
    assert not out.exists()


def test_no_unoccluded_instance(scenes: Path, tmp_path: Path, capsys) -> None:
    """Only instances that touch another one or the border: nothing to learn from."""
    from maskgen.data.loader import load_dataset
    from maskgen.inpainting.samplers import complete_instances

    coco = json.loads(_data(scenes).read_text())
    keep = set()
    for rec in load_dataset(_data(scenes)).images:
        vis = [rec.visible_mask(i) for i in rec.instances]
        ok = complete_instances(vis)
        keep |= {i.id for i, done in zip(rec.instances, ok, strict=True) if not done}
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] in keep]
    path = tmp_path / "occluded.json"
    path.write_text(json.dumps(coco))
    argv = synth_args(scenes, tmp_path / "run")
    argv[argv.index("--data") + 1] = str(path)
    check_bad_input(argv, capsys, "occluded.json", "no unoccluded instance")
    coco["images"], coco["annotations"] = [], []
    path.write_text(json.dumps(coco))
    check_bad_input(argv, capsys, "holds no images")
    assert not (tmp_path / "run").exists()


def test_out_is_a_file_or_foreign_folder(scenes: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    check_bad_input(synth_args(scenes, f), capsys, "not a folder", protect=[f])
    check_bad_input(synth_args(scenes, f, "--force"), capsys, "not a folder", protect=[f])
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    check_bad_input(synth_args(scenes, folder), capsys, "not a maskgen run", protect=[folder])
    check_bad_input(
        synth_args(scenes, folder, "--force"), capsys, "not a synth run", protect=[folder]
    )


def test_force_keeps_foreign_files(scenes: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(synth_args(scenes, run, "--stop-after", "1"), capsys)[0] == 0
    (run / "notes.txt").write_text("mine")
    check_bad_input(synth_args(scenes, run, "--force"), capsys, "notes.txt", protect=[run])


def test_out_of_other_kind(scenes: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "inpaint-run"
    other.mkdir()
    header = {"kind": "inpainter", "format": "maskgen-run", "config": {}}
    (other / "config.json").write_text(json.dumps(header))
    check_bad_input(synth_args(scenes, other), capsys, "inpainter run", protect=[other])
    check_bad_input(
        synth_args(scenes, other, "--force"), capsys, "not a synth run", protect=[other]
    )


def test_group_without_command(capsys) -> None:
    check_bad_input(["synth"], capsys, "a command is required")


def test_completion_check_rejecting_everything(scenes: Path, tmp_path: Path, capsys) -> None:
    """--completion-iou: the Amodal-VAE must also agree; at 0.99 none of the tiny instances pass."""
    out = tmp_path / "run"
    argv = synth_args(scenes, out, "--completion-iou", "0.99")
    check_bad_input(argv, capsys, "no unoccluded instance", "IoU >= 0.99")
    assert not out.exists()
    check_bad_input(synth_args(scenes, out, "--completion-iou", "1.5"), capsys, "<= 1")
    argv = synth_args(scenes, out, "--completion-iou", "0.5", "--amodal-model", str(tmp_path))
    check_bad_input(argv, capsys, "not a model folder")
