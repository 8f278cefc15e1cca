"""The networks of mask-conditioned instance synthesis (Amodal-VAE supplementary §3.4, GauGAN).

§3.4 re-renders an instance into a new full mask with GauGAN (Park et al., CVPR 2019) whose SPADE
layers take "a single-channel full mask of one instance" instead of a semantic map. Here:

- :class:`SpadeGenerator` -- an encoder over what an inpainter sees (the coarse-filled visible
  RGB, the visible mask and the new mask), a style code (:class:`StyleEncoder`, GauGAN's VAE
  encoder: ``mu``/``logvar`` from the visible pixels, a sample in training, ``mu`` at inference),
  and a decoder of :class:`SpadeResBlock` s whose normalisation is modulated by the new mask
  (§3.4) at every scale; it predicts a residual on the coarse fill (last layer zero-initialised).
- :class:`MultiscaleDiscriminator` -- GauGAN's multi-scale PatchGAN (spectral norm, leaky ReLU,
  intermediate features for feature matching), conditioned by concatenating the mask and the
  image.

Deviations from GauGAN, with the reason:

- the generator sees the instance's visible pixels (not only a noise-seeded map): a re-shape
  keeps the object where it is, so its visible pixels are the best evidence of its appearance;
- it refines a fixed coarse fill (push-pull of the visible colours, as the §3.3 inpainter
  does) instead of synthesising from scratch: a 20-CPU-minute budget allows a few thousand steps;
- additive U-Net skips from the encoder at 1/2 and full resolution (GauGAN has none), for the
  same reason;
- no spectral norm in the generator (GauGAN uses it; it costs a power iteration per layer and
  the generator is small); the discriminator keeps it;
- optional per-pixel noise (``noise``, off in GauGAN, whose only randomness is the style code):
  a one-channel Gaussian map added before the SPADE blocks at 1/2 and full resolution, with a
  per-channel strength that is a linear map of the style code (StyleGAN's noise inputs, made
  style-dependent so that a flat material gets little and a grainy one more), ``NOISE_INIT`` at
  the start; and one grey noise map added to the output with a per-pixel, per-channel gain (a
  1 x 1 conv of the last features, ``NOISE_RGB_INIT`` at the start): grain needs no detour
  through the decoder. With noise an untrained generator is the coarse fill plus faint grain.
  A refinement of a smooth fill has no other source of the fine, unpredictable detail a
  texture is made of: the style code is one vector per instance.

Tensor conventions: images ``B x 3 x S x S`` float in ``[-1, 1]``; masks ``B x 1 x S x S``
float ``{0, 1}``; ``S`` a multiple of 4.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

NOISE_INIT = 1.0  # initial strength of the noise inputs (SpadeGenerator, cfg.noise)
NOISE_RGB_INIT = 0.02  # initial gain of the output grain, [-1, 1] units (~2.5 of 255)


@dataclasses.dataclass
class SynthNetConfig:
    """Architecture (stored in the model folder's ``config.json``).

    Attributes:
        width: generator channels at full resolution (``2 x`` at 1/2, ``4 x`` at 1/4).
        style_dim: length of the style code (GauGAN: 256).
        spade_hidden: channels of the SPADE layers' shared mask convolution (GauGAN: 128).
        crop_size: side of the network's input, px (an instance window is resized to it).
        noise: per-pixel noise inputs (module docstring; off in GauGAN; off when a stored
            config predates it).
    """

    width: int = 16
    style_dim: int = 32
    spade_hidden: int = 16
    crop_size: int = 64
    noise: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Spade(nn.Module):
    """GauGAN's SPADE: parameter-free batch norm, then ``x * (1 + gamma(m)) + beta(m)`` with
    ``gamma, beta`` convolved from the mask ``m`` (here the single-channel new mask, §3.4)
    resized to ``x``'s resolution."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = F.interpolate(mask, size=x.shape[2:], mode="nearest")
        h = self.shared(m)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SpadeResBlock(nn.Module):
    """GauGAN's SPADE residual block: ``SPADE -> lrelu -> conv`` twice, a learned shortcut
    (SPADE + 1x1 conv) when the channel count changes."""

    def __init__(self, in_ch: int, out_ch: int, hidden: int) -> None:
        super().__init__()
        mid = min(in_ch, out_ch)
        self.norm0, self.conv0 = Spade(in_ch, hidden), nn.Conv2d(in_ch, mid, 3, padding=1)
        self.norm1, self.conv1 = Spade(mid, hidden), nn.Conv2d(mid, out_ch, 3, padding=1)
        self.learned = in_ch != out_ch
        if self.learned:
            self.norm_s = Spade(in_ch, hidden)
            self.conv_s = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.conv_s(self.norm_s(x, mask)) if self.learned else x
        h = self.conv0(F.leaky_relu(self.norm0(x, mask), 0.2))
        h = self.conv1(F.leaky_relu(self.norm1(h, mask), 0.2))
        return s + h


class StyleEncoder(nn.Module):
    """GauGAN's image encoder made small: strided convs over the masked visible RGB and the
    visible mask, a mean over the visible pixels, two linear heads ``mu``, ``logvar``."""

    def __init__(self, width: int, style_dim: int) -> None:
        super().__init__()
        w = width
        self.convs = nn.Sequential(
            nn.Conv2d(4, w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.mu = nn.Linear(4 * w, style_dim)
        self.logvar = nn.Linear(4 * w, style_dim)

    def forward(self, rgb: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(mu, logvar)``, each ``B x style_dim``."""
        h = self.convs(torch.cat([rgb * visible, visible], dim=1))
        m = F.interpolate(visible, size=h.shape[2:], mode="area")
        pooled = (h * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1e-3)
        return self.mu(pooled), self.logvar(pooled).clamp(-10.0, 10.0)


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


class SpadeGenerator(nn.Module):
    """The §3.4 generator (see the module docstring): encoder, style code, SPADE decoder."""

    def __init__(self, cfg: SynthNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, hid = cfg.width, cfg.spade_hidden
        self.enc0 = _conv(5, w)
        self.enc1 = _conv(w, 2 * w, stride=2)
        self.enc2 = nn.Sequential(_conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w))
        self.style = StyleEncoder(w, cfg.style_dim)
        self.style_fc = nn.Linear(cfg.style_dim, 4 * w)
        self.block2 = SpadeResBlock(4 * w, 4 * w, hid)
        self.block1 = SpadeResBlock(4 * w, 2 * w, hid)
        self.proj0 = nn.Conv2d(2 * w, w, 1)  # halve the channels before full resolution (cost)
        self.block0 = SpadeResBlock(w, w, hid)
        self.to_rgb = nn.Conv2d(w, 3, 3, padding=1)
        if cfg.noise:  # per-channel noise strength from the style code
            self.noise1 = nn.Linear(cfg.style_dim, 4 * w)
            self.noise0 = nn.Linear(cfg.style_dim, w)
            for lin in (self.noise1, self.noise0):
                nn.init.zeros_(lin.weight)
                # Not zero (StyleGAN's init): a variance-matching loss has no first-order
                # gradient at zero strength, and Adam moves a weight ~lr a step, too little to
                # leave a saddle in a few hundred steps. The zero to_rgb still starts at identity.
                nn.init.constant_(lin.bias, NOISE_INIT)
            # per-pixel grain straight into RGB: a 1x1 conv of the last features gives each
            # pixel's per-channel gain on one grey noise map (learning to route noise through
            # the decoder is too slow for a few hundred steps)
            self.noise_rgb = nn.Conv2d(w, 3, 1)
            nn.init.zeros_(self.noise_rgb.weight)
            nn.init.constant_(self.noise_rgb.bias, NOISE_RGB_INIT)
        nn.init.zeros_(self.to_rgb.weight)  # start as the coarse fill (zero residual)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(
        self,
        coarse: torch.Tensor,
        visible: torch.Tensor,
        new_mask: torch.Tensor,
        sample: bool = False,
        noise_gen: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(crop, mu, logvar)``: the re-rendered crop ``B x 3 x S x S`` in ``[-1, 1]`` and the
        style code's ``B x style_dim`` mean and log-variance.

        Args:
            coarse: the crop's visible pixels, the rest filled by push-pull from them.
            visible: the instance's visible pixels in the crop.
            new_mask: the new full mask (modulates every SPADE layer, §3.4).
            sample: draw the style code (training, GauGAN's reparameterisation); else use ``mu``.
            noise_gen: CPU generator of the noise maps (``cfg.noise``), one map shared by the
                batch; ``None``: torch's global one, a map per sample (training). Inference
                passes a fixed-seed one, so that an input has one answer.
        """
        mu, logvar = self.style(coarse, visible)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        e0 = self.enc0(torch.cat([coarse, visible, new_mask], dim=1))
        e1 = self.enc1(e0)
        h = self.enc2(e1) + self.style_fc(z)[:, :, None, None]
        h = self.block2(h, new_mask)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.block1(self._noise(h, z, "noise1", noise_gen), new_mask) + e1
        h = F.interpolate(self.proj0(h), scale_factor=2.0, mode="nearest")
        h = self.block0(self._noise(h, z, "noise0", noise_gen), new_mask) + e0
        h = F.leaky_relu(h, 0.2)
        residual = self.to_rgb(h)
        if self.cfg.noise:
            b, _, hh, ww = h.shape
            n = torch.randn(1 if noise_gen is not None else b, 1, hh, ww, generator=noise_gen)
            residual = residual + self.noise_rgb(h) * n.to(h.device, h.dtype)
        return (coarse + residual).clamp(-1.0, 1.0), mu, logvar

    def _noise(
        self, h: torch.Tensor, z: torch.Tensor, name: str, gen: torch.Generator | None
    ) -> torch.Tensor:
        """``h`` plus a ``B x 1 x H x W`` standard normal map times the per-channel strength
        ``B x C`` the linear layer ``name`` makes of the style code ``z`` (``h`` when no noise)."""
        if not self.cfg.noise:
            return h
        b, _, hh, ww = h.shape
        # with a given generator every sample gets the same map: an answer independent of batching
        n = torch.randn(1 if gen is not None else b, 1, hh, ww, generator=gen)
        n = n.to(h.device, h.dtype)
        return h + n * getattr(self, name)(z)[:, :, None, None]


class PatchDiscriminator(nn.Module):
    """GauGAN's NLayerDiscriminator: 4x4 convs (stride 2 then 1), spectral norm, leaky ReLU;
    returns every layer's output (the last is the patch logits)."""

    def __init__(self, in_ch: int, width: int, layers: int) -> None:
        super().__init__()
        chans = [in_ch] + [width * 2 ** min(i, 3) for i in range(layers)]
        blocks: list[nn.Module] = []
        for i in range(layers):
            stride = 2 if i < layers - 1 else 1
            conv = spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 4, stride=stride, padding=2))
            blocks.append(nn.Sequential(conv, nn.LeakyReLU(0.2)))
        blocks.append(nn.Sequential(nn.Conv2d(chans[-1], 1, 4, padding=2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """GauGAN's multi-scale discriminator: one :class:`PatchDiscriminator` per scale, the input
    average-pooled by 2 between scales; input = ``cat(mask, image)`` (conditioned on the mask).
    """

    def __init__(self, width: int, scales: int, layers: int) -> None:
        super().__init__()
        self.nets = nn.ModuleList(PatchDiscriminator(4, width, layers) for _ in range(scales))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale, the list of layer outputs (last: logits)."""
        x = torch.cat([mask, image], dim=1)
        out = []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(net(x))
        return out
