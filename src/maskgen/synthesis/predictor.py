"""Re-render an instance into a new mask (supplementary §3.4): :class:`MaskSynthesizer`.

Model folder (kind ``mask-synth``; :func:`maskgen.engine.save_model_folder`): ``config.json``
holds the :class:`~maskgen.synthesis.model.SynthNetConfig` under ``"config"`` (the training
settings under ``"training"``); ``model.safetensors`` the generator (with its style encoder).
A finished ``maskgen synth train`` run folder may be given instead: its ``model/`` is used.

At inference (the same windows as training): the square window of
:func:`~maskgen.inpainting.samplers.instance_window` around ``visible | new_mask`` is cut from
the image (zero-padded where it leaves it) and resized to the model's ``crop_size``; the
generator gets the crop's visible pixels push-pull filled (the coarse fill), the visible mask
and the new mask, and the style code's mean (no sampling: one answer per input; a model with
noise inputs gets the same fixed-seed noise maps at every call). Its correction
of the coarse fill is resized back to the window and added to the coarse fill made at window
resolution (so known pixels keep their full detail); the instance's own texture is then
quilted into the part the generator had to invent (``texture``, a
:class:`~maskgen.synthesis.transfer.TextureOptions`; by default exemplar texture transfer,
:mod:`maskgen.synthesis.transfer`; ``texture="none"`` keeps the generator's smooth output) and
the result is pasted inside ``new_mask`` only.

``keep_visible`` (default on) keeps the known pixels -- ``visible & new_mask`` -- exactly as they
are in the image. Deviation from §3.4 (which renders the whole instance from its mask): a re-shape
leaves the object where it is, so where the new shape overlaps what was seen the truth is known,
and re-rendering it could only lose detail.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from maskgen.engine import (
    load_cached,
    load_model_folder,
    load_state_dict_strict,
    save_model_folder,
)
from maskgen.errors import MaskgenError
from maskgen.inpainting.samplers import cut, instance_window, resize_image, resize_mask
from maskgen.synthesis.data import coarse_from_visible
from maskgen.synthesis.model import SpadeGenerator, SynthNetConfig
from maskgen.synthesis.transfer import TextureOptions, transfer_texture

MODEL_KIND = "mask-synth"
SHIPPED_SYNTH = Path(__file__).resolve().parent.parent / "models" / "synth-builtin"
NOISE_SEED = 0  # the noise maps of a model with noise inputs, fixed at inference


def _check_inputs(image: np.ndarray, visible: np.ndarray, new_masks: list[np.ndarray]) -> None:
    """One-line :class:`MaskgenError` for a wrong type, dtype, shape or an empty mask."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise MaskgenError(f"synthesize: image must be an H x W x 3 uint8 array, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise MaskgenError(f"synthesize: image must be H x W x 3, got shape {image.shape}")
    named = [("visible", visible)] + [(f"new_mask {i}", m) for i, m in enumerate(new_masks)]
    for name, m in named:
        if not isinstance(m, np.ndarray) or m.dtype != np.bool_:
            kind = m.dtype if isinstance(m, np.ndarray) else type(m).__name__
            raise MaskgenError(f"synthesize: {name} must be an H x W bool array, got {kind}")
        if m.shape != image.shape[:2]:
            raise MaskgenError(
                f"synthesize: {name} is {m.shape}, the image is {image.shape[:2]} (H x W)"
            )
        if not m.any():
            raise MaskgenError(f"synthesize: {name} is empty")


class MaskSynthesizer:
    """The §3.4 generator behind a numpy interface (see the module docstring).

    Args:
        generator: a trained :class:`SpadeGenerator` (moved to ``device``, put in eval mode).
        device: torch device of the forward passes.
        keep_visible: keep the image's pixels where the new mask overlaps the visible region.
        texture: how the re-rendered part gets its texture (:class:`TextureOptions`; None: the
            defaults, exemplar texture transfer, :mod:`maskgen.synthesis.transfer`).
    """

    def __init__(
        self,
        generator: SpadeGenerator,
        device: str | torch.device = "cpu",
        keep_visible: bool = True,
        texture: TextureOptions | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.cfg = generator.cfg
        self.keep_visible = keep_visible
        self.texture = texture if texture is not None else TextureOptions()

    def with_texture(self, texture: TextureOptions | None) -> MaskSynthesizer:
        """This synthesizer (the same generator, not copied) with other texture settings."""
        return MaskSynthesizer(self.generator, self.device, self.keep_visible, texture)

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        keep_visible: bool = True,
        texture: TextureOptions | None = None,
    ) -> MaskSynthesizer:
        """Load a model folder (or a finished run folder) of kind ``mask-synth``, strictly.

        Raises:
            MaskgenError: a missing or foreign folder, a kind mismatch or mismatched weights.
        """
        header, state = load_model_folder(path, MODEL_KIND, device="cpu")
        if not isinstance(header["config"], dict):
            raise MaskgenError(f"{path}: config.json has no synthesis config")
        gen = SpadeGenerator(SynthNetConfig.from_dict(header["config"]))
        load_state_dict_strict(gen, state, path)
        return cls(gen, device, keep_visible, texture)

    def save_folder(self, path: str | os.PathLike[str]) -> Path:
        """Write the model folder (``config.json`` + ``model.safetensors``)."""
        return save_model_folder(path, MODEL_KIND, self.cfg.to_dict(), self.generator.state_dict())

    def synthesize(
        self, image: np.ndarray, visible: np.ndarray, new_mask: np.ndarray
    ) -> np.ndarray:
        """The instance re-rendered into ``new_mask``.

        Args:
            image: ``H x W x 3`` uint8.
            visible: ``H x W`` bool, the instance's visible pixels (its appearance evidence).
            new_mask: ``H x W`` bool, the instance's new full mask (image coordinates).

        Returns:
            ``H x W x 3`` uint8: ``image`` outside ``new_mask``, the synthesis inside it (the
            image's own pixels on ``visible & new_mask`` when ``keep_visible``).

        Raises:
            MaskgenError: wrong dtypes or shapes, an empty mask.
        """
        return self.synthesize_many(image, visible, [new_mask])[0]

    @torch.no_grad()
    def synthesize_many(
        self, image: np.ndarray, visible: np.ndarray, new_masks: list[np.ndarray]
    ) -> list[np.ndarray]:
        """:meth:`synthesize` for each of ``new_masks`` (one batched forward pass)."""
        new_masks = list(new_masks)
        _check_inputs(image, visible, new_masks)
        size = self.cfg.crop_size
        windows, crops, coarse_full, inputs = [], [], [], []
        for new in new_masks:
            win = instance_window(visible | new)
            img_c, vis_c = cut(image, win), cut(visible, win)
            small_img = resize_image(img_c, (size, size))
            vis_s = resize_mask(vis_c, (size, size))
            new_s = resize_mask(cut(new, win), (size, size))
            if not vis_s.any():  # a sliver lost in resizing: keep its brightest trace
                small = resize_image(vis_c.astype(np.float32), (size, size))
                vis_s = small >= small.max()
            windows.append(win)
            crops.append((img_c, vis_c, cut(new, win)))
            coarse_full.append(coarse_from_visible(img_c, vis_c))
            inputs.append((coarse_from_visible(small_img, vis_s), vis_s, new_s))
        coarse = torch.from_numpy(np.stack([c for c, _, _ in inputs]) / 127.5 - 1.0)
        coarse = coarse.permute(0, 3, 1, 2).float().to(self.device)
        vis_t, new_t = (
            torch.from_numpy(np.stack([x[k] for x in inputs])[:, None].astype(np.float32)).to(
                self.device
            )
            for k in (1, 2)
        )
        # a fixed noise draw (models with noise inputs): one answer per input
        noise = torch.Generator().manual_seed(NOISE_SEED)
        pred, _, _ = self.generator(coarse, vis_t, new_t, noise_gen=noise)
        delta = ((pred - coarse) * 127.5).permute(0, 2, 3, 1).cpu().numpy()
        outs = []
        for k, new in enumerate(new_masks):
            side = coarse_full[k].shape[0]
            up = cv2.resize(delta[k], (side, side), interpolation=cv2.INTER_LINEAR)
            rendered = transfer_texture(*crops[k], coarse_full[k] + up, self.texture)
            rendered = rendered.clip(0, 255).round().astype(np.uint8)
            paste = new & ~visible if self.keep_visible else new
            outs.append(_paste(image, rendered, paste, windows[k]))
        return outs


def _paste(
    image: np.ndarray, window_rgb: np.ndarray, where: np.ndarray, win: tuple[int, int, int, int]
) -> np.ndarray:
    """A copy of ``image`` with ``window_rgb`` (the window's pixels) written where ``where``
    (image-sized) is set; the window may leave the image."""
    out = np.array(image, copy=True)
    x0, y0, x1, y1 = win
    h, w = where.shape
    ya, yb, xa, xb = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    sub = where[ya:yb, xa:xb]
    out[ya:yb, xa:xb][sub] = window_rgb[ya - y0 : yb - y0, xa - x0 : xb - x0][sub]
    return out


_CACHE: dict[tuple[str, str, str], MaskSynthesizer] = {}


def load_synthesizer(
    spec: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    texture: TextureOptions | None = None,
) -> MaskSynthesizer:
    """The synthesizer named by ``spec``: ``None`` or ``"builtin"`` -- the shipped model
    (:data:`SHIPPED_SYNTH`, trained on the built-in scenes); anything else -- a model folder or a
    finished ``maskgen synth train`` run folder. Cached per folder (and weights file version);
    ``texture`` (None: the defaults) gives a view of the cached one with those settings.

    Raises:
        MaskgenError: the folder is missing, of another kind, or its weights do not match.
    """
    if spec is None or str(spec) == "builtin":
        if not (SHIPPED_SYNTH / "model.safetensors").is_file():
            raise MaskgenError(
                f"synthesizer builtin: the shipped model is not installed ({SHIPPED_SYNTH} has "
                "no model); train one with 'maskgen synth train' and pass its folder"
            )
        spec = SHIPPED_SYNTH
    base = load_cached(_CACHE, spec, device, MaskSynthesizer.from_folder)
    if texture is None or texture == base.texture:
        return base
    return base.with_texture(texture)
