"""The learned inpainter (supplementary §3.3) behind the :class:`~maskgen.inpainting.base.Inpainter`
interface, and :func:`load_inpainter`, the one place that turns ``--inpainter SPEC`` into one.

Model folder (kind ``inpainter``; :func:`maskgen.engine.save_model_folder`): ``config.json``
holds the :class:`~maskgen.inpainting.model.InpaintNetConfig` under ``"config"`` (and the training
settings under ``"training"``); ``model.safetensors`` holds both networks (``background.*``,
``instance.*``) and the label embedding. A training run folder (``maskgen inpaint train --out``)
may be given instead: its ``model/`` is used.

At test time (§3.3):

- **background**: each 8-connected part of the hole gets a square window (its box grown by half
  its longer side, at least ``crop_size`` px, shifted into the image), which gets the coarse
  fill (push-pull + Telea) at image scale; that fill and the masks are resized to ``crop_size``, the network's residual is resized back
  and added; only hole pixels are pasted, known pixels stay exact;
- **instance**: the instance's amodal box is cut out as in training
  (:func:`~maskgen.inpainting.samplers.instance_window`), coarse-filled from the instance's known
  pixels, resized to ``instance_size``, and refined with the hole's class label as input
  (§3.3); the hole pixels are pasted back.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from maskgen.engine import (
    check_device,
    load_cached,
    load_model_folder,
    load_state_dict_strict,
    save_model_folder,
)
from maskgen.errors import MaskgenError
from maskgen.inpainting.base import Inpainter, TeleaInpainter
from maskgen.inpainting.model import InpaintModel, InpaintNetConfig
from maskgen.inpainting.samplers import (
    COARSE_EXTEND,
    coarse_fill,
    cut,
    instance_window,
    square_window,
)

MODEL_KIND = "inpainter"
BUILTIN_INPAINTER = Path(__file__).resolve().parent.parent / "models" / "inpainter-builtin"
WINDOW_CONTEXT = 0.5  # background window: the hole's box grown by this share of its longer side


def _resize(array: np.ndarray, side: int) -> np.ndarray:
    """Resize a float32 ``h x w [x c]`` array to ``side x side`` (area when shrinking)."""
    interp = cv2.INTER_AREA if side < array.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(array), (side, side), interpolation=interp)


def _paste(
    out: np.ndarray, pred: np.ndarray, hole: np.ndarray, window: tuple[int, int, int, int]
) -> None:
    """Write ``pred`` (``side x side x 3`` uint8, the window's pixels) into ``out`` where ``hole``
    (image-sized) is set; the window may leave the image."""
    x0, y0, x1, y1 = window
    h, w = hole.shape
    ya, yb, xa, xb = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    sub = hole[ya:yb, xa:xb]
    out[ya:yb, xa:xb][sub] = pred[ya - y0 : yb - y0, xa - x0 : xb - x0][sub]


class LearnedInpainter:
    """:class:`~maskgen.inpainting.base.Inpainter` by the two §3.3 networks.

    Args:
        model: the trained :class:`InpaintModel` (moved to ``device``, put in eval mode).
        device: torch device for the forward passes.
    """

    def __init__(self, model: InpaintModel, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg

    @classmethod
    def from_folder(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> LearnedInpainter:
        """Load a model folder (or a finished run folder) of kind ``inpainter``, strictly.

        Raises:
            MaskgenError: a missing or foreign folder, a kind mismatch or mismatched weights.
        """
        header, state = load_model_folder(path, MODEL_KIND, device="cpu")
        if not isinstance(header["config"], dict):
            raise MaskgenError(f"{path}: config.json has no inpainter config")
        model = InpaintModel(InpaintNetConfig.from_dict(header["config"]))
        load_state_dict_strict(model, state, path)
        return cls(model, device)

    def save_folder(self, path: str | os.PathLike[str]) -> Path:
        """Write the model folder (``config.json`` + ``model.safetensors``)."""
        return save_model_folder(path, MODEL_KIND, self.cfg.to_dict(), self.model.state_dict())

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """``S x S x C`` float32 -> ``1 x C x S x S`` on the device."""
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return t.permute(2, 0, 1)[None].to(self.device)

    def _prepare(
        self,
        image: np.ndarray,
        masks: list[np.ndarray],
        win: tuple[int, int, int, int],
        kind: str,
    ) -> tuple[np.ndarray, list[torch.Tensor]]:
        """The window's coarse fill at image scale (``side x side x 3`` float32, 0-255) and the
        ``kind`` network's inputs at its size: the coarse fill in ``[-1, 1]`` and each mask.

        ``masks[0]`` is ``given`` (kept where fully covered after resizing), ``masks[1]`` the hole
        (set where touched at all); a further mask is thresholded at 0.5.
        """
        given, hole = cut(masks[0], win), cut(masks[1], win)
        size = self.cfg.crop_size if kind == "background" else self.cfg.instance_size
        extend = COARSE_EXTEND[kind]
        coarse = coarse_fill(cut(image, win), given, hole, extend).astype(np.float32)
        inputs = [self._tensor(_resize(coarse, size) / 127.5 - 1.0)]
        small = []
        for i, m in enumerate(masks):
            r = _resize(cut(m, win).astype(np.float32), size)
            small.append(r > 0.999 if i == 0 else r > 0.001 if i == 1 else r >= 0.5)
        small[0] &= ~small[1]
        inputs += [self._tensor(m[..., None]) for m in small]
        return coarse, inputs

    def _finish(self, coarse: np.ndarray, residual: torch.Tensor) -> np.ndarray:
        """Coarse fill (``side x side x 3``, 0-255) + the residual (``1 x 3 x S x S``, in
        ``[-1, 1]`` units) resized to ``side`` -> uint8."""
        res = residual[0].permute(1, 2, 0).float().cpu().numpy() * 127.5
        side = coarse.shape[0]
        res = cv2.resize(res, (side, side), interpolation=cv2.INTER_LINEAR)
        return (coarse + res).clip(0, 255).round().astype(np.uint8)

    def _windows(self, hole: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
        """One ``(component mask, square window)`` per 8-connected component of ``hole``: its box
        grown by ``WINDOW_CONTEXT`` of its longer side, at least ``crop_size``, shifted into the
        image. Each part of a hole spread over the image (every object of a scene, say) is thus
        filled at its own scale."""
        n, labels, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), 8)
        out = []
        for c in range(1, n):
            x, y, w, h = (int(v) for v in stats[c, :4])
            side = max(int(np.ceil(max(w, h) * (1 + 2 * WINDOW_CONTEXT))), self.cfg.crop_size)
            out.append((labels == c, square_window((x, y, x + w, y + h), side, *hole.shape)))
        return out

    @torch.no_grad()
    def inpaint_background(
        self, image: np.ndarray, hole: np.ndarray, known: np.ndarray
    ) -> np.ndarray:
        """See :meth:`Inpainter.inpaint_background` (the module docstring says how); the windows
        of all hole components go through the network as one batch."""
        out = np.array(image, copy=True)
        if not hole.any():
            return out
        parts = self._windows(hole)
        prepared = [
            self._prepare(image, [known & ~hole, hole], win, "background") for _, win in parts
        ]
        x, given, hole_t = (torch.cat([p[1][i] for p in prepared]) for i in range(3))
        residual = self.model.residual_background(x, given, hole_t)
        for k, ((part, win), (coarse, _)) in enumerate(zip(parts, prepared, strict=True)):
            _paste(out, self._finish(coarse, residual[k : k + 1]), part, win)
        return out

    @torch.no_grad()
    def inpaint_instance(
        self,
        image: np.ndarray,
        hole: np.ndarray,
        known: np.ndarray,
        amodal: np.ndarray,
        label: int = 0,
    ) -> np.ndarray:
        """See :meth:`Inpainter.inpaint_instance` (the module docstring says how)."""
        out = np.array(image, copy=True)
        if not hole.any():
            return out
        win = instance_window(amodal | hole)
        masks = [known & ~hole, hole, amodal | hole]
        coarse, (x, given, hole_t, amodal_t) = self._prepare(image, masks, win, "instance")
        index = torch.tensor([self.model.label_index(label)], device=self.device)
        residual = self.model.residual_instance(x, given, hole_t, amodal_t, index)
        _paste(out, self._finish(coarse, residual), hole, win)
        return out


_CACHE: dict[tuple[str, str, str], LearnedInpainter] = {}


def load_inpainter(spec: str | os.PathLike[str] | None = None, device: str = "cpu") -> Inpainter:
    """The inpainter named by ``spec`` (the ``--inpainter`` value of the commands).

    ``"telea"``: :class:`TeleaInpainter` (OpenCV, no training); ``None`` or ``"builtin"``: the
    shipped learned inpainter (:data:`BUILTIN_INPAINTER`); anything else: a model folder or a
    finished ``maskgen inpaint train`` run folder. Learned inpainters are cached per folder
    (and weights file version).

    Raises:
        MaskgenError: the folder is missing, of another kind, or its weights do not match, or
            ``device`` is not available.
    """
    if spec is not None and str(spec) == "telea":
        return TeleaInpainter()
    check_device(device)
    if spec is None or str(spec) == "builtin":
        if not (BUILTIN_INPAINTER / "model.safetensors").is_file():
            raise MaskgenError(
                f"--inpainter builtin: the shipped inpainter is not installed ({BUILTIN_INPAINTER} "
                "has no model); run scripts/train_builtin_inpainter.sh or pass --inpainter telea"
            )
        spec = BUILTIN_INPAINTER
    return load_cached(_CACHE, spec, device, LearnedInpainter.from_folder)
