"""A tiny pairwise occlusion-order classifier, learned from synthetic occlusions of visible masks.

Deocclusion (Zhan et al., CVPR 2020, PCNet-M) learns what an occlusion looks like by pasting one
instance over another in ordinary images: no amodal and no order labels are needed, because the
pasted instance's depth is known by construction. This module does the same for the one decision
:mod:`maskgen.editing.order` needs -- which instance of a touching pair is in front:

- **input** (:func:`pair_inputs`), per ordered pair ``(a, b)``: two ``S x S`` frames of three
  channels each (``V_a``, ``V_b``, the union of the other instances' visible masks): a *local*
  frame around the pixels where ``V_a`` and ``V_b`` touch (``1.5 x`` their box, at least
  :data:`MIN_LOCAL_SIDE` px) and a *global* frame around ``V_a u V_b`` (``1.15 x``);
- **network** (:class:`PairOrderNet`): four 3x3 conv stages (widths ``w, 2w, 4w, 4w``, max
  pooling), global average pooling, one linear unit ``f``; the logit "``a`` is in front of
  ``b``" is ``f(a, b) - f(b, a)``, antisymmetric by construction;
- **training data** (:func:`synthetic_batch`): a *complete* instance (the rule of
  :func:`maskgen.amodal.data.is_complete`: touches no other visible mask, not the border) of one
  training image, flipped and rescaled at random, is pasted into another training image so that
  it overlaps one of its instances, either **in front of** every instance (it hides them) or
  **behind** all of them (they hide it); every instance it then touches gives one labelled pair.
  Only visible masks are read.

``maskgen amodal order-train --data VISIBLE.json --out RUN`` trains it on the one engine loop
(:func:`train_pairnet`); the shipped model (:data:`SHIPPED_PAIRNET`) was trained on the built-in
scenes' training split. Conventions: visible masks ``K x H x W`` bool; pair indices refer to
their first axis.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from maskgen.core.boxes import mask_to_box, square_box
from maskgen.core.masks import crop_masks
from maskgen.engine import (
    RunFolder,
    RunOptions,
    config_to_dict,
    finish_run,
    init_distributed,
    load_model_folder,
    load_state_dict_strict,
    param,
    resume_key,
    run_summary,
    save_model_folder,
    seed_everything,
    shutdown_distributed,
    training_loop,
)
from maskgen.errors import MaskgenError

__all__ = [
    "SHIPPED_PAIRNET",
    "PairData",
    "PairOrderNet",
    "PairTrainConfig",
    "front_logits",
    "load_pair_data",
    "load_shipped_pairnet",
    "pair_inputs",
    "synthetic_batch",
    "train_pairnet",
]

MODEL_KIND = "order-pairnet"
SHIPPED_PAIRNET = Path(__file__).resolve().parent.parent / "models" / "order-pairnet-builtin"
MIN_LOCAL_SIDE = 16.0  # px: a short contact still gets a frame that shows its surroundings
LOCAL_SCALE, GLOBAL_SCALE = 1.5, 1.15
MIN_PASTE_AREA = 20  # px: smaller synthetic visible masks give no pair (the scenes' own minimum)
_K3 = np.ones((3, 3), np.uint8)


# ---------------------------------------------------------------------- inputs


def pair_inputs(
    visible_masks: np.ndarray, pairs: Sequence[tuple[int, int]], size: int = 32
) -> np.ndarray:
    """``N x 6 x S x S`` float32 network inputs of ordered pairs (module docstring).

    Args:
        visible_masks: ``K x H x W`` bool visible masks of one image.
        pairs: ``(a, b)`` index pairs (any pair; a pair that does not touch gets its local
            frame around the gap between the two masks' boxes).
        size: frame side ``S``.
    """
    vm = np.asarray(visible_masks, dtype=bool)
    if not len(pairs):
        return np.zeros((0, 6, size, size), np.float32)
    count = vm.sum(axis=0, dtype=np.int16)
    used = sorted({k for p in pairs for k in p})
    grown = {k: cv2.dilate(vm[k].astype(np.uint8), _K3) > 0 for k in used}
    boxes, which = [], []
    for a, b in pairs:
        touch = (vm[a] & grown[b]) | (vm[b] & grown[a])
        near = touch if touch.any() else (grown[a] | grown[b])
        loc = square_box(mask_to_box(near), LOCAL_SCALE)
        if loc[2] - loc[0] < MIN_LOCAL_SIDE:
            c = (loc[:2] + loc[2:]) / 2
            loc = np.r_[c - MIN_LOCAL_SIDE / 2, c + MIN_LOCAL_SIDE / 2]
        glob = square_box(mask_to_box(vm[a] | vm[b]), GLOBAL_SCALE)
        boxes += [loc, loc, glob, glob]
        which += [a, b, a, b]
    crops, others = crop_masks(vm, np.stack(boxes), size, which=np.asarray(which), count=count)
    crops = crops.reshape(len(pairs), 2, 2, size, size)  # pair, frame, (a, b)
    rest = np.clip(others.reshape(len(pairs), 2, 2, size, size)[:, :, 0] - crops[:, :, 1], 0, 1)
    x = np.concatenate([crops, rest[:, :, None]], axis=2)  # pair, frame, (a, b, rest)
    return np.ascontiguousarray(x.reshape(len(pairs), 6, size, size), dtype=np.float32)


# ---------------------------------------------------------------------- model


@dataclasses.dataclass
class PairNetConfig:
    """Architecture: base width ``w`` and frame side ``S``."""

    width: int = 16
    crop_size: int = 32

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class PairOrderNet(nn.Module):
    """``forward(x) -> (N,)`` logits that the first instance of each pair is in front."""

    SWAP = (1, 0, 2, 4, 3, 5)  # the same pair seen the other way round

    def __init__(self, cfg: PairNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PairNetConfig()
        w = self.cfg.width
        layers: list[nn.Module] = []
        for c_in, c_out in ((6, w), (w, 2 * w), (2 * w, 4 * w)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.features(x) - self.features(x[:, list(self.SWAP)]))[:, 0]

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str]) -> PairOrderNet:
        """Load a model folder strictly (kind ``order-pairnet``); eval mode, CPU."""
        header, state = load_model_folder(path, MODEL_KIND, device="cpu")
        try:
            net = cls(PairNetConfig(**header["config"]))
        except TypeError as e:
            raise MaskgenError(f"{path}: bad order-pairnet config ({e})") from None
        load_state_dict_strict(net, state, str(path))
        return net.eval()

    def save_folder(self, path: str | os.PathLike[str], extra: dict | None = None) -> Path:
        return save_model_folder(path, MODEL_KIND, self.cfg.to_dict(), self.state_dict(), extra)


@cache
def load_shipped_pairnet() -> PairOrderNet:
    """The shipped classifier (:data:`SHIPPED_PAIRNET`), loaded once per process."""
    return PairOrderNet.from_folder(SHIPPED_PAIRNET)


@torch.inference_mode()
def front_logits(
    net: PairOrderNet,
    visible_masks: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    flips: bool = True,
) -> np.ndarray:
    """``(N,)`` float64 logits that ``a`` is in front of ``b`` for each pair ``(a, b)``; with
    ``flips``, the mean over the frames and their horizontal, vertical and double flips (on the
    built-in val split this raised the order's direction accuracy by 0.005)."""
    x = pair_inputs(visible_masks, pairs, net.cfg.crop_size)
    if not len(x):
        return np.zeros(0)
    t = torch.from_numpy(x)
    if not flips:
        return net(t).double().numpy()
    z = net(t) + net(t.flip(-1)) + net(t.flip(-2)) + net(t.flip(-2, -1))
    return (z / 4).double().numpy()


# ---------------------------------------------------------------------- synthetic pairs


@dataclasses.dataclass
class PairData:
    """What :func:`synthetic_batch` draws from.

    Attributes:
        labels: per image an ``H x W`` int16 label map of its visible masks (-1: none).
        shapes: tight ``h x w`` bool masks of the complete instances.
    """

    labels: list[np.ndarray]
    shapes: list[np.ndarray]


def load_pair_data(dataset: Any) -> PairData:
    """Label maps and complete shapes of a dataset's visible masks (no amodal labels read)."""
    from maskgen.amodal.completion import decode_visible
    from maskgen.amodal.data import is_complete, tight

    labels, shapes = [], []
    for rec in dataset.images:
        if not rec.instances:
            continue
        vm, _ = decode_visible(rec)
        vm = vm[vm.reshape(len(vm), -1).any(axis=1)]
        if not len(vm):
            continue
        lab = np.full(vm.shape[1:], -1, np.int16)
        for k, m in enumerate(vm):
            lab[m] = k
        labels.append(lab)
        shapes += [tight(v) for v, c in zip(vm, is_complete(list(vm)), strict=True) if c]
    if not labels or not shapes:
        raise MaskgenError("--data: needs images with instances and complete (untouched) ones")
    return PairData(labels, shapes)


def _paste(rng: np.random.Generator, data: PairData) -> tuple[np.ndarray, bool] | None:
    """One synthetic scene: ``(K+1) x H x W`` visible masks (the pasted one last), and whether
    it was pasted in front; None when the draw gave nothing usable."""
    lab = data.labels[rng.integers(len(data.labels))]
    vm = lab[None] == np.arange(int(lab.max()) + 1)[:, None, None]
    h, w = lab.shape
    m = data.shapes[rng.integers(len(data.shapes))]
    m = m[:, ::-1] if rng.random() < 0.5 else m
    s = rng.uniform(0.7, 1.3)
    mh, mw = max(round(m.shape[0] * s), 4), max(round(m.shape[1] * s), 4)
    m = cv2.resize(m.astype(np.uint8), (mw, mh), interpolation=cv2.INTER_NEAREST) > 0
    ys, xs = np.nonzero(lab >= 0)
    my, mx = np.nonzero(m)
    if not len(ys) or not len(my):
        return None
    p, q = rng.integers(len(ys)), rng.integers(len(my))  # a shape pixel onto an instance pixel
    oy, ox = int(ys[p] - my[q]), int(xs[p] - mx[q])
    y0, x0, y1, x1 = max(oy, 0), max(ox, 0), min(oy + mh, h), min(ox + mw, w)
    full = np.zeros((h, w), bool)
    full[y0:y1, x0:x1] = m[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    front = bool(rng.random() < 0.5)
    new = full if front else full & (lab < 0)
    return np.concatenate([vm & ~full if front else vm, new[None]]), front


def synthetic_batch(
    rng: np.random.Generator, data: PairData, n: int, size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """``(N x 6 x S x S float32 inputs, (N,) float32 labels: 1 = first in front)`` of ``n``
    touching pairs of synthetic occlusions (module docstring); each pair's two instances come
    in a random order."""
    xs: list[np.ndarray] = []
    ys: list[float] = []
    while len(ys) < n:
        drawn = _paste(rng, data)
        if drawn is None:
            continue
        vm, front = drawn
        new = len(vm) - 1
        area = vm.reshape(len(vm), -1).sum(axis=1)
        if area[new] < MIN_PASTE_AREA:
            continue
        grown = cv2.dilate(vm[new].astype(np.uint8), _K3) > 0
        pairs, lab = [], []
        for j in np.flatnonzero((area >= MIN_PASTE_AREA) & (vm & grown).any(axis=(1, 2))):
            if j == new:
                continue
            first_new = bool(rng.random() < 0.5)
            pairs.append((new, int(j)) if first_new else (int(j), new))
            lab.append(float(front == first_new))
        if pairs:
            xs.append(pair_inputs(vm, pairs, size))
            ys += lab
    return np.concatenate(xs)[:n], np.asarray(ys[:n], np.float32)


# ---------------------------------------------------------------------- training


@dataclasses.dataclass
class PairTrainConfig:
    """Settings of ``maskgen amodal order-train`` (presets are tables of overrides)."""

    PRESETS = {  # noqa: RUF012
        "cpu": {},
        "tiny": {"width": 4, "batch_size": 4, "steps": 4, "pool": 16},
    }
    preset: str = param("cpu", "preset name", flag=False)
    data: str = param("", "visible instance masks (COCO, KINS or COCOA JSON)", role="path")
    seed: int = param(0, "random seed", low=0)
    steps: int = param(6000, "training steps", low=1)
    pool: int = param(
        40000,
        "synthetic pairs drawn once at the start; each step samples its batch from them",
        low=1,
    )
    batch_size: int = param(64, "pairs per step", low=1, high=4096)
    lr: float = param(2e-3, "Adam learning rate", low=0, low_open=True, high=1)
    width: int = param(16, "channels of the first conv stage", low=2, high=256)
    crop_size: int = param(32, "frame side, px; a multiple of 8", low=8, high=256)

    def check(self) -> None:
        if self.crop_size % 8:
            raise MaskgenError(f"--crop-size {self.crop_size}: must be a multiple of 8")


class PairTrainer:
    """Binary cross-entropy of :class:`PairOrderNet` on :func:`synthetic_batch` batches."""

    def __init__(self, cfg: PairTrainConfig, data: PairData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.net = PairOrderNet(PairNetConfig(cfg.width, cfg.crop_size)).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.resumable = {"model": self.net, "opt": self.opt}
        # Drawing pairs costs far more than a step of this tiny net: draw a pool once (the
        # same pool on a resume: its own seed) and sample batches from it.
        rng = np.random.default_rng([int(cfg.seed), 0, 1])
        x, y = synthetic_batch(rng, data, cfg.pool, cfg.crop_size)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One Adam step on the batch of ``step`` (seeded by ``(seed, step)``: resumable)."""
        rng = np.random.default_rng([int(self.cfg.seed), int(step)])
        idx = torch.from_numpy(rng.integers(0, len(self.y), self.cfg.batch_size))
        xt, yt = self.x[idx].to(self.device), self.y[idx].to(self.device)
        self.net.train()
        logits = self.net(xt)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, yt)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        acc = ((logits.detach() > 0).float() == yt).float().mean()
        return {"loss": loss.detach(), "accuracy": acc}


def train_pairnet(
    cfg: PairTrainConfig, opts: RunOptions, out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Validate -> RunFolder -> training loop -> ``OUT/model`` -> ``DONE``; rerunning resumes.

    Raises:
        MaskgenError: bad input (before anything is written), or a run folder of another kind
            or config.
    """
    from maskgen.core.io import require_file
    from maskgen.data.loader import load_dataset

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaskgenError(f"{out}: exists and is not a folder")
    if not cfg.data:
        raise MaskgenError("--data: required (visible instance masks, COCO/KINS/COCOA JSON)")
    require_file(cfg.data, "annotation file")
    ctx = init_distributed(opts.device)
    try:
        if ctx.world_size > 1:
            raise MaskgenError("amodal order-train: runs in one process (not under torchrun)")
        data = load_pair_data(load_dataset(cfg.data))
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        run = RunFolder(out, MODEL_KIND, resume_key(cfg), ctx=ctx)
        model_dir = run.model_dir()
        if run.is_finished():
            _say(f"{out}: already finished; the model is in {model_dir}", opts.quiet)
            return run_summary(run, total_steps=cfg.steps)
        seed_everything(cfg.seed, ctx.rank)
        trainer = PairTrainer(cfg, data, ctx.device)
        _say(
            f"order-train: {len(data.labels)} images, {len(data.shapes)} complete shapes",
            opts.quiet,
        )
        res = training_loop(trainer, run, total_steps=cfg.steps, opts=opts, desc="order-pairnet")
        net = trainer.net
        return finish_run(
            run,
            res,
            lambda d: net.cpu().save_folder(d, extra={"training": config_to_dict(cfg)}),
            lambda text: _say(text, opts.quiet),
        )
    finally:
        shutdown_distributed()


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)
