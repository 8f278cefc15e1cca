"""Differentiable augmentation of the discriminator's inputs (small-data GAN training).

DiffAugment (Zhao et al., NeurIPS 2020, "Differentiable Augmentation for Data-Efficient GAN
Training") and ADA (Karras et al., NeurIPS 2020): every image D sees -- real crops *and*
generated composites alike -- goes through the same family of random, differentiable
transforms, so D cannot memorise a few hundred real crops and G still gets gradients through
the transform. Because real and fake are transformed the same way *in kind*, the transforms do
not "leak" into the generator's output distribution (G is never rewarded for producing
augmented-looking images); only transforms that are applied to the finished composite are used
(never to a layer before compositing), so nothing leaks into the composite either.

Policies (names joined by commas, as DiffAugment's ``policy`` string):

- ``color``: random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per image;
- ``translation``: integer shift by up to 1/8 of the side, zero padding;
- ``cutout``: one zeroed square of half the side at a random place.

:class:`AugmentedDiscriminator` wraps a discriminator so the shared GAN phases
(:func:`~maskgen.independence.gan.discriminator_step` / ``generator_step``) augment both inputs
without knowing about it. Randomness comes from one ``torch.Generator`` (resumable).
"""

from __future__ import annotations

import torch
from torch import nn

from maskgen.errors import MaskgenError

#: The transforms a policy may name, in the order they are applied.
AUGMENT_OPS = ("color", "translation", "cutout")


def parse_policy(policy: str, flag: str = "--augment") -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``""``/``"none"`` -> ``()``.

    Raises:
        MaskgenError: an unknown or repeated name (one line naming ``flag``).
    """
    if policy.strip().lower() in ("", "none", "off"):
        return ()
    names = tuple(p.strip() for p in policy.split(","))
    bad = [n for n in names if n not in AUGMENT_OPS]
    if bad or len(set(names)) != len(names):
        why = f"unknown transform {bad[0]!r}" if bad else "a transform is named twice"
        raise MaskgenError(
            f"{flag} {policy}: {why} (choose from {', '.join(AUGMENT_OPS)}, comma-separated, "
            "or none)"
        )
    return tuple(n for n in AUGMENT_OPS if n in names)


def _rand(n: int, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=g).to(like.device, like.dtype)


def color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness, saturation, contrast (DiffAugment's ``color``)."""
    n = x.shape[0]
    x = x + (_rand(n, g, x) - 0.5)
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (_rand(n, g, x) * 2) + m
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - m) * (_rand(n, g, x) + 0.5) + m


def translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by an integer offset of up to ``ratio`` of its side (zero padding)."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (n,), generator=g).to(x.device)
    tx = torch.randint(-sx, sx + 1, (n,), generator=g).to(x.device)
    yy = torch.arange(h, device=x.device)[None, :, None] - ty[:, None, None]  # n x h x 1
    xx = torch.arange(w, device=x.device)[None, None, :] - tx[:, None, None]  # n x 1 x w
    valid = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)).to(x.dtype)  # n x h x w
    yy, xx = yy.clamp(0, h - 1), xx.clamp(0, w - 1)
    idx = (yy * w + xx).flatten(1)  # n x (h*w)
    out = x.flatten(2).gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))
    return out.view_as(x) * valid[:, None]


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` of the side per image (DiffAugment's ``cutout``)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n,), generator=g).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n,), generator=g).to(x.device)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = (
        ((yy - cy[:, None, None]).abs() <= ch // 2) & ((xx - cx[:, None, None]).abs() <= cw // 2)
    ).to(x.dtype)
    return x * (1 - inside[:, None])


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    x: torch.Tensor, policy: tuple[str, ...], g: torch.Generator, p: float = 1.0
) -> torch.Tensor:
    """Apply the ``policy`` transforms to ``N x 3 x H x W`` images (differentiable in ``x``).

    ``p`` < 1 augments each image with probability ``p`` (ADA's fixed-``p`` form); the choice
    is drawn per image and transform.
    """
    for name in policy:
        y = _OPS[name](x, g)
        if p < 1.0:
            keep = (torch.rand(x.shape[0], generator=g) < p).to(x.device)[:, None, None, None]
            y = torch.where(keep, y, x)
        x = y
    return x


class AugmentedDiscriminator(nn.Module):
    """``D(augment(x))``: wraps a discriminator so both GAN phases augment real and fake alike.

    Args:
        d: the discriminator (possibly DDP-wrapped); its parameters are this module's.
        policy: transforms (:func:`parse_policy`).
        g: the generator the random draws come from (register it as resumable).
        p: per-image probability of each transform.
    """

    def __init__(
        self, d: nn.Module, policy: tuple[str, ...], g: torch.Generator, p: float = 1.0
    ) -> None:
        super().__init__()
        self.d, self.policy, self.g, self.p = d, policy, g, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.policy and self.p > 0:
            x = diff_augment(x, self.policy, self.g, self.p)
        return self.d(x)


def shift_layer(
    layer: torch.Tensor, g: torch.Generator, max_shift: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random relative shift of a foreground layer against its background.

    ``layer`` is ``N x C x H x W`` (RGB + alpha); each sample is moved by an integer offset of
    up to ``max_shift`` of the side, what leaves the frame is dropped and the uncovered strip
    gets alpha 0 (the background shows). Returns the shifted layer and the ``N x 2`` offsets.
    Used in the application-1 composite (the layered-GAN "perturbation" of Bielski & Favaro,
    NeurIPS 2019: a mask that keeps background pixels is exposed when the background moves).
    """
    if max_shift <= 0:
        return layer, torch.zeros(layer.shape[0], 2, dtype=torch.long)
    h = layer.shape[-1]
    s = max(1, int(round(h * max_shift)))
    ty = torch.randint(-s, s + 1, (layer.shape[0],), generator=g)
    tx = torch.randint(-s, s + 1, (layer.shape[0],), generator=g)
    n, c, hh, ww = layer.shape
    yy = torch.arange(hh)[None, :, None] - ty[:, None, None]
    xx = torch.arange(ww)[None, None, :] - tx[:, None, None]
    valid = ((yy >= 0) & (yy < hh) & (xx >= 0) & (xx < ww)).to(layer.device, layer.dtype)
    idx = (yy.clamp(0, hh - 1) * ww + xx.clamp(0, ww - 1)).flatten(1).to(layer.device)
    out = layer.flatten(2).gather(2, idx[:, None, :].expand(-1, c, -1)).view_as(layer)
    return out * valid[:, None], torch.stack([ty, tx], 1)


__all__ = [
    "AUGMENT_OPS",
    "AugmentedDiscriminator",
    "color",
    "cutout",
    "diff_augment",
    "parse_policy",
    "shift_layer",
    "translation",
]
