"""Named GAN phases shared by both applications of the independence prior.

Paper "Adversarial Training with Mask Area Penalty" (eq. 6-7) and "Experimental Settings":
an SN-GAN discriminator on real vs composite images; the generator (providers + layout +
composition) minimises the adversarial loss plus ``lambda * L_area``. Adam with
``betas=(0.5, 0.999)``, lr 2e-4 (D) and 4e-4 (G) in the paper -- the optimisers are the caller's.

One training iteration, edm2 style, is two named phases; a trainer's ``step()`` for the
engine's one loop (:func:`maskgen.engine.training_loop`, ``docs/design.md``, "The engine
contract") is made of them, e.g. :class:`maskgen.independence.cluster.ClusterTrainer`::

    fake, alphas = generate(batch)                       # providers -> layout -> compose
    d = discriminator_step(D, opt_d, real, fake)         # uses fake.detach()
    g = generator_step(D, opt_g, fake, alphas, area_weight=lam, area_target=a)
    return {**d, **g}                                    # the loop logs and NaN-checks them

and the trainer's ``on_log`` keeps the per-tick metrics for :func:`detect_collapse`.

Stability helpers used by the applications (all optional, all off by default here):
:func:`add_instance_noise` (Gaussian noise on D's inputs, real and fake alike, annealed to 0),
:func:`area_weight_at` (linear warm-up of ``lambda``), :func:`ema_update` (EMA of G's weights).
Images are ``N x 3 x H x W`` floats in ``[0, 1]``; alphas as in
:func:`maskgen.independence.losses.mask_areas`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from maskgen.errors import NonFiniteLossError
from maskgen.independence.losses import ADVERSARIAL_LOSSES, area_penalty, mask_areas


def _check_finite(loss: torch.Tensor, step: int | None, what: str) -> None:
    if step is None:
        return
    try:
        from maskgen.engine import check_finite
    except ImportError:  # engine not importable: same check, plain message
        if not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteLossError(f"{what} became {loss.item()} at step {step}") from None
        return
    check_finite(loss, step, what)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Temporarily stop gradients into ``module``'s parameters (D during the G phase)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


def add_instance_noise(
    images: torch.Tensor, std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Instance noise (Sonderby et al. 2017): ``images + N(0, std^2)``; no-op when ``std <= 0``.

    Apply to real *and* fake inputs of D alike; anneal ``std`` to 0 during training.
    """
    if std <= 0:
        return images
    noise = torch.randn(
        images.shape, generator=generator, device="cpu" if generator is not None else images.device
    )
    return images + std * noise.to(device=images.device, dtype=images.dtype)


def area_weight_at(step: int, final: float, warmup_steps: int) -> float:
    """Linear warm-up of the area weight: ``final * min(1, step / warmup_steps)``.

    A full-strength ``lambda = 1000`` from step 0 drives the untrained mask to area ``a`` before
    the discriminator has learned anything, so the mask settles on a blob; warming up lets the
    adversarial term shape it first. ``warmup_steps <= 0`` gives ``final`` throughout (the paper).
    """
    if warmup_steps <= 0:
        return float(final)
    return float(final) * min(1.0, step / warmup_steps)


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers (BN stats) copied."""
    for pe, p in zip(ema_model.parameters(), model.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema_model.buffers(), model.buffers(), strict=True):
        be.copy_(b)


def discriminator_step(
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    loss: str = "nonsaturating",
    instance_noise: float = 0.0,
    step: int | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """Phase "D": one optimiser step of the discriminator on real vs (detached) fake images.

    Args:
        discriminator: logits-producing D (e.g. :class:`SNDiscriminator`).
        opt_d: its optimiser.
        real: ``N x 3 x H x W`` real images in ``[0, 1]``.
        fake: ``N x 3 x H x W`` composites (detached here; the G graph is untouched).
        loss: ``"nonsaturating"`` (paper eq. 6) or ``"hinge"``.
        instance_noise: std of Gaussian noise added to both D inputs (0 = off).
        step: when given, a non-finite loss raises
            :class:`~maskgen.errors.NonFiniteLossError` before the optimiser steps.
        autocast: a context manager for mixed precision (e.g. ``engine.autocast_context``).

    Returns:
        ``{"loss_d", "d_real", "d_fake"}``: the loss and mean ``sigmoid(D)`` on real / fake.
    """
    d_loss_fn, _ = ADVERSARIAL_LOSSES[loss]
    with autocast if autocast is not None else contextlib.nullcontext():
        lr_ = discriminator(add_instance_noise(real, instance_noise))
        lf = discriminator(add_instance_noise(fake.detach(), instance_noise))
        ld = d_loss_fn(lr_.float(), lf.float())
    _check_finite(ld, step, "discriminator loss")
    opt_d.zero_grad(set_to_none=True)
    ld.backward()
    opt_d.step()
    return {
        "loss_d": float(ld.detach()),
        "d_real": float(torch.sigmoid(lr_.detach().float()).mean()),
        "d_fake": float(torch.sigmoid(lf.detach().float()).mean()),
    }


def generator_adversarial_loss(
    discriminator: nn.Module,
    fake: torch.Tensor,
    loss: str = "nonsaturating",
    instance_noise: float = 0.0,
) -> torch.Tensor:
    """The generator's adversarial loss of ``fake`` (attached to G's graph) under a frozen
    ``discriminator``: a scalar for a second discriminator's term, added as ``extra_loss``."""
    _, g_loss_fn = ADVERSARIAL_LOSSES[loss]
    with _frozen(discriminator):
        return g_loss_fn(discriminator(add_instance_noise(fake, instance_noise)).float())


def generator_step(
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    fake: torch.Tensor,
    alphas: torch.Tensor | Sequence[torch.Tensor],
    *,
    area_weight: float,
    area_target: float,
    loss: str = "nonsaturating",
    instance_noise: float = 0.0,
    extra_loss: torch.Tensor | None = None,
    step: int | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """Phase "G": one optimiser step of the generator on ``adversarial + lambda * L_area`` (eq. 7).

    D's parameters get no gradients in this phase.

    Args:
        discriminator: D.
        opt_g: optimiser over the generator's (providers') parameters.
        fake: ``N x 3 x H x W`` composites, still attached to the generator's graph.
        alphas: the trainable providers' soft masks entering the area penalty:
            ``N x L x 1 x H x W`` or a list of ``N x 1 x H x W`` (see ``losses.mask_areas``).
        area_weight: ``lambda`` (paper Tables 3-4: 1000).
        area_target: ``a`` (0.25; 0.1 for the crowd image).
        loss: ``"nonsaturating"`` or ``"hinge"``.
        instance_noise: std of Gaussian noise on D's input (same as the D phase).
        extra_loss: a scalar added to the generator loss (application 2's InfoGAN term, already
            weighted by ``beta``).
        step: when given, a non-finite loss raises ``NonFiniteLossError`` before stepping.
        autocast: mixed-precision context manager, optional.

    Returns:
        ``{"loss_g", "loss_adv", "loss_area", "mask_area", "d_fake_g"}`` floats (``mask_area`` is
        the mean relative area of the alphas, ``d_fake_g`` mean ``sigmoid(D(fake))``), plus
        ``"loss_extra"`` when ``extra_loss`` is given.
    """
    _, g_loss_fn = ADVERSARIAL_LOSSES[loss]
    with _frozen(discriminator), autocast if autocast is not None else contextlib.nullcontext():
        lf = discriminator(add_instance_noise(fake, instance_noise)).float()
        adv = g_loss_fn(lf)
        area = area_penalty(alphas, area_target)
        total = adv + area_weight * area
        if extra_loss is not None:
            total = total + extra_loss
        _check_finite(total, step, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        total.backward()
    opt_g.step()
    out = {
        "loss_g": float(total.detach()),
        "loss_adv": float(adv.detach()),
        "loss_area": float(area.detach()),
        "mask_area": float(
            mask_areas(
                [a.detach() for a in alphas]
                if isinstance(alphas, (list, tuple))
                else alphas.detach()
            ).mean()
        ),
        "d_fake_g": float(torch.sigmoid(lf.detach()).mean()),
    }
    if extra_loss is not None:
        out["loss_extra"] = float(extra_loss.detach())
    return out


#: Remedy text printed with each collapse diagnosis (also in the user docs).
REMEDIES = {
    "empty": (
        "the mask area is pinned near 0: the area penalty overwhelms the adversarial signal. "
        "Remedy: warm the area penalty up (--area-warmup), lower lambda, or raise the target "
        "area a; check that backgrounds do not contain the object class."
    ),
    "full": (
        "the mask area is pinned near 1: the generator pastes the whole image and ignores the "
        "penalty. Remedy: raise lambda (paper: 1000), lower a, or train longer so the penalty "
        "takes hold; make sure backgrounds look like the images' surroundings."
    ),
    "d_wins": (
        "the discriminator wins outright (D(real) ~ 1, D(fake) ~ 0): the generator gets no "
        "gradient. Remedy: add instance noise (--instance-noise 0.1), lower the D learning rate, "
        "use a narrower discriminator preset, or check that backgrounds and images share size, "
        "colour range and blur (D may be telling them apart by statistics, not by masks)."
    ),
}


def detect_collapse(
    history: Sequence[Mapping[str, float]],
    patience: int = 5,
    low: float = 0.02,
    high: float = 0.98,
    d_margin: float = 0.03,
) -> str | None:
    """Diagnose a collapsed GAN run from its per-tick metrics.

    Args:
        history: one mapping per logging tick, oldest first, with ``"mask_area"`` and (for the
            discriminator test) ``"d_real"`` and ``"d_fake"`` (mean ``sigmoid(D)``), as returned
            by :func:`generator_step` / :func:`discriminator_step`.
        patience: how many consecutive latest ticks must show the symptom.
        low, high: mask-area bounds for "pinned near 0 / near 1".
        d_margin: D wins outright when ``d_real > 1 - d_margin`` and ``d_fake < d_margin``.

    Returns:
        ``None`` when healthy, else one line ``"<symptom>: <remedy>"`` (see :data:`REMEDIES`).
    """
    if len(history) < patience:
        return None
    last = list(history)[-patience:]
    areas = [h.get("mask_area") for h in last]
    if all(a is not None and a < low for a in areas):
        return f"collapse: mask area < {low} for {patience} ticks; " + REMEDIES["empty"]
    if all(a is not None and a > high for a in areas):
        return f"collapse: mask area > {high} for {patience} ticks; " + REMEDIES["full"]
    if all(
        h.get("d_real") is not None
        and h.get("d_fake") is not None
        and h["d_real"] > 1 - d_margin
        and h["d_fake"] < d_margin
        for h in last
    ):
        return f"collapse: discriminator wins outright for {patience} ticks; " + REMEDIES["d_wins"]
    return None


__all__ = [
    "REMEDIES",
    "add_instance_noise",
    "area_weight_at",
    "detect_collapse",
    "discriminator_step",
    "ema_update",
    "generator_adversarial_loss",
    "generator_step",
]
