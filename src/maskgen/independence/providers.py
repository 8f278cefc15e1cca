"""Instance providers of application 1 (paper "Foreground Segmentation on Category-specific
Images", Fig. 4 first and third cases, Table 1).

- :class:`ForegroundUNetProvider`: a UNet predicts the soft mask (alpha) of a box-cropped image;
  the layer's colour is the image itself. Paper Table 1 is the ``paper`` preset (128x128 input,
  six 4x4 stride-2 conv + BN + lReLU layers 64-128-256-512-512-512, mirrored 4x4 deconvolutions
  with skip connections, sigmoid output). ``cpu`` is a narrower 32x32 variant for this project's
  CPU budget (images are resized to 32x32 for the network; masks are resized back); ``tiny`` is for tests.
- :class:`BackgroundPatchProvider`: random patches of real background images with alpha 1.

Tensors: images ``N x 3 x S x S`` float in ``[0, 1]``; alphas ``N x 1 x S x S`` in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """UNet hyper-parameters.

    Attributes:
        size: input side ``S`` (must be divisible by ``2 ** len(widths)``).
        widths: encoder channels, one per 4x4 stride-2 conv; the decoder mirrors them.
        last_kernel: kernel of the innermost encoder conv and first decoder deconv (Table 1: 2).
        norm: ``"batch"`` (paper) or ``"none"``.
        upsample: ``"deconv"`` (paper: 4x4 transposed convs) or ``"bilinear"`` (bilinear x2 then
            a 3x3 conv -- no checkerboard artefacts in the soft masks).
    """

    size: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 128, 128)
    last_kernel: int = 4
    norm: str = "batch"
    upsample: str = "deconv"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return cls(
            size=int(d["size"]),
            widths=tuple(int(w) for w in d["widths"]),
            last_kernel=int(d.get("last_kernel", 4)),
            norm=str(d.get("norm", "batch")),
            upsample=str(d.get("upsample", "deconv")),
        )


#: Presets: ``paper`` = Table 1 (128x128); ``cpu`` = default here; ``tiny`` = tests.
UNET_PRESETS: dict[str, UNetConfig] = {
    "paper": UNetConfig(size=128, widths=(64, 128, 256, 512, 512, 512), last_kernel=2),
    "cpu": UNetConfig(size=32, widths=(16, 32, 64, 64), last_kernel=4, upsample="bilinear"),
    "tiny": UNetConfig(size=32, widths=(8, 16, 16), last_kernel=4, upsample="bilinear"),
}


def _norm(kind: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if kind == "batch" else nn.Identity()


class UNet(nn.Module):
    """UNet mapping ``N x 3 x S x S`` images in ``[0, 1]`` to mask logits ``N x 1 x S x S``.

    Encoder layer ``i``: ``k x k`` conv stride 2 (k = 4, or ``last_kernel`` for the innermost),
    BN (not on the first layer, as pix2pix), leaky ReLU 0.2. Decoder layer ``i``: deconv stride 2
    on the concatenation of the previous decoder output and the encoder feature of the same
    scale (skip connection), BN, ReLU; the last deconv maps to one channel (logits; the paper's
    sigmoid is applied by the provider).
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = len(cfg.widths)
        if cfg.size % (2**n):
            raise ValueError(f"UNet size {cfg.size} is not divisible by 2**{n}")
        self.down = nn.ModuleList()
        c = 3
        for i, w in enumerate(cfg.widths):
            k = cfg.last_kernel if i == n - 1 else 4
            p = (k - 2) // 2
            layers: list[nn.Module] = [nn.Conv2d(c, w, k, 2, p, bias=cfg.norm != "batch" or i == 0)]
            if i > 0:
                layers.append(_norm(cfg.norm, w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            self.down.append(nn.Sequential(*layers))
            c = w
        self.up = nn.ModuleList()
        for i in range(n - 1, -1, -1):
            # Input: deepest feature (i = n-1) or previous decoder output + skip of scale i.
            cin = cfg.widths[i] if i == n - 1 else 2 * cfg.widths[i]
            cout = cfg.widths[i - 1] if i > 0 else 1
            k = cfg.last_kernel if i == n - 1 else 4
            p = (k - 2) // 2
            if cfg.upsample == "bilinear":
                conv: list[nn.Module] = [
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(cin, cout, 3, 1, 1, bias=i == 0 or cfg.norm != "batch"),
                ]
            elif cfg.upsample == "deconv":
                conv = [nn.ConvTranspose2d(cin, cout, k, 2, p, bias=i == 0 or cfg.norm != "batch")]
            else:
                raise ValueError(f"unknown upsample {cfg.upsample!r}")
            if i > 0:
                self.up.append(nn.Sequential(*conv, _norm(cfg.norm, cout), nn.ReLU(inplace=True)))
            else:
                self.up.append(nn.Sequential(*conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x * 2.0 - 1.0
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        n = len(self.down)
        for j, layer in enumerate(self.up):
            i = n - 1 - j
            if i < n - 1:
                h = torch.cat([h, skips[i]], dim=1)
            h = layer(h)
        return h


class ForegroundUNetProvider(nn.Module):
    """Foreground instance provider (Fig. 4, first case): colour = the image, alpha = UNet.

    Forward:
        ``images`` ``N x 3 x S x S`` in ``[0, 1]`` -> ``(rgb, alpha)``: ``rgb`` is ``images``
        itself, ``alpha`` ``N x 1 x S x S`` = ``sigmoid(UNet(images))``.
    """

    def __init__(self, cfg: UNetConfig | str = "cpu") -> None:
        super().__init__()
        self.cfg = UNET_PRESETS[cfg] if isinstance(cfg, str) else cfg
        self.unet = UNet(self.cfg)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, torch.sigmoid(self.unet(images))

    def alpha(self, images: torch.Tensor) -> torch.Tensor:
        """Soft masks only: ``N x 1 x S x S``."""
        return torch.sigmoid(self.unet(images))


class BackgroundPatchProvider:
    """Background instance provider (Fig. 4, third case): random real patches, alpha 1.

    Args:
        backgrounds: ``K x H x W x 3`` uint8 array (all the same size) or a list of ``H_k x
            W_k x 3`` uint8 arrays.
        size: output side ``S``.
        crop: side of the square cut from a background before resizing to ``S`` (the images'
            native crop size, so backgrounds show the same scale as the images' surroundings).
            Every background must be at least ``crop`` on both sides (checked by the caller).
        hflip: random horizontal flips.

    ``sample(n, generator)`` returns ``(rgb N x 3 x S x S float in [0, 1], alpha = ones
    N x 1 x S x S)`` on ``device``.
    """

    def __init__(
        self,
        backgrounds: np.ndarray | list[np.ndarray],
        size: int,
        crop: int,
        hflip: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.items = [
            torch.from_numpy(np.array(b, dtype=np.uint8, copy=True)).permute(2, 0, 1)
            for b in backgrounds
        ]
        small = [tuple(t.shape[1:]) for t in self.items if min(t.shape[1:]) < crop]
        if small:
            raise ValueError(f"background {small[0]} smaller than crop {crop}")
        self.size = size
        self.crop = crop
        self.hflip = hflip
        self.device = torch.device(device)
        same = len({tuple(t.shape) for t in self.items}) == 1
        self.stack = torch.stack(self.items) if same else None

    def __len__(self) -> int:
        return len(self.items)

    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.items), (n,), generator=generator)
        if (
            self.stack is not None
            and self.stack.shape[-1] == self.crop
            and self.stack.shape[-2] == self.crop
        ):
            x = self.stack[idx]
        else:
            out = []
            for i in idx.tolist():
                t = self.items[i]
                h, w = t.shape[1:]
                y0 = int(torch.randint(0, h - self.crop + 1, (1,), generator=generator))
                x0 = int(torch.randint(0, w - self.crop + 1, (1,), generator=generator))
                out.append(t[:, y0 : y0 + self.crop, x0 : x0 + self.crop])
            x = torch.stack(out)
        x = x.to(self.device, torch.float32) / 255.0
        if x.shape[-1] != self.size:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip.to(self.device)[:, None, None, None], x.flip(-1), x)
        return x, torch.ones_like(x[:, :1])


__all__ = [
    "UNET_PRESETS",
    "BackgroundPatchProvider",
    "ForegroundUNetProvider",
    "UNet",
    "UNetConfig",
]
