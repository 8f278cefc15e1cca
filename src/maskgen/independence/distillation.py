"""Data distillation for application 1 (paper appendix "Data Distillation in the First
Application"; Radosavovic et al. 2018).

A student UNet learns the teacher's (the adversarially trained provider's) soft masks on *new*
composites: each training image's foreground is cut out with the teacher's soft mask ``m`` and
pasted on a random real background, ``x' = img * m + bg * (1 - m)`` (the shared compositing
code), with random horizontal flips of image and mask together; the label is ``m`` itself. The
per-pixel loss is the paper's smooth-L1 (eq. 8): ``4 x^2`` if ``|x| < 0.25`` else ``|x|`` on
``student - m``.

:func:`distill` is one explicit function whose keyword arguments are the config; it resumes
from its run folder (kind ``"segment-distill"``). The student is saved as a ``segment-unet``
model folder in ``OUT/model`` (same architecture as the teacher unless overridden).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.errors import MaskgenError
from maskgen.independence.composition import compose
from maskgen.independence.losses import distillation_loss
from maskgen.independence.predict import MODEL_KIND, load_segmenter, predict_soft_tensor
from maskgen.independence.providers import (
    BackgroundPatchProvider,
    ForegroundUNetProvider,
    UNetConfig,
)

RUN_KIND = "segment-distill"


def _teacher_config(teacher: str) -> dict[str, Any]:
    """The teacher's training config (from its run folder), or {} for a bare model folder."""
    from maskgen.core.io import read_json

    cfg_path = Path(teacher) / "config.json"
    if not cfg_path.is_file():
        return {}
    header = read_json(cfg_path)
    if isinstance(header, dict) and header.get("format") == "maskgen-run":
        if header.get("kind") != "segment":
            raise MaskgenError(f"{teacher} is a {header.get('kind')} run, not a segment run")
        return dict(header.get("config") or {})
    return {}


def distill(
    *,
    teacher: str,
    out: str,
    images: str | None = None,
    backgrounds: str | None = None,
    boxes: str | None = None,
    steps: int = 600,
    batch_size: int = 32,
    lr: float = 1e-3,
    unet_widths: list[int] | None = None,
    size: int | None = None,
    original_fraction: float = 0.0,
    seed: int = 0,
    device: str = "cpu",
    log_every: int = 50,
    ckpt_every: int = 250,
    threads: int | None = None,
    stop_after: int | None = None,
    quiet: bool = False,
) -> Path:
    """Train a student on the teacher's masks over new composites (appendix, eq. 8).

    Args:
        teacher: the teacher's run folder (``segment train --out``) or model folder.
        out: the student's run folder.
        images, backgrounds, boxes: training data; default: the teacher run's.
        steps, batch_size, lr: Adam training of the student (betas 0.9/0.999).
        unet_widths: student widths (default: the teacher's, one more level per doubling).
        size: student input size (default: the images' native crop side, at most twice the
            teacher's size; the teacher's masks are upsampled bilinearly to it).
        original_fraction: share of each batch shown as the original image instead of a new
            composite (0 = the paper's recipe).
        seed, device, log_every, ckpt_every, threads, stop_after, quiet: as
            :func:`~maskgen.independence.segmentation.train_segmentation`.

    Returns:
        the run folder; ``OUT/model`` is the student model folder.
    """
    from maskgen.engine import (
        RunFolder,
        capture_rng_state,
        init_distributed,
        load_state_dict_strict,
        progress,
        restore_rng_state,
        save_image_grid,
        save_model_folder,
        seed_everything,
        unwrap,
        wrap_ddp,
    )
    from maskgen.independence.segmentation import load_backgrounds, load_training_images

    tcfg = _teacher_config(teacher)
    images = images or tcfg.get("images")
    backgrounds = backgrounds or tcfg.get("backgrounds")
    boxes = boxes or tcfg.get("boxes")
    if not images or not backgrounds:
        raise MaskgenError(f"{teacher}: not a segment run folder; pass --images and --backgrounds")
    if threads:
        torch.set_num_threads(threads)
    ctx = init_distributed(device)
    dev = ctx.device
    say = (lambda *a: None) if quiet or not ctx.is_main else (lambda *a: print(*a, file=sys.stderr))
    t_model, t_header = load_segmenter(teacher, dev)
    tc = t_model.cfg
    # Student size: --size, else the images' native crop side capped at twice the teacher's
    # (distilling at a higher resolution than the teacher recovers boundary detail: the
    # composites' boundaries are exact at any resolution).
    from maskgen.data.segmentation_sets import resize_rgb

    load_size = int(size) if size else 2 * tc.size
    imgs, crop, notes = load_training_images(
        images, load_size, boxes, float(tcfg.get("box_margin", 0.1))
    )
    s_size = int(size) if size else max(tc.size, min(crop, 2 * tc.size))
    widths = tuple(unet_widths) if unet_widths else tc.widths
    if not unet_widths:
        while s_size // (2 ** len(widths)) > tc.size // (2 ** len(tc.widths)):
            widths = (*widths, widths[-1])  # one more level per doubling of the size
    if s_size % (2 ** len(widths)):
        raise MaskgenError(f"--size {s_size} is not divisible by 2**{len(widths)} (UNet levels)")
    s_cfg = UNetConfig(s_size, widths, tc.last_kernel, tc.norm, tc.upsample)
    if s_size != load_size:
        imgs = np.stack([resize_rgb(im, s_size) for im in imgs])
    bgs, _ = load_backgrounds(backgrounds, crop)
    for n in notes:
        say(f"note: {n}")
    cfg = {
        "teacher": str(Path(teacher).resolve()),
        "images": str(Path(images).resolve()),
        "backgrounds": str(Path(backgrounds).resolve()),
        "boxes": str(Path(boxes).resolve()) if boxes else None,
        "unet": s_cfg.to_dict(),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "original_fraction": original_fraction,
        "seed": seed,
        "log_every": log_every,
        "ckpt_every": ckpt_every,
    }
    run = RunFolder(out, kind=RUN_KIND, config=cfg, ctx=ctx)
    if run.is_finished():
        say(f"{run.path}: distillation already finished (model in {run.model_dir()})")
        return run.path
    seed_everything(seed, ctx.rank)
    g = torch.Generator().manual_seed(seed * 1000 + 17 + ctx.rank)

    # The teacher's soft masks on every training image (its one pass over the data).
    data = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # N x 3 x S x S uint8
    with torch.no_grad():
        x = data.to(dev).float() / 255.0
        if s_size != tc.size:
            x = torch.nn.functional.interpolate(
                x, size=(tc.size, tc.size), mode="bilinear", align_corners=False, antialias=True
            )
        tmasks = predict_soft_tensor(t_model, x)
        if s_size != tc.size:
            tmasks = torch.nn.functional.interpolate(
                tmasks, size=(s_size, s_size), mode="bilinear", align_corners=False
            )
        tmasks = tmasks.clamp(0, 1).cpu()
    del t_model, x
    bg_provider = BackgroundPatchProvider(bgs, s_size, crop, device=dev)
    student = ForegroundUNetProvider(s_cfg).to(dev)
    student_t = wrap_ddp(student, ctx)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    start = 0
    state = run.load_latest_checkpoint(map_location=dev)
    if state is not None:
        load_state_dict_strict(student, state["student"], run.loaded_checkpoint)
        opt.load_state_dict(state["opt"])
        g.set_state(state["gen"])
        restore_rng_state(state["rng"])
        start = int(state["step"])
        say(f"resuming {run.path} from step {start}")
    n = data.shape[0]
    tick: list[float] = []
    t_tick = time.monotonic()

    def checkpoint(step: int) -> None:
        run.save_checkpoint(
            step,
            {
                "step": step,
                "student": unwrap(student).state_dict(),
                "opt": opt.state_dict(),
                "gen": g.get_state(),
                "rng": capture_rng_state(),
            },
        )

    student.train()
    from maskgen.engine import check_finite

    for step in progress(range(start, steps), desc="segment distill", initial=start, ctx=ctx):
        # Phase "composite": teacher-carved foreground on a random background, flipped.
        idx = torch.randint(0, n, (batch_size,), generator=g)
        img = data[idx].to(dev).float() / 255.0
        m = tmasks[idx].to(dev)
        bg, _ = bg_provider.sample(batch_size, g)
        x = compose([(img, m)], background=bg)
        if original_fraction > 0:
            keep = (torch.rand(batch_size, generator=g) < original_fraction).to(dev)[
                :, None, None, None
            ]
            x = torch.where(keep, img, x)
        flip = (torch.rand(batch_size, generator=g) < 0.5).to(dev)[:, None, None, None]
        x = torch.where(flip, x.flip(-1), x)
        m = torch.where(flip, m.flip(-1), m)
        # Phase "student": smooth-L1 (eq. 8) to the teacher's soft mask.
        pred = student_t.alpha(x) if not hasattr(student_t, "module") else student_t.module.alpha(x)
        loss = distillation_loss(pred, m)
        check_finite(loss, step, "distillation loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick.append(float(loss.detach()))
        done = step + 1
        if done % log_every == 0 or done == steps:
            rec = {
                "loss": float(np.mean(tick)),
                "sec_per_iter": (time.monotonic() - t_tick) / len(tick),
            }
            tick, t_tick = [], time.monotonic()
            run.log(done, **rec)
            if ctx.is_main:
                grid = torch.cat(
                    [x[:8], m[:8].expand(-1, 3, -1, -1), pred[:8].detach().expand(-1, 3, -1, -1)]
                )
                save_image_grid(
                    run.path / "grids" / f"grid-{done:08d}.png", grid, nrow=min(8, batch_size)
                )
            say(f"step {done}/{steps}  loss {rec['loss']:.4f}")
        if done % ckpt_every == 0 and done < steps:
            checkpoint(done)
        if stop_after is not None and done >= stop_after and done < steps:
            checkpoint(done)
            return run.path
    save_model_folder(
        run.model_dir(),
        MODEL_KIND,
        {"unet": s_cfg.to_dict()},
        unwrap(student).state_dict(),
        extra={
            "stage": "student",
            "threshold": float(t_header.get("threshold", 0.5)),
            "trained_steps": steps,
            "teacher": str(teacher),
        },
    )
    checkpoint(steps)
    run.mark_finished()
    say(f"student written to {run.model_dir()}")
    return run.path


__all__ = ["RUN_KIND", "distill"]
