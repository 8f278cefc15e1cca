"""Latent refit: analysis by synthesis of each completion against the visible evidence.

q2 maps a visible crop to a posterior ``N(mu, sigma^2)`` in one pass; the decoded mode then
often stays close to the visible crop itself (the box head rarely extends the box, and stage 3
fitted q2 to that box). The refit searches the latent near the posterior for a shape that
explains the instance's evidence inside its amodal box *and* is a likely shape under the model's
shape prior ``N(0, I)`` (stage 1's), by a few Adam steps on

    L(z) = sum over known cells of w * BCE(decoder(z), v)               (evidence)
         + posterior / 2 * ||(z - mu) / sigma||^2                       (stay near q2's answer)
         + prior / 2 * ||z||^2                                          (a likely whole shape)

on the decoder's ``S x S`` amodal-box frame, where ``v`` is the instance's visible mask cropped
to the amodal box and the known cells are those where the instance is visible or where nothing
could hide it (inside the image, in no other instance's visible mask):
``w = inside * (v + max(0, 1 - v - others))``. Cells under other instances are unknown and left
to the decoder's shape prior, which is what completes them. The decoder's weights are not
changed; only ``z``.

Settings (:class:`RefitConfig`) were chosen on the built-in scenes' val edit cases
(``benchmarks/editing_bench.py --split val``); ``docs/design.md``, "Amodal-VAE", has the reasons.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskgen.core.masks import crop_masks
from maskgen.engine.config import add_config_arguments, config_from_args, param

__all__ = [
    "RefitConfig",
    "add_refit_arguments",
    "evidence_crops",
    "refit_from_args",
    "refit_info",
    "refit_latents",
]


@dataclass
class RefitConfig:
    """The latent refit of each completion (module docstring); ``refit_steps 0`` turns it off."""

    refit_steps: int = param(
        20, "Adam steps of the latent refit against the visible evidence (0: off)", low=0,
        high=1000,
    )  # fmt: skip
    refit_lr: float = param(0.1, "Adam lr of the latent refit", low=0, low_open=True, high=10)
    refit_posterior: float = param(
        0.1, "latent refit: weight of staying near q2's posterior (|(z - mu) / sigma|^2 / 2)",
        low=0,
    )  # fmt: skip
    refit_prior: float = param(
        0.5, "latent refit: weight of the shape prior N(0, I) (|z|^2 / 2)", low=0
    )

    @property
    def enabled(self) -> bool:
        return self.refit_steps > 0


def evidence_crops(
    visible_masks: np.ndarray,
    which: np.ndarray,
    boxes: np.ndarray,
    size: int,
    count_map: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The refit's targets and weights in each instance's amodal-box frame.

    Args:
        visible_masks: ``K x H x W`` bool visible masks of one image.
        which: ``(N,)`` indices of the instances refitted.
        boxes: ``N x 4`` float amodal boxes ``(x0, y0, x1, y1)`` in pixels (may leave the image).
        size: the decoder's frame side ``S``.
        count_map: optional ``H x W`` int ``visible_masks.sum(0)``.

    Returns:
        ``(v, w)``: ``N x S x S`` float32 each, the visible crop (bilinear, in ``[0, 1]``) and
        the known-cell weight (module docstring).
    """
    vm = np.asarray(visible_masks)
    which = np.asarray(which, dtype=np.intp)
    count = vm.sum(axis=0, dtype=np.int16) if count_map is None else count_map
    v, others = crop_masks(vm, boxes, size, which=which, count=count)
    one = np.ones((1, *vm.shape[1:]), np.uint8)
    inside = crop_masks(one, boxes, size, which=np.zeros(len(which), np.intp))
    w = inside * (v + np.clip(1.0 - v - others, 0.0, None))
    return v.astype(np.float32), w.astype(np.float32)


def refit_latents(
    model: torch.nn.Module,
    mu: np.ndarray,
    sigma: np.ndarray,
    v: np.ndarray,
    w: np.ndarray,
    cfg: RefitConfig,
) -> np.ndarray:
    """Minimise the module docstring's ``L(z)`` from ``z = mu`` for all instances at once.

    Args:
        model: its ``decode`` maps ``N x D`` latents to ``N x 1 x S x S`` logits (the weights
            stay fixed).
        mu, sigma: ``N x D`` float32 posterior mean and standard deviation of q2.
        v, w: ``N x S x S`` float32 targets and weights (:func:`evidence_crops`).
        cfg: steps, lr and the two weights.

    Returns:
        ``N x D`` float32 refitted latents (``mu`` when ``cfg.refit_steps`` is 0 or ``N`` is 0).
    """
    if not cfg.enabled or len(mu) == 0:
        return np.asarray(mu, np.float32)
    params = list(model.parameters())
    dev = params[0].device if params else torch.device("cpu")

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev)

    mu_t = tensor(mu)
    inv_sigma = 1.0 / tensor(sigma).clamp_min(1e-3)
    target, weight = tensor(v)[:, None], tensor(w)[:, None]
    was = [p.requires_grad for p in params]
    for p in params:  # only z is optimised
        p.requires_grad_(False)
    z = mu_t.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.refit_lr)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for _ in range(cfg.refit_steps):
                logits = model.decode(z).float()
                fit = F.binary_cross_entropy_with_logits(
                    logits, target, weight=weight, reduction="sum"
                )
                loss = (
                    fit
                    + 0.5 * cfg.refit_posterior * ((z - mu_t) * inv_sigma).pow(2).sum()
                    + 0.5 * cfg.refit_prior * z.pow(2).sum()
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        for p, r in zip(params, was, strict=True):
            p.requires_grad_(r)
    return z.detach().cpu().numpy().astype(np.float32)


def add_refit_arguments(parser: argparse.ArgumentParser, on: bool) -> None:
    """The ``--refit-*`` flags of a command that completes (from :class:`RefitConfig`).

    ``on``: whether the command refits by default (the editing commands do; ``amodal complete``
    does not: the refit multiplies its per-instance cost, see ``docs/design.md``); off means
    ``--refit-steps`` defaults to 0.
    """
    add_config_arguments(parser, RefitConfig)
    if not on:
        parser.set_defaults(refit_steps=0)
        for action in parser._actions:  # the generated help names the dataclass default
            if action.dest == "refit_steps":
                action.help = (
                    "Adam steps of the latent refit against the visible evidence (default: 0, "
                    f"off; {RefitConfig().refit_steps} is the editing commands' default)"
                )


def refit_from_args(args: argparse.Namespace) -> RefitConfig:
    """The validated :class:`RefitConfig` of parsed ``--refit-*`` flags (defaults where absent)."""
    return config_from_args(RefitConfig, args)


def refit_info(predictor: Any) -> dict[str, Any] | str:
    """What an output file records of the predictor's refit: its settings, or ``"off"``."""
    cfg = getattr(predictor, "refit", None)
    if cfg is None or not cfg.enabled:
        return "off"
    return {
        "steps": cfg.refit_steps,
        "lr": cfg.refit_lr,
        "posterior_weight": cfg.refit_posterior,
        "prior_weight": cfg.refit_prior,
        "method": "z refitted on the visible evidence in the amodal box (maskgen.amodal.refit)",
    }
