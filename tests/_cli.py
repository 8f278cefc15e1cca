"""The CLI's bad-input contract, checked the same way for every command.

``check_bad_input(argv, capsys, protect=[...])`` runs ``maskgen ARGV`` in-process and asserts:
exit status 2, exactly one stderr line starting ``maskgen: error:``, no traceback, and every file
under the ``protect`` paths byte-identical afterwards (earlier results are never overwritten).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pytest

from maskgen.cli.main import main


def snapshot(paths: Iterable[Path]) -> dict[str, str]:
    """``{file path: sha256}`` of every file under ``paths`` (files or folders)."""
    out: dict[str, str] = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``maskgen ARGV`` run in-process."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors and --help exit
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def check_bad_input(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    *needles: str,
    protect: Iterable[Path] = (),
) -> str:
    """Assert the bad-input contract for ``maskgen ARGV``; returns the error line."""
    protect = list(protect)
    before = snapshot(protect)
    rc, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}, stderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("maskgen: error:"), err[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    assert snapshot(protect) == before, "an earlier result was changed"
    return lines[0]
