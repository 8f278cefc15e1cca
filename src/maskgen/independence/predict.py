"""Prediction with a trained foreground segmenter (teacher or distilled student), and the
GrabCut baseline, with a numpy-facing API beside the tensor one.

- :func:`load_segmenter` reads a model folder (kind ``segment-unet``; a run folder's ``model/``
  is found automatically).
- :func:`predict_soft_masks`: ``N x H x W x 3`` uint8 images (any ``H x W``; one size per call)
  -> ``N x H x W`` float32 soft masks in ``[0, 1]`` at the images' own size.
- :func:`predict_folder`: the ``maskgen segment predict`` command's work: ``OUT/soft/*.png``
  (mask x 255) and ``OUT/binary/*.png`` (0/255 at the model's threshold).
- :func:`grabcut_mask`: OpenCV GrabCut initialised with a rectangle a few pixels inside the
  crop (the box-level label), the classical baseline of ``segment evaluate --method grabcut``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskgen.errors import MaskgenError
from maskgen.independence.providers import ForegroundUNetProvider, UNetConfig

MODEL_KIND = "segment-unet"


def load_segmenter(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[ForegroundUNetProvider, dict[str, Any]]:
    """Load a ``segment-unet`` model folder (or a segment run folder holding ``model/``).

    Returns:
        ``(provider in eval mode on device, config.json dict)``. ``header["threshold"]`` is the
        binarisation threshold (0.5 unless tuned).

    Raises:
        MaskgenError: missing/corrupt folder, another system's folder, or mismatched weights.
    """
    from maskgen.engine import load_model_folder, load_state_dict_strict

    header, state = load_model_folder(path, MODEL_KIND, device=device)
    try:
        cfg = UNetConfig.from_dict(header["config"]["unet"])
    except (KeyError, TypeError, ValueError):
        raise MaskgenError(f"{path}: config.json has no valid 'unet' settings") from None
    model = ForegroundUNetProvider(cfg)
    load_state_dict_strict(model, state, path)
    return model.to(device).eval(), header


@torch.no_grad()
def predict_soft_tensor(
    model: ForegroundUNetProvider, images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """``N x 3 x S x S`` float in ``[0, 1]`` (``S`` = the model's size) -> ``N x 1 x S x S``."""
    model.eval()
    outs = [model.alpha(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(outs) if outs else images.new_zeros((0, 1, *images.shape[2:]))


@torch.no_grad()
def predict_soft_masks(
    model: ForegroundUNetProvider,
    images: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Soft masks for ``N x H x W x 3`` uint8 images, returned at ``H x W`` (float32, [0, 1]).

    Images are resized to the model's ``S x S`` (bilinear, antialiased) and the masks resized
    back (bilinear), as box crops are handled during training.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be N x H x W x 3, got {images.shape}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    s = model.cfg.size
    n, h, w, _ = images.shape
    x = (
        torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
        .to(dev)
        .permute(0, 3, 1, 2)
        .float()
        / 255.0
    )
    if (h, w) != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    m = predict_soft_tensor(model, x, batch_size)
    if (h, w) != (s, s):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    return m[:, 0].clamp(0, 1).cpu().numpy().astype(np.float32)


def predict_folder(
    model_path: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    device: str = "cpu",
    threshold: float | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Predict every image of a folder; write ``out/soft`` and ``out/binary`` PNGs.

    Each image is predicted at its own size (resized to the model's and back). Returns a
    summary dict (count, threshold, folders).
    """
    from maskgen.core.io import read_image, refuse_overwrite, write_image, write_json
    from maskgen.data.segmentation_sets import list_images

    out = Path(out)
    model, header = load_segmenter(model_path, device)
    files = list_images(images, "image folder")
    refuse_overwrite(out / "binary", force)
    thr = float(header.get("threshold", 0.5) if threshold is None else threshold)
    for p in files:
        img = read_image(p, "RGB")
        soft = predict_soft_masks(model, img[None], device=device)[0]
        write_image(out / "soft" / f"{p.stem}.png", (soft * 255 + 0.5).astype(np.uint8))
        write_image(out / "binary" / f"{p.stem}.png", (soft >= thr).astype(np.uint8) * 255)
    summary = {
        "n_images": len(files),
        "threshold": thr,
        "model": str(model_path),
        "stage": header.get("stage"),
    }
    write_json(out / "predict.json", summary)
    return summary


def grabcut_mask(
    image: np.ndarray, inset: int = 3, iterations: int = 5, seed: int = 0
) -> np.ndarray:
    """GrabCut (OpenCV) for one box crop: ``H x W x 3`` uint8 RGB -> ``H x W`` bool.

    Initialised with the rectangle ``inset`` pixels inside the crop on each side (the box-level
    label: everything outside is background). ``seed`` fixes OpenCV's RNG (its GMM init uses it).
    """
    import cv2

    h, w = image.shape[:2]
    inset = max(1, min(inset, (min(h, w) - 2) // 4))
    rect = (inset, inset, w - 2 * inset, h - 2 * inset)
    mask = np.zeros((h, w), np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    bgr = np.ascontiguousarray(image[..., ::-1])
    try:
        cv2.grabCut(bgr, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        # Degenerate colour statistics (e.g. a flat image): fall back to the rectangle.
        mask[:] = cv2.GC_BGD
        mask[rect[1] : rect[1] + rect[3], rect[0] : rect[0] + rect[2]] = cv2.GC_PR_FGD
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def evaluate_masks(
    pred: dict[str, np.ndarray], gt: dict[str, np.ndarray], where: str = "prediction"
) -> dict[str, Any]:
    """Foreground metrics (DESIGN §4, fixed polarity) of binary masks keyed by image name.

    Uses :class:`maskgen.core.metrics.ForegroundAccumulator`: ``dataset`` (counts summed over all
    pixels), ``per_image_mean`` and ``per_image`` (name -> fg_iou, bg_iou, miou, pixel_acc).

    Raises:
        MaskgenError: a ground-truth mask without prediction, or masks of different sizes.
    """
    from maskgen.core.metrics import ForegroundAccumulator

    missing = [n for n in gt if n not in pred]
    if missing:
        raise MaskgenError(
            f"{where}: no mask for {len(missing)} ground-truth image(s), e.g. {missing[0]}"
        )
    acc = ForegroundAccumulator()
    per_image = {}
    for name in sorted(gt):
        p, g = np.asarray(pred[name]).astype(bool), np.asarray(gt[name]).astype(bool)
        if p.shape != g.shape:
            raise MaskgenError(
                f"{where}/{name}: mask is {p.shape[1]}x{p.shape[0]}, ground truth is "
                f"{g.shape[1]}x{g.shape[0]}"
            )
        per_image[name] = acc.add(p, g)
    out = acc.summary()
    out["per_image"] = per_image
    return out


def grabcut_folder(images: str | os.PathLike[str], inset: int = 3) -> dict[str, np.ndarray]:
    """:func:`grabcut_mask` of every image of a folder, keyed by file stem."""
    from maskgen.core.io import read_image
    from maskgen.data.segmentation_sets import list_images

    return {p.stem: grabcut_mask(read_image(p, "RGB"), inset=inset) for p in list_images(images)}


__all__ = [
    "MODEL_KIND",
    "evaluate_masks",
    "grabcut_folder",
    "grabcut_mask",
    "load_segmenter",
    "predict_folder",
    "predict_soft_masks",
    "predict_soft_tensor",
]
