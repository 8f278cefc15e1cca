"""SN-GAN discriminator for the independence prior (both applications).

Paper (Dai et al., AAAI 2019), "Experimental Settings" and appendix Tables 1-2: a plain stack of
3x3 convolutions with leaky ReLU and spectral normalisation (Miyato et al. 2018), ending in a
1x1 convolution to one channel. The last layer keeps its spatial extent, so the output is a
*map* of real/fake scores (8x8 for a 128x128 input with four stride-2 layers), i.e. a
patch discriminator; the loss averages over the map.

Output convention: the module returns **logits** ``N x 1 x h x w``. The paper's last layer is
"lReLU + sigmoid"; we drop the leaky ReLU before the sigmoid (it only bends negative logits) and
leave the sigmoid to the loss (``binary_cross_entropy_with_logits`` / ``softplus``), which is the
same objective computed stably. ``torch.sigmoid(D(x))`` gives the paper's probabilities.

Input convention: images ``N x C x H x W`` float in ``[0, 1]``; the module maps them to
``[-1, 1]`` itself (``2x - 1``), so callers never rescale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer: ``kernel x kernel`` conv to ``channels``, given ``stride``, padding k//2."""

    channels: int
    kernel: int = 3
    stride: int = 2


def _specs(rows: list[tuple[int, int, int]]) -> tuple[ConvSpec, ...]:
    return tuple(ConvSpec(c, k, s) for c, k, s in rows)


#: Named layer stacks. The final 1x1 -> 1 conv is appended by the module and not listed.
#: ``app1-paper``: Table 1 (application 1, 128x128 input). ``app2-paper``: Table 2 (application 2,
#: 64x64 input). The ``-cpu`` presets halve/quarter the widths for this project's CPU budgets.
DISCRIMINATOR_PRESETS: dict[str, tuple[ConvSpec, ...]] = {
    "app1-paper": _specs([(64, 3, 2), (128, 3, 2), (256, 3, 2), (512, 3, 2), (256, 3, 1)]),
    "app2-paper": _specs([(64, 3, 2), (128, 3, 2), (256, 3, 2), (512, 3, 2), (1024, 3, 1)]),
    "app1-cpu": _specs([(32, 3, 2), (64, 3, 2), (128, 3, 2), (128, 3, 2), (128, 3, 1)]),
    "app2-cpu": _specs([(32, 3, 2), (64, 3, 2), (128, 3, 2), (256, 3, 2), (256, 3, 1)]),
    "app1-small": _specs([(16, 3, 2), (32, 3, 2), (64, 3, 2), (64, 3, 2), (64, 3, 1)]),
    "tiny": _specs([(8, 3, 2), (16, 3, 2), (16, 3, 1)]),
}


class SNDiscriminator(nn.Module):
    """Spectrally normalised conv discriminator built from a list of :class:`ConvSpec`.

    Args:
        specs: the conv layers (each followed by leaky ReLU), or a preset name from
            :data:`DISCRIMINATOR_PRESETS`.
        in_channels: input channels (3 for RGB composites).
        negative_slope: leaky ReLU slope (0.2; the paper does not state it, SN-GAN uses 0.1-0.2).
        spectral: spectral normalisation on every conv (paper: yes); False for ablations.

    Forward:
        ``x``: ``N x C x H x W`` float in ``[0, 1]``. Returns logits ``N x 1 x h x w`` where
        ``h = H / prod(strides)`` (rounded up).
    """

    def __init__(
        self,
        specs: str | list[ConvSpec] | tuple[ConvSpec, ...] = "app1-cpu",
        in_channels: int = 3,
        negative_slope: float = 0.2,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(specs, str):
            if specs not in DISCRIMINATOR_PRESETS:
                raise ValueError(
                    f"unknown discriminator preset {specs!r}; "
                    f"choose from {', '.join(DISCRIMINATOR_PRESETS)}"
                )
            specs = DISCRIMINATOR_PRESETS[specs]
        self.specs = tuple(specs)
        layers: list[nn.Module] = []
        c = in_channels
        for s in self.specs:
            layers.append(
                spectral_norm(nn.Conv2d(c, s.channels, s.kernel, s.stride, s.kernel // 2))
            )
            layers.append(nn.LeakyReLU(negative_slope, inplace=True))
            c = s.channels
        last = nn.Conv2d(c, 1, 1, 1, 0)
        layers.append(spectral_norm(last) if spectral else last)
        self.net = nn.Sequential(*layers)

    def config(self) -> dict:
        """Plain-dict description (for config.json)."""
        return {"specs": [asdict(s) for s in self.specs]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


def receptive_field(specs: tuple[ConvSpec, ...] | list[ConvSpec]) -> int:
    """Side in input px of the window one output logit sees (the final 1x1 conv adds none)."""
    field, jump = 1, 1
    for s in specs:
        field += (s.kernel - 1) * jump
        jump *= s.stride
    return field


def cover_patch(specs: tuple[ConvSpec, ...], size: int) -> tuple[ConvSpec, ...]:
    """``specs`` with stride-2 layers (3x3, the width of the layer before) inserted before the
    last layer until one output sees at least ``size - 1`` px: a *global* discriminator for a
    ``size`` px input, as the paper's Table 2 stack is at 64x64 (field 63). Why: a patch
    discriminator whose window is smaller than an object judges its parts, not its outline.
    """
    out = list(specs)
    while receptive_field(out) < size - 1 and len(out) < 32:
        width = out[-2].channels if len(out) > 1 else out[-1].channels
        out.insert(len(out) - 1, ConvSpec(width, 3, 2))
    return tuple(out)


def specs_from_config(rows: list[dict]) -> tuple[ConvSpec, ...]:
    """Inverse of :meth:`SNDiscriminator.config` ``["specs"]``."""
    return tuple(ConvSpec(**r) for r in rows)


__all__ = [
    "DISCRIMINATOR_PRESETS",
    "ConvSpec",
    "SNDiscriminator",
    "cover_patch",
    "receptive_field",
    "specs_from_config",
]
