"""Up-front checks shared by ``maskgen amodal complete|analyze`` and ``maskgen demo``.

Every value is checked before any file is read or written (``docs/design.md``, "Conventions":
one way to fail): counts against the range that fits in memory, seeds, devices, inputs that
must be files or folders, and outputs via :func:`maskgen.core.io.prepare_out_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

from maskgen.errors import MaskgenError

MAX_SEED = 2**32 - 1
MAX_SAMPLES = 256  # posterior samples per instance: each is an H x W mask kept in memory
MAX_BATCH = 65536  # crops per forward pass


def check_range(flag: str, value: int | float, low: float, high: float) -> None:
    """``low <= value <= high`` (finite), else ``--flag VALUE: must be in [low, high]``."""
    if not (low <= value <= high):  # also False for NaN
        raise MaskgenError(f"{flag} {value}: must be in [{low:g}, {high:g}]")


def check_seed(flag: str, value: int) -> None:
    check_range(flag, value, 0, MAX_SEED)


def check_out_file(path: str | os.PathLike[str], force: bool) -> Path:
    """An output *file*: not a folder (even with ``--force``), not overwritten without it."""
    path = Path(path)
    if path.is_dir():
        raise MaskgenError(f"{path}: is a folder, expected a file to write")
    if path.exists() and not force:
        raise MaskgenError(f"{path}: already exists; pass --force to overwrite it")
    if path.parent.exists() and not path.parent.is_dir():
        raise MaskgenError(f"{path.parent}: is a file, expected a folder")
    return path


def check_model(model: str | os.PathLike[str], device: str) -> None:
    """The shipped model is installed, ``--model`` is a folder and ``--device`` usable."""
    from maskgen.amodal.io import check_device, check_model_arg
    from maskgen.core.io import require_dir

    check_device(device)
    check_model_arg(model)
    require_dir(model, "model folder")
