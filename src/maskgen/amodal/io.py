"""Amodal-VAE model folders: ``config.json`` + ``model.safetensors``, loaded strictly.

The format is the engine's model folder (:mod:`maskgen.engine.model_io`; ``docs/design.md``,
"The engine contract"): ``config.json`` holds ``{"kind": "amodal-vae", "maskgen_version",
"format", "config": <AmodalVAEConfig>, "threshold": t, "training": {...}}``; ``threshold`` is
the binarisation threshold tuned on a validation split (supplementary §3.1; the paper found
t = 0.1).

The public API is on the model class: :meth:`AmodalVAE.from_folder
<maskgen.amodal.model.AmodalVAE.from_folder>` and :meth:`AmodalVAE.save_folder
<maskgen.amodal.model.AmodalVAE.save_folder>`; this module implements them and defines the one
shipped-model path, :data:`SHIPPED_MODEL`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from maskgen.engine import (
    check_device,
    load_model_folder,
    load_state_dict_strict,
    save_model_folder,
    unwrap,
)
from maskgen.errors import MaskgenError

if TYPE_CHECKING:
    from maskgen.amodal.model import AmodalVAE

KIND = "amodal-vae"
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "amodal-vae-builtin"
__all__ = [
    "KIND",
    "SHIPPED_MODEL",
    "check_device",  # the engine's, re-exported for the amodal commands
    "check_model_arg",
    "load_amodal_model",
    "load_folder",
    "save_amodal_model",
    "save_folder",
]


def check_model_arg(model: str | os.PathLike[str]) -> None:
    """A clear message when the default (shipped) model is missing from this installation."""
    if Path(model) == SHIPPED_MODEL and not (SHIPPED_MODEL / "model.safetensors").is_file():
        raise MaskgenError(
            f"{SHIPPED_MODEL}: the shipped model is missing from this installation; "
            "pass --model DIR (a folder written by 'maskgen amodal train')"
        )


def save_folder(
    model: AmodalVAE,
    folder: str | os.PathLike[str],
    threshold: float,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` atomically (rank 0 only).

    Args:
        model: the trained network (a DDP wrapper is unwrapped); its ``config`` is stored.
        folder: the model folder (created if missing).
        threshold: binarisation threshold in ``(0, 1)`` for the decoder's probabilities.
        training: optional summary stored under ``"training"`` (command, metrics, times).
    """
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    net = unwrap(model)
    extra: dict[str, Any] = {"threshold": float(threshold)}
    if training is not None:
        extra["training"] = training
    return save_model_folder(folder, KIND, net.config.to_dict(), net.state_dict(), extra=extra)


def load_folder(
    folder: str | os.PathLike[str] = SHIPPED_MODEL, device: str | torch.device = "cpu"
) -> AmodalVAE:
    """Load a model folder strictly (see :meth:`AmodalVAE.from_folder`)."""
    from maskgen.amodal.model import AmodalVAE, AmodalVAEConfig

    dev = check_device(device)
    header, state = load_model_folder(folder, KIND, device="cpu")
    try:
        cfg = AmodalVAEConfig.from_dict(dict(header["config"]))
    except (ValueError, TypeError) as e:
        raise MaskgenError(f"{folder}: bad Amodal-VAE config in config.json ({e})") from None
    threshold = header.get("threshold")
    if (
        not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
        or not 0 < threshold < 1
    ):
        raise MaskgenError(f"{folder}: config.json has no valid threshold in (0, 1): {threshold!r}")
    try:
        model = AmodalVAE(cfg)
    except Exception as e:  # impossible sizes in a hand-edited config
        raise MaskgenError(f"{folder}: cannot build the model from config.json ({e})") from None
    load_state_dict_strict(model, state, folder)
    model.to(dev).eval()
    model.threshold = float(threshold)
    model.folder_config = header
    return model


def load_amodal_model(
    folder: str | os.PathLike[str] = SHIPPED_MODEL, device: str | torch.device = "cpu"
) -> tuple[AmodalVAE, dict[str, Any], float]:
    """Thin alias of :meth:`AmodalVAE.from_folder`: ``(model, config.json dict, threshold)``."""
    model = load_folder(folder, device)
    return model, model.folder_config, model.threshold


def save_amodal_model(
    folder: str | os.PathLike[str],
    model: AmodalVAE,
    config: Any = None,
    threshold: float = 0.1,
    training: dict[str, Any] | None = None,
) -> Path:
    """Thin alias of :meth:`AmodalVAE.save_folder` (``config`` is the model's own)."""
    return save_folder(model, folder, threshold, training=training)
