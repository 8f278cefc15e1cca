"""Model folders: ``config.json`` + ``model.safetensors``, loaded strictly (docs/design.md, "The engine contract").

``config.json`` = ``{"kind", "maskgen_version", "format": "maskgen-model", "config", **extra}``.
``kind`` names the model family (e.g. ``"amodal-vae"``), so pointing one system's command at
the other system's folder fails with a clear one-line message instead of a shape error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from maskgen import __version__
from maskgen.core.io import atomic_path, read_json
from maskgen.engine.distributed import is_main_process, unwrap
from maskgen.errors import MaskgenError

MODEL_FORMAT = "maskgen-model"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

T = TypeVar("T")


def save_model_folder(
    path: str | os.PathLike[str],
    kind: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder atomically: ``model.safetensors`` first, then ``config.json``.

    Tensors are detached, moved to CPU, made contiguous and cloned (safetensors refuses shared
    storage). ``extra`` keys (e.g. a tuned ``"threshold"``) are stored at the top level of
    ``config.json``. Only rank 0 writes; other ranks return at once. Returns the folder.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if not is_main_process():
        return path
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
        tensors[k] = v.detach().to("cpu").contiguous().clone()
    header = {"kind": kind, "maskgen_version": __version__, "format": MODEL_FORMAT}
    header["config"] = config
    for k, v in (extra or {}).items():
        if k in header:
            raise ValueError(f"extra key {k!r} clashes with a reserved config.json key")
        header[k] = v
    text = json.dumps(header, indent=2) + "\n"  # fail before writing anything if not JSON
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / WEIGHTS_NAME) as tmp:
        # One metadata key only: safetensors stores metadata in a hash map, so several keys come
        # out in a different order each process and identical weights would differ byte-wise.
        # The model's kind lives in config.json.
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    with atomic_path(path / CONFIG_NAME) as tmp:
        tmp.write_text(text)
    return path


def resolve_model_folder(path: str | os.PathLike[str]) -> Path:
    """The model folder for ``path``: ``path`` itself, or ``path/model`` when ``path`` is a
    training run folder (users often pass the run's ``--out`` as ``--model``)."""
    path = Path(path)
    if not path.exists():
        raise MaskgenError(f"{path}: model folder not found")
    if not path.is_dir():
        raise MaskgenError(
            f"{path}: not a model folder (expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    cfg = path / CONFIG_NAME
    if not cfg.is_file():
        raise MaskgenError(f"{path}: not a model folder (no {CONFIG_NAME})")
    header = read_json(cfg)
    if isinstance(header, dict) and header.get("format") == "maskgen-run":
        inner = path / "model"
        if (inner / CONFIG_NAME).is_file():
            return inner
        raise MaskgenError(
            f"{path}: is a {header.get('kind')} training run without a finished model "
            f"(no {inner}/{CONFIG_NAME}); finish training first"
        )
    return path


def load_cached(
    cache: dict[tuple[str, str, str], T],
    spec: str | os.PathLike[str],
    device: str,
    load: Callable[[str | os.PathLike[str], str], T],
) -> T:
    """``load(spec, device)``, cached in ``cache`` per resolved folder, device and weights file
    version (its modification time), so a retrained folder is read again.

    Raises:
        MaskgenError: as :func:`resolve_model_folder`, or whatever ``load`` raises.
    """
    folder = resolve_model_folder(spec)
    weights = folder / WEIGHTS_NAME
    stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
    key = (str(folder.resolve()), str(device), str(stamp))
    if key not in cache:
        cache[key] = load(spec, device)
    return cache[key]


def load_model_folder(
    path: str | os.PathLike[str], expected_kind: str, device: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a model folder; returns ``(config.json as a dict, state dict on device)``.

    ``path`` may also be a run folder holding ``model/``. The full config.json dict is returned
    (the model's hyper-parameters are under ``"config"``).

    Raises:
        MaskgenError: a missing folder or file, malformed config.json, a corrupt safetensors
            file, or a kind mismatch (``PATH holds a <kind> model, expected <expected_kind>``).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_model_folder(path)
    header = read_json(folder / CONFIG_NAME)
    if not isinstance(header, dict) or "kind" not in header or "config" not in header:
        raise MaskgenError(
            f"{folder / CONFIG_NAME}: not a maskgen model config (needs kind and config)"
        )
    if header["kind"] != expected_kind:
        raise MaskgenError(f"{folder} holds a {header['kind']} model, expected {expected_kind}")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise MaskgenError(f"{weights}: file not found")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise MaskgenError(f"{weights}: corrupt safetensors file ({reason})") from None
    return header, state


def _names(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | os.PathLike[str]
) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a one-line MaskgenError.

    The message names ``path`` and the missing, unexpected and mis-shaped keys (shapes shown as
    file vs model). A DDP/compiled wrapper is unwrapped first.
    """
    model = unwrap(model)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in own)
    shapes = sorted(
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_names(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes {_names(shapes, 3)}")
    if problems:
        raise MaskgenError(f"{path}: weights do not match the model: {'; '.join(problems)}")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MaskgenError(f"{path}: weights do not match the model: {first}") from None
