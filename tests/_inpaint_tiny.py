"""A tiny built-in scenes folder for the inpainting tests (64-px images, made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskgen.cli.main import main

TRAIN_FLAGS = ["--preset", "tiny", "--quiet", "--threads", "1"]
_MADE: dict[str, Path] = {}


def make_tiny_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``maskgen data scenes --small --image-size 64`` (40 train / 10 val / 10 test images),
    made once per test session."""
    if "scenes" not in _MADE:
        out = tmp_path_factory.mktemp("inpaint") / "scenes"
        rc = main(["data", "scenes", "--out", str(out), "--small", "--image-size", "64"])
        assert rc == 0
        _MADE["scenes"] = out
    return _MADE["scenes"]


def train_args(scenes: Path, out: Path, *extra: str) -> list[str]:
    """``inpaint train`` argv on the tiny scenes' training split."""
    return [
        "inpaint", "train",
        "--data", str(scenes / "annotations" / "train_coco.json"),
        "--images", str(scenes / "images" / "train"),
        "--out", str(out), *TRAIN_FLAGS, *extra,
    ]  # fmt: skip
