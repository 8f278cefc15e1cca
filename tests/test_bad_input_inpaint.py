"""``maskgen inpaint train``: every bad input is one line ``maskgen: error: ...``, exit 2, nothing
overwritten, and a refused start leaves nothing that blocks the corrected command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli import check_bad_input, run_cli
from _inpaint_tiny import make_tiny_scenes, train_args
from maskgen.core.io import write_image


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_tiny_scenes(tmp_path_factory)


def _args(scenes: Path, out: Path, *extra: str) -> list[str]:
    return train_args(scenes, out, *extra)


def _data(scenes: Path) -> Path:
    return scenes / "annotations" / "train_coco.json"


# (extra flags, needles): config values refused before anything is read or written.
BAD_FLAGS = [
    (["--steps", "0"], ["--steps 0", ">= 1"]),
    (["--steps", "abc"], ["--steps", "expected int"]),
    (["--batch-size", "0"], ["--batch-size 0"]),
    (["--lr", "0"], ["--lr 0", "> 0"]),
    (["--lr", "nan"], ["--lr nan", "finite"]),
    (["--width", "1"], ["--width 1"]),
    (["--crop-size", "30"], ["--crop-size 30", "multiple of 4"]),
    (["--crop-size", "8"], ["--crop-size 8", ">= 16"]),
    (["--instance-size", "66"], ["--instance-size 66", "multiple of 4"]),
    (["--dilate-min", "9", "--dilate-max", "5"], ["--dilate-max 5", "--dilate-min 9"]),
    (["--dilate-min", "-1"], ["--dilate-min -1"]),
    (["--context-weight", "-1"], ["--context-weight -1"]),
    (["--label-dim", "0"], ["--label-dim 0"]),
    (["--seed", "-3"], ["--seed -3"]),
    (["--threads", "0"], ["--threads 0"]),
    (["--max-minutes", "0"], ["--max-minutes 0"]),
    (["--log-every", "0"], ["--log-every 0"]),
    (["--preset", "huge"], ["--preset", "huge"]),
    (["--device", "tpu"], ["tpu"]),
    (["--bogus-flag", "1"], ["unrecognized arguments"]),
]


@pytest.mark.parametrize("extra,needles", BAD_FLAGS, ids=[" ".join(f[0]) for f in BAD_FLAGS])
def test_bad_flag(scenes: Path, tmp_path: Path, capsys, extra, needles) -> None:
    out = tmp_path / "run"
    check_bad_input(_args(scenes, out, *extra), capsys, *needles)
    assert not out.exists(), "a refused start left a folder behind"


def test_missing_out(scenes: Path, capsys) -> None:
    argv = [a for a in _args(scenes, Path("x")) if a not in ("--out", "x")]
    check_bad_input(argv, capsys, "--out")


def test_cuda_without_cuda(scenes: Path, tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    check_bad_input(_args(scenes, tmp_path / "run", "--device", "cuda"), capsys, "cuda")
    assert not (tmp_path / "run").exists()


def test_missing_data_and_images(scenes: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = _args(scenes, out)
    i, j = base.index("--data"), base.index("--images")
    for argv, needle in [
        (base[:i] + base[i + 2 :], "--data: required"),
        (base[:j] + base[j + 2 :], "--images: required"),
    ]:
        check_bad_input(argv, capsys, needle)
    bad = list(base)
    bad[i + 1] = str(tmp_path / "nope.json")
    check_bad_input(bad, capsys, "nope.json", "not found")
    bad[i + 1] = str(tmp_path)
    check_bad_input(bad, capsys, "is a folder")
    bad = list(base)
    bad[j + 1] = str(tmp_path / "no-images")
    check_bad_input(bad, capsys, "no-images", "not found")
    bad[j + 1] = str(_data(scenes))
    check_bad_input(bad, capsys, "is a file")
    assert not out.exists()


def test_malformed_and_empty_annotations(scenes: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    argv = _args(scenes, out)
    argv[argv.index("--data") + 1] = str(bad)
    check_bad_input(argv, capsys, "bad.json", "malformed JSON")
    coco = json.loads(_data(scenes).read_text())
    coco["annotations"] = []
    bad.write_text(json.dumps(coco))
    check_bad_input(argv, capsys, "no visible instance mask")
    coco["images"], coco["annotations"] = [], []
    bad.write_text(json.dumps(coco))
    check_bad_input(argv, capsys, "holds no images")
    assert not out.exists()


def test_no_complete_instance(scenes: Path, tmp_path: Path, capsys) -> None:
    """Only instances touching the border: hole shapes exist, complete instances do not."""
    coco = json.loads(_data(scenes).read_text())
    from maskgen.data.loader import load_dataset
    from maskgen.inpainting.samplers import complete_instances

    ds = load_dataset(_data(scenes))
    keep = set()
    for rec in ds.images:
        vis = [rec.visible_mask(i) for i in rec.instances]
        keep |= {
            i.id for i, ok in zip(rec.instances, complete_instances(vis), strict=True) if not ok
        }
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] in keep]
    path = tmp_path / "incomplete.json"
    path.write_text(json.dumps(coco))
    argv = _args(scenes, tmp_path / "run")
    argv[argv.index("--data") + 1] = str(path)
    check_bad_input(argv, capsys, "no complete instance")


def test_missing_and_wrong_size_image(scenes: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images"
    shutil.copytree(scenes / "images" / "train", images)
    first = sorted(images.iterdir())[0]
    argv = _args(scenes, tmp_path / "run")
    argv[argv.index("--images") + 1] = str(images)
    write_image(first, np.zeros((10, 12, 3), np.uint8))
    check_bad_input(argv, capsys, first.name, "12x10")
    first.unlink()
    check_bad_input(argv, capsys, first.name, "not found")
    first.write_bytes(b"not a png")
    check_bad_input(argv, capsys, first.name, "cannot read image")
    assert not (tmp_path / "run").exists()


def test_out_is_a_file_or_foreign_folder(scenes: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    check_bad_input(_args(scenes, f), capsys, "not a folder", protect=[f])
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    check_bad_input(_args(scenes, folder), capsys, "not a maskgen run", protect=[folder])


def test_out_of_other_kind_or_config(scenes: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "amodal-run"
    other.mkdir()
    header = {"kind": "amodal-vae", "format": "maskgen-run", "config": {}}
    (other / "config.json").write_text(json.dumps(header))
    check_bad_input(_args(scenes, other), capsys, "amodal-vae run", protect=[other])
    run = tmp_path / "run"
    rc, _, _ = run_cli(_args(scenes, run, "--stop-after", "1"), capsys)
    assert rc == 0
    check_bad_input(
        _args(scenes, run, "--width", "6"), capsys, "different config", "width", protect=[run]
    )
    # the corrected command (same flags) resumes
    rc, _, _ = run_cli(_args(scenes, run), capsys)
    assert rc == 0 and (run / "DONE").is_file()


def test_group_without_command(capsys) -> None:
    check_bad_input(["inpaint"], capsys, "a command is required")
