"""Tiny Amodal-VAE models and scenes (and the CLI error check) shared by the amodal tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maskgen.amodal.model import AmodalVAE, AmodalVAEConfig
from maskgen.cli.main import main

TINY = AmodalVAEConfig(
    widths=(4, 8), fc_dim=16, box_widths=(4, 8), box_fc_dim=16, box_context_size=16
)


def save_tiny_model(folder: Path, seed: int, threshold: float) -> Path:
    """An untrained tiny model (weights from ``seed``) saved as a model folder."""
    torch.manual_seed(seed)
    AmodalVAE(TINY).save_folder(folder, threshold=threshold)
    return folder


def tiny_scenes(out: Path, num_test: int, seed: int) -> Path:
    """A test split of ``num_test`` 64x64 built-in scenes."""
    from maskgen.data.scenes import SceneConfig, generate_scenes

    cfg = SceneConfig(
        image_size=64,
        num_images={"train": 0, "val": 0, "test": num_test},
        min_shape_size=12,
        max_shape_size=32,
        seed=seed,
    )
    generate_scenes(out, cfg=cfg, progress=False)
    return out


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    """The CLI's bad-input contract: exit 2 and one ``maskgen: error:`` line naming ``needles``."""
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskgen: error:"), err
    for n in needles:
        assert n in lines[0], lines[0]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``maskgen ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err
