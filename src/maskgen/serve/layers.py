"""An image decomposed into instance layers over a background plate, as immutable states.

The editor's model of a scene (supplementary §3.3, Fig. 6): every instance becomes an RGBA
layer -- its completed (amodal) mask as alpha, its visible pixels plus inpainted colours where it
was hidden -- and the pixels under all visible masks are inpainted in a background plate. An edit
re-composites the layers; nothing is completed or inpainted again except by ``amodal_box``.

States are immutable (:class:`Layer` and :class:`SceneState` are frozen; arrays are never
written after construction), so an edit returns a new state that *shares* every unchanged layer
with the old one: the editor's undo history costs one small object per step, not a copy of the
scene.

This is the serve package's immutable counterpart of :class:`maskgen.editing.scene.Scene` (a
mutable scene for the library and the CLI): the same decomposition -- completion, the occlusion
order of :mod:`maskgen.editing.order`, order-consistent masks, layer colours and plate from an
:class:`~maskgen.inpainting.Inpainter` -- but kept as states an editor can step back through,
with each completion's samples, consistency scores and uncertainty at hand for the page. Conventions: masks are bool in image pixel
coordinates (row ``y``, column ``x``); boxes ``(x0, y0, x1, y1)`` half-open; a layer's arrays
cover its ``region`` of the *original* image and are drawn shifted by ``(dx, dy)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskgen.amodal.predictor import AmodalPredictor, Completion, ImageInput
from maskgen.errors import MaskgenError

__all__ = ["Layer", "Rendered", "SceneState", "complete", "complete_layers", "decompose", "render"]

DEFAULT_SAMPLES = 6


@dataclass(frozen=True, eq=False)
class Layer:
    """One instance as an RGBA layer.

    Attributes:
        id: annotation id (what the API calls the instance).
        label: category id.
        region: ``(x0, y0, x1, y1)`` integer pixel region of the original image the crops cover.
        rgb: ``h x w x 3`` uint8 colours over the region (visible pixels, inpainted elsewhere).
        visible: ``h x w`` bool visible mask in the input image.
        masks: candidate amodal masks (``h x w`` bool): ``masks[0]`` the completion's mode,
            ``masks[1:]`` its posterior samples.
        scores: consistency score of each candidate (same order).
        choice: index of the candidate used as alpha.
        uncertainty: the completion's mean posterior sigma.
        probability: ``h x w`` float32 decoder probabilities of the mode (or None).
        amodal_box: the box the completion was decoded into (original image coordinates).
        box_source: ``"predicted"``, ``"supplied"`` (drawn by the user) or ``"visible-fallback"``.
        dx, dy: the layer's offset in pixels.
    """

    id: int
    label: int
    region: tuple[int, int, int, int]
    rgb: np.ndarray
    visible: np.ndarray
    masks: tuple[np.ndarray, ...]
    scores: tuple[float, ...]
    choice: int
    uncertainty: float
    probability: np.ndarray | None
    amodal_box: tuple[float, float, float, float]
    box_source: str
    dx: int = 0
    dy: int = 0

    @property
    def alpha(self) -> np.ndarray:
        return self.masks[self.choice]

    def replace(self, **changes: Any) -> Layer:
        return dataclasses.replace(self, **changes)

    def placed_box(self) -> tuple[int, int, int, int]:
        """The region shifted by the offset (may reach outside the image)."""
        x0, y0, x1, y1 = self.region
        return x0 + self.dx, y0 + self.dy, x1 + self.dx, y1 + self.dy


@dataclass(frozen=True, eq=False)
class SceneState:
    """A scene at one point of its history.

    Attributes:
        plate: ``H x W x 3`` uint8 background with every instance inpainted away.
        layers: the layers back to front (the last one is nearest the camera).
    """

    plate: np.ndarray
    layers: tuple[Layer, ...]

    @property
    def height(self) -> int:
        return int(self.plate.shape[0])

    @property
    def width(self) -> int:
        return int(self.plate.shape[1])

    def index(self, instance_id: int) -> int:
        for i, layer in enumerate(self.layers):
            if layer.id == instance_id:
                return i
        raise KeyError(instance_id)

    def layer(self, instance_id: int) -> Layer:
        return self.layers[self.index(instance_id)]

    def with_layers(self, layers: Sequence[Layer]) -> SceneState:
        return SceneState(self.plate, tuple(layers))


@dataclass
class Rendered:
    """A composited state: the image and each layer's current masks (full size)."""

    image: np.ndarray
    amodal: dict[int, np.ndarray]  # instance id -> H x W bool, as placed (clipped to the image)
    visible: dict[int, np.ndarray]  # instance id -> H x W bool, what shows of it


def _placement(
    layer: Layer, height: int, width: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(image slices, crop slices) of the part of a placed layer inside the image."""
    x0, y0, x1, y1 = layer.placed_box()
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, width), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    img = (slice(cy0, cy1), slice(cx0, cx1))
    crop = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    return img, crop


def render(state: SceneState) -> Rendered:
    """Composite the layers over the plate (binary alpha, back to front)."""
    h, w = state.height, state.width
    out = state.plate.copy()
    amodal: dict[int, np.ndarray] = {}
    for layer in state.layers:
        full = np.zeros((h, w), bool)
        place = _placement(layer, h, w)
        if place is not None:
            (ys, xs), (cys, cxs) = place
            a = layer.alpha[cys, cxs]
            full[ys, xs] = a
            region = out[ys, xs]
            region[a] = layer.rgb[cys, cxs][a]
        amodal[layer.id] = full
    visible: dict[int, np.ndarray] = {}
    covered = np.zeros((h, w), bool)
    for layer in reversed(state.layers):
        m = amodal[layer.id]
        visible[layer.id] = m & ~covered
        covered |= m
    return Rendered(out, amodal, visible)


# ------------------------------------------------------------------------------ decomposition


def _crop(a: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = region
    return np.ascontiguousarray(a[y0:y1, x0:x1])


def _make_layer(
    image: np.ndarray,
    visible: np.ndarray,
    comp: Completion,
    instance_id: int,
    label: int,
    inpainter: Any,
    allowed: np.ndarray | None = None,
) -> Layer:
    """A layer from one completion: alpha candidates, colours inpainted from its own pixels.

    ``allowed`` (``H x W`` bool): the only pixels outside the visible mask a candidate may keep
    (the visible masks of the instances in front), so that compositing the layers in their
    order reproduces the input image exactly.
    """
    region = tuple(int(v) for v in comp.region)
    x0, y0, x1, y1 = region
    vis = _crop(visible, region)
    keep = None if allowed is None else vis | _crop(allowed, region)
    cands = [_crop(comp.amodal_mask, region)] + [
        np.ascontiguousarray(s[y0:y1, x0:x1]) for s in comp.samples
    ]
    if keep is not None:
        cands = [c & keep for c in cands]
    union = np.logical_or.reduce(cands)
    hole_crop = union & ~vis
    rgb = _crop(image, region)
    if hole_crop.any():
        hole = np.zeros(visible.shape, bool)
        hole[y0:y1, x0:x1] = hole_crop
        filled = inpainter.inpaint_instance(image, hole, visible, hole | visible, label=label)
        rgb = _crop(filled, region)
    prob = comp.probability
    return Layer(
        id=int(instance_id),
        label=int(label),
        region=region,  # type: ignore[arg-type]
        rgb=rgb,
        visible=vis,
        masks=tuple(cands),
        scores=(float(comp.consistency), *(float(c) for c in comp.sample_consistency)),
        choice=0,
        uncertainty=float(comp.uncertainty),
        probability=None if prob is None else _crop(prob, region),
        amodal_box=tuple(float(v) for v in comp.amodal_box),  # type: ignore[arg-type]
        box_source=str(comp.box_source),
    )


def complete(
    visible_masks: np.ndarray,
    which: Sequence[int],
    predictor: AmodalPredictor,
    *,
    amodal_boxes: np.ndarray | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> list[Completion]:
    """Completions of instances ``which`` (indices); every instance counts as a possible
    occluder."""
    sel = np.zeros(len(visible_masks), bool)
    sel[list(which)] = True
    item = ImageInput(visible_masks, amodal_boxes=amodal_boxes, complete=sel)
    return next(
        iter(predictor.complete_images([item], samples=samples, seed=seed, return_probability=True))
    )


def complete_layers(
    image: np.ndarray,
    visible_masks: np.ndarray,
    which: Sequence[int],
    ids: Sequence[int],
    labels: Sequence[int],
    predictor: AmodalPredictor,
    inpainter: Any,
    *,
    behind: Sequence[Sequence[int]] | None = None,
    amodal_boxes: np.ndarray | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> list[Layer]:
    """Complete instances ``which`` (indices into ``visible_masks``) and make their layers.

    ``behind[n]``: the instances drawn behind ``which[n]``; its candidates may not claim their
    visible pixels (None: no restriction beyond the predictor's).
    """
    comps = complete(
        visible_masks, which, predictor, amodal_boxes=amodal_boxes, samples=samples, seed=seed
    )
    layers = []
    for n, (i, c) in enumerate(zip(which, comps, strict=True)):
        allowed = None
        if behind is not None:
            others = np.ones(len(visible_masks), bool)
            others[i] = False
            others[list(behind[n])] = False
            allowed = visible_masks[others].any(axis=0)
        layers.append(
            _make_layer(image, visible_masks[i], c, ids[i], labels[i], inpainter, allowed)
        )
    return layers


def decompose(
    image: np.ndarray,
    visible_masks: np.ndarray,
    ids: Sequence[int],
    labels: Sequence[int],
    predictor: AmodalPredictor,
    inpainter: Any,
    *,
    depth: Sequence[int | None] | None = None,
    samples: int = DEFAULT_SAMPLES,
) -> SceneState:
    """Decompose an image into layers (completion, order, background plate).

    The order is the annotations' depth when every instance has one (KINS, COCOA), else
    :func:`maskgen.editing.order.occlusion_order` of the completions. Each layer's candidates
    keep only the completed pixels under instances in front of it, so the layers composited
    in order reproduce the input.

    Args:
        image: ``H x W x 3`` uint8.
        visible_masks: ``K x H x W`` bool, pairwise disjoint, each non-empty.
        ids, labels: per instance.
        predictor: the Amodal-VAE predictor.
        inpainter: an :class:`~maskgen.inpainting.Inpainter`.
        depth: known depth per instance (larger is nearer, as in
            :class:`~maskgen.data.types.Instance`).
        samples: posterior samples per instance (the candidates the editor cycles through).
    """
    from maskgen.editing.order import occlusion_order

    img = np.asarray(image)
    vm = np.asarray(visible_masks, dtype=bool)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise MaskgenError(f"image: expected H x W x 3 uint8, got {img.shape} {img.dtype}")
    if vm.ndim != 3 or vm.shape[1:] != img.shape[:2]:
        raise MaskgenError(
            f"masks: expected K x {img.shape[0]} x {img.shape[1]}, got {tuple(vm.shape)}"
        )
    k = len(vm)
    comps = complete(vm, range(k), predictor, samples=samples)
    if depth is not None and k and all(d is not None for d in depth):
        back_to_front = sorted(range(k), key=lambda i: (depth[i], i))  # type: ignore[arg-type]
    elif k > 1:
        back_to_front = occlusion_order(vm, comps).ranking[::-1]
    else:
        back_to_front = list(range(k))
    rank = {i: r for r, i in enumerate(back_to_front)}
    layers = {}
    for i, c in enumerate(comps):
        allowed = vm[[j for j in range(k) if rank[j] > rank[i]]].any(axis=0)
        layers[i] = _make_layer(img, vm[i], c, ids[i], labels[i], inpainter, allowed)
    hole = vm.any(axis=0) if k else np.zeros(img.shape[:2], bool)
    plate = inpainter.inpaint_background(img, hole, ~hole) if hole.any() else img.copy()
    plate.setflags(write=False)
    return SceneState(plate, tuple(layers[i] for i in back_to_front))
