"""The trained foreground segmenter (teacher or distilled student) as one model API, its
numpy-facing predictor, prediction of a folder, and the GrabCut baseline.

- :class:`Segmenter`: the foreground UNet provider with its binarisation ``threshold`` and
  test-time augmentation ``tta``;
  ``Segmenter.from_folder(path, device)`` reads a ``segment-unet`` model folder (a segment or
  distill run folder's ``model/`` is found automatically), strictly and kind-checked;
  ``model.save_folder(path)`` writes one.
- :class:`SegmentPredictor`: ``predict(crops)`` maps ``N x H x W x 3`` uint8 box crops (any
  ``H x W``; one size per call) to ``N x H x W`` float32 soft masks in ``[0, 1]`` at the crops'
  own size; ``predict_binary`` thresholds them at the model's threshold.
- :func:`predict_folder`: the ``maskgen segment predict`` command's work: ``OUT/soft/*.png``
  (mask x 255) and ``OUT/binary/*.png`` (0/255 at the threshold, or GrabCut-refined with
  ``--refine``: :mod:`maskgen.independence.refine`), written to a temporary folder and renamed
  into place at the end.
- :func:`grabcut_mask`: OpenCV GrabCut initialised with a rectangle a few pixels inside the
  crop (the box-level label), the classical baseline of ``segment evaluate --method grabcut``.

Results of the trained models: ``benchmarks/RESULTS.md``, section ``segment``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskgen.engine.distributed import check_device
from maskgen.errors import MaskgenError
from maskgen.independence.providers import ForegroundUNetProvider, UNetConfig
from maskgen.independence.refine import RefineConfig, refine_masks
from maskgen.independence.tta import check_tta, flip_average

MODEL_KIND = "segment-unet"
#: config.json keys of a model folder that describe where it came from (kept on load/save).
_INFO_KEYS = ("stage", "trained_steps", "run", "teacher")


def check_threshold(value: float, what: str = "--threshold") -> float:
    """``value`` as a float when it is a finite number in ``[0, 1]``; a one-line error if not."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MaskgenError(f"{what} {value!r}: must be a number in [0, 1]") from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise MaskgenError(f"{what} {value}: must be a finite number in [0, 1]")
    return v


class Segmenter(ForegroundUNetProvider):
    """A foreground segmenter: the UNet provider plus its binarisation threshold.

    Same network and state dict as :class:`ForegroundUNetProvider` (forward: ``N x 3 x S x S``
    float in ``[0, 1]`` -> ``(images, alpha N x 1 x S x S)``).

    Args:
        cfg: the UNet's settings (``cfg.size`` is the input side ``S``).
        threshold: soft mask value at and above which a pixel is foreground (0.5 unless tuned).
        info: where the model came from (``stage`` teacher/student, ``trained_steps``, ``run``,
            ``teacher``), stored in ``config.json``.
        tta: ``"flip"``: predictions (:func:`predict_soft_tensor`) are the mean of the crop's
            and its mirror image's soft masks (:mod:`~maskgen.independence.tta`); ``"none"``:
            one pass, as the paper. Stored in ``config.json``; training ignores it.
    """

    def __init__(
        self,
        cfg: UNetConfig,
        threshold: float = 0.5,
        info: dict[str, Any] | None = None,
        tta: str = "none",
    ) -> None:
        super().__init__(cfg)
        self.threshold = check_threshold(threshold, "threshold")
        self.info = dict(info or {})
        self.tta = check_tta(tta)

    @classmethod
    def from_folder(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> Segmenter:
        """Load a ``segment-unet`` model folder (or a run folder holding ``model/``), in eval
        mode on ``device``. The weights are read on the CPU, then moved.

        Raises:
            MaskgenError: missing/corrupt folder, another system's folder, mismatched weights
                or a threshold outside ``[0, 1]``.
        """
        from maskgen.engine import load_model_folder, load_state_dict_strict

        device = check_device(device)
        header, state = load_model_folder(path, MODEL_KIND, device="cpu")
        try:
            cfg = UNetConfig.from_dict(header["config"]["unet"])
        except (KeyError, TypeError, ValueError):
            raise MaskgenError(f"{path}: config.json has no valid 'unet' settings") from None
        thr = check_threshold(header.get("threshold", 0.5), f"{path}: threshold")
        tta = check_tta(header.get("tta", "none"), f"{path}: tta")
        model = cls(cfg, thr, {k: header[k] for k in _INFO_KEYS if k in header}, tta)
        load_state_dict_strict(model, state, path)
        return model.to(device).eval()

    def save_folder(self, path: str | os.PathLike[str], **info: Any) -> Path:
        """Write this model as a ``segment-unet`` model folder (``info`` updates :attr:`info`)."""
        from maskgen.engine import save_model_folder

        self.info.update(info)
        extra = {"threshold": self.threshold, "tta": self.tta, **self.info}
        return save_model_folder(
            path, MODEL_KIND, {"unet": self.cfg.to_dict()}, self.state_dict(), extra=extra
        )


@torch.no_grad()
def predict_soft_tensor(
    model: ForegroundUNetProvider, images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """``N x 3 x S x S`` float in ``[0, 1]`` (``S`` = the model's size) -> ``N x 1 x S x S``;
    the flip average when the model's ``tta`` is ``"flip"``."""
    model.eval()
    fn = model.alpha
    if getattr(model, "tta", "none") == "flip":
        fn = functools.partial(flip_average, model.alpha)
    outs = [fn(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(outs) if outs else images.new_zeros((0, 1, *images.shape[2:]))


class SegmentPredictor:
    """Numpy-facing prediction with a :class:`Segmenter`.

    Args:
        model: the segmenter (moved to ``device``, eval mode).
        device: where to run it (default: the model's device).
        batch_size: crops per forward pass.
    """

    def __init__(
        self, model: Segmenter, device: str | torch.device | None = None, batch_size: int = 64
    ) -> None:
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        tta: str | None = None,
    ) -> SegmentPredictor:
        """A predictor for the model folder (or run folder) ``path``; ``tta`` (``"none"`` or
        ``"flip"``) overrides the test-time augmentation saved with the model."""
        model = Segmenter.from_folder(path, device)
        if tta is not None:
            model.tta = check_tta(tta)
        return cls(model, device)

    @property
    def threshold(self) -> float:
        """The model's binarisation threshold."""
        return self.model.threshold

    @torch.no_grad()
    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Soft masks: ``N x H x W x 3`` uint8 -> ``N x H x W`` float32 in ``[0, 1]``.

        Crops are resized to the model's ``S x S`` (bilinear, antialiased) and the masks resized
        back (bilinear), as box crops are handled during training.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be N x H x W x 3 uint8, got {crops.shape} {crops.dtype}")
        s = self.model.cfg.size
        n, h, w, _ = crops.shape
        x = torch.from_numpy(np.array(crops, copy=True)).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        m = predict_soft_tensor(self.model, x, self.batch_size)
        if (h, w) != (s, s):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        return m[:, 0].clamp(0, 1).cpu().numpy().astype(np.float32)

    def predict_binary(
        self,
        crops: np.ndarray,
        threshold: float | None = None,
        refine: RefineConfig | None = None,
    ) -> np.ndarray:
        """Binary masks ``N x H x W`` bool: soft mask ``>= threshold`` (default: the model's);
        with ``refine`` (and ``refine.refine`` on) GrabCut seeded by the soft mask instead
        (:func:`~maskgen.independence.refine.refine_masks`)."""
        thr = self.threshold if threshold is None else check_threshold(threshold)
        if refine is not None and refine.refine:
            refine.check_threshold(thr)  # before the forward pass
            return refine_masks(crops, self.predict(crops), thr, refine)
        return self.predict(crops) >= thr


def predict_folder(
    model_path: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    device: str = "cpu",
    threshold: float | None = None,
    force: bool = False,
    refine: RefineConfig | None = None,
    tta: str | None = None,
) -> dict[str, Any]:
    """Predict every image of a folder; write ``out/soft``, ``out/binary`` and
    ``out/predict.json``. With ``refine`` (``refine.refine`` on) ``binary`` holds the
    GrabCut-refined masks and ``predict.json`` the refinement's settings. ``tta`` overrides the
    model's test-time augmentation (None: the model's; ``predict.json`` records the one used).

    Everything is checked before anything is written; the results go to a temporary folder that
    replaces ``out`` at the end, so a failed run leaves no partial ``out``. An existing ``out``
    is replaced only with ``force`` and only when it is an earlier prediction (has
    ``predict.json``). Each image is predicted at its own size. Returns the summary dict.
    """
    from maskgen.core.io import prepare_out_dir, read_image, write_image, write_json
    from maskgen.data.segmentation_sets import list_images, staged_output

    if threshold is not None:
        check_threshold(threshold)
    if tta is not None:
        check_tta(tta, "--tta")
    prepare_out_dir(out, force, marker="predict.json")
    predictor = SegmentPredictor.from_folder(model_path, device, tta)
    files = list_images(images, "image folder")
    thr = predictor.threshold if threshold is None else float(threshold)
    refine = refine if refine is not None and refine.refine else None
    if refine is not None:
        refine.check_threshold(thr)
    with staged_output(out, force, marker="predict.json") as tmp:
        for p in files:
            crop = read_image(p, "RGB")[None]
            soft = predictor.predict(crop)
            hard = soft >= thr if refine is None else refine_masks(crop, soft, thr, refine)
            write_image(tmp / "soft" / f"{p.stem}.png", (soft[0] * 255 + 0.5).astype(np.uint8))
            write_image(tmp / "binary" / f"{p.stem}.png", hard[0].astype(np.uint8) * 255)
        summary = {
            "n_images": len(files),
            "threshold": thr,
            "model": str(model_path),
            "stage": predictor.model.info.get("stage"),
            "tta": predictor.model.tta,
            "refine": None if refine is None else dataclasses.asdict(refine),
        }
        write_json(tmp / "predict.json", summary)
    return summary


def grabcut_mask(
    image: np.ndarray, inset: int = 3, iterations: int = 5, seed: int = 0
) -> np.ndarray:
    """GrabCut (OpenCV) for one box crop: ``H x W x 3`` uint8 RGB -> ``H x W`` bool.

    Initialised with the rectangle ``inset`` pixels inside the crop on each side (the box-level
    label: everything outside is background); an inset above a quarter of the crop's side is
    reduced to that. ``seed`` fixes OpenCV's RNG (its GMM init uses it).

    Raises:
        MaskgenError: the rectangle would be empty (``2 * inset + 2 >= min(H, W)``).
    """
    import cv2

    h, w = image.shape[:2]
    if inset < 0 or 2 * inset + 2 >= min(h, w):
        raise MaskgenError(f"--inset {inset}: leaves no rectangle inside a {w}x{h} crop")
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
    """Foreground metrics of binary masks keyed by image name, with a fixed polarity
    (foreground = the mask, never flipped; ``docs/design.md``, "Evaluation").

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
    """:func:`grabcut_mask` of every image of a folder, keyed by file stem (all images are
    read and the inset checked against each before GrabCut runs)."""
    from maskgen.core.io import read_image
    from maskgen.data.segmentation_sets import list_images

    crops = {p.stem: read_image(p, "RGB") for p in list_images(images)}
    for name, im in crops.items():
        h, w = im.shape[:2]
        if inset < 0 or 2 * inset + 2 >= min(h, w):
            raise MaskgenError(
                f"--inset {inset}: larger than the crop {name} ({w}x{h}) allows "
                f"(at most {(min(h, w) - 3) // 2})"
            )
    return {n: grabcut_mask(im, inset=inset) for n, im in crops.items()}


__all__ = [
    "MODEL_KIND",
    "SegmentPredictor",
    "Segmenter",
    "check_threshold",
    "evaluate_masks",
    "grabcut_folder",
    "grabcut_mask",
    "predict_folder",
    "predict_soft_tensor",
]
