"""Numpy-facing Amodal-VAE predictor: visible masks in, amodal masks, samples and uncertainty out.

Like segment-anything's ``SamPredictor``, the model works on tensors and this class works on
numpy arrays in image coordinates::

    predictor = AmodalPredictor.from_folder("src/maskgen/models/amodal-vae-builtin")
    completions = predictor.complete_image(visible_masks)          # K x H x W bool
    completions[0].amodal_mask                                     # H x W bool

Pipeline per instance (supplementary §3.2; ``docs/design.md``, "Amodal-VAE"):

1. **Crop.** The visible mask is cropped tightly to its *visible* box (the tight half-open box of
   its pixels, :func:`maskgen.core.boxes.mask_to_box`) and resized to 28x28 exactly as
   :func:`maskgen.core.masks.crop_mask` does (bilinear at the cells' centres, zero outside the
   image, float32 in ``[0, 1]``) -- computed by gathering only the pixels bilinear interpolation
   reads, for all instances of an image at once.
2. **Encode.** ``q2(z | visible crop)`` gives ``mu`` and ``logvar`` (64-d factorial Normal).
3. **Box.** The spatial-transformer head predicts the amodal box in the visible box's normalised
   frame (:func:`maskgen.core.boxes.relative_box` convention) from its context frame (the
   instance's and the other instances' visible masks in ``square_box(visible_box, scale)``, as
   :func:`maskgen.amodal.data.context_crop` makes it in training); it is mapped back to pixels with
   :func:`~maskgen.core.boxes.absolute_box`. With ``amodal_boxes`` given, those boxes are used
   instead ("--amodal-box" mode; the paper's remedy for its box failures, supplementary Fig. 7-8).
4. **Decode.** The *posterior mean* ``mu`` is decoded (the "mode"); with a
   :class:`~maskgen.amodal.refit.RefitConfig` (``refit=``; off by default, on by default in
   the editing commands) the latent is first refitted against the instance's visible
   evidence in its amodal box (:mod:`maskgen.amodal.refit`) and that latent is the mode (and the
   samples' centre). ``sigmoid`` gives Bernoulli
   probabilities on the 28x28 amodal-box frame, pasted into the image with
   :func:`maskgen.core.masks.paste_mask` and thresholded at the model's saved threshold ``t``
   (a pixel is in the mask when ``p >= t``; the paper's ``t = 0.1``, supplementary §3.1).
5. **Post-process** (``docs/design.md``, "Conventions": "filling only where something can hide the object"). With
   ``restrict_to_occluders=True`` (the default) a predicted pixel *outside* the instance's
   visible mask is kept only where another instance's visible mask lies (only something in front
   can hide an object). In every mode the visible mask is OR-ed in. Pixels beyond the image
   border cannot be represented in an ``H x W`` mask, so amodal extent outside the image is
   always cut at the border (and the restriction does not look outside the image).
6. **Samples** (optional, ``samples=K``): ``z_k = mu + sigma * eps_k`` from q2, decoded,
   pasted and thresholded like the mode, then post-processed the same way. Each sample gets a
   **consistency score** computed on the *raw* thresholded sample (before post-processing, which
   would make every sample trivially consistent):

       known pixels  K = V  u  B,  V = the instance's visible mask,
                     B = visible background = pixels of the image in neither V nor any other
                         instance's visible mask (nothing there could hide the object)
       consistency(S) = |S n V| / |(S n K) u V| = |S n V| / (|V| + |S n B|)   in [0, 1]

   i.e. the IoU, restricted to known pixels, between the sample and the visible mask: 1 exactly
   when the sample covers every visible pixel and spills onto no visible-background pixel. The
   same score is reported for the mode.
7. **Uncertainty**: the mean posterior standard deviation ``mean_j exp(logvar_j / 2)`` over the
   64 latents (inactive latents sit at sigma ~ 1 for every input, so differences come from the
   active ones; supplementary Fig. 4 looks at the same quantity per latent).

Sampling is seeded per instance (``numpy.random.default_rng([seed, index])``), so the samples do
not depend on the batch size. Many images are completed in chunks of ``chunk_instances`` crops;
with ``pipeline`` on (the default) the model runs on chunk ``i + 1`` in a worker thread while
chunk ``i`` is pasted back (torch releases the GIL), which neither changes a result nor needs
more memory than two chunks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maskgen.amodal.refit import RefitConfig, evidence_crops, refit_latents
from maskgen.core.boxes import absolute_box, mask_to_box, square_box
from maskgen.core.masks import DEFAULT_CROP_SIZE, crop_masks, paste_mask
from maskgen.errors import MaskgenError

__all__ = ["AmodalPredictor", "Completion", "ImageInput", "consistency_score"]

DEFAULT_THRESHOLD = 0.1  # supplementary §3.1 (used only when a model carries no tuned threshold)


class Completion:
    """The completion of one instance, in image coordinates.

    Masks are stored for the pixel region that can hold them (the amodal box joined with the
    visible box, clipped to the image) and expanded to ``H x W`` on access, so completing many
    instances stays cheap; :meth:`rle` encodes the amodal mask without an extra copy.

    Attributes (``H x W`` arrays are built on access):
        amodal_mask: ``H x W`` bool, the post-processed mode (see module docstring).
        raw_mask: ``H x W`` bool, the thresholded mode before post-processing (no restriction,
            visible mask not OR-ed in).
        probability: ``H x W`` float32 Bernoulli probabilities of the mode pasted into the image
            (0 outside the amodal box), or None when not kept.
        samples: ``S x H x W`` bool post-processed samples (``S = 0`` when none were asked for).
        sample_consistency: ``(S,)`` float64 consistency score of each raw sample.
        visible_box: ``(4,)`` float64 ``(x0, y0, x1, y1)`` tight box of the visible mask.
        amodal_box: ``(4,)`` float64 box the decoder's 28x28 frame was pasted into.
        box_source: ``"predicted"``, ``"supplied"`` or ``"visible-fallback"`` (the box head
            gave a degenerate box; the visible box was used).
        uncertainty: mean posterior sigma over the latents (float).
        consistency: consistency score of the raw mode (float in ``[0, 1]``).
        mu, sigma: ``(D,)`` float32 latent decoded for the mode (q2's posterior mean, or the
            refitted latent) and q2's posterior standard deviation.
        region: ``(x0, y0, x1, y1)`` integer pixel region the local arrays cover.
        refitted: whether the mode's latent was refitted (:mod:`maskgen.amodal.refit`); the
            samples are then centred on the refitted latent.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        region: tuple[int, int, int, int],
        local_mask: np.ndarray,
        local_raw: np.ndarray,
        local_prob: np.ndarray | None,
        local_samples: np.ndarray,
        sample_consistency: np.ndarray,
        visible_box: np.ndarray,
        amodal_box: np.ndarray,
        box_source: str,
        uncertainty: float,
        consistency: float,
        mu: np.ndarray,
        sigma: np.ndarray,
        refitted: bool = False,
    ) -> None:
        self.shape = shape
        self.region = region
        self.local_mask = local_mask
        self.local_raw = local_raw
        self.local_prob = local_prob
        self.local_samples = local_samples
        self.sample_consistency = sample_consistency
        self.visible_box = visible_box
        self.amodal_box = amodal_box
        self.box_source = box_source
        self.uncertainty = uncertainty
        self.consistency = consistency
        self.mu = mu
        self.sigma = sigma
        self.refitted = refitted

    def _full(self, local: np.ndarray, dtype: Any = bool, order: str = "C") -> np.ndarray:
        x0, y0, x1, y1 = self.region
        out = np.zeros(self.shape, dtype=dtype, order=order)
        out[y0:y1, x0:x1] = local
        return out

    @property
    def amodal_mask(self) -> np.ndarray:
        return self._full(self.local_mask)

    @property
    def raw_mask(self) -> np.ndarray:
        return self._full(self.local_raw)

    @property
    def probability(self) -> np.ndarray | None:
        return None if self.local_prob is None else self._full(self.local_prob, np.float32)

    @property
    def samples(self) -> np.ndarray:
        x0, y0, x1, y1 = self.region
        out = np.zeros((len(self.local_samples), *self.shape), dtype=bool)
        out[:, y0:y1, x0:x1] = self.local_samples
        return out

    @property
    def num_samples(self) -> int:
        return len(self.local_samples)

    @property
    def area(self) -> int:
        return int(self.local_mask.sum())

    def mask_box(self) -> np.ndarray | None:
        """Tight ``(x0, y0, x1, y1)`` box of the amodal mask (None when empty)."""
        if not self.local_mask.any():
            return None
        return mask_to_box(self.local_mask) + np.array(self.region[:2] * 2, dtype=np.float64)

    def rle(self, sample: int | None = None) -> dict[str, Any]:
        """Compressed RLE (``counts`` as str) of the amodal mask, or of sample ``sample``."""
        return self.rle_and_box(sample)[0]

    def rle_and_box(self, sample: int | None = None) -> tuple[dict[str, Any], list[float]]:
        """``(RLE, [x, y, w, h] tight box of the mask, zeros when empty)``."""
        from pycocotools import mask as mask_utils

        local = self.local_mask if sample is None else self.local_samples[sample]
        full = self._full(local, np.uint8, order="F")
        r = mask_utils.encode(full)
        box = [float(v) for v in mask_utils.toBbox(r)]
        return {
            "size": [int(r["size"][0]), int(r["size"][1])],
            "counts": r["counts"].decode("ascii"),
        }, box


@dataclass
class ImageInput:
    """One image's input to :meth:`AmodalPredictor.complete_images`.

    Attributes:
        visible_masks: ``K x H x W`` bool visible masks of all instances of the image (every
            one is used as a potential occluder of the others).
        amodal_boxes: optional ``K x 4`` float boxes ``(x0, y0, x1, y1)``; rows with a NaN fall
            back to the predicted box.
        complete: optional ``(K,)`` bool selecting which instances to complete (default: all);
            the others still count as occluders.
        visible_boxes: optional ``K x 4`` tight boxes of the visible masks when already known
            (e.g. from their RLEs); computed from the masks when None.
    """

    visible_masks: np.ndarray
    amodal_boxes: np.ndarray | None = None
    complete: np.ndarray | None = None
    visible_boxes: np.ndarray | None = None


def consistency_score(sample: np.ndarray, visible: np.ndarray, others: np.ndarray) -> float:
    """Agreement of a completed mask with the visible evidence (module docstring, item 6).

    Args:
        sample: ``H x W`` bool completed mask (raw, before post-processing).
        visible: ``H x W`` bool visible mask of the instance (non-empty).
        others: ``H x W`` bool union of the *other* instances' visible masks (possible occluders).

    Returns:
        ``|S n V| / (|V| + |S n B|)`` with ``B = ~V & ~others``, in ``[0, 1]``.
    """
    s = np.asarray(sample, dtype=bool)
    v = np.asarray(visible, dtype=bool)
    b = ~v & ~np.asarray(others, dtype=bool)
    denom = int(v.sum()) + int((s & b).sum())
    return float((s & v).sum()) / denom if denom else 0.0


def _region(
    vbox: np.ndarray, abox: np.ndarray, height: int, width: int
) -> tuple[int, int, int, int]:
    """Integer pixel region ``(rx0, ry0, rx1, ry1)`` covering both boxes, clipped to the image.

    (Plain Python floats: this runs once per instance and numpy's per-call overhead dominated.)
    """
    vx0, vy0, vx1, vy1 = vbox.tolist()
    ax0, ay0, ax1, ay1 = abox.tolist()
    rx0 = max(math.floor(min(vx0, ax0)), 0)
    ry0 = max(math.floor(min(vy0, ay0)), 0)
    rx1 = min(math.ceil(max(vx1, ax1)), width)
    ry1 = min(math.ceil(max(vy1, ay1)), height)
    return rx0, ry0, max(rx1, rx0), max(ry1, ry0)


def _tight_boxes(vm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Tight half-open boxes ``N x 4`` float64 of masks ``vm[idx]`` (each must be non-empty)."""
    sub = vm[idx]
    rows = sub.any(axis=2)
    cols = sub.any(axis=1)
    empty = ~rows.any(axis=1)
    if empty.any():
        k = int(idx[np.flatnonzero(empty)[0]])
        raise MaskgenError(f"visible mask {k}: empty (nothing to complete)")
    h, w = vm.shape[1:]
    return np.stack(
        [
            cols.argmax(axis=1),
            rows.argmax(axis=1),
            w - cols[:, ::-1].argmax(axis=1),
            h - rows[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.float64)


def _chunks(images: Iterable[ImageInput], chunk_instances: int) -> Iterator[list[ImageInput]]:
    """Checked images grouped into chunks of at least ``chunk_instances`` instances (the last
    may be smaller)."""
    pending: list[ImageInput] = []
    count = 0
    for item in images:
        vm = np.asarray(item.visible_masks, dtype=bool)
        if vm.ndim != 3:
            raise MaskgenError(f"visible_masks: expected K x H x W, got shape {vm.shape}")
        if item.amodal_boxes is not None and np.shape(item.amodal_boxes) != (len(vm), 4):
            raise MaskgenError(
                f"amodal_boxes: expected shape ({len(vm)}, 4), got {np.shape(item.amodal_boxes)}"
            )
        pending.append(ImageInput(vm, item.amodal_boxes, item.complete, item.visible_boxes))
        count += len(vm)
        if count >= chunk_instances:
            yield pending
            pending, count = [], 0
    if pending:
        yield pending


class AmodalPredictor:
    """Complete visible masks with a trained Amodal-VAE (numpy in, numpy out).

    Args:
        model: an ``AmodalVAE`` (``encode_partial``, ``decode``, ``predict_amodal_box``); put in
            eval mode here (BatchNorm folded when :func:`maskgen.amodal.model.fuse_for_inference`
            applies).
        threshold: binarisation threshold for decoder probabilities (the model's tuned one).
        device: torch device string.
        config: the model folder's ``config.json`` dict (kept for reports).
        batch_size: crops per forward pass.
        source: where the model came from (for reports).
        refit: the latent refit (:mod:`maskgen.amodal.refit`); None or ``refit_steps=0``: off.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        threshold: float = DEFAULT_THRESHOLD,
        device: str = "cpu",
        config: dict[str, Any] | None = None,
        batch_size: int = 1024,
        source: str = "",
        fuse: bool = True,
        refit: RefitConfig | None = None,
    ) -> None:
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        if fuse:
            try:
                from maskgen.amodal.model import AmodalVAE, fuse_for_inference

                if isinstance(model, AmodalVAE):
                    model = fuse_for_inference(model)
            except ImportError:  # pragma: no cover - model module always present in a release
                pass
        self.model = model
        self.threshold = float(threshold)
        self.config = dict(config or {})
        self.batch_size = int(batch_size)
        self.source = source
        self.refit = refit if refit is not None and refit.enabled else None
        # Instances per pipeline chunk and whether the model runs in a worker thread while the
        # previous chunk is pasted back (results do not depend on either).
        self.chunk_instances = 256
        self.pipeline = True
        arch = getattr(model, "config", None)
        self.crop_size = int(getattr(arch, "crop_size", DEFAULT_CROP_SIZE))
        # The box head's context frame (maskgen.amodal.model: square_box(visible_box, scale)).
        self.context_scale = getattr(arch, "box_context_scale", None)
        self.context_size = getattr(arch, "box_context_size", None)

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike[str],
        device: str = "cpu",
        batch_size: int = 1024,
        refit: RefitConfig | None = None,
    ) -> AmodalPredictor:
        """Load a model folder (``config.json`` + ``model.safetensors``) strictly; ``refit``
        (default None: off) as in the constructor.

        Raises:
            MaskgenError: the folder is missing, incomplete or does not match its config.
        """
        from maskgen.amodal.io import check_device
        from maskgen.amodal.model import AmodalVAE

        if int(batch_size) < 1:
            raise MaskgenError(f"--batch-size {batch_size}: must be at least 1")
        dev = check_device(device)
        model = AmodalVAE.from_folder(path, device=dev)
        return cls(
            model,
            model.threshold,
            device=str(dev),
            config=model.folder_config,
            batch_size=batch_size,
            source=str(path),
            refit=refit,
        )

    @property
    def uses_context(self) -> bool:
        return self.context_scale is not None and self.context_size is not None

    # ------------------------------------------------------------------ tensor stage
    @torch.inference_mode()
    def encode(
        self,
        crops: np.ndarray,
        context: np.ndarray | None = None,
        vis_wh: np.ndarray | None = None,
        boxes: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Run ``q2`` and the box head on visible-box crops.

        Args:
            crops: ``N x S x S`` float32 visible masks cropped to their visible boxes.
            context: optional ``N x 2 x C x C`` float32 context frames for the box head
                (:func:`maskgen.amodal.data.context_crop`).
            vis_wh: optional ``N x 2`` visible box ``(width, height)`` in pixels.
            boxes: run the box head (skip it when amodal boxes are known).

        Returns:
            ``(mu, logvar, rel_boxes)``: ``N x D`` float32 each and ``N x 4`` float64 amodal
            boxes in the visible box's normalised frame (None when ``boxes`` is False).
        """
        mus, logvars, rels = [], [], []
        bs = self.batch_size
        for i in range(0, len(crops), bs):
            x = torch.from_numpy(np.ascontiguousarray(crops[i : i + bs], dtype=np.float32))
            x = x[:, None].to(self.device)
            mu, logvar = self.model.encode_partial(x)
            mus.append(mu.float().cpu().numpy())
            logvars.append(logvar.float().cpu().numpy())
            if boxes:
                kw: dict[str, Any] = {}
                if context is not None:
                    kw["context"] = torch.from_numpy(np.ascontiguousarray(context[i : i + bs])).to(
                        self.device
                    )
                if vis_wh is not None:
                    kw["vis_wh"] = torch.from_numpy(
                        np.asarray(vis_wh[i : i + bs], dtype=np.float32)
                    ).to(self.device)
                rel = self.model.predict_amodal_box(x, **kw)
                rels.append(rel.double().cpu().numpy())
        if not mus:
            empty = np.zeros((0, 0), np.float32)
            return empty, empty, np.zeros((0, 4)) if boxes else None
        return np.concatenate(mus), np.concatenate(logvars), np.concatenate(rels) if boxes else None

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decode ``N x D`` latents to ``N x S x S`` float32 probabilities (amodal-box frame)."""
        outs = []
        for i in range(0, len(z), self.batch_size):
            zz = torch.from_numpy(
                np.ascontiguousarray(z[i : i + self.batch_size], dtype=np.float32)
            )
            logits = self.model.decode(zz.to(self.device))
            outs.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        if not outs:
            return np.zeros((0, self.crop_size, self.crop_size), np.float32)
        return np.concatenate(outs)

    # ------------------------------------------------------------------ numpy API
    def prepare(
        self,
        visible_masks: np.ndarray,
        indices: Sequence[int] | None = None,
        count_map: np.ndarray | None = None,
        visible_boxes: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Crops of one image's instances: what :meth:`encode` takes.

        Args:
            visible_masks: ``K x H x W`` bool visible masks of the image (all instances: the
                others are each instance's potential occluders).
            indices: which instances to crop (default all); each must be non-empty.
            count_map: optional ``H x W`` int16 ``visible_masks.sum(0)`` (computed when None).
            visible_boxes: optional ``K x 4`` tight boxes of all ``K`` masks (computed when None).

        Returns:
            ``(crops N x S x S float32, visible boxes N x 4 float64, context N x 2 x C x C or
            None)``.
        """
        vm = np.asarray(visible_masks, dtype=bool)
        idx = range(len(vm)) if indices is None else indices
        count = None
        if self.uses_context:
            count = vm.sum(axis=0, dtype=np.int16) if count_map is None else count_map
        idx = np.asarray(list(idx), dtype=np.intp)
        s = self.crop_size
        if len(idx) == 0:
            c = int(self.context_size or 0)
            ctx0 = np.zeros((0, 2, c, c), np.float32) if count is not None else None
            return np.zeros((0, s, s), np.float32), np.zeros((0, 4)), ctx0
        if visible_boxes is not None:
            boxes = np.asarray(visible_boxes, dtype=np.float64)[idx]
        else:
            boxes = _tight_boxes(vm, idx)
        bad = ~(boxes[:, 2] > boxes[:, 0])
        if bad.any():
            raise MaskgenError(
                f"visible mask {int(idx[np.flatnonzero(bad)[0]])}: empty (nothing to complete)"
            )
        crops = crop_masks(vm, boxes, s, which=idx)
        ctx = None
        if count is not None:
            frames = square_box(boxes, float(self.context_scale))
            cv, co = crop_masks(vm, frames, int(self.context_size), which=idx, count=count)
            ctx = np.stack([cv, co], axis=1)
        return crops, boxes, ctx

    def complete_image(
        self,
        visible_masks: np.ndarray,
        amodal_boxes: np.ndarray | None = None,
        samples: int = 0,
        restrict_to_occluders: bool = True,
        seed: int = 0,
        return_probability: bool = True,
    ) -> list[Completion]:
        """Complete every instance of one image.

        Args:
            visible_masks: ``K x H x W`` bool; each mask non-empty.
            amodal_boxes: optional ``K x 4`` known amodal boxes ``(x0, y0, x1, y1)`` in pixels
                (NaN rows use the predicted box).
            samples: number of posterior samples per instance (0 = mode only).
            restrict_to_occluders: keep predicted invisible pixels only under other instances'
                visible masks (module docstring, item 5).
            seed: seed of the posterior samples.
            return_probability: keep the probability map of each instance.

        Returns:
            ``K`` :class:`Completion` s, in input order.
        """
        item = ImageInput(np.asarray(visible_masks, dtype=bool), amodal_boxes)
        return next(
            iter(
                self.complete_images(
                    [item],
                    samples=samples,
                    restrict_to_occluders=restrict_to_occluders,
                    seed=seed,
                    return_probability=return_probability,
                )
            )
        )

    def complete_images(
        self,
        images: Iterable[ImageInput],
        samples: int = 0,
        restrict_to_occluders: bool = True,
        seed: int = 0,
        return_probability: bool = False,
        chunk_instances: int | None = None,
    ) -> Iterator[list[Completion]]:
        """Complete many images, batching crops across images; yields one list per image.

        Instances are numbered across the whole call (for sample seeding) in input order; only
        instances selected by ``ImageInput.complete`` get a :class:`Completion` (the list holds
        them in input order).
        """
        chunk_instances = chunk_instances or self.chunk_instances
        counter = [0]
        if not self.pipeline:
            for items in _chunks(images, chunk_instances):
                state = self._prepare_chunk(items, counter)
                self._forward_chunk(state, samples, seed)
                yield from self._finish_chunk(state, restrict_to_occluders, return_probability)
            return
        # Pipelined: the model runs chunk i+1 in a worker thread (torch releases the GIL) while
        # this thread pastes back chunk i and the caller consumes it.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="amodal-forward") as pool:
            inflight = None
            for items in _chunks(images, chunk_instances):
                state = self._prepare_chunk(items, counter)
                fut = pool.submit(self._forward_chunk, state, samples, seed)
                if inflight is not None:
                    prev, prev_fut = inflight
                    prev_fut.result()
                    yield from self._finish_chunk(prev, restrict_to_occluders, return_probability)
                inflight = (state, fut)
            if inflight is not None:
                prev, prev_fut = inflight
                prev_fut.result()
                yield from self._finish_chunk(prev, restrict_to_occluders, return_probability)

    # ------------------------------------------------------------------ internals
    def _prepare_chunk(self, items: list[ImageInput], counter: list[int]) -> dict[str, Any]:
        """Crops, boxes and context frames of every selected instance of ``items``."""
        size = self.crop_size
        crops, vboxes, ctxs, owners, known = [], [], [], [], []
        count_maps: list[np.ndarray] = []
        for i, item in enumerate(items):
            vm = item.visible_masks
            sel = (
                np.ones(len(vm), bool) if item.complete is None else np.asarray(item.complete, bool)
            )
            idx = [k for k in range(len(vm)) if sel[k]]
            count_maps.append(vm.sum(axis=0, dtype=np.int16))
            c, b, x = self.prepare(vm, idx, count_maps[i], item.visible_boxes)
            crops.append(c)
            vboxes.append(b)
            if x is not None:
                ctxs.append(x)
            for k in idx:
                owners.append((i, k))
                box = None
                if item.amodal_boxes is not None:
                    cand = np.asarray(item.amodal_boxes, dtype=np.float64)[k]
                    if np.all(np.isfinite(cand)):
                        if not (cand[2] > cand[0] and cand[3] > cand[1]):
                            raise MaskgenError(
                                f"amodal box of instance {k}: {cand.tolist()} has no area"
                            )
                        box = cand
                known.append(box)
        n = len(owners)
        start = counter[0]
        counter[0] += n
        return {
            "items": items,
            "owners": owners,
            "known": known,
            "count_maps": count_maps,
            "n": n,
            "start": start,
            "crops": np.concatenate(crops) if n else np.zeros((0, size, size), np.float32),
            "vboxes": np.concatenate(vboxes) if n else np.zeros((0, 4)),
            "ctx": np.concatenate(ctxs) if (n and ctxs) else None,
        }

    def _forward_chunk(self, st: dict[str, Any], samples: int, seed: int) -> None:
        """One batched forward: encode, box head, decode the mode (and the samples)."""
        n, size = st["n"], self.crop_size
        vb = st["vboxes"]
        need_boxes = any(b is None for b in st["known"])
        mu, logvar, rel = self.encode(
            st["crops"], st["ctx"], vb[:, 2:] - vb[:, :2], boxes=need_boxes
        )
        st["rel"] = rel
        st["boxes"], st["sources"] = self._boxes(st)
        st["sigma"] = sigma = np.exp(0.5 * logvar.astype(np.float64)).astype(np.float32)
        if self.refit is not None and n:
            mu = self._refit(st, mu, sigma)
        st["mu"] = mu
        st["probs"] = self.decode(mu)
        st["sample_probs"] = None
        if samples > 0 and n:
            eps = np.stack(
                [
                    np.random.default_rng([int(seed), st["start"] + j]).standard_normal(
                        (samples, mu.shape[1])
                    )
                    for j in range(n)
                ]
            ).astype(np.float32)
            z = (mu[:, None] + sigma[:, None] * eps).reshape(n * samples, -1)
            st["sample_probs"] = self.decode(z).reshape(n, samples, size, size)

    @staticmethod
    def _boxes(st: dict[str, Any]) -> tuple[list[np.ndarray], list[str]]:
        """Each instance's amodal box in pixels and where it came from (supplied, predicted by
        the box head, or the visible box when the head's box is degenerate)."""
        boxes, sources = [], []
        for j, box in enumerate(st["known"]):
            source = "supplied"
            if box is None:
                source = "predicted"
                box = absolute_box(st["rel"][j], st["vboxes"][j])
                if not (box[2] > box[0] and box[3] > box[1]):  # degenerate head output
                    box, source = st["vboxes"][j].copy(), "visible-fallback"
            boxes.append(box)
            sources.append(source)
        return boxes, sources

    def _refit(self, st: dict[str, Any], mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The refitted latents of a chunk (:mod:`maskgen.amodal.refit`), image by image for the
        evidence, in one batch for the optimisation."""
        assert self.refit is not None
        vs, ws = [], []
        boxes = np.stack(st["boxes"])
        owners = np.asarray([i for i, _ in st["owners"]])
        for i, item in enumerate(st["items"]):
            rows = np.flatnonzero(owners == i)
            if len(rows):
                which = np.asarray([st["owners"][r][1] for r in rows], np.intp)
                v, w = evidence_crops(
                    item.visible_masks, which, boxes[rows], self.crop_size, st["count_maps"][i]
                )
                vs.append(v)
                ws.append(w)
        return refit_latents(
            self.model, mu, sigma, np.concatenate(vs), np.concatenate(ws), self.refit
        )

    def _finish_chunk(
        self, st: dict[str, Any], restrict: bool, return_probability: bool
    ) -> list[list[Completion]]:
        """Paste back, image by image."""
        items = st["items"]
        vbox_arr = st["vboxes"]
        sample_probs = st["sample_probs"]
        results: list[list[Completion]] = [[] for _ in items]
        for j, (i, k) in enumerate(st["owners"]):
            vm = items[i].visible_masks
            results[i].append(
                self._finish(
                    vm[k],
                    st["count_maps"][i],
                    vbox_arr[j],
                    st["boxes"][j],
                    st["sources"][j],
                    st["probs"][j],
                    None if sample_probs is None else sample_probs[j],
                    st["mu"][j],
                    st["sigma"][j],
                    restrict,
                    return_probability,
                )
            )
        return results

    def _finish(
        self,
        visible: np.ndarray,
        count_map: np.ndarray,
        vbox: np.ndarray,
        abox: np.ndarray,
        source: str,
        prob: np.ndarray,
        sample_probs: np.ndarray | None,
        mu: np.ndarray,
        sigma: np.ndarray,
        restrict: bool,
        return_probability: bool,
    ) -> Completion:
        h, w = visible.shape
        region = _region(vbox, abox, h, w)
        rx0, ry0, rx1, ry1 = region
        local_box = abox - np.array([rx0, ry0, rx0, ry0], dtype=np.float64)
        rh, rw = ry1 - ry0, rx1 - rx0
        vis = visible[ry0:ry1, rx0:rx1]
        others = (count_map[ry0:ry1, rx0:rx1] - vis) > 0
        background = ~vis & ~others
        n_vis = int(np.count_nonzero(vis))
        keep = (others | vis) if restrict else None

        def finish_one(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
            local_p = paste_mask(p, local_box, rh, rw)
            raw = local_p >= self.threshold
            denom = n_vis + int(np.count_nonzero(raw & background))
            cons = float(np.count_nonzero(raw & vis)) / denom if denom else 0.0
            out = (raw & keep) | vis if keep is not None else raw | vis
            return raw, out, cons, local_p

        raw, out, cons, local_p = finish_one(prob)
        n_s = 0 if sample_probs is None else len(sample_probs)
        local_samples = np.zeros((n_s, rh, rw), dtype=bool)
        sample_cons = np.zeros(n_s)
        for s in range(n_s):
            _, local_samples[s], sample_cons[s], _ = finish_one(sample_probs[s])
        return Completion(
            shape=(h, w),
            region=region,
            local_mask=out,
            local_raw=raw,
            local_prob=local_p if return_probability else None,
            local_samples=local_samples,
            sample_consistency=sample_cons,
            visible_box=np.asarray(vbox, dtype=np.float64),
            amodal_box=np.asarray(abox, dtype=np.float64),
            box_source=source,
            uncertainty=float(sigma.mean()) if sigma.size else 0.0,
            consistency=cons,
            mu=np.asarray(mu, np.float32),
            sigma=np.asarray(sigma, np.float32),
            refitted=self.refit is not None,
        )
