"""Flip test-time augmentation of a segmenter's soft masks (application 1; not in the paper).

``tta="flip"`` (a field of ``segment train``'s config, stored with the saved model) makes the
model's soft mask the mean of the masks of the crop and of its mirror image, flipped back. The
objects of a category are mirror-symmetric as a set and training flips crops at random, so the
two predictions estimate the same mask; their mean cancels part of the UNet's
position-dependent error. It costs a second forward pass per crop and no training. What it
changed on the photo tuning set: ``benchmarks/RESULTS.md``, section
``independence-tuning-steps``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from maskgen.errors import MaskgenError

#: Choices of ``tta`` (``segment train``'s config, model folders).
TTA_CHOICES = ("none", "flip")


def flip_average(
    alpha_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
) -> torch.Tensor:
    """``(f(x) + flip(f(flip(x)))) / 2``, flipping along the width.

    Args:
        alpha_fn: ``N x 3 x H x W`` float -> ``N x 1 x H x W`` soft masks.
        images: ``N x 3 x H x W`` float in ``[0, 1]``.

    Returns:
        ``N x 1 x H x W`` soft masks.
    """
    return 0.5 * (alpha_fn(images) + alpha_fn(images.flip(-1)).flip(-1))


def check_tta(value: str, what: str = "tta") -> str:
    """``value`` when it is one of :data:`TTA_CHOICES`; a one-line error if not."""
    if value not in TTA_CHOICES:
        raise MaskgenError(f"{what} {value!r}: expected one of {', '.join(TTA_CHOICES)}")
    return value


__all__ = ["TTA_CHOICES", "check_tta", "flip_average"]
