"""``segment train --restarts K``: K short restarts, keep the best without labels, train it on.

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


def select_restart(
    cfg: Any,
    run: Any,
    opts: Any,
    data: tuple[np.ndarray, int, list[np.ndarray]],
    say: Callable[[str], None],
) -> int | None:
    """Train/score the restarts of ``cfg`` in ``run``; returns the winner's seed, or None when
    the run paused (time budget or ``stop_after``) before all restarts were scored."""
    from maskgen.core.io import read_json, write_json
    from maskgen.engine import training_loop
    from maskgen.independence.segmentation import SegmentTrainer
    from maskgen.independence.selection import rank_candidates, segmenter_realism

    path = run.path / "selection.json"
    sel = read_json(path) if path.is_file() else {"candidates": []}
    if sel.get("best_seed") is not None and run.checkpoints("ckpt"):
        return int(sel["best_seed"])
    imgs, crop, bgs = data
    done = {c["seed"]: c for c in sel["candidates"]}
    for i in range(cfg.restarts):
        seed = cfg.seed + i
        if seed in done:
            continue
        ci = dataclasses.replace(cfg, seed=seed)
        tr = SegmentTrainer(ci, imgs, crop, bgs, run.ctx, None, quiet=True)
        res = training_loop(
            tr,
            run,
            total_steps=cfg.restart_steps,
            opts=opts,
            prefix=f"restart{i}",
            desc=f"restart {i + 1}/{cfg.restarts} (seed {seed})",
        )
        if not res.finished:
            return None
        score = segmenter_realism(
            tr.final_model(),
            imgs,
            _score_backgrounds(tr, min(len(imgs), SCORE_IMAGES)),
            steps=SCORE_STEPS,
            seed=SCORE_SEED,
            max_images=SCORE_IMAGES,
        )
        done[seed] = {"seed": seed, "index": i, **score, "mask_area": res.last.get("mask_area")}
        sel["candidates"] = [done[k] for k in sorted(done)]
        if run.ctx.is_main:
            write_json(path, sel)
        say(f"restart {i + 1}/{cfg.restarts} (seed {seed}): realism {score['realism']:.3f}")
    cands = sel["candidates"]
    best = cands[rank_candidates([c["realism"] for c in cands])]
    if not run.checkpoints("ckpt"):
        state = run.load_latest_checkpoint(map_location="cpu", prefix=f"restart{best['index']}")
        run.save_checkpoint(int(state["step"]), state, prefix="ckpt")
    sel.update(best_seed=best["seed"], criterion="fresh-discriminator realism (higher better)")
    if run.ctx.is_main:
        write_json(path, sel)
    say(f"kept restart seed {best['seed']} (realism {best['realism']:.3f}); training on")
    return int(best["seed"])


__all__ = ["SCORE_IMAGES", "SCORE_SEED", "SCORE_STEPS", "select_restart"]
