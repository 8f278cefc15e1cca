"""Training both inpainters of supplementary §3.3 on the one engine loop (``maskgen inpaint train``).

Each step trains the background net on one batch of background holes and the instance net on one
batch of instance holes (:mod:`maskgen.inpainting.samplers`), one Adam optimizer over both nets.

Loss (per net): ``L1 over the target pixels`` (hole pixels whose truth is known, mean over them)
``+ context_weight x L1 over the given pixels`` (DeepFill v2 uses L1 on the whole image; the
given pixels are pasted back at test time, so they get a small weight). Deviation from DeepFill
v2: no SN-PatchGAN adversarial term (stable, cheap on a CPU; see :mod:`maskgen.inpainting.model`).

Layout of a run folder (:class:`~maskgen.engine.RunFolder`, kind ``inpainter``): ``config.json``,
``metrics.jsonl``, ``checkpoints/``, ``model/`` (the model folder, see
:class:`~maskgen.inpainting.learned.LearnedInpainter`), ``DONE``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.data.loader import load_visible_training_set
from maskgen.engine import (
    RunFolder,
    RunOptions,
    config_to_dict,
    finish_run,
    init_distributed,
    param,
    resume_key,
    run_summary,
    save_model_folder,
    seed_everything,
    shutdown_distributed,
    training_loop,
)
from maskgen.errors import MaskgenError
from maskgen.inpainting.model import InpaintModel, InpaintNetConfig, count_parameters
from maskgen.inpainting.samplers import (
    Batch,
    InpaintData,
    background_batch,
    instance_batch,
    load_inpaint_data,
)

MODEL_KIND = "inpainter"
UNKNOWN_LABEL = -1  # a category id no data set uses: its embedding row is the "unknown" one


@dataclasses.dataclass
class InpaintConfig:
    """Settings of ``maskgen inpaint train`` (one flag each; presets are tables of overrides).

    ``cpu`` (default): width 16, 96-px background crops, 64-px instance crops, batch 8,
    800 steps (about 1-1.5 s per step on one free CPU thread: <= 20 minutes). ``paper``: §3.3's 256-px crops and
    DeepFill v2's base width 48. ``tiny``: for tests.
    """

    PRESETS = {  # noqa: RUF012
        "cpu": {},
        "paper": {
            "width": 48,
            "crop_size": 256,
            "instance_size": 256,
            "batch_size": 16,
            "steps": 100000,
            "lr": 1e-4,
        },
        "tiny": {"width": 4, "crop_size": 32, "instance_size": 32, "batch_size": 2, "steps": 4},
    }
    preset: str = param("cpu", "preset name", flag=False)
    data: str = param("", "visible instance masks (COCO, KINS or COCOA JSON)", role="path")
    images: str = param("", "folder holding the images named in --data", role="path")
    seed: int = param(0, "random seed", low=0)
    steps: int = param(800, "training steps (each trains both nets on one batch)", low=1)
    batch_size: int = param(8, "samples per net per step", low=1, high=4096)
    lr: float = param(5e-4, "Adam learning rate", low=0, low_open=True, high=1)
    width: int = param(16, "network channels at full resolution (DeepFill v2: 48)", low=2, high=256)
    crop_size: int = param(
        96, "background crop side, px; a multiple of 4 (§3.3: 256)", low=16, high=1024
    )
    instance_size: int = param(
        64, "instance crop side, px; a multiple of 4 (§3.3: 256)", low=16, high=1024
    )
    label_dim: int = param(4, "channels of the class-label plane of the instance net", low=1)
    dilate_min: float = param(5.0, "smallest hole dilation, px at 256 px (§3.3: 5)", low=0)
    dilate_max: float = param(25.0, "largest hole dilation, px at 256 px (§3.3: 25)", low=0)
    context_weight: float = param(0.1, "weight of the L1 loss on the given pixels", low=0)
    label_drop: float = param(
        0.2,
        "share of instance samples shown as an unknown category (callers without class ids, "
        "and categories not seen in training, get the unknown embedding)",
        low=0,
        high=1,
    )
    workers: int = param(
        0,
        "processes sampling batches ahead (0: none; batches do not depend on it; use several "
        "on a GPU machine, where sampling is the bottleneck)",
        low=0,
        high=64,
        role="run",
    )

    def check(self) -> None:
        """Cross-field rules."""
        for name in ("crop_size", "instance_size"):
            v = getattr(self, name)
            if v % 4:
                flag = "--" + name.replace("_", "-")
                raise MaskgenError(f"{flag} {v}: must be a multiple of 4")
        if self.dilate_max < self.dilate_min:
            raise MaskgenError(
                f"--dilate-max {self.dilate_max:g}: smaller than --dilate-min {self.dilate_min:g}"
            )

    def net_config(self, labels: list[int]) -> InpaintNetConfig:
        return InpaintNetConfig(
            width=self.width,
            label_dim=self.label_dim,
            labels=list(labels),
            crop_size=self.crop_size,
            instance_size=self.instance_size,
        )


def _masked_l1(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels of ``mask`` (``B x 1 x H x W``), 0 when empty."""
    return ((pred - truth).abs() * mask).sum() / (3.0 * mask.sum()).clamp_min(1.0)


def make_batches(cfg: InpaintConfig, data: InpaintData, step: int) -> tuple[Batch, Batch]:
    """The background and instance batches of ``step``: drawn from a generator seeded by
    ``(seed, step)`` only, so a resumed run (and any number of workers) draws what an
    uninterrupted one would."""
    rng = np.random.default_rng([int(cfg.seed), int(step)])
    dil = (cfg.dilate_min, cfg.dilate_max)
    bg = background_batch(rng, data, cfg.batch_size, cfg.crop_size, dil)
    ins = instance_batch(rng, data, cfg.batch_size)
    ins.label[rng.random(len(ins.label)) < cfg.label_drop] = UNKNOWN_LABEL
    return bg, ins


_WORKER: dict[str, Any] = {}  # what a sampling process draws from (set by _init_worker)


def _worker_batches(step: int) -> tuple[Batch, Batch]:
    return make_batches(_WORKER["cfg"], _WORKER["data"], step)


def _init_worker(cfg: InpaintConfig, data: InpaintData) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER.update(cfg=cfg, data=data)


def _start_pool(cfg: InpaintConfig, data: InpaintData) -> Any:
    """``cfg.workers`` sampling processes, each with its own copy of ``data``.

    Started with ``spawn``: a forked child of a process whose torch/OpenCV thread pools are
    running can deadlock.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        cfg.workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg, data)
    )


class InpaintTrainer:
    """Both §3.3 networks on one engine loop (see the module docstring)."""

    def __init__(self, cfg: InpaintConfig, data: InpaintData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        labels = sorted({int(v) for v in data.patch_labels.tolist()})
        self.model = InpaintModel(cfg.net_config(labels)).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self.state: dict[str, Any] = {"seed": int(cfg.seed)}
        self.resumable = {"model": self.model, "opt": self.opt, "state": self.state}

        self._pool: Any = None
        self._pending: dict[int, Any] = {}

    def _batches(self, step: int) -> tuple[Batch, Batch]:
        """This step's two batches, from the worker processes when ``cfg.workers > 0`` (each
        submitted ahead of time); the same batches either way."""
        if self.cfg.workers == 0:
            return make_batches(self.cfg, self.data, step)
        if self._pool is None:
            self._pool = _start_pool(self.cfg, self.data)
        for s in range(step, step + 2 * self.cfg.workers):
            if s < self.cfg.steps and s not in self._pending:
                self._pending[s] = self._pool.submit(_worker_batches, s)
        for s in [s for s in self._pending if s < step]:  # after a resume: stale requests
            self._pending.pop(s).cancel()
        return self._pending.pop(step).result()

    def close(self) -> None:
        """Stop the sampling processes (if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._pending = None, {}

    def _tensors(self, b: Batch) -> dict[str, torch.Tensor]:
        d = dataclasses.asdict(b)
        return {k: torch.from_numpy(v).to(self.device) for k, v in d.items()}

    def _loss(self, pred: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
        hole = _masked_l1(pred, t["image"], t["target"])
        return hole + self.cfg.context_weight * _masked_l1(pred, t["image"], t["given"])

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One step: a background batch and an instance batch, one Adam update."""
        bg_batch, ins_batch = self._batches(step)
        bg, ins = self._tensors(bg_batch), self._tensors(ins_batch)
        self.model.train()
        res_bg = self.model.residual_background(bg["coarse"], bg["given"], bg["hole"])
        pred_bg = (bg["coarse"] + res_bg).clamp(-1.0, 1.0)
        labels = torch.tensor(
            [self.model.label_index(v) for v in ins["label"].tolist()], device=self.device
        )
        res_in = self.model.residual_instance(
            ins["coarse"], ins["given"], ins["hole"], ins["amodal"], labels
        )
        pred_in = (ins["coarse"] + res_in).clamp(-1.0, 1.0)
        loss_bg, loss_in = self._loss(pred_bg, bg), self._loss(pred_in, ins)
        self.opt.zero_grad(set_to_none=True)
        (loss_bg + loss_in).backward()
        self.opt.step()
        return {
            "loss_background": loss_bg.detach(),
            "loss_instance": loss_in.detach(),
            "hole_mae_background": _masked_l1(pred_bg.detach(), bg["image"], bg["target"]),
            "hole_mae_instance": _masked_l1(pred_in.detach(), ins["image"], ins["target"]),
            "coarse_mae_background": _masked_l1(bg["coarse"], bg["image"], bg["target"]),
            "coarse_mae_instance": _masked_l1(ins["coarse"], ins["image"], ins["target"]),
        }


def load_training_data(cfg: InpaintConfig) -> InpaintData:
    """Read and check ``--data`` and ``--images`` (every error before any file is written)."""
    dataset = load_visible_training_set(cfg.data, cfg.images)
    return load_inpaint_data(dataset, cfg.images, cfg.instance_size)


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def train_inpainter(
    cfg: InpaintConfig, opts: RunOptions, out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Validate -> RunFolder -> training loop -> model folder -> ``DONE`` (``maskgen inpaint
    train``). Rerunning after a kill resumes; a finished run is reported, not retrained.

    Returns:
        ``{"out", "model", "finished", "steps", "last"}``.

    Raises:
        MaskgenError: bad input (before anything is written), or a run folder of another kind
            or config.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaskgenError(f"{out}: exists and is not a folder")
    ctx = init_distributed(opts.device)
    try:
        if ctx.world_size > 1:
            raise MaskgenError("inpaint train: runs in one process (not under torchrun)")
        data = load_training_data(cfg)
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        run = RunFolder(out, MODEL_KIND, resume_key(cfg), ctx=ctx)
        model_dir = run.model_dir()
        if run.is_finished():
            _say(f"{out}: already finished; the model is in {model_dir}", opts.quiet)
            return run_summary(run, total_steps=cfg.steps)
        seed_everything(cfg.seed, ctx.rank)
        trainer = InpaintTrainer(cfg, data, ctx.device)
        n = count_parameters(trainer.model)
        _say(
            f"inpaint train: {n / 1e6:.2f}M parameters, {len(data.patches)} complete "
            f"instances, {len(data.shapes)} hole shapes, {len(data.images)} images",
            opts.quiet,
        )
        try:
            res = training_loop(trainer, run, total_steps=cfg.steps, opts=opts, desc="inpaint")
        finally:
            trainer.close()
        model = trainer.model
        return finish_run(
            run,
            res,
            lambda d: save_model_folder(
                d,
                MODEL_KIND,
                model.cfg.to_dict(),
                model.state_dict(),
                extra={"training": config_to_dict(cfg)},
            ),
            lambda text: _say(text, opts.quiet),
        )
    finally:
        shutdown_distributed()
