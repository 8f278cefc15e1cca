"""Generator and discriminator regularisers for small-data training of the independence prior.

- :func:`area_bounds_penalty`: a hinge that is zero while each mask's relative area lies in
  ``[a_min, a_max]`` and quadratic outside. The paper's eq. 7 pulls *every* mask to one area
  ``a`` -- the generator then learns the size of the objects and little else; the bounds only
  forbid the two trivial solutions (empty, everything) and leave the shape to the adversarial
  term.
- :func:`binarisation_loss` and :func:`ramp_weight`: a binarisation term (``alpha (1 - alpha)``
  or the per-pixel binary entropy) on a schedule -- off while the masks are still finding the
  object, ramped up later so the final masks are hard (layered GANs harden masks late).
- :func:`outside_main_component`: the share of a mask's alpha outside its largest connected
  component -- a label-free push toward one object per generated layer (the independence
  prior's premise: a provider outputs *an* instance), against masks that split their area
  into fragments.
- :func:`r1_penalty` / :func:`r1_step`: R1 gradient penalty on real images (Mescheder et al.,
  ICML 2018), lazily every ``k`` steps (StyleGAN2); the standard small-data regulariser of D.

All are pure functions of tensors; the trainers own the weights and schedules (config fields).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from maskgen.independence.losses import mask_areas


def area_bounds_penalty(
    alphas: torch.Tensor | list[torch.Tensor], a_min: float, a_max: float
) -> torch.Tensor:
    """``mean_i (relu(a_min - area_i)^2 + relu(area_i - a_max)^2)`` over masks and layers.

    ``alphas`` as :func:`~maskgen.independence.losses.mask_areas` takes them. Scalar tensor.
    """
    areas = mask_areas(alphas)
    below = torch.relu(a_min - areas)
    above = torch.relu(areas - a_max)
    return (below.pow(2) + above.pow(2)).mean()


def binarisation_loss(alpha: torch.Tensor, kind: str = "product") -> torch.Tensor:
    """Mean binarisation term of soft masks in ``[0, 1]``.

    ``kind="product"``: ``alpha (1 - alpha)`` (max 0.25 at 0.5); ``"entropy"``: the binary
    entropy in nats, scaled by ``1 / (4 ln 2)`` so both peak at 0.25 and share a weight scale.
    """
    a = alpha.float()
    if kind == "product":
        return (a * (1.0 - a)).mean()
    if kind == "entropy":
        eps = 1e-6
        a = a.clamp(eps, 1 - eps)
        ent = -(a * torch.log(a) + (1 - a) * torch.log(1 - a))
        return ent.mean() / (4.0 * float(torch.log(torch.tensor(2.0))))
    raise ValueError(f"binarisation kind {kind!r}: expected product or entropy")


def ramp_weight(step: int, total: int, final: float, start: float, end: float) -> float:
    """``final`` times a linear ramp: 0 before ``start * total``, full after ``end * total``.

    ``start == end`` is a step function at that point; fractions are of ``total`` steps.
    """
    if final == 0:
        return 0.0
    s0, s1 = start * total, end * total
    if step < s0:
        return 0.0
    if step >= s1 or s1 <= s0:
        return final
    return final * (step - s0) / (s1 - s0)


def main_component(masks: np.ndarray, grow: int = 1) -> np.ndarray:
    """The largest 8-connected component of each of ``N x H x W`` bool ``masks``
    (:func:`maskgen.core.masks.largest_component`), dilated by ``grow`` px; an empty mask keeps
    everything (nothing to choose). Bool ``N x H x W``."""
    from scipy import ndimage

    from maskgen.core.masks import largest_component

    keep = np.ones(masks.shape, bool)
    has = masks.reshape(len(masks), -1).any(1)
    for i in np.flatnonzero(has):
        keep[i] = largest_component(masks[i])
    if grow > 0 and has.any():
        plane = np.zeros((3, 3, 3), bool)
        plane[1] = True  # dilate within each mask, never across masks
        keep[has] = ndimage.binary_dilation(keep[has], structure=plane, iterations=grow)
    return keep


def outside_main_component(
    alphas: torch.Tensor, threshold: float = 0.5, grow: int = 1
) -> torch.Tensor:
    """``sum(alpha * outside) / sum(alpha)`` over ``... x H x W`` soft masks in ``[0, 1]``,
    ``outside`` = not in the mask's largest component at ``alpha > threshold`` (grown by
    ``grow`` px; :func:`main_component`). The choice of component carries no gradient and the
    denominator is a constant for it, so the gradient only lowers alpha off the main object.
    Scalar in ``[0, 1]``: 0 when all of every mask's alpha lies in its (grown) main piece;
    faint haze off the piece counts like a fragment.
    """
    flat = alphas.reshape(-1, *alphas.shape[-2:])
    with torch.no_grad():
        keep = main_component((flat > threshold).cpu().numpy(), grow)
    outside = torch.from_numpy(~keep).to(flat.device, flat.dtype)
    return (flat * outside).sum() / flat.detach().sum().clamp_min(1e-6)


def r1_penalty(d: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """``mean_n |grad_x D(x_n)|^2`` on real images (attached, for backward into D)."""
    x = real.detach().float().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).float().sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def r1_step(
    d: nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor, gamma: float, every: int
) -> float:
    """One lazy R1 step: ``every * gamma / 2 * r1_penalty`` (strength kept when lazy).

    ``d`` must be the unwrapped module (DDP does not support double backward); gradients are
    averaged over ranks by hand. Returns the unscaled penalty.
    """
    pen = r1_penalty(d, real)
    opt_d.zero_grad(set_to_none=True)
    (0.5 * gamma * every * pen).backward()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        for p in d.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad.div_(world)
    opt_d.step()
    return float(pen.detach())


__all__ = [
    "area_bounds_penalty",
    "binarisation_loss",
    "main_component",
    "outside_main_component",
    "r1_penalty",
    "r1_step",
    "ramp_weight",
]
