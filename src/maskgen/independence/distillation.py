"""Data distillation for application 1 (paper appendix "Data Distillation in the First
Application"; Radosavovic et al. 2018).

A student UNet learns the teacher's (the adversarially trained provider's) soft masks on *new*
composites: each training image's foreground is cut out with the teacher's soft mask ``m`` and
pasted on a random real background, ``x' = img * m + bg * (1 - m)`` (the shared compositing
code), with random horizontal flips of image and mask together; the label is ``m`` itself. The
per-pixel loss is the paper's smooth-L1 (eq. 8): ``4 x^2`` if ``|x| < 0.25`` else ``|x|`` on
``student - m``.

The settings live in :class:`DistillConfig`; :class:`DistillTrainer` is one iteration (phases
``composite`` -> ``student``) and :func:`distill` runs it on the engine's
:func:`~maskgen.engine.training_loop` in a run folder of kind ``"segment-distill"`` (automatic
resume). The student is saved as a ``segment-unet`` model folder in ``OUT/model`` (same
architecture as the teacher, one more UNet level per doubling of the input size).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.engine.config import param
from maskgen.engine.loop import RunOptions
from maskgen.errors import MaskgenError
from maskgen.independence.composition import compose
from maskgen.independence.losses import distillation_loss
from maskgen.independence.predict import Segmenter, predict_soft_tensor
from maskgen.independence.providers import BackgroundPatchProvider, UNetConfig
from maskgen.independence.segmentation import (
    check_batch,
    check_unet_size,
    load_backgrounds,
    load_training_images,
)

RUN_KIND = "segment-distill"


@dataclasses.dataclass
class DistillConfig:
    """Every setting of ``segment distill`` (model and path fields are the resume check).
    ``images``/``backgrounds``/``boxes`` default to the teacher run's."""

    PRESETS = {"cpu": {}, "paper": {}, "tiny": {"steps": 4, "batch_size": 4}}  # noqa: RUF012
    preset: str = param("cpu", "preset name", flag=False)
    teacher: str = param(
        "", "the teacher's run folder (segment train --out) or model folder", role="path"
    )
    images: str | None = param(None, "training crops (default: the teacher run's)", role="path")
    backgrounds: str | None = param(
        None, "background folder (default: the teacher run's)", role="path"
    )
    boxes: str | None = param(None, "COCO JSON boxes (default: the teacher run's)", role="path")
    box_margin: float | None = param(
        None, "box growth per side with --boxes (default: the teacher run's)", low=0, high=1
    )
    steps: int = param(600, "training steps", low=1, high=10**8)
    batch_size: int = param(32, "composites per step", low=1, high=4096)
    lr: float = param(1e-3, "Adam learning rate (betas 0.9, 0.999)", low=0, low_open=True, high=1)
    unet_widths: tuple[int, ...] | None = param(
        None,
        "student UNet widths (default: the teacher's, one more level per doubling)",
        low=1,
        high=4096,
    )
    size: int | None = param(
        None,
        "student input side (default: the crops' side, at most twice the teacher's)",
        low=16,
        high=1024,
    )
    original_fraction: float = param(
        0.0, "share of each batch shown as the original image (paper: 0)", low=0, high=1
    )
    seed: int = param(0, "RNG seed", low=0, high=2**31 - 1)

    def check(self) -> None:
        if not self.teacher:
            raise MaskgenError("--teacher: required (a segment train run or model folder)")
        if self.size is not None:
            check_batch(self.batch_size, self.size)
            if self.unet_widths:
                check_unet_size(self.size, self.unet_widths)


def teacher_run_config(teacher: str | Path) -> dict[str, Any]:
    """The teacher's training config (from its run folder), or {} for a bare model folder."""
    from maskgen.core.io import read_json, require_dir

    cfg_path = require_dir(teacher, "teacher folder") / "config.json"
    if not cfg_path.is_file():
        return {}
    header = read_json(cfg_path)
    if isinstance(header, dict) and header.get("format") == "maskgen-run":
        if header.get("kind") != "segment":
            raise MaskgenError(f"{teacher} is a {header.get('kind')} run, not a segment run")
        return dict(header.get("config") or {})
    return {}


def with_teacher_data(cfg: DistillConfig) -> DistillConfig:
    """``cfg`` with the data settings it leaves open taken from the teacher's run."""
    tcfg = teacher_run_config(cfg.teacher)
    cfg = dataclasses.replace(
        cfg,
        images=cfg.images or tcfg.get("images"),
        backgrounds=cfg.backgrounds or tcfg.get("backgrounds"),
        boxes=cfg.boxes or tcfg.get("boxes"),
        box_margin=cfg.box_margin if cfg.box_margin is not None else tcfg.get("box_margin", 0.1),
    )
    if not cfg.images or not cfg.backgrounds:
        raise MaskgenError(
            f"{cfg.teacher}: not a segment run folder; pass --images and --backgrounds"
        )
    return cfg


def student_unet(cfg: DistillConfig, tc: UNetConfig, crop: int) -> UNetConfig:
    """The student's UNet: ``--size``, else the crops' native side capped at twice the
    teacher's (distilling at a higher resolution than the teacher recovers boundary detail: the
    composites' boundaries are exact at any resolution); the teacher's widths with one more
    level per doubling unless ``--unet-widths`` is given."""
    s_size = int(cfg.size) if cfg.size else max(tc.size, min(crop, 2 * tc.size))
    widths = tuple(cfg.unet_widths) if cfg.unet_widths else tc.widths
    if not cfg.unet_widths:
        while s_size // (2 ** len(widths)) > tc.size // (2 ** len(tc.widths)):
            widths = (*widths, widths[-1])  # one more level per doubling of the size
    check_unet_size(s_size, widths)
    check_batch(cfg.batch_size, s_size)
    return UNetConfig(s_size, widths, tc.last_kernel, tc.norm, tc.upsample)


@torch.no_grad()
def teacher_masks(teacher: Segmenter, data: torch.Tensor, size: int) -> torch.Tensor:
    """The teacher's soft masks of ``N x 3 x S x S`` uint8 crops, ``N x 1 x size x size`` float
    on the CPU (crops resized to the teacher's side and the masks back, bilinear)."""
    tc = teacher.cfg
    dev = next(teacher.parameters()).device
    x = data.to(dev).float() / 255.0
    if size != tc.size:
        x = torch.nn.functional.interpolate(
            x, size=(tc.size, tc.size), mode="bilinear", align_corners=False, antialias=True
        )
    m = predict_soft_tensor(teacher, x)
    if size != tc.size:
        m = torch.nn.functional.interpolate(
            m, size=(size, size), mode="bilinear", align_corners=False
        )
    return m.clamp(0, 1).cpu()


class DistillTrainer:
    """One distillation iteration per :meth:`step` (engine trainer protocol).

    Args:
        cfg: the settings (data fields filled, see :func:`with_teacher_data`).
        teacher: the teacher model (used once, here, for its masks of every crop).
        s_cfg: the student's UNet settings.
        images: ``N x S x S x 3`` uint8 crops at the student's side ``S``.
        crop: the crops' native side; backgrounds: uint8 RGB arrays at least ``crop`` wide.
        ctx: the engine's DistContext; grids: folder for image grids (None = none).
    """

    def __init__(
        self,
        cfg: DistillConfig,
        teacher: Segmenter,
        s_cfg: UNetConfig,
        images: np.ndarray,
        crop: int,
        backgrounds: list[np.ndarray],
        ctx: Any,
        grids: Path | None = None,
    ) -> None:
        from maskgen.engine import seed_everything, wrap_ddp

        self.cfg, self.grids, self.dev = cfg, grids, ctx.device
        seed_everything(cfg.seed, ctx.rank)
        self.g = torch.Generator().manual_seed(cfg.seed * 1000 + 17 + ctx.rank)
        self.data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # N x 3 x S x S
        self.tmasks = teacher_masks(teacher, self.data, s_cfg.size)
        self.threshold = teacher.threshold
        self.bg = BackgroundPatchProvider(backgrounds, s_cfg.size, crop, device=self.dev)
        self.student = Segmenter(s_cfg, self.threshold).to(self.dev)
        self.student_t = wrap_ddp(self.student, ctx)
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr)
        self.resumable = {"student": self.student, "opt": self.opt, "gen": self.g}
        self.last: tuple[torch.Tensor, ...] | None = None
        self.student.train()

    def composite(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase "composite": teacher-carved foregrounds on random backgrounds, flipped with
        their masks. Returns ``(x N x 3 x S x S, m N x 1 x S x S)``."""
        bs, g, dev = self.cfg.batch_size, self.g, self.dev
        idx = torch.randint(0, len(self.data), (bs,), generator=g)
        img = self.data[idx].to(dev).float() / 255.0
        m = self.tmasks[idx].to(dev)
        bg, _ = self.bg.sample(bs, g)
        x = compose([(img, m)], background=bg)
        if self.cfg.original_fraction > 0:
            keep = (torch.rand(bs, generator=g) < self.cfg.original_fraction).to(dev)
            x = torch.where(keep[:, None, None, None], img, x)
        flip = (torch.rand(bs, generator=g) < 0.5).to(dev)[:, None, None, None]
        return torch.where(flip, x.flip(-1), x), torch.where(flip, m.flip(-1), m)

    def step(self, step: int) -> dict[str, Any]:
        """Phases composite -> student (smooth-L1 of eq. 8 to the teacher's soft mask)."""
        from maskgen.engine import check_finite, unwrap

        x, m = self.composite()
        pred = unwrap(self.student_t).alpha(x)
        loss = distillation_loss(pred, m)
        check_finite(loss, step, "distillation loss")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.last = (x[:8], m[:8], pred[:8].detach())
        return {"loss": loss.detach()}

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Image grid (composite, teacher mask, student mask) at each logging tick."""
        from maskgen.engine import save_image_grid

        if self.grids is None or self.last is None:
            return
        x, m, pred = self.last
        grid = torch.cat([x, m.expand(-1, 3, -1, -1), pred.expand(-1, 3, -1, -1)])
        save_image_grid(self.grids / f"grid-{step:08d}.png", grid, nrow=len(x))


def distill(cfg: DistillConfig, out: str | Path, opts: RunOptions | None = None) -> Path:
    """Train a student on the teacher's masks over new composites (appendix, eq. 8).

    Checks the device, the teacher and the data before the run folder ``out`` is created or
    opened (an existing ``segment-distill`` run with the same settings resumes). Returns the
    run folder; ``OUT/model`` is the student model folder (stage ``student``, the teacher's
    threshold), written with ``DONE`` once all ``cfg.steps`` are done.
    """
    from maskgen.data.segmentation_sets import resize_rgb
    from maskgen.engine import RunFolder, init_distributed, resume_key, sayer, training_loop

    opts = opts or RunOptions()
    ctx = init_distributed(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    cfg = with_teacher_data(cfg)
    teacher = Segmenter.from_folder(cfg.teacher, ctx.device)
    load_size = int(cfg.size) if cfg.size else 2 * teacher.cfg.size
    imgs, crop, notes = load_training_images(cfg.images, load_size, cfg.boxes, cfg.box_margin)
    s_cfg = student_unet(cfg, teacher.cfg, crop)
    if s_cfg.size != load_size:
        imgs = np.stack([resize_rgb(im, s_cfg.size) for im in imgs])
    bgs = load_backgrounds(cfg.backgrounds, crop)
    # Built before the run folder is created or opened: a failed start leaves nothing behind.
    trainer = DistillTrainer(cfg, teacher, s_cfg, imgs, crop, bgs, ctx, Path(out) / "grids")
    del teacher
    run = RunFolder(out, kind=RUN_KIND, config=resume_key(cfg), ctx=ctx)
    say = sayer(opts, ctx)
    for n in notes:
        say(f"note: {n}")
    if run.is_finished():
        say(f"{run.path}: distillation already finished (model in {run.model_dir()})")
        return run.path
    res = training_loop(trainer, run, total_steps=cfg.steps, opts=opts, desc="segment distill")
    if res.finished:
        from maskgen.engine import unwrap

        unwrap(trainer.student).save_folder(
            run.model_dir(), stage="student", trained_steps=cfg.steps, teacher=str(cfg.teacher)
        )
        run.mark_finished()
        say(f"student written to {run.model_dir()}")
    return run.path


__all__ = ["RUN_KIND", "DistillConfig", "DistillTrainer", "distill"]
