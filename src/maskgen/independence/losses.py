"""Losses of the independence prior (Dai et al., AAAI 2019): eq. 6-7 and appendix eq. 8.

Conventions: discriminator outputs are **logits** of any shape (``N x 1 x h x w`` patch maps from
:class:`~maskgen.independence.discriminator.SNDiscriminator`); every loss averages over all
elements. Alphas are soft masks in ``[0, 1]``.

Sign convention for eq. 6-7. The paper writes ``L_D = E[log D(x)] + E[log(1 - D(x_g))]``
(maximised by D) and ``L_G = E[log D(x_g)] + lambda * L_area``; we implement the standard
minimisation form with the **non-saturating** generator loss ``-log D(x_g)`` (Goodfellow et al.
2014), which is what TF GAN code of that time did: with logits ``l``,
``L_D = softplus(-l_real) + softplus(l_fake)`` and ``L_G = softplus(-l_fake) + lambda * L_area``.
The hinge loss (SN-GAN's own choice) is available as an alternative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_areas(
    alphas: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """Relative mask areas ``||m_i||_1 / A``.

    Args:
        alphas: ``N x L x 1 x H x W`` tensor, or a list of ``L`` tensors ``N x 1 x H x W``
            (one per provider/layer), values in ``[0, 1]``. A single ``N x 1 x H x W`` tensor is
            treated as ``L = 1``.

    Returns:
        ``N x L`` float: each layer's mean alpha over its ``A = H * W`` pixels.
    """
    if isinstance(alphas, (list, tuple)):
        alphas = torch.stack(list(alphas), dim=1)
    if alphas.dim() == 4:
        alphas = alphas[:, None]
    if alphas.dim() != 5:
        raise ValueError(
            f"alphas must be N x L x 1 x H x W or N x 1 x H x W, got {tuple(alphas.shape)}"
        )
    return alphas.flatten(2).mean(dim=2)


def area_penalty(
    alphas: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...], a: float
) -> torch.Tensor:
    """Mask-area penalty, paper eq. 7: ``L_area = E_m[(1/N) sum_i (||m_i||_1 / A - a)^2]``.

    ``N`` in the paper is the number of layers (providers); the expectation is over the batch.
    Only trainable providers' alphas should be passed (application 1: the foreground's alpha
    only -- the background's alpha is constant 1).

    Args:
        alphas: see :func:`mask_areas` (``N x L x 1 x H x W`` or list of ``N x 1 x H x W``).
        a: the target relative area (paper Tables 3-4: 0.25, or 0.1 for the crowd image).

    Returns:
        scalar tensor.
    """
    return ((mask_areas(alphas) - a) ** 2).mean()


def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss of eq. 6 in minimisation form: ``-log D(x) - log(1 - D(x_g))``."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator adversarial loss ``-log D(x_g)`` (adversarial part of eq. 7)."""
    return F.softplus(-fake_logits).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss (SN-GAN): ``relu(1 - l_real) + relu(1 + l_fake)``."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: ``-l_fake``."""
    return -fake_logits.mean()


ADVERSARIAL_LOSSES = {
    "nonsaturating": (d_loss_nonsaturating, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_hinge),
}


def smooth_l1_distillation(x: torch.Tensor) -> torch.Tensor:
    """Appendix eq. 8, element-wise: ``4 x^2`` if ``|x| < 0.25`` else ``|x|``.

    The two pieces meet at ``|x| = 0.25`` (both 0.25), so the loss is continuous; the slope jumps
    from 2 to 1 there. Returns a tensor of ``x``'s shape (not reduced).
    """
    ax = x.abs()
    return torch.where(ax < 0.25, 4.0 * x * x, ax)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of :func:`smooth_l1_distillation` over ``student - teacher`` (soft masks, any shape)."""
    return smooth_l1_distillation(student - teacher).mean()


__all__ = [
    "ADVERSARIAL_LOSSES",
    "area_penalty",
    "d_loss_hinge",
    "d_loss_nonsaturating",
    "distillation_loss",
    "g_loss_hinge",
    "g_loss_nonsaturating",
    "mask_areas",
    "smooth_l1_distillation",
]
