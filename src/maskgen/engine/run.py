"""Run folders: config, metrics, rotating atomic checkpoints and automatic resume.

Layout of a run folder::

    RUN/config.json          {"kind", "maskgen_version", "format": "maskgen-run", "config"}
    RUN/metrics.jsonl        one JSON object per logging tick: {"step", "time", <metrics>}
    RUN/checkpoints/ckpt-00001000.pt   training state (weights_only-readable), newest ``keep``
    RUN/model/               the model folder (see :mod:`maskgen.engine.model_io`)
    RUN/DONE, RUN/stage1.done, ...     markers of finished work

Only rank 0 writes; every rank validates and reads (docs/design.md, "The engine contract"; edm2's run-folder resume).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from maskgen import __version__
from maskgen.core.io import atomic_path, read_json, write_text
from maskgen.engine.distributed import DistContext, barrier, is_distributed
from maskgen.errors import MaskgenError, NonFiniteLossError

RUN_FORMAT = "maskgen-run"
_CKPT_RE = re.compile(r"^(?P<prefix>.+)-(?P<step>\d{8,})\.pt$")
_last_run: RunFolder | None = None


def warn(message: str) -> None:
    """Print a one-line warning on stderr (``maskgen: warning: ...``)."""
    print(f"maskgen: warning: {message}", file=sys.stderr, flush=True)


def _plain(obj: Any) -> Any:
    """JSON round trip: tuples become lists, so configs compare like they are stored."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise TypeError(f"run config is not JSON-serialisable: {e}") from None


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SAFE_LEAVES = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def check_weights_only_safe(obj: Any, where: str = "state") -> None:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` would refuse.

    Allowed: tensors, dicts/OrderedDicts with str/int keys, lists, tuples and plain values.
    (numpy arrays and scalars are the usual culprit: convert them with ``.tolist()``/``float``.)
    """
    if isinstance(obj, (torch.Tensor, _SAFE_LEAVES)):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} is not allowed")
            check_weights_only_safe(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_weights_only_safe(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where}: a {type(obj).__module__}.{type(obj).__name__} cannot be stored in a "
        "weights_only checkpoint; use tensors, state dicts and plain Python values"
    )


class RunFolder:
    """A training run's folder; see the module docstring for the layout.

    Args:
        path: the folder (``--out``). Created by rank 0 if missing.
        kind: what is trained, e.g. ``"amodal-vae"``; an existing folder of another kind is
            refused with ``PATH is a <other> run, not a <kind> run``.
        config: the run's JSON-serialisable config. Resuming with a config that differs in any
            key is refused, naming the keys.
        ctx: the :class:`DistContext` (default: a single CPU process).
        keep: how many newest checkpoints to keep per prefix.

    Raises:
        MaskgenError: kind or config mismatch; a non-empty folder that is not a run folder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        kind: str,
        config: dict[str, Any],
        ctx: DistContext | None = None,
        keep: int = 3,
    ) -> None:
        global _last_run
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = Path(path)
        self.kind = kind
        self.config = _plain(config)
        self.ctx = ctx if ctx is not None else DistContext()
        self.keep = keep
        self.checkpoint_dir = self.path / "checkpoints"
        self.metrics_path = self.path / "metrics.jsonl"
        self.loaded_checkpoint: Path | None = None
        self._start = time.monotonic()

        # Every rank validates the folder as it was before anyone writes, so a refusal is
        # raised on all ranks alike; then rank 0 writes.
        config_path = self.path / "config.json"
        exists = config_path.is_file()
        if self.path.exists() and not self.path.is_dir():
            raise MaskgenError(f"{self.path}: exists and is not a folder")
        stale = exists and not self._validate(read_json(config_path))
        if stale:  # a start that trained nothing: the corrected command replaces its header
            exists = False
        elif not exists and self.path.is_dir() and any(p for p in self.path.iterdir()):
            raise MaskgenError(
                f"{self.path}: folder exists and is not a maskgen run (no config.json); "
                "choose a new --out"
            )
        if is_distributed():
            barrier()
        if self.ctx.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            if stale and self.metrics_path.exists():
                self.metrics_path.unlink()
            if not exists:
                header = {
                    "kind": kind,
                    "maskgen_version": __version__,
                    "format": RUN_FORMAT,
                    "config": self.config,
                }
                with atomic_path(config_path) as tmp:
                    tmp.write_text(json.dumps(header, indent=2) + "\n")
            self._repair_metrics()
            self._remove_stale_temp_files()
        _last_run = self

    # ------------------------------------------------------------------ setup
    def _has_progress(self) -> bool:
        """Whether an earlier invocation trained anything here (a checkpoint or a marker)."""
        ckpts = self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.glob("*.pt"))
        markers = any(self.path.glob("*.done")) or (self.path / "DONE").exists()
        return bool(ckpts or markers)

    def _validate(self, header: Any) -> bool:
        """Check an existing run header; False when it may be replaced (a different config,
        but nothing was trained under it)."""
        if not isinstance(header, dict) or "kind" not in header or "config" not in header:
            raise MaskgenError(f"{self.path}: config.json is not a maskgen run header")
        if header.get("format") not in (None, RUN_FORMAT):
            raise MaskgenError(
                f"{self.path}: holds a {header.get('kind')} model folder, not a run; choose a new --out"
            )
        if header["kind"] != self.kind:
            raise MaskgenError(f"{self.path} is a {header['kind']} run, not a {self.kind} run")
        old = header["config"] if isinstance(header["config"], dict) else {}
        new = self.config
        diffs = sorted(k for k in set(old) | set(new) if old.get(k, ...) != new.get(k, ...))
        if diffs and not self._has_progress():
            return False
        if diffs:
            parts = []
            for k in diffs[:6]:
                a = _short(old[k]) if k in old else "(absent)"
                b = _short(new[k]) if k in new else "(absent)"
                parts.append(f"{k}: {a} -> {b}")
            more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
            raise MaskgenError(
                f"{self.path} was started with a different config ({'; '.join(parts)}{more}); "
                "use a new --out or the same flags"
            )
        return True

    def _repair_metrics(self) -> None:
        """Cut a half-written last line left by a killed process."""
        if not self.metrics_path.is_file():
            return
        data = self.metrics_path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with atomic_path(self.metrics_path) as tmp:
                tmp.write_bytes(data[:cut])

    def _remove_stale_temp_files(self) -> None:
        for folder in (self.path, self.checkpoint_dir):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()

    # ---------------------------------------------------------------- metrics
    def log(self, step: int, **metrics: Any) -> None:
        """Append ``{"step", "time", **metrics}`` as one line of ``metrics.jsonl`` (rank 0).

        ``time`` is seconds since this process opened the run. Tensor and numpy scalars are
        converted to Python floats; ints, strings and bools are kept; NaN/inf are written as
        strings. After a crash the steps between the checkpoint used and the crash are trained
        and logged again, so a reader should keep the last line per step.
        """
        if not self.ctx.is_main:
            return
        record: dict[str, Any] = {
            "step": int(step),
            "time": round(time.monotonic() - self._start, 3),
        }
        for k, v in metrics.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().float().item()
            elif hasattr(v, "item") and not isinstance(v, (int, float, str, bool)):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)  # JSON has no nan/inf; keep the line parseable
            record[k] = v
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete lines of ``metrics.jsonl`` (empty when there is none)."""
        if not self.metrics_path.is_file():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    # ------------------------------------------------------------ checkpoints
    def checkpoints(self, prefix: str = "ckpt") -> list[tuple[int, Path]]:
        """``(step, path)`` of the checkpoints with ``prefix``, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for p in self.checkpoint_dir.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and m.group("prefix") == prefix and p.is_file():
                found.append((int(m.group("step")), p))
        return sorted(found)

    def save_checkpoint(self, step: int, state: dict[str, Any], prefix: str = "ckpt") -> Path:
        """Write ``checkpoints/{prefix}-{step:08d}.pt`` atomically (rank 0) and rotate.

        ``state`` may hold only tensors, state dicts and plain Python values (checked; a
        TypeError names the offending entry). Keeps the newest ``keep`` checkpoints. Other ranks
        return at once. Returns the checkpoint's path. ``prefix`` lets stage-wise training
        keep its own series (e.g. ``"stage2"``).
        """
        target = self.checkpoint_dir / f"{prefix}-{int(step):08d}.pt"
        if not self.ctx.is_main:
            return target
        check_weights_only_safe(state)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            torch.save(state, tmp)
        for _, old in self.checkpoints(prefix)[: -self.keep]:
            with contextlib.suppress(OSError):
                old.unlink()
        return target

    def load_latest_checkpoint(
        self, map_location: str | torch.device | None = None, prefix: str = "ckpt"
    ) -> dict[str, Any] | None:
        """The newest readable checkpoint with ``prefix``, or None when there is none.

        A corrupt or truncated checkpoint is skipped with a one-line warning on stderr and the
        previous one is used. All ranks call this; they read the same files. The path used is
        kept in ``self.loaded_checkpoint``.
        """
        self.loaded_checkpoint = None
        for _step, p in reversed(self.checkpoints(prefix)):
            try:
                state = torch.load(p, map_location=map_location, weights_only=True)
            except Exception as e:  # truncated zip, bad pickle, unreadable file, ...
                if self.ctx.is_main:
                    reason = str(e).splitlines()[0][:120] if str(e) else ""
                    warn(
                        f"{p}: unreadable checkpoint ({type(e).__name__}: {reason}); "
                        "falling back to the previous one"
                    )
                continue
            if not isinstance(state, dict):
                if self.ctx.is_main:
                    warn(f"{p}: checkpoint holds no state dict; falling back to the previous one")
                continue
            self.loaded_checkpoint = p
            return state
        return None

    # ----------------------------------------------------------- model/markers
    def model_dir(self, name: str = "model") -> Path:
        """``path/name``: where the run's model folder goes."""
        return self.path / name

    def is_finished(self, marker: str = "DONE") -> bool:
        """Whether ``path/marker`` exists (work finished in an earlier invocation)."""
        return (self.path / marker).is_file()

    def mark_finished(self, marker: str = "DONE") -> None:
        """Create ``path/marker`` atomically (rank 0)."""
        if self.ctx.is_main:
            write_text(self.path / marker, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, kind={self.kind!r})"


def check_finite(
    loss: torch.Tensor | float, step: int, what: str = "loss", run: RunFolder | None = None
) -> None:
    """Stop training with :class:`NonFiniteLossError` when ``loss`` is NaN or infinite.

    With several processes the check is agreed over all ranks (one tiny all-reduce), so every
    rank stops together instead of the others hanging -- call it on every rank. The message names the run folder whose
    checkpoints are kept (``run``, default: the last :class:`RunFolder` opened in this process).
    The caller must not save a checkpoint after this raises.
    """
    t = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
    bad = (~torch.isfinite(t)).any().to(torch.float32).reshape(1)
    if is_distributed():
        import torch.distributed as dist

        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if bad.item() == 0:
        return
    value = t.float().reshape(-1)
    nonfinite = value[~torch.isfinite(value)]
    if len(nonfinite) == 0:
        label = "non-finite on another rank"
    elif torch.isnan(nonfinite[0]):
        label = "nan"
    else:
        label = str(nonfinite[0].item())  # "inf" or "-inf"
    run = run if run is not None else _last_run
    where = (
        f"the last good checkpoint is kept in {run.checkpoint_dir}"
        if run is not None
        else "no checkpoint was written after it"
    )
    raise NonFiniteLossError(f"{what} became {label} at step {step}; {where}")
