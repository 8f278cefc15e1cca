"""Tests of benchmarks/_record.py (the RESULTS.md section writer)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "_record", Path(__file__).resolve().parent.parent / "benchmarks" / "_record.py"
)
assert _spec is not None and _spec.loader is not None
_record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_record)


def test_record_section_appends_and_replaces(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nIntro paragraph.\n")
    _record.record_section("speed", "| a | b |\n|---|---|\n| 1 | 2 |", "python bench.py", results)
    _record.record_section("quality", "IoU 0.5", "python q.py --seed 0", results)
    first = results.read_text()
    assert first.startswith("# Benchmark results\n\nIntro paragraph.\n")
    assert first.index("<!-- section: speed -->") < first.index("<!-- section: quality -->")
    assert "- Command: `python bench.py`" in first and "| 1 | 2 |" in first
    assert re.search(r"- Date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", first)
    machine = re.search(r"- Machine: (.*)", first).group(1)
    assert "cores usable" in machine and "torch " in machine and "threads" in machine

    _record.record_section("speed", "| 3 | 4 |", "python bench.py --fast", results)
    second = results.read_text()
    assert "| 1 | 2 |" not in second and "| 3 | 4 |" in second
    assert second.count("<!-- section: speed -->") == 1 and second.count("<!-- end: speed -->") == 1
    assert "python bench.py --fast" in second
    # The other section and the intro are untouched and the order is kept.
    assert second.index("<!-- section: speed -->") < second.index("<!-- section: quality -->")
    quality = re.search(r"<!-- section: quality -->.*<!-- end: quality -->", first, re.S).group(0)
    assert quality in second
    assert not list(tmp_path.glob(".*.tmp"))


def test_record_section_creates_missing_file_and_rejects_bad_input(tmp_path: Path) -> None:
    results = tmp_path / "sub" / "R.md"
    _record.record_section("x", "text", "cmd", results)
    assert results.read_text().startswith("# Benchmark results")
    with pytest.raises(ValueError):
        _record.record_section("bad name", "t", "cmd", results)
    with pytest.raises(ValueError):
        _record.record_section("y", "<!-- end: x -->", "cmd", results)


def test_repository_results_skeleton_has_no_stray_markers() -> None:
    text = (Path(_record.REPO_ROOT) / "benchmarks" / "RESULTS.md").read_text()
    starts = re.findall(r"<!-- section: (\S+) -->", text)
    ends = re.findall(r"<!-- end: (\S+) -->", text)
    assert starts == ends  # every section is closed, in order
