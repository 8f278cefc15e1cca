"""``--restarts K``: K restarts, keep the best without labels, train it on.

:func:`keep_best_restart` is the mechanism both applications share; :func:`select_restart` is
``segment train``'s use of it (application 2's, with full-length restarts and its own
criterion: :func:`maskgen.independence.cluster.train_cluster`).

For ``segment train``:

Restart ``i`` is the first ``restart_steps`` steps of a full run with seed ``seed + i`` (same
schedules, so it is exactly the beginning of the run it would become). Each restart is a stage
of the one run folder (checkpoint series ``restart<i>``, resumable like any stage). After each,
its EMA/raw model is scored by :func:`~maskgen.independence.selection.segmenter_realism` on
the unlabelled training crops, with the same score seed for every candidate; the scores go to
``selection.json`` in the run folder. The best candidate's last checkpoint becomes the start of
the main series ``ckpt``, which the caller trains on to ``steps``.

Cost: ``K * restart_steps + (steps - restart_steps)`` GAN steps plus ``K`` scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: Score settings (fixed: every candidate of every run is judged alike).
SCORE_STEPS = 300
SCORE_SEED = 12345
SCORE_IMAGES = 256


def _score_backgrounds(trainer: Any, n: int) -> np.ndarray:
    bg, _ = trainer.bg.sample(n, torch.Generator().manual_seed(SCORE_SEED))
    return (bg.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()


def keep_best_restart(
    run: Any,
    opts: Any,
    *,
    restarts: int,
    seed: int,
    steps: int,
    make_trainer: Callable[[int], Any],
    score: Callable[[Any, Any], dict[str, Any]],
    rank: Callable[[list[dict[str, Any]]], int],
    criterion: str,
    say: Callable[[str], None],
) -> int | None:
    """Train restarts ``seed .. seed + restarts - 1`` for ``steps`` steps each (checkpoint
    series ``restart<i>`` of ``run``), score each, keep the best; returns its seed, or None when
    the run paused (time budget or ``stop_after``) before all restarts were scored.

    ``make_trainer(seed)`` builds a fresh trainer; ``score(trainer, loop_result)`` returns the
    candidate's label-free numbers; ``rank(candidates)`` the index of the best. The scores and
    the choice go to ``selection.json``; the winner's last checkpoint starts the main series
    ``ckpt``. A rerun skips the restarts already scored.
    """
    from maskgen.core.io import read_json, write_json
    from maskgen.engine import training_loop

    path = run.path / "selection.json"
    sel = read_json(path) if path.is_file() else {"candidates": []}
    if sel.get("best_seed") is not None and run.checkpoints("ckpt"):
        return int(sel["best_seed"])
    done = {c["seed"]: c for c in sel["candidates"]}
    for i in range(restarts):
        s = seed + i
        if s in done:
            continue
        trainer = make_trainer(s)
        desc = f"restart {i + 1}/{restarts} (seed {s})"
        res = training_loop(
            trainer, run, total_steps=steps, opts=opts, prefix=f"restart{i}", desc=desc
        )
        if not res.finished:
            return None
        done[s] = {"seed": s, "index": i, **score(trainer, res)}
        sel["candidates"] = [done[k] for k in sorted(done)]
        if run.ctx.is_main:
            write_json(path, sel)
        numbers = ", ".join(f"{k} {v:.3f}" for k, v in done[s].items() if isinstance(v, float))
        say(f"{desc}: {numbers}")
    cands = sel["candidates"]
    best = cands[rank(cands)]
    if not run.checkpoints("ckpt"):
        state = run.load_latest_checkpoint(map_location="cpu", prefix=f"restart{best['index']}")
        run.save_checkpoint(int(state["step"]), state, prefix="ckpt")
    sel.update(best_seed=best["seed"], criterion=criterion)
    if run.ctx.is_main:
        write_json(path, sel)
    say(f"kept restart seed {best['seed']} ({criterion})")
    return int(best["seed"])


def select_restart(
    cfg: Any,
    run: Any,
    opts: Any,
    data: tuple[np.ndarray, int, list[np.ndarray]],
    say: Callable[[str], None],
) -> int | None:
    """``segment train --restarts``: :func:`keep_best_restart` with short restarts of
    ``restart_steps`` scored by :func:`~maskgen.independence.selection.segmenter_realism`."""
    from maskgen.independence.segmentation import SegmentTrainer
    from maskgen.independence.selection import rank_candidates, segmenter_realism

    imgs, crop, bgs = data

    def make_trainer(seed: int) -> Any:
        ci = dataclasses.replace(cfg, seed=seed)
        return SegmentTrainer(ci, imgs, crop, bgs, run.ctx, None, quiet=True)

    def score(trainer: Any, res: Any) -> dict[str, Any]:
        realism = segmenter_realism(
            trainer.final_model(),
            imgs,
            _score_backgrounds(trainer, min(len(imgs), SCORE_IMAGES)),
            steps=SCORE_STEPS,
            seed=SCORE_SEED,
            max_images=SCORE_IMAGES,
        )
        return {**realism, "mask_area": res.last.get("mask_area")}

    return keep_best_restart(
        run,
        opts,
        restarts=cfg.restarts,
        seed=cfg.seed,
        steps=cfg.restart_steps,
        make_trainer=make_trainer,
        score=score,
        rank=lambda cands: rank_candidates([c["realism"] for c in cands]),
        criterion="fresh-discriminator realism (higher better)",
        say=say,
    )


__all__ = ["SCORE_IMAGES", "SCORE_SEED", "SCORE_STEPS", "keep_best_restart", "select_restart"]
