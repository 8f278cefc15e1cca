"""Tiny Amodal-VAE models and scenes shared by the completion, analysis and demo tests."""

from __future__ import annotations

from pathlib import Path

import torch

from maskgen.amodal.io import save_amodal_model
from maskgen.amodal.model import AmodalVAE, AmodalVAEConfig

TINY = AmodalVAEConfig(
    widths=(4, 8), fc_dim=16, box_widths=(4, 8), box_fc_dim=16, box_context_size=16
)


def save_tiny_model(folder: Path, seed: int, threshold: float) -> Path:
    """An untrained tiny model (weights from ``seed``) saved as a model folder."""
    torch.manual_seed(seed)
    save_amodal_model(folder, AmodalVAE(TINY), TINY, threshold)
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
