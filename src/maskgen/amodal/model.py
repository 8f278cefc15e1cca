"""Amodal-VAE networks (Ling et al., "Variational Amodal Object Completion", NeurIPS 2020).

Supplementary §3.2: masks are tightly cropped and resized to 28 x 28; encoder and decoder are CNNs
followed by two residual blocks and fully connected layers; ReLU with BatchNorm applied *before*
the activation; a 64-d factorial Normal latent with an N(0, I) prior; a Bernoulli decoder. A
separate CNN with max pooling (the "spatial transformer") predicts the amodal box from the
visible mask, because the partial mask is cropped at its *visible* box while the decoder draws in
the *amodal* box frame.

Networks:

* ``q1(z|y)``  -- :meth:`AmodalVAE.encode_full`: the full mask, cropped at its amodal box.
* ``q2(z|ŷ)``  -- :meth:`AmodalVAE.encode_partial`: the visible mask, cropped at its visible box
  (same architecture as q1, own weights; the paper's input, the visible mask alone).
* ``p(y|z)``   -- :meth:`AmodalVAE.decode`: logits of a 28 x 28 mask in the amodal-box frame.
* box head     -- :meth:`AmodalVAE.predict_amodal_box`: the amodal box in the visible box's
  normalised frame (:func:`maskgen.core.boxes.relative_box`: visible box = ``(0, 0, 1, 1)``).

Tensors are ``float32`` ``N x 1 x 28 x 28`` masks in ``[0, 1]`` unless said otherwise; a crop's
pixel ``(i, j)`` samples the box at the centres of an ``N x N`` grid of cells
(:mod:`maskgen.core.masks`).

Deviation, documented: the box head may also see a *context frame* -- a square crop
``square_box(visible_box, box_context_scale)`` holding two channels, the instance's visible mask
and the union of the *other* instances' visible masks (where an occluder can hide the object) --
plus the visible box's aspect ratio. This is what the paper's 28 x 28 visible crop cannot tell (the
crop loses the box's aspect ratio and all neighbours). Without a context (``context=None``) the
head builds one from the visible crop alone, assuming a square box and no neighbours.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class AmodalVAEConfig:
    """Architecture of :class:`AmodalVAE`; stored in the model folder's ``config.json``.

    Paper-fixed values (supplementary §3.2) are the defaults: ``crop_size`` 28, ``latent_dim`` 64,
    ``res_blocks`` 2. Widths are ours, sized for CPU speed (see benchmarks/amodal_speed_model.py).

    Attributes:
        crop_size: side of the mask crops (28 in the paper).
        latent_dim: size of z (64 in the paper).
        widths: channels of the two stride-2 convolutions (28 -> 14 -> 7); the residual blocks run
            at 7 x 7 with ``widths[-1]`` channels.
        res_blocks: residual blocks after the convolutions (encoders) and before the
            up-convolutions (decoder); 2 in the paper.
        fc_dim: hidden fully connected layer size.
        box_widths: channels of the box head's conv + max-pool stages.
        box_fc_dim: hidden size of the box head's fully connected layer.
        box_context_scale: the box head's context frame is ``square_box(visible_box, scale)``.
        box_context_size: pixel side of the context crop.
    """

    crop_size: int = 28
    latent_dim: int = 64
    widths: tuple[int, ...] = (16, 32)
    res_blocks: int = 2
    fc_dim: int = 256
    box_widths: tuple[int, ...] = (16, 32, 64)
    box_fc_dim: int = 128
    box_context_scale: float = 3.0
    box_context_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AmodalVAEConfig:
        """Build from a dict (e.g. ``config.json``); unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown AmodalVAEConfig keys: {', '.join(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` -- BN before ReLU (supplementary §3.2)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class Encoder(nn.Module):
    """CNN (two stride-2 convs) + residual blocks + FC -> ``(mu, logvar)``, each ``N x latent``."""

    def __init__(self, cfg: AmodalVAEConfig, in_ch: int = 1) -> None:
        super().__init__()
        w = list(cfg.widths)
        layers: list[nn.Module] = []
        cin = in_ch
        for c in w:
            layers.append(_conv_bn_relu(cin, c, stride=2))
            cin = c
        layers += [ResBlock(cin) for _ in range(cfg.res_blocks)]
        self.conv = nn.Sequential(*layers)
        side = cfg.crop_size // (2 ** len(w))
        self.fc = nn.Sequential(
            nn.Linear(cin * side * side, cfg.fc_dim, bias=False),
            nn.BatchNorm1d(cfg.fc_dim),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.fc_dim, 2 * cfg.latent_dim),
        )
        self.latent_dim = cfg.latent_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(x)
        out = self.fc(h.flatten(1))
        return out[:, : self.latent_dim], out[:, self.latent_dim :]


class Decoder(nn.Module):
    """FC + residual blocks + up-convolutions -> ``N x 1 x 28 x 28`` Bernoulli logits."""

    def __init__(self, cfg: AmodalVAEConfig) -> None:
        super().__init__()
        w = list(cfg.widths)
        self.side = cfg.crop_size // (2 ** len(w))
        self.ch = w[-1]
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.fc_dim, bias=False),
            nn.BatchNorm1d(cfg.fc_dim),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.fc_dim, self.ch * self.side * self.side, bias=False),
            nn.BatchNorm1d(self.ch * self.side * self.side),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = [ResBlock(self.ch) for _ in range(cfg.res_blocks)]
        ups = list(reversed(w))[1:] + [max(w[0] // 2, 8)]
        cin = self.ch
        for c in ups:
            layers += [
                nn.ConvTranspose2d(cin, c, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            cin = c
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.conv = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.ch, self.side, self.side)
        if _CHANNELS_LAST and z.device.type == "cpu" and z.shape[0] > 1:
            h = h.contiguous(memory_format=torch.channels_last)
        return self.conv(h)


class BoxHead(nn.Module):
    """Spatial-transformer CNN with max pooling: context frame -> amodal-box extensions.

    Input ``N x 2 x S x S`` context crop (visible mask, other instances' visible masks) and
    ``N x 2`` visible box size ``(w, h) / max(w, h)``. Output ``N x 4`` extensions
    ``(left, top, right, bottom)`` of the amodal box beyond the visible box, in units of
    ``max(w, h)`` of the visible box; raw, so negative values mean 0.
    """

    def __init__(self, cfg: AmodalVAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 2
        size = cfg.box_context_size
        for c in cfg.box_widths:
            layers += [_conv_bn_relu(cin, c), nn.MaxPool2d(2)]
            cin = c
            size //= 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Linear(cin * size * size + 2, cfg.box_fc_dim),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.box_fc_dim, 4),
        )

    def forward(self, context: Tensor, aspect: Tensor) -> Tensor:
        """Raw extensions ``N x 4`` (may be negative; clamp at 0 to use them).

        Why unconstrained: most synthetic occlusions leave the box unchanged (target 0), and a
        softplus output driven below zero by the L1 loss stops getting gradient (softplus' slope
        vanishes), which left an earlier head predicting ~1e-9 for every input. The L1 loss on
        the raw output keeps a constant gradient, and :meth:`AmodalVAE.predict_amodal_box`
        clamps at 0.
        """
        h = self.conv(context).flatten(1)
        return self.fc(torch.cat([h, aspect], dim=1))


class AmodalVAE(nn.Module):
    """Amodal-VAE: two encoders, one decoder and a box head (see the module docstring)."""

    def __init__(self, config: AmodalVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else AmodalVAEConfig()
        self.enc_full = Encoder(self.config)
        self.enc_partial = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.box_head = BoxHead(self.config)

    # -- the contract used by completion and analysis ------------------------------------------
    def encode_full(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """q1(z|y). ``y``: ``N x 1 x 28 x 28`` full mask in ``[0, 1]``, tight amodal-box crop.

        Returns ``(mu, logvar)``, each ``N x latent_dim``.
        """
        return self.enc_full(_fmt(y))

    def encode_partial(self, y_vis: Tensor) -> tuple[Tensor, Tensor]:
        """q2(z|ŷ). ``y_vis``: ``N x 1 x 28 x 28`` visible mask cropped at its *visible* box.

        Returns ``(mu, logvar)``, each ``N x latent_dim``; decode them into the amodal-box frame.
        """
        return self.enc_partial(_fmt(y_vis))

    def decode(self, z: Tensor) -> Tensor:
        """p(y|z). ``z``: ``N x latent_dim`` -> ``N x 1 x 28 x 28`` logits, amodal-box frame."""
        return self.decoder(z).contiguous()

    def predict_amodal_box(
        self, y_vis: Tensor, context: Tensor | None = None, vis_wh: Tensor | None = None
    ) -> Tensor:
        """Amodal box in the visible box's normalised frame (visible box = ``(0, 0, 1, 1)``).

        Args:
            y_vis: ``N x 1 x 28 x 28`` visible crop (used only when ``context`` is None).
            context: optional ``N x 2 x S x S`` context crop made by
                :func:`maskgen.amodal.data.context_crop` (S = ``config.box_context_size``):
                channel 0 the instance's visible mask, channel 1 the other instances' visible
                masks, both in the square frame ``square_box(visible_box, box_context_scale)``.
                When None, it is synthesised from ``y_vis`` assuming a square visible box and no
                neighbours (less accurate; pass the real context where you have the image).
            vis_wh: ``N x 2`` visible box ``(width, height)`` in pixels (only the ratio matters);
                None means square.

        Returns:
            ``N x 4`` ``(x0, y0, x1, y1)``; always contains ``(0, 0, 1, 1)``. Convert to pixels
            with :func:`maskgen.core.boxes.absolute_box`.
        """
        n = y_vis.shape[0] if context is None else context.shape[0]
        dev = y_vis.device if context is None else context.device
        if vis_wh is None:
            vis_wh = torch.ones(n, 2, device=dev)
        vis_wh = vis_wh.to(dev, torch.float32)
        aspect = vis_wh / vis_wh.max(dim=1, keepdim=True).values.clamp_min(1e-6)
        if context is None:
            context = context_from_crop(y_vis, aspect, self.config)
        ext = self.box_head(_fmt(context), aspect).clamp_min(0.0)
        return extensions_to_relative_box(ext, aspect)

    def predict_box_extensions(self, context: Tensor, aspect: Tensor) -> Tensor:
        """Raw box-head output (training): ``N x 4`` extensions in units of ``max(w, h)``,
        unclamped (the L1 loss is taken on these; see :meth:`BoxHead.forward`)."""
        return self.box_head(_fmt(context), aspect)

    def forward(self, y_vis: Tensor) -> Tensor:
        """Mode completion in the amodal-box frame: decode the posterior mean of q2 (logits)."""
        mu, _ = self.encode_partial(y_vis)
        return self.decode(mu)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- the one model API (docs/design.md, "The engine contract") -----------------------------
    #: binarisation threshold and full ``config.json`` of the folder a model was loaded from
    threshold: float | None = None
    folder_config: dict[str, Any] | None = None

    @classmethod
    def from_folder(cls, path: Any = None, device: Any = "cpu") -> AmodalVAE:
        """Load a model folder strictly (kind-checked, every weight matched by name and shape).

        Args:
            path: a model folder, or a training run folder holding ``model/``; default: the
                shipped model (:data:`maskgen.amodal.io.SHIPPED_MODEL`).
            device: ``cpu``, ``cuda`` or ``cuda:N`` (checked before any file is read).

        Returns:
            the model in eval mode on ``device``, with ``threshold`` (float in ``(0, 1)``) and
            ``folder_config`` (the whole ``config.json``) set.

        Raises:
            MaskgenError: an unusable device; a missing folder/file, corrupt safetensors,
                another model kind, a bad config or threshold, missing/unexpected/mis-shaped
                weights.
        """
        from maskgen.amodal.io import SHIPPED_MODEL, load_folder

        return load_folder(SHIPPED_MODEL if path is None else path, device)

    def save_folder(
        self, path: Any, threshold: float, training: dict[str, Any] | None = None
    ) -> Any:
        """Write the model folder ``path`` (``config.json`` + ``model.safetensors``, atomic,
        rank 0 only) with its binarisation ``threshold`` in ``(0, 1)`` and an optional
        ``training`` summary. Returns the folder's Path."""
        from maskgen.amodal.io import save_folder

        return save_folder(self, path, threshold, training=training)


_CHANNELS_LAST = True


def _fmt(x: Tensor) -> Tensor:
    """channels_last on CPU for batches (faster small convs; measured in benchmarks/RESULTS.md, "amodal-speed-model")."""
    x = x.float()
    if _CHANNELS_LAST and x.device.type == "cpu" and x.shape[0] > 1:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def extensions_to_relative_box(ext: Tensor, aspect: Tensor) -> Tensor:
    """``N x 4`` extensions (units of ``max(w, h)``) + ``N x 2`` aspect -> relative box ``N x 4``."""
    w = aspect[:, 0].clamp_min(1e-6)
    h = aspect[:, 1].clamp_min(1e-6)
    return torch.stack(
        [-ext[:, 0] / w, -ext[:, 1] / h, 1 + ext[:, 2] / w, 1 + ext[:, 3] / h], dim=1
    )


def relative_box_to_extensions(rel: Tensor, aspect: Tensor) -> Tensor:
    """Inverse of :func:`extensions_to_relative_box` (training targets)."""
    w = aspect[:, 0]
    h = aspect[:, 1]
    return torch.stack(
        [-rel[:, 0] * w, -rel[:, 1] * h, (rel[:, 2] - 1) * w, (rel[:, 3] - 1) * h], dim=1
    )


def context_from_crop(y_vis: Tensor, aspect: Tensor, cfg: AmodalVAEConfig) -> Tensor:
    """Fallback context: place the visible crop in the centre of the square context frame.

    The visible box occupies ``aspect * S / box_context_scale`` pixels of the ``S x S`` frame;
    the neighbour channel is empty. Returns ``N x 2 x S x S``.
    """
    n = y_vis.shape[0]
    s = cfg.box_context_size
    # theta maps context-frame normalised coords to crop normalised coords.
    sx = cfg.box_context_scale / aspect[:, 0].clamp_min(1e-6)
    sy = cfg.box_context_scale / aspect[:, 1].clamp_min(1e-6)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, s, s], align_corners=False)
    vis = F.grid_sample(y_vis.float(), grid, padding_mode="zeros", align_corners=False)
    return torch.cat([vis, torch.zeros_like(vis)], dim=1)


# -- inference speed-ups -------------------------------------------------------------------------
def _fold_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """Fold an eval-mode BatchNorm into the preceding conv / transposed conv / linear layer."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    new = copy.deepcopy(conv)
    w = new.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):
        w = w * scale.view(1, -1, 1, 1)
    elif isinstance(conv, nn.Conv2d):
        w = w * scale.view(-1, 1, 1, 1)
    else:
        w = w * scale.view(-1, 1)
    new.weight = nn.Parameter(w)
    b = conv.bias.detach() * scale + shift if conv.bias is not None else shift
    new.bias = nn.Parameter(b.clone())
    return new


def _fuse_sequential(seq: nn.Sequential) -> nn.Sequential:
    mods = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and isinstance(
            nxt, (nn.BatchNorm2d, nn.BatchNorm1d)
        ):
            out.append(_fold_bn(m, nxt))
            i += 2
            continue
        if isinstance(m, nn.Sequential):
            out.append(_fuse_sequential(m))
        elif isinstance(m, ResBlock):
            rb = copy.deepcopy(m)
            rb.body = _fuse_sequential(m.body)
            out.append(rb)
        else:
            out.append(m)
        i += 1
    return nn.Sequential(*out)


def fuse_for_inference(model: AmodalVAE) -> AmodalVAE:
    """A copy of ``model`` in eval mode with every BatchNorm folded into its conv/linear layer.

    Same outputs as ``model.eval()`` up to float rounding; faster on CPU. Do not train it.
    """
    fused = copy.deepcopy(model).eval()
    for enc in (fused.enc_full, fused.enc_partial):
        enc.conv = _fuse_sequential(enc.conv)
        enc.fc = _fuse_sequential(enc.fc)
    fused.decoder.fc = _fuse_sequential(fused.decoder.fc)
    fused.decoder.conv = _fuse_sequential(fused.decoder.conv)
    fused.box_head.conv = _fuse_sequential(fused.box_head.conv)
    return fused


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latents: ``N``-vector."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


__all__ = [
    "AmodalVAE",
    "AmodalVAEConfig",
    "fuse_for_inference",
    "kl_divergence",
    "reparameterize",
    "extensions_to_relative_box",
    "relative_box_to_extensions",
    "context_from_crop",
]
