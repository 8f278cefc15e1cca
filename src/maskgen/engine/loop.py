"""The one training loop every trainer runs on (edm2's ``training_loop`` + ``CheckpointIO``).

A trainer is a config dataclass (:mod:`maskgen.engine.config`) and an object with

- ``resumable: dict[str, Any]`` -- everything that must survive a restart, registered once:
  modules, optimizers, EMA copies, ``torch.Generator`` objects, grad scalers, plain ``dict``
  state (updated in place on resume). The global RNG state and the step are added by the loop;
- ``step(step: int) -> dict[str, Tensor | float]`` -- one training iteration (every phase of
  it, for a GAN), returning its metrics. Every returned value must be finite (NaN guard);
- optionally ``on_log(step: int, metrics: dict[str, float]) -> None`` -- called at each logging
  tick on rank 0 (image grids, collapse warnings).

:func:`training_loop` owns everything else: resume from the newest readable checkpoint, the
progress bar, metric averaging over a tick (and over ranks under torchrun), ``metrics.jsonl``,
atomic rotated checkpoints, the NaN guard, the time budget and ``stop_after``. Rerunning the
same command after a kill continues from the last checkpoint. See ``docs/design.md``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from maskgen.engine.config import param
from maskgen.engine.distributed import all_reduce_mean
from maskgen.engine.progress import progress
from maskgen.engine.rng import capture_rng_state, restore_rng_state
from maskgen.engine.run import RunFolder, check_finite


@dataclasses.dataclass
class RunOptions:
    """Operational settings every trainer shares; never part of the resume check."""

    device: str = param("cpu", "cpu, cuda or cuda:N (mixed precision on CUDA)", role="run")
    threads: int | None = param(
        None, "torch CPU threads (1 avoids oversubscription on a shared CPU)", low=1, role="run"
    )
    log_every: int = param(50, "steps per logging tick (metrics.jsonl line)", low=1, role="run")
    checkpoint_every: int = param(250, "steps per checkpoint", low=1, role="run")
    max_minutes: float | None = param(
        None,
        "stop (checkpointed) after this many minutes; rerun the command to continue",
        low=0,
        low_open=True,
        role="run",
    )
    stop_after: int | None = param(
        None, "stop (checkpointed) after this step; rerun to continue", low=1, role="run"
    )
    quiet: bool = param(False, "no progress lines on stderr", role="run")


class Trainer(Protocol):
    """What :func:`training_loop` needs from a trainer (see the module docstring)."""

    resumable: dict[str, Any]

    def step(self, step: int) -> dict[str, torch.Tensor | float]: ...


@dataclasses.dataclass
class LoopResult:
    """How a call of :func:`training_loop` ended.

    Attributes:
        start: the step it resumed from (0 for a fresh run).
        done: steps completed when it returned.
        finished: ``done == total_steps`` (else it paused on the time budget or ``stop_after``).
        seconds: wall time of this call.
        last: the metrics of the last logging tick (empty if none).
    """

    start: int
    done: int
    finished: bool
    seconds: float
    last: dict[str, float]


class CheckpointIO:
    """Registered resumable objects -> one ``weights_only``-readable state dict, and back."""

    def __init__(self, **objects: Any) -> None:
        self.objects = objects

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, obj in self.objects.items():
            if isinstance(obj, torch.Generator):
                out[name] = obj.get_state()
            elif isinstance(obj, dict):
                out[name] = dict(obj)
            elif obj is None:
                out[name] = None
            else:
                out[name] = obj.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self.objects.items():
            if name not in state:
                raise KeyError(f"checkpoint has no entry {name!r}")
            value = state[name]
            if isinstance(obj, torch.Generator):
                obj.set_state(value)
            elif isinstance(obj, dict):
                obj.clear()
                obj.update(value)
            elif obj is not None:
                obj.load_state_dict(value)


def sayer(opts: RunOptions, ctx: Any) -> Callable[[str], None]:
    """A progress printer to stderr, silent with ``opts.quiet`` and on ranks other than 0."""
    if opts.quiet or not ctx.is_main:
        return lambda text: None
    return lambda text: print(text, file=sys.stderr, flush=True)


def _tick_means(tick: dict[str, list[float]], device: torch.device) -> dict[str, float]:
    """Mean of each metric over the tick, averaged over ranks under torchrun (on the
    process's device: nccl reduces CUDA tensors only)."""
    names = sorted(tick)
    means = [sum(tick[k]) / len(tick[k]) for k in names]
    local = torch.tensor(means, dtype=torch.float64, device=device)
    return dict(zip(names, all_reduce_mean(local).tolist(), strict=True))


def _as_floats(
    metrics: dict[str, torch.Tensor | float], step: int, run: RunFolder, desc: str
) -> dict[str, float]:
    """Floats of a step's metrics, after the NaN guard (agreed over ranks, on the process's
    device so that nccl can reduce it)."""
    dev = run.ctx.device
    parts = [
        v.detach().float().reshape(()).to(dev)
        if torch.is_tensor(v)
        else torch.tensor(float(v), device=dev)
        for v in metrics.values()
    ]
    values = torch.stack(parts) if parts else torch.zeros(1, device=dev)
    check_finite(values, step, what=f"{desc} metrics", run=run)
    return dict(zip(metrics, values.tolist(), strict=False))


def training_loop(
    trainer: Trainer,
    run: RunFolder,
    *,
    total_steps: int,
    opts: RunOptions,
    prefix: str = "ckpt",
    desc: str | None = None,
) -> LoopResult:
    """Run ``trainer.step`` from the last checkpoint (or 0) to ``total_steps``.

    Args:
        trainer: see the module docstring.
        run: the run folder (checkpoints, metrics, markers).
        total_steps: steps of this loop (a stage, for stage-wise training).
        opts: logging/checkpoint intervals, time budget, ``stop_after``, quiet.
        prefix: checkpoint series name (one per stage).
        desc: progress-bar and log label (default: ``prefix``).

    Returns:
        a :class:`LoopResult`; the final checkpoint is written when ``finished``.

    Raises:
        NonFiniteLossError: a metric became NaN/inf (no checkpoint is written after it).
    """
    desc = desc or prefix
    say = sayer(opts, run.ctx)
    t0 = time.monotonic()
    io = CheckpointIO(**trainer.resumable)
    start = 0
    state = run.load_latest_checkpoint(map_location="cpu", prefix=prefix)
    if state is not None:
        io.load_state_dict(state["objects"])
        restore_rng_state(state["rng"])
        start = int(state["step"])
        say(f"{desc}: resuming {run.path} from step {start}")

    def save(done: int) -> None:
        payload = {"step": done, "objects": io.state_dict(), "rng": capture_rng_state()}
        run.save_checkpoint(done, payload, prefix=prefix)

    deadline = None if opts.max_minutes is None else t0 + 60.0 * opts.max_minutes
    tick: dict[str, list[float]] = {}
    t_tick, last, done = time.monotonic(), {}, start
    bar = progress(range(start, total_steps), desc, initial=start, ctx=run.ctx)
    for step in bar:
        values = _as_floats(trainer.step(step), step, run, desc)
        for k, v in values.items():
            tick.setdefault(k, []).append(v)
        done = step + 1
        if done % opts.log_every == 0 or done == total_steps:
            n = len(next(iter(tick.values()))) if tick else 1
            last = _tick_means(tick, run.ctx.device) if tick else {}
            last["sec_per_iter"] = (time.monotonic() - t_tick) / n
            tick, t_tick = {}, time.monotonic()
            run.log(done, stage=prefix, **last)
            if run.ctx.is_main and hasattr(trainer, "on_log"):
                trainer.on_log(done, last)
            shown = "  ".join(f"{k} {v:.4g}" for k, v in last.items())
            say(f"{desc} {done}/{total_steps}  {shown}")
        if done == total_steps:
            break
        if done % opts.checkpoint_every == 0:
            save(done)
        out_of_time = deadline is not None and time.monotonic() >= deadline
        if out_of_time or (opts.stop_after is not None and done >= opts.stop_after):
            save(done)
            say(f"{desc}: paused at step {done}; rerun the same command to continue")
            bar.close()
            return LoopResult(start, done, False, time.monotonic() - t0, last)
    bar.close()
    save(done)
    return LoopResult(start, done, done >= total_steps, time.monotonic() - t0, last)


def run_summary(
    run: RunFolder, result: LoopResult | None = None, total_steps: int = 0
) -> dict[str, Any]:
    """A trainer's return value: ``{"out", "model", "finished", "steps", "last"}``; ``result``
    None means the run had finished its ``total_steps`` in an earlier invocation (nothing
    trained now, no ``last``)."""
    if result is None:
        return {"out": str(run.path), "model": str(run.model_dir()), "finished": True,
                "steps": total_steps}  # fmt: skip
    return {"out": str(run.path), "model": str(run.model_dir()), "finished": result.finished,
            "steps": result.done, "last": result.last}  # fmt: skip


def finish_run(
    run: RunFolder,
    result: LoopResult,
    save: Callable[[Any], object],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """After :func:`training_loop`: when it finished, ``save(run.model_dir())`` writes the model
    folder, the run is marked ``DONE`` (only then, so a crash while saving retrains nothing but
    rewrites the model) and ``say`` tells where; returns :func:`run_summary`."""
    if result.finished:
        save(run.model_dir())
        run.mark_finished()
        say(f"model written to {run.model_dir()}")
    return run_summary(run, result)
