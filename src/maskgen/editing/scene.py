"""An image decomposed into RGBA instance layers over a background plate, edited by re-compositing.

The scene-editing application of Amodal-VAE (supplementary §3.3 and Fig. 6: remove an instance,
complete the objects it hid, inpaint them and the background; Fig. 10 moves objects)::

    scene = Scene.from_image(image, visible_masks, predictor, TeleaInpainter())
    scene.erase(2); scene.move(0, dx=10, dy=0); scene.bring_to_front(1)
    edited = scene.render()                 # H x W x 3 uint8
    scene.save_layers("layers/")            # RGBA layers, background plate, manifest

**Decomposition** (:meth:`Scene.from_image`, the only step that runs the model and inpainter):

1. complete every instance (:meth:`~maskgen.amodal.predictor.AmodalPredictor.complete_image`,
   mode and samples; the amodal mask is :func:`~maskgen.editing.erase.revealable_mask`, the mode
   joined with its posterior samples) and decide the occlusion order
   (:mod:`maskgen.editing.order`);
2. make each amodal mask **consistent with the order**: ``A_i`` keeps ``V_i`` and the completed
   pixels lying under the visible masks of instances ranked in front of ``i``; pixels under an
   instance judged behind ``i`` are dropped (``i`` would hide them). Compositing the layers back
   to front then reproduces the input exactly;
3. **layer colour**: the image on ``V_i``; the hidden part ``A_i - V_i`` from
   ``Inpainter.inpaint_instance`` (from ``i``'s own visible pixels);
4. **background plate**: every visible mask removed and filled by
   ``Inpainter.inpaint_background`` from the visible background.

**Edits** change only the layer stack (numpy, no model): erase, move by an offset, reorder, or
swap a completion for one of its posterior samples (which re-inpaints that one layer), or
re-shape an instance (:meth:`Scene.reshape`: a new full mask, the layer warped or re-rendered by
a mask-conditioned synthesizer, :mod:`maskgen.editing.reshape`). Every
:meth:`Scene.render` composites the layers back to front over the plate.

Conventions: images ``H x W x 3`` uint8 RGB, masks ``H x W`` bool; an instance is named by its
index ``i`` in the input (``Scene.ids[i]`` is its annotation id); offsets ``(dx, dy)`` in pixels,
``x`` to the right and ``y`` down; ``Scene.order`` lists indices back to front (the last one is
drawn on top). Overlapping input visible masks are resolved by the order (the nearer wins).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.amodal.predictor import AmodalPredictor
from maskgen.editing.erase import REVEAL_SAMPLES, revealable_mask
from maskgen.editing.order import OcclusionOrder, occlusion_order
from maskgen.editing.reshape import ReshapeSpec
from maskgen.errors import MaskgenError
from maskgen.inpainting.base import Inpainter, TeleaInpainter

__all__ = ["Layer", "Scene"]

MANIFEST = "manifest.json"


@dataclass
class Layer:
    """One instance as an RGBA layer, stored as a crop.

    Attributes:
        id: annotation id; label: class id.
        box: ``(x0, y0, x1, y1)`` integer half-open crop of the layer in its *original* place.
        alpha: ``h x w`` bool amodal mask in the crop.
        colour: ``h x w x 3`` uint8 colours in the crop (zero outside ``alpha``).
        known: ``h x w`` bool the instance's own visible pixels of the input (inpainting source).
        samples: ``S x h x w`` bool alternative amodal masks (posterior samples, order-consistent).
        offset: ``(dx, dy)`` current displacement in pixels.
        erased: removed from the scene.
    """

    id: int
    label: int
    box: tuple[int, int, int, int]
    alpha: np.ndarray
    colour: np.ndarray
    known: np.ndarray
    samples: np.ndarray
    offset: tuple[int, int] = (0, 0)
    erased: bool = False

    def full(self, what: str = "alpha", shape: tuple[int, int] = (0, 0)) -> np.ndarray:
        """``alpha``/``known``/``colour`` pasted at the layer's current place in ``shape``."""
        return _place(getattr(self, what), self.box, self.offset, shape)


def _placement(
    box: tuple[int, int, int, int], offset: tuple[int, int], shape: tuple[int, int]
) -> tuple[tuple[slice, slice] | None, tuple[slice, slice]]:
    """Slices ``(canvas, crop)`` that paste a crop at ``box + offset`` clipped to ``shape``."""
    x0, y0, x1, y1 = box
    dx, dy = offset
    h, w = shape
    cx0, cy0 = max(x0 + dx, 0), max(y0 + dy, 0)
    cx1, cy1 = min(x1 + dx, w), min(y1 + dy, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None, (slice(0, 0), slice(0, 0))
    sub = (slice(cy0 - y0 - dy, cy1 - y0 - dy), slice(cx0 - x0 - dx, cx1 - x0 - dx))
    return (slice(cy0, cy1), slice(cx0, cx1)), sub


def _place(
    crop: np.ndarray,
    box: tuple[int, int, int, int],
    offset: tuple[int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    """A crop (``h x w [x C]``) pasted at ``box + offset`` into a zero ``shape`` canvas."""
    out = np.zeros((*shape, *crop.shape[2:]), crop.dtype)
    dst, sub = _placement(box, offset, shape)
    if dst is not None:
        out[dst] = crop[sub]
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass
class Scene:
    """A decomposed image (module docstring). Build with :meth:`from_image` or
    :meth:`load_layers`.

    Attributes:
        background: ``H x W x 3`` uint8 plate with every object removed and inpainted.
        layers: one :class:`Layer` per input instance, in input order.
        order: layer indices back to front (the current drawing order).
        pairs: ``(front, back)`` index pairs judged in occlusion at decomposition.
        inpainter: used again by :meth:`use_sample`.
    """

    background: np.ndarray
    layers: list[Layer]
    order: list[int]
    pairs: list[tuple[int, int]] = field(default_factory=list)
    inpainter: Inpainter = field(default_factory=TeleaInpainter)

    @property
    def shape(self) -> tuple[int, int]:
        return self.background.shape[:2]

    @property
    def ids(self) -> list[int]:
        return [layer.id for layer in self.layers]

    @property
    def ranking(self) -> list[int]:
        """Indices of the layers still in the scene, nearest the camera first."""
        return [k for k in reversed(self.order) if not self.layers[k].erased]

    # ------------------------------------------------------------------ decomposition
    @classmethod
    def from_image(
        cls,
        image: np.ndarray,
        visible_masks: np.ndarray,
        predictor: AmodalPredictor,
        inpainter: Inpainter | None = None,
        labels: Sequence[int] | None = None,
        ids: Sequence[int] | None = None,
        samples: int = 0,
        seed: int = 0,
        order: OcclusionOrder | None = None,
    ) -> Scene:
        """Decompose an image (module docstring, steps 1-4).

        Args:
            image: ``H x W x 3`` uint8 RGB.
            visible_masks: ``K x H x W`` bool visible masks of its instances.
            predictor: the completion model; inpainter: default :class:`TeleaInpainter`.
            labels, ids: ``K`` class ids (default 0) and annotation ids (default ``0..K-1``).
            samples: posterior samples kept per instance for :meth:`use_sample`.
            seed: seed of the samples.
            order: a precomputed order of the non-empty instances (computed when None).
        """
        img, vm = _check_inputs(image, visible_masks)
        k = len(vm)
        labels = [0] * k if labels is None else [int(v) for v in labels]
        ids = list(range(k)) if ids is None else [int(v) for v in ids]
        if len(labels) != k or len(ids) != k:
            raise MaskgenError(f"labels/ids: expected {k} values each")
        inpainter = inpainter or TeleaInpainter()
        full = np.flatnonzero(vm.reshape(k, -1).any(axis=1))
        amodal, samp = vm.copy(), [np.zeros((0, *vm.shape[1:]), bool) for _ in range(k)]
        ranking: list[int] = []
        pairs: list[tuple[int, int]] = []
        if len(full):
            comps = predictor.complete_image(
                vm[full], samples=max(samples, REVEAL_SAMPLES), seed=seed, return_probability=True
            )
            if order is None and len(full) > 1:
                order = occlusion_order(vm[full], comps)
            for j, c in zip(full.tolist(), comps, strict=True):
                amodal[j] = revealable_mask(c)
                samp[j] = c.samples[:samples]
            if order is not None:
                ranking = [int(full[r]) for r in order.ranking]
                pairs = [(int(full[f]), int(full[b])) for f, b in order.pairs]
        ranking += [j for j in range(k) if j not in ranking]
        # Overlapping inputs: a pixel belongs to the nearest instance that claims it.
        taken = np.zeros(vm.shape[1:], bool)
        for j in ranking:
            vm[j] &= ~taken
            taken |= vm[j]
        layers = [
            _make_layer(img, vm, amodal[j], samp[j], ranking, j, ids[j], labels[j], inpainter)
            for j in range(k)
        ]
        background = inpainter.inpaint_background(img, taken, ~taken)
        return cls(background, layers, ranking[::-1], pairs, inpainter)

    # ------------------------------------------------------------------ rendering
    def render(self) -> np.ndarray:
        """``H x W x 3`` uint8: the layers composited back to front over the plate."""
        return self._composite()[0]

    def owner(self) -> np.ndarray:
        """``H x W`` int32: the index of the layer shown at each pixel, -1 for background."""
        return self._composite()[1]

    def visible_masks(self) -> np.ndarray:
        """``K x H x W`` bool current visible masks (empty for erased layers)."""
        own = self.owner()
        return own[None] == np.arange(len(self.layers))[:, None, None]

    def amodal_masks(self) -> np.ndarray:
        """``K x H x W`` bool current amodal masks (at their offsets; empty when erased)."""
        return np.stack(
            [
                np.zeros(self.shape, bool) if ly.erased else ly.full("alpha", self.shape)
                for ly in self.layers
            ]
        )

    def _composite(self) -> tuple[np.ndarray, np.ndarray]:
        canvas = self.background.copy()
        owner = np.full(self.shape, -1, np.int32)
        for k in self.order:
            ly = self.layers[k]
            if ly.erased:
                continue
            dst, sub = _placement(ly.box, ly.offset, self.shape)
            if dst is None:
                continue
            a = ly.alpha[sub]
            canvas[dst][a] = ly.colour[sub][a]
            owner[dst][a] = k
        return canvas, owner

    # ------------------------------------------------------------------ edits
    def _index(self, i: int) -> Layer:
        if not 0 <= int(i) < len(self.layers):
            raise MaskgenError(f"instance {i}: out of range for {len(self.layers)} instances")
        ly = self.layers[int(i)]
        if ly.erased:
            raise MaskgenError(f"instance {i} (id {ly.id}): already erased")
        return ly

    def erase(self, i: int) -> None:
        """Remove instance ``i``: what it hid shows (other layers' hidden parts, the plate)."""
        self._index(i).erased = True

    def move(self, i: int, dx: int, dy: int) -> None:
        """Displace instance ``i`` by ``(dx, dy)`` pixels (parts outside the image are cut)."""
        ly = self._index(i)
        ly.offset = (ly.offset[0] + int(dx), ly.offset[1] + int(dy))

    def bring_to_front(self, i: int) -> None:
        """Draw instance ``i`` above every other."""
        self._index(i)
        self.order = [k for k in self.order if k != i] + [int(i)]

    def send_back(self, i: int) -> None:
        """Draw instance ``i`` below every other (still above the background plate)."""
        self._index(i)
        self.order = [int(i)] + [k for k in self.order if k != i]

    def use_sample(self, i: int, s: int) -> None:
        """Replace instance ``i``'s completion by its posterior sample ``s`` and re-inpaint the
        layer's hidden part (the only edit that calls the inpainter, on one crop)."""
        ly = self._index(i)
        if not 0 <= int(s) < len(ly.samples):
            raise MaskgenError(
                f"instance {i} (id {ly.id}): sample {s} out of range "
                f"({len(ly.samples)} samples kept; decompose with samples=N)"
            )
        alpha = ly.samples[int(s)] | ly.known
        colour = _inpaint_crop(self.inpainter, ly.colour, ly.known, alpha, ly.label)
        ly.alpha, ly.colour = alpha, colour

    def reshape(
        self,
        i: int,
        new: ReshapeSpec | str | np.ndarray,
        *,
        synthesizer: Any = None,
        predictor: AmodalPredictor | None = None,
    ) -> str:
        """Give instance ``i`` a new full mask and re-render its layer (supplementary §3.4).

        ``new`` is an ``H x W`` bool full mask (image coordinates, where the layer is drawn
        now), a :class:`~maskgen.editing.reshape.ReshapeSpec` or its text (``"sample=K"``,
        ``"prior=SEED"``, ``"mask=FILE.png"``, ``"scale=S"``, ``"rotate=DEG"``, ``"flip"``;
        :mod:`maskgen.editing.reshape`). A rigid spec warps the layer (its completed mask and
        colours, and its samples) about its centroid; any other new mask is filled by
        ``synthesizer`` from what shows of the instance now (the whole layer when nothing
        shows). The layer keeps its depth; what the old shape uncovers shows the layers behind
        and the inpainted plate. ``prior`` needs ``predictor``.

        Returns:
            the method used: ``"warp"`` or ``"synthesis"``.

        Raises:
            MaskgenError: a bad spec or mask, a sample index out of range, a missing
                synthesizer or predictor.
        """
        from maskgen.core.deform import warp_mask_affine
        from maskgen.editing.reshape import (
            parse_spec,
            read_user_mask,
            reshape_appearance,
            rigid_transform,
            warp_fill,
        )

        ly = self._index(i)
        shape = self.shape
        if isinstance(new, str):
            new = parse_spec(f"{ly.id}:{new}", flag=f"reshape {ly.id}")[1]
        alpha, colour = ly.full("alpha", shape), ly.full("colour", shape)
        samples = (
            np.stack([_place(m, ly.box, ly.offset, shape) for m in ly.samples])
            if len(ly.samples)
            else np.zeros((0, *shape), bool)
        )
        if isinstance(new, ReshapeSpec) and new.rigid:
            a = rigid_transform(new, alpha)
            mask = warp_mask_affine(alpha, a)
            if not mask.any():
                raise MaskgenError(f"reshape {ly.id} {new}: the new mask lies outside the image")
            out = warp_fill(colour, alpha, mask, a)
            samples = (
                np.stack([warp_mask_affine(m, a) for m in samples]) if len(samples) else samples
            )
            method = "warp"
        else:
            if isinstance(new, ReshapeSpec):
                mask = self._spec_mask(i, ly, new, alpha, samples, predictor)
            else:
                mask = read_user_mask(new, shape, f"reshape {ly.id}")
            shows = self.owner() == int(i)
            image, visible = (self.render(), shows) if shows.any() else (colour, alpha)
            res = reshape_appearance(image, visible, mask, None, synthesizer)
            out, method = res.image, res.method
        colour_new = np.where(mask[..., None], out, 0).astype(np.uint8)
        k = int(i)
        self.layers[k] = _crop_layer(ly.id, ly.label, mask, colour_new, mask, samples)
        self.layers[k].erased = False
        return method

    def _spec_mask(
        self,
        i: int,
        ly: Layer,
        spec: ReshapeSpec,
        alpha: np.ndarray,
        samples: np.ndarray,
        predictor: AmodalPredictor | None,
    ) -> np.ndarray:
        """The new full mask of a non-rigid spec (``sample``, ``prior``, ``mask``)."""
        from maskgen.editing.reshape import prior_mask, read_user_mask

        where = f"reshape {ly.id} {spec}"
        if spec.kind == "sample":
            if not 0 <= int(spec.value) < len(samples):
                raise MaskgenError(
                    f"{where}: sample {spec.value} out of range ({len(samples)} samples kept; "
                    "decompose with samples=N)"
                )
            return samples[int(spec.value)] | np.zeros(self.shape, bool)
        if spec.kind == "prior":
            if predictor is None:
                raise MaskgenError(f"{where}: a prior sample needs the Amodal-VAE predictor")
            mask = prior_mask(
                predictor, np.asarray(_bbox(alpha), np.float64), spec.value, self.shape
            )
            if not mask.any():
                raise MaskgenError(f"{where}: the decoded prior sample is empty; try another seed")
            return mask
        return read_user_mask(spec.value, self.shape, where)

    # ------------------------------------------------------------------ files
    def save_layers(self, folder: str | os.PathLike[str]) -> Path:
        """Write the scene as it is now: ``background.png``, ``layer_<id>.png`` (RGBA, full
        image size, at the layer's current place; alpha 255 on the amodal mask) per remaining
        instance, and ``manifest.json`` (size, drawing order, ranking, pairs, per layer its id,
        label, file, current visible mask, own known pixels and samples as RLE). Erased layers
        are left out; parts moved outside the image are cut."""
        from maskgen.core.io import write_image, write_json
        from maskgen.core.rle import encode_rle

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob("layer_*.png"):  # an earlier scene's layers (callers check --force)
            stale.unlink()
        write_image(out / "background.png", self.background)
        visible = self.visible_masks()
        entries = []
        for k in self.order:
            ly = self.layers[k]
            if ly.erased:
                continue
            rgba = np.concatenate(
                [ly.full("colour", self.shape), 255 * ly.full("alpha", self.shape)[..., None]],
                axis=2,
            ).astype(np.uint8)
            name = f"layer_{ly.id}.png"
            write_image(out / name, rgba)
            samples = [encode_rle(_place(m, ly.box, ly.offset, self.shape)) for m in ly.samples]
            entries.append(
                {
                    "id": ly.id,
                    "label": ly.label,
                    "file": name,
                    "visible": encode_rle(visible[k]),
                    "known": encode_rle(ly.full("known", self.shape)),
                    "samples": samples,
                }
            )
        alive = {ly.id for ly in self.layers if not ly.erased}
        ids = self.ids
        manifest = {
            "format": "maskgen-layers",
            "version": 1,
            "height": int(self.shape[0]),
            "width": int(self.shape[1]),
            "background": "background.png",
            "order_back_to_front": [ids[k] for k in self.order if ids[k] in alive],
            "ranking": [ids[k] for k in self.ranking],
            "pairs": [
                [ids[f], ids[b]] for f, b in self.pairs if ids[f] in alive and ids[b] in alive
            ],
            "layers": entries,
        }
        write_json(out / MANIFEST, manifest)
        return out

    @classmethod
    def load_layers(
        cls, folder: str | os.PathLike[str], inpainter: Inpainter | None = None
    ) -> Scene:
        """Read a folder written by :meth:`save_layers` (layers in drawing order, no offsets).

        Raises:
            MaskgenError: a missing or malformed file.
        """
        from maskgen.core.io import read_image, read_json
        from maskgen.core.rle import decode_segmentation

        folder = Path(folder)
        man = read_json(folder / MANIFEST)
        if not isinstance(man, dict) or man.get("format") != "maskgen-layers":
            raise MaskgenError(f"{folder / MANIFEST}: not a maskgen layers manifest")
        h, w = int(man["height"]), int(man["width"])
        background = read_image(folder / man["background"])
        layers = []
        for e in man["layers"]:
            rgba = read_image(folder / e["file"], mode="RGBA")
            if rgba.shape[:2] != (h, w) or background.shape[:2] != (h, w):
                raise MaskgenError(f"{folder / e['file']}: size differs from the manifest's")
            alpha = rgba[..., 3] >= 128
            known = decode_segmentation(e["known"], h, w)
            samples = np.zeros((len(e["samples"]), h, w), bool)
            for n, rle in enumerate(e["samples"]):
                samples[n] = decode_segmentation(rle, h, w)
            colour = np.where(alpha[..., None], rgba[..., :3], 0).astype(np.uint8)
            layers.append(_crop_layer(int(e["id"]), int(e["label"]), alpha, colour, known, samples))
        index = {ly.id: k for k, ly in enumerate(layers)}
        pairs = [(index[f], index[b]) for f, b in man.get("pairs", [])]
        return cls(
            background, layers, list(range(len(layers))), pairs, inpainter or TeleaInpainter()
        )


# ---------------------------------------------------------------------- helpers


def _check_inputs(image: np.ndarray, visible_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    vm = np.array(visible_masks, dtype=bool)  # a copy: overlaps are resolved in place
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise MaskgenError(f"image: expected H x W x 3 uint8, got {img.shape} {img.dtype}")
    if vm.ndim != 3 or vm.shape[1:] != img.shape[:2]:
        raise MaskgenError(
            f"visible_masks: expected K x {img.shape[0]} x {img.shape[1]}, got {vm.shape}"
        )
    return img, vm


def _crop_layer(
    ident: int,
    label: int,
    alpha: np.ndarray,
    colour: np.ndarray,
    known: np.ndarray,
    samples: np.ndarray,
) -> Layer:
    """A :class:`Layer` cropped to the box of everything it may show (full-size inputs)."""
    x0, y0, x1, y1 = box = _bbox(alpha | known | samples.any(axis=0))
    sl = (slice(y0, y1), slice(x0, x1))
    return Layer(
        ident, label, box, alpha[sl].copy(), colour[sl].copy(), known[sl].copy(),
        samples[:, sl[0], sl[1]].copy(),
    )  # fmt: skip


def _make_layer(
    image: np.ndarray,
    vm: np.ndarray,
    amodal: np.ndarray,
    samples: np.ndarray,
    ranking: list[int],
    j: int,
    ident: int,
    label: int,
    inpainter: Inpainter,
) -> Layer:
    """Instance ``j``'s layer: its completion kept only under instances ranked in front of it
    (module docstring, step 2), its hidden part inpainted (step 3)."""
    front = ranking[: ranking.index(j)]
    hideable = vm[front].any(axis=0) if front else np.zeros(vm.shape[1:], bool)
    alpha = vm[j] | (amodal & hideable)
    samples = samples & hideable[None] | vm[j][None]
    hole = alpha & ~vm[j]
    colour = np.where(vm[j][..., None], image, 0).astype(np.uint8)
    if hole.any():
        filled = inpainter.inpaint_instance(image, hole, vm[j], alpha, label)
        colour[hole] = filled[hole]
    return _crop_layer(ident, label, alpha, colour, vm[j], samples)


def _inpaint_crop(
    inpainter: Inpainter, colour: np.ndarray, known: np.ndarray, alpha: np.ndarray, label: int
) -> np.ndarray:
    """A layer crop's colours for a new ``alpha``: known pixels kept, the rest inpainted."""
    out = np.where(known[..., None], colour, 0).astype(np.uint8)
    hole = alpha & ~known
    if hole.any() and known.any():
        out[hole] = inpainter.inpaint_instance(out, hole, known, alpha, label)[hole]
    return out
