"""The learned inpainting network of supplementary §3.3: a small gated-convolution encoder-decoder.

DeepFill v2 (Yu et al., ICCV 2019; the paper's reference [4]) fills holes with *gated*
convolutions, ``out = act(conv_f(x)) * sigmoid(conv_g(x))``, so the network learns per pixel and
channel how much of a feature comes from valid pixels. :class:`GatedInpaintNet` is its coarse
network made small for a CPU: a stride-2 encoder to 1/4 resolution, dilated gated convolutions
(rates 2, 4, 8) in the middle for a wide receptive field, and a nearest-upsampling decoder.

Coarse-to-fine as in DeepFill, but the coarse stage is fixed: OpenCV's Telea fill of the hole
(other unknown pixels get a cheap pyramid fill; see
:func:`maskgen.inpainting.samplers.coarse_fill`), and the gated network
predicts a residual on it (last layer zero-initialised, so an untrained network returns the Telea
fill). Reason: a learned coarse network needs far more steps than a 20-minute CPU budget allows;
refining the classical fill makes every step count towards beating it.

Deviations from DeepFill v2, with the reason:

- one stage (no refinement network, no contextual attention) and ``width`` 16 by default instead
  of 48: the default must train in <= 20 CPU minutes (``--width 48`` restores DeepFill's base);
- no SN-PatchGAN: the loss is L1 only (:mod:`maskgen.inpainting.training`), which gives smoother
  fills but is stable and cheap, and the benchmark metric is a mean absolute error.

Two networks are trained (§3.3): the **background** net and the **instance** net. Both are this
class; they differ in their input channels (see :func:`input_channels`). Both live in one model
folder, in one :class:`InpaintModel` (state-dict prefixes ``background.`` and ``instance.``).

Tensor conventions: images ``B x 3 x H x W`` float in ``[-1, 1]``; masks ``B x 1 x H x W`` float
``{0, 1}``; ``H`` and ``W`` multiples of 4.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

DILATIONS = (2, 4, 8)  # the dilated middle of DeepFill v2's coarse network (it uses 2, 4, 8, 16)


@dataclasses.dataclass
class InpaintNetConfig:
    """Architecture of both networks (stored in the model folder's ``config.json``).

    Attributes:
        width: channels at full resolution (``2 x`` at 1/2, ``4 x`` at 1/4 resolution).
        label_dim: channels of the class-label plane fed to the instance net (§3.3: "we fill the
            holes with the corresponding class label").
        labels: the category ids seen in training; id ``labels[i]`` has embedding ``i + 1``,
            embedding ``0`` stands for an unknown category.
        crop_size: side of the background net's input (px; a window is resized to fit).
        instance_size: side of the instance net's input (px; an instance box is resized to it).
    """

    width: int = 16
    label_dim: int = 4
    labels: list[int] = dataclasses.field(default_factory=list)
    crop_size: int = 96
    instance_size: int = 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InpaintNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def input_channels(kind: str, label_dim: int) -> int:
    """Input channels of one network.

    background: the coarse (Telea-filled) RGB (3), ``given`` mask (1), ``hole`` mask (1);
    instance: the same plus the instance's amodal mask (1) and the label plane (``label_dim``).
    """
    return 5 if kind == "background" else 6 + label_dim


class GatedConv(nn.Module):
    """DeepFill v2's gated convolution: ``ELU(conv_f(x)) * sigmoid(conv_g(x))``.

    One convolution with ``2 * out_ch`` outputs, split into feature and gate halves.
    """

    def __init__(
        self, in_ch: int, out_ch: int, k: int = 3, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        pad = dilation * (k - 1) // 2
        self.conv = nn.Conv2d(in_ch, 2 * out_ch, k, stride=stride, padding=pad, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, gate = self.conv(x).chunk(2, dim=1)
        return F.elu(feat) * torch.sigmoid(gate)


class GatedInpaintNet(nn.Module):
    """One inpainting network (background or instance), see the module docstring.

    Args:
        in_ch: input channels (:func:`input_channels`).
        width: channels at full resolution.
    """

    def __init__(self, in_ch: int, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            GatedConv(in_ch, w, 5),
            GatedConv(w, 2 * w, 3, stride=2),
            GatedConv(2 * w, 2 * w, 3),
            GatedConv(2 * w, 4 * w, 3, stride=2),
            GatedConv(4 * w, 4 * w, 3),
        )
        self.middle = nn.Sequential(
            *[GatedConv(4 * w, 4 * w, 3, dilation=d) for d in DILATIONS],
            GatedConv(4 * w, 4 * w, 3),
        )
        self.up1 = GatedConv(4 * w, 2 * w, 3)
        self.dec1 = GatedConv(2 * w, 2 * w, 3)
        self.up2 = GatedConv(2 * w, w, 3)
        self.dec2 = GatedConv(w, w // 2 if w >= 2 else 1, 3)
        self.to_rgb = nn.Conv2d(w // 2 if w >= 2 else 1, 3, 3, padding=1)
        nn.init.zeros_(self.to_rgb.weight)  # start as the coarse fill (zero residual)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x in_ch x H x W`` -> ``B x 3 x H x W`` residual RGB (``H, W`` multiples of 4)."""
        h = self.middle(self.encoder(x))
        h = self.dec1(self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = self.dec2(self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.to_rgb(h)


class InpaintModel(nn.Module):
    """Both networks of §3.3 and the class-label embedding of the instance net."""

    def __init__(self, cfg: InpaintNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.background = GatedInpaintNet(input_channels("background", cfg.label_dim), cfg.width)
        self.instance = GatedInpaintNet(input_channels("instance", cfg.label_dim), cfg.width)
        self.label_embedding = nn.Embedding(len(cfg.labels) + 1, cfg.label_dim)

    def label_index(self, category_id: int) -> int:
        """Embedding row of a category id (0 for a category not seen in training)."""
        try:
            return self.cfg.labels.index(int(category_id)) + 1
        except ValueError:
            return 0

    def residual_background(
        self, coarse: torch.Tensor, given: torch.Tensor, hole: torch.Tensor
    ) -> torch.Tensor:
        """Background net: the correction ``B x 3 x H x W`` to add to ``coarse``.

        Args:
            coarse: ``B x 3 x H x W`` in ``[-1, 1]``: the image on ``given`` pixels, the coarse
                fill elsewhere.
            given: ``B x 1 x H x W`` pixels whose content is known (background, outside the hole).
            hole: ``B x 1 x H x W`` pixels to fill.
        """
        return self.background(torch.cat([coarse, given, hole], dim=1))

    def residual_instance(
        self,
        coarse: torch.Tensor,
        given: torch.Tensor,
        hole: torch.Tensor,
        amodal: torch.Tensor,
        label: torch.Tensor,
    ) -> torch.Tensor:
        """Instance net: the correction ``B x 3 x H x W`` to add to ``coarse``.

        Args:
            coarse, given, hole: as :meth:`residual_background` (``given`` = the instance's
                visible pixels outside the hole).
            amodal: ``B x 1 x H x W`` the instance's full mask.
            label: ``(B,)`` int64 embedding rows (:meth:`label_index`); the embedding fills the
                hole's label plane (§3.3).
        """
        plane = self.label_embedding(label)[:, :, None, None] * hole
        return self.instance(torch.cat([coarse, given, hole, amodal, plane], dim=1))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
