"""Record a benchmark's results as one section of benchmarks/RESULTS.md.

Each benchmark script ends with::

    from _record import record_section          # when run as python benchmarks/x.py
    # or: from benchmarks._record import record_section   (python -m benchmarks.x)
    record_section("amodal-speed", markdown_table, command="python benchmarks/amodal_speed.py")

The section between ``<!-- section: NAME -->`` and ``<!-- end: NAME -->`` is replaced (or
appended when missing), headed by the command, the machine (CPU model, cores, torch version,
threads) and the UTC date, so every number in RESULTS.md says how and where it was measured.
The file is rewritten atomically under an exclusive lock, so benchmarks may finish concurrently.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = "benchmarks/RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line() -> str:
    """One line describing where a benchmark ran: CPU, usable cores, torch, threads, GPU."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    parts = [f"{cpu_model()}", f"{cores} cores usable ({os.cpu_count()} online)"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        parts.append(f"torch threads {torch.get_num_threads()}")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        parts.append("torch not installed")
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section: {name} -->", f"<!-- end: {name} -->"


def render_section(name: str, markdown: str, command: str, date: str | None = None) -> str:
    """The section text, markers included (no trailing newline)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise ValueError(f"section name {name!r}: use letters, digits, '-', '_' and '.' only")
    if "<!-- section:" in markdown or "<!-- end:" in markdown:
        raise ValueError("markdown must not contain section markers")
    if "\n" in command:
        raise ValueError("command must be one line")
    date = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start, end = _markers(name)
    body = markdown.strip("\n")
    return "\n".join(
        [
            start,
            f"### {name}",
            "",
            f"- Command: `{command}`",
            f"- Machine: {machine_line()}",
            f"- Date: {date}",
            "",
            body,
            end,
        ]
    )


def replace_section(text: str, name: str, section: str) -> str:
    """``text`` with the section ``name`` replaced by ``section``, or with it appended."""
    start, end = _markers(name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _m: section, text, count=1)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def record_section(
    name: str, markdown: str, command: str, results_path: str | os.PathLike[str] = DEFAULT_RESULTS
) -> Path:
    """Replace (or append) section ``name`` of the results file; returns the file's path.

    Args:
        name: the section's id, e.g. ``"amodal-speed"`` (letters, digits, ``-_.``).
        markdown: the results (tables, notes). It is placed under a header naming ``command``,
            the machine and the UTC date.
        command: the exact command that regenerates the section.
        results_path: the results file; a relative path is taken from the repository root.
    """
    path = Path(results_path)
    if not path.is_absolute():
        path = REPO_ROOT / path
    section = render_section(name, markdown, command)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
        new_text = replace_section(text, name, section)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(new_text)
                f.flush()
                os.fsync(f.fileno())
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
    return path


def publish(name: str, lines: list[str], command: str, note: str | None, record: bool) -> str:
    """The end of every benchmark: add ``note``, print the Markdown, and record it as section
    ``name`` (with ``command``) unless ``record`` is false. Returns the Markdown."""
    if note:
        lines = [*lines, "", note]
    md = "\n".join(lines)
    print(md)
    if record:
        print(f"recorded in {record_section(name, md, command=command)}", file=sys.stderr)
    return md
