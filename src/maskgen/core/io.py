"""Safe file I/O: atomic writes, JSON that fails with a one-line message, image reading.

Every writer goes through a temporary file in the destination folder and ``os.replace``, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.errors import MaskgenError

_UMASK = os.umask(0o022)  # read the process umask (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read JSON, turning a missing file or bad JSON into a one-line :class:`MaskgenError`."""
    path = require_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MaskgenError(
            f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except UnicodeDecodeError:
        raise MaskgenError(f"{path}: not a UTF-8 text file") from None


def read_image(path: str | os.PathLike[str], mode: str = "RGB") -> np.ndarray:
    """Read an image as ``H x W x 3`` uint8 (``mode="RGB"``) or ``H x W`` uint8 (``"L"``).

    Grey, palette and RGBA files are converted (RGBA is flattened onto black).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            if mode == "RGB" and im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, rgba)
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError) as e:
        raise MaskgenError(f"{path}: cannot read image ({e.__class__.__name__})") from None


def write_image(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 ``H x W``, ``H x W x 3`` or ``H x W x 4`` array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array)).save(tmp, format="PNG")


def refuse_overwrite(path: str | os.PathLike[str], force: bool = False) -> None:
    """Raise when ``path`` exists and ``force`` is not set, so earlier results survive."""
    path = Path(path)
    if path.exists() and not force:
        raise MaskgenError(f"{path}: already exists; pass --force to overwrite it")


def prepare_out_dir(
    out: str | os.PathLike[str], force: bool = False, marker: str | None = None
) -> Path:
    """Check that ``out`` may receive a command's results; the one check every writer uses.

    ``out`` may be missing or an empty folder. A non-empty folder needs ``force``, and with
    ``marker`` (a file name such as ``summary.json``) it is only replaced when it holds that
    marker, i.e. when it is an earlier result of the same command -- never someone's other
    folder. Nothing is created or deleted here, so a refused call leaves no trace.

    Raises:
        MaskgenError: ``out`` is a file, or a non-empty folder without ``force`` (or without
            ``marker``).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaskgenError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise MaskgenError(f"{out}: folder is not empty; pass --force to overwrite it")
        if marker is not None and not (out / marker).exists():
            raise MaskgenError(
                f"{out}: not an earlier result of this command (no {marker}); "
                "refusing to replace it even with --force"
            )
    return out


def require_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` as a Path when it is an existing file; a one-line error naming it otherwise."""
    path = Path(path)
    if path.is_dir():
        raise MaskgenError(f"{path}: is a folder, expected a {what}")
    if not path.is_file():
        raise MaskgenError(f"{path}: {what} not found")
    return path


def require_dir(path: str | os.PathLike[str], what: str = "folder") -> Path:
    """``path`` as a Path when it is an existing folder; a one-line error naming it otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MaskgenError(f"{path}: is a file, expected a {what}")
    if not path.is_dir():
        raise MaskgenError(f"{path}: {what} not found")
    return path
