"""Amodal-VAE model folders: ``config.json`` + ``model.safetensors`` (DESIGN §6), loaded strictly.

``config.json`` (written by :func:`maskgen.engine.save_model_folder`) holds
``{"kind": "amodal-vae", "maskgen_version", "format", "config": <AmodalVAEConfig>, "threshold": t,
"training": {...}}``; ``threshold`` is the binarisation threshold tuned on a validation split
(supplementary §3.1; the paper found t = 0.1).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from maskgen.amodal.model import AmodalVAE, AmodalVAEConfig
from maskgen.engine import load_model_folder, load_state_dict_strict, save_model_folder, unwrap
from maskgen.errors import MaskgenError

KIND = "amodal-vae"
BUILTIN_MODEL = Path(__file__).resolve().parent.parent / "models" / "amodal-vae-builtin"


def save_amodal_model(
    folder: str | os.PathLike[str],
    model: AmodalVAE,
    config: AmodalVAEConfig,
    threshold: float,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` atomically (rank 0 only).

    Args:
        folder: the model folder (created if missing).
        model: the trained network (a DDP wrapper is unwrapped).
        config: its architecture.
        threshold: binarisation threshold in ``(0, 1)`` for the decoder's probabilities.
        training: optional summary stored under ``"training"`` (command, metrics, times).
    """
    extra: dict[str, Any] = {"threshold": float(threshold)}
    if training is not None:
        extra["training"] = training
    state = unwrap(model).state_dict()
    return save_model_folder(folder, KIND, config.to_dict(), state, extra=extra)


def load_amodal_model(
    folder: str | os.PathLike[str] = BUILTIN_MODEL, device: str | torch.device = "cpu"
) -> tuple[AmodalVAE, dict[str, Any], float]:
    """Load a model folder strictly.

    Args:
        folder: a model folder, or a training run folder holding ``model/``; default: the
            shipped built-in model.
        device: where to put the weights.

    Returns:
        ``(model in eval mode on device, config.json as a dict, threshold)``; the architecture
        is ``config["config"]`` (see :class:`AmodalVAEConfig`).

    Raises:
        MaskgenError: missing folder/files, corrupt safetensors, another model kind, a bad
            config or threshold, missing/unexpected/mis-shaped weights.
    """
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
    model.to(device).eval()
    return model, header, float(threshold)
