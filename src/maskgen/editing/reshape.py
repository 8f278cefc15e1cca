"""Re-shaping an instance: its appearance rendered into a new full mask (supplementary §3.4,
Fig. 10), and the baselines it is measured against.

Given an image, an instance's visible mask and a **new full mask** (image coordinates), a method
returns the image with the instance's appearance drawn inside the new mask (unchanged outside):

- :func:`mean_fill` -- the mean colour of the visible pixels (baseline);
- :func:`known_plus_mean` -- the image's own pixels where the new mask overlaps the visible mask,
  the mean colour elsewhere (a reference: exact where the material does not move);
- :func:`push_pull_fill` -- the same with a smooth fill of the visible colours instead of their
  mean (a reference: the synthesizer's coarse input);
- :func:`warp_fill` -- the visible pixels warped onto the new mask: by the exact affine map of a
  rigid re-shape, or by a thin-plate spline fitted to outline correspondences (new outline ->
  old outline, 48 points evenly spaced by arc length, cyclically aligned) otherwise; points that
  land outside the visible mask take the nearest visible pixel's colour;
- synthesis -- the mask-conditioned generator (:mod:`maskgen.synthesis`, GauGAN with the full
  mask as SPADE input) through ``synthesize(image, visible, new_mask)``.

**The editor's choice** (:func:`reshape_appearance`): a rigid re-shape (scale, rotation, flip:
the new shape *is* a warp of the old one) is warped, which is near-exact; any other new shape is
synthesised, the instance's own visible pixels kept where the new mask covers them (observed
pixels stay, as when a posterior sample replaces a completion). The result says which was used.

**Specs** (:func:`parse_spec`, the ``--reshape`` syntax ``ID:KIND[=VALUE]``):
``sample=K`` (the instance's posterior sample ``K``), ``prior=SEED`` (a shape drawn from the
Amodal-VAE prior, decoded into the instance's amodal box), ``mask=FILE.png`` (a user's full
mask, image size), ``scale=S``, ``rotate=DEG`` (counter-clockwise on screen), ``flip``
(left-right); rigid ones act about the centroid of the instance's current full mask.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskgen.core.deform import (
    affine_about,
    apply_affine,
    centroid,
    fit_tps,
    invert_affine,
    match_outlines,
    outline_points,
)
from maskgen.errors import MaskgenError

__all__ = [
    "KINDS",
    "RIGID_KINDS",
    "ReshapeResult",
    "ReshapeSpec",
    "known_plus_mean",
    "mean_fill",
    "parse_spec",
    "prior_mask",
    "push_pull_fill",
    "read_user_mask",
    "reshape_appearance",
    "rigid_transform",
    "warp_fill",
]

RIGID_KINDS = ("scale", "rotate", "flip")
KINDS = ("sample", "prior", "mask", *RIGID_KINDS)
OUTLINE_POINTS = 48
MAX_SCALE = 16.0


@dataclass(frozen=True)
class ReshapeSpec:
    """A parsed ``--reshape`` value: ``kind`` in :data:`KINDS`; ``value`` an int (sample,
    prior), a float (scale, rotate), a path string (mask) or None (flip)."""

    kind: str
    value: Any = None

    @property
    def rigid(self) -> bool:
        return self.kind in RIGID_KINDS

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}={self.value}"


def parse_spec(text: str, flag: str = "--reshape") -> tuple[int, ReshapeSpec]:
    """``"ID:KIND[=VALUE]"`` -> ``(annotation id, spec)``.

    Raises:
        MaskgenError: a malformed spec, an unknown kind, or a bad value (scale not finite and
            positive, rotation not finite, a negative sample index or seed).
    """
    head, sep, rest = str(text).partition(":")
    if not sep or not head.strip().lstrip("-").isdigit():
        raise MaskgenError(
            f"{flag} {text}: expected ID:KIND[=VALUE] (KIND one of {', '.join(KINDS)})"
        )
    kind, eq, value = rest.partition("=")
    kind = kind.strip()
    if kind not in KINDS:
        raise MaskgenError(
            f"{flag} {text}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
        )
    if kind == "flip":
        if eq:
            raise MaskgenError(f"{flag} {text}: flip takes no value")
        return int(head), ReshapeSpec("flip")
    if not eq or not value.strip():
        raise MaskgenError(f"{flag} {text}: {kind} needs a value ({kind}=...)")
    value = value.strip()
    if kind == "mask":
        return int(head), ReshapeSpec("mask", value)
    if kind in ("sample", "prior"):
        if not value.isdigit():
            raise MaskgenError(f"{flag} {text}: {kind} expects an integer >= 0, got {value!r}")
        return int(head), ReshapeSpec(kind, int(value))
    try:
        v = float(value)
    except ValueError:
        raise MaskgenError(f"{flag} {text}: {kind} expects a number, got {value!r}") from None
    if not math.isfinite(v):
        raise MaskgenError(f"{flag} {text}: {kind} must be finite")
    if kind == "scale" and not 0 < v <= MAX_SCALE:
        raise MaskgenError(f"{flag} {text}: scale must be in (0, {MAX_SCALE:g}]")
    return int(head), ReshapeSpec(kind, v)


def rigid_transform(spec: ReshapeSpec, mask: np.ndarray) -> np.ndarray:
    """The forward ``2 x 3`` map of a rigid spec about the centroid of ``mask`` (non-empty)."""
    if not mask.any():
        raise MaskgenError("reshape: the instance's mask is empty")
    c = centroid(mask)
    if spec.kind == "scale":
        return affine_about(c, scale=float(spec.value))
    if spec.kind == "rotate":
        return affine_about(c, degrees=float(spec.value))
    if spec.kind == "flip":
        return affine_about(c, flip=True)
    raise MaskgenError(f"reshape: {spec} is not a rigid re-shape")


def prior_mask(predictor: Any, box: np.ndarray, seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A shape drawn from the Amodal-VAE prior ``z ~ N(0, I)`` (``numpy`` generator ``seed``),
    decoded and pasted into ``box`` ``(x0, y0, x1, y1)`` of an image of ``shape``, thresholded
    at the model's threshold: ``H x W`` bool."""
    from maskgen.core.masks import paste_mask

    dim = int(predictor.model.config.latent_dim)
    z = np.random.default_rng(int(seed)).standard_normal((1, dim)).astype(np.float32)
    prob = predictor.decode(z)[0]
    return paste_mask(prob, np.asarray(box, np.float64), *shape) >= predictor.threshold


def read_user_mask(
    mask: str | os.PathLike[str] | np.ndarray, shape: tuple[int, int], where: str = "--reshape"
) -> np.ndarray:
    """A user's full mask: a PNG path (grey or colour; exactly two values, the larger one the
    mask, or one non-zero value) or an array, of the image's ``shape``: ``H x W`` bool.

    Raises:
        MaskgenError: a missing or unreadable file, a wrong size, not a two-valued image, empty.
    """
    if isinstance(mask, np.ndarray):
        arr = mask
        name = "mask"
    else:
        from PIL import Image, UnidentifiedImageError

        name = str(mask)
        if not Path(name).is_file():
            raise MaskgenError(f"{where}: {name}: no such file")
        try:
            with Image.open(name) as img:
                arr = np.asarray(img.convert("L"))
        except (OSError, UnidentifiedImageError, ValueError):
            raise MaskgenError(f"{where}: {name}: not a readable image") from None
    if arr.ndim != 2 or arr.shape != tuple(shape):
        raise MaskgenError(
            f"{where}: {name}: a {arr.shape[1] if arr.ndim > 1 else '?'}x{arr.shape[0]} mask for a "
            f"{shape[1]}x{shape[0]} image (the mask must be the image's size)"
        )
    values = np.unique(arr)
    if len(values) > 2:
        raise MaskgenError(f"{where}: {name}: not a mask ({len(values)} distinct values; need 2)")
    out = arr == values[-1] if len(values) == 2 else arr != 0
    if arr.dtype == bool:
        out = arr.copy()
    if not out.any():
        raise MaskgenError(f"{where}: {name}: the mask is empty")
    return out


# ---------------------------------------------------------------------- appearance methods


def _mean(image: np.ndarray, visible: np.ndarray) -> np.ndarray:
    if not visible.any():
        raise MaskgenError("reshape: the instance has no visible pixels to take colours from")
    return image[visible].reshape(-1, 3).mean(axis=0)


def mean_fill(image: np.ndarray, visible: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
    """The mean visible colour inside ``new_mask`` (``H x W x 3`` uint8)."""
    out = image.copy()
    out[new_mask] = np.clip(np.rint(_mean(image, visible)), 0, 255).astype(np.uint8)
    return out


def known_plus_mean(image: np.ndarray, visible: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
    """The image where ``new_mask`` overlaps ``visible``, the mean visible colour elsewhere."""
    out = mean_fill(image, visible, new_mask)
    keep = new_mask & visible
    out[keep] = image[keep]
    return out


def push_pull_fill(image: np.ndarray, visible: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
    """The visible pixels where ``new_mask`` covers them, a smooth push-pull fill of the visible
    colours elsewhere (:func:`maskgen.inpainting.samplers.push_pull`; the synthesizer's coarse
    input, so a reference for what its generator adds)."""
    from maskgen.inpainting.samplers import push_pull

    _mean(image, visible)  # the same error as the other methods when nothing is visible
    fill = np.clip(np.rint(push_pull(image, visible)), 0, 255).astype(np.uint8)
    out = image.copy()
    out[new_mask] = fill[new_mask]
    return out


def extend_colours(image: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``image`` with every pixel outside ``visible`` given its nearest visible pixel's colour."""
    _, labels = cv2.distanceTransformWithLabels(
        (~visible).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(visible)  # label k (1-based) is the k-th zero pixel in row-major order
    idx = labels - 1
    return image[ys[idx], xs[idx]]


def _sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear ``N x 3`` samples of ``image`` at float points, edge replicated."""
    h, w = image.shape[:2]
    mx = np.clip(xs, 0, w - 1).astype(np.float32).reshape(-1, 1)
    my = np.clip(ys, 0, h - 1).astype(np.float32).reshape(-1, 1)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]


def warp_fill(
    image: np.ndarray,
    visible: np.ndarray,
    new_mask: np.ndarray,
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """The visible pixels warped onto ``new_mask`` (module docstring).

    Args:
        transform: the forward ``2 x 3`` map of a rigid re-shape; None: thin-plate spline from
            outline correspondences.
    """
    if not visible.any():
        raise MaskgenError("reshape: the instance has no visible pixels to warp")
    ext = extend_colours(image, visible)
    ys, xs = np.nonzero(new_mask)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    if transform is not None:
        src = apply_affine(invert_affine(transform), pts)
    else:
        old = outline_points(visible, OUTLINE_POINTS)
        new = match_outlines(old, outline_points(new_mask, OUTLINE_POINTS))
        centres = np.array([[*centroid(new_mask)]]), np.array([[*centroid(visible)]])
        tps = fit_tps(np.concatenate([new, centres[0]]), np.concatenate([old, centres[1]]), 1e-3)
        src = tps(pts)
    out = image.copy()
    out[ys, xs] = _sample(ext, src[:, 0], src[:, 1])
    return out


@dataclass
class ReshapeResult:
    """What :func:`reshape_appearance` made: ``image`` ``H x W x 3`` uint8 (the instance drawn
    inside the new mask) and ``method`` (``"warp"`` or ``"synthesis"``)."""

    image: np.ndarray
    method: str


def reshape_appearance(
    image: np.ndarray,
    visible: np.ndarray,
    new_mask: np.ndarray,
    transform: np.ndarray | None = None,
    synthesizer: Any = None,
    keep_known: bool = True,
) -> ReshapeResult:
    """The editor's choice (module docstring): warp a rigid re-shape (``transform`` given),
    synthesise any other -- keeping, with ``keep_known``, the instance's own visible pixels
    where the new mask covers them (they are observed, as :meth:`Scene.use_sample` keeps them).

    Raises:
        MaskgenError: a non-rigid re-shape without a synthesizer, or nothing visible.
    """
    if transform is not None:
        return ReshapeResult(warp_fill(image, visible, new_mask, transform), "warp")
    if synthesizer is None:
        raise MaskgenError("reshape: a non-rigid re-shape needs a synthesizer (--synth)")
    if not visible.any():
        raise MaskgenError("reshape: the instance has no visible pixels to take its look from")
    out = np.array(synthesizer.synthesize(image, visible, new_mask), dtype=np.uint8)
    if keep_known:
        shared = new_mask & visible
        out[shared] = image[shared]
    return ReshapeResult(out, "synthesis")
