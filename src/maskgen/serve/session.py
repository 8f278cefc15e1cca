"""Editing sessions: a :class:`maskgen.editing.scene.Scene` with undo/redo, the completions the page
shows, a lock; and a bounded store of sessions.

The scene does the decomposition (completion, occlusion order, order-consistent RGBA layers,
inpainted background plate) and the edits (erase, move, reorder, use a posterior sample). This
module adds what an interactive editor needs on top, as a wrapper:

- **history**: after every operation a *snapshot* is taken -- a shallow copy of each layer plus the
  drawing order. The scene's edits replace a layer's attributes (offset, erased flag, alpha and
  colour arrays) and never write into its arrays, so snapshots share every array: a step of
  history costs ``K`` small objects. ``undo``/``redo`` restore a snapshot (copied again, so later
  edits cannot reach into it); a new operation drops the redo steps; at most
  :data:`MAX_HISTORY` steps are kept.
- **candidates**: each instance's completion (kept from the decomposition, computed with the
  scene's seed and sample count, so it is the one the scene used) gives the page its consistency
  scores, uncertainty and probability map; candidate 0 is the completion's mode (the layer as
  decomposed), ``1..S`` the scene's posterior samples. Choosing the mode again restores the
  decomposed alpha and colours (the scene itself only swaps in samples).
- **re-completion with a drawn amodal box** (supplementary Fig. 7-8): the instance is completed
  again with the box supplied, kept order-consistent with the instances now drawn in front of it,
  and its layer rebuilt (colours inpainted from its own visible pixels).

Operations (:meth:`Session.apply`; the API's ``POST /api/scenes/{id}/ops`` body)::

    {"op": "erase", "instance": ID}
    {"op": "move", "instance": ID, "dx": int, "dy": int}
    {"op": "front" | "back", "instance": ID}
    {"op": "sample", "instance": ID, "k": K}   # K: 0 = the mode, 1.. = posterior samples;
                                               # no K: the next candidate (cycles)
    {"op": "amodal_box", "instance": ID, "box": [x0, y0, x1, y1]}  # where the layer is drawn now
    {"op": "reshape", "instance": ID, "kind": KIND, ...}   # a new shape (supplementary §3.4):
        "kind": "flip" | "rotate" + "degrees": number | "scale" + "scale": number (0, 16]
              | "sample" + "k": K (0-based posterior sample) | "prior" + "seed": int >= 0
              | "mask" + "mask": COCO RLE {"size": [H, W], "counts": ...} or a PNG data URL
                ("data:image/png;base64,...") of a full mask, image size, where the layer shows
    {"op": "undo"} / {"op": "redo"}

Every bad operation raises :class:`~maskgen.errors.MaskgenError` with a one-line message and
leaves the session unchanged. :class:`SessionStore` keeps at most ``max_sessions`` sessions
(least recently used evicted) and hands out random ids.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskgen.amodal.predictor import AmodalPredictor, Completion, ImageInput
from maskgen.editing.order import OcclusionOrder, occlusion_order
from maskgen.editing.scene import Layer, Scene
from maskgen.errors import MaskgenError

__all__ = ["MAX_HISTORY", "OPS", "Extra", "NotFound", "Rendered", "Session", "SessionStore"]

MAX_HISTORY = 64
OPS = ("erase", "move", "front", "back", "sample", "amodal_box", "reshape", "undo", "redo")
MAX_SHIFT = 1 << 15
DEFAULT_SAMPLES = 6
SEED = 0


class NotFound(MaskgenError):
    """An unknown scene or instance (HTTP 404)."""


@dataclass(frozen=True, eq=False)
class Extra:
    """What the editor keeps per instance beside the scene's layer (immutable).

    Attributes:
        completion: the completion the layer came from.
        choice: the candidate in use (0 = mode, ``k`` = the scene's sample ``k - 1``).
        mode: the layer as made from the mode (its alpha and colour restore candidate 0).
    """

    completion: Completion
    choice: int
    mode: Layer


@dataclass(frozen=True, eq=False)
class Snapshot:
    layers: tuple[Layer, ...]
    order: tuple[int, ...]
    extras: tuple[Extra, ...]


@dataclass
class Rendered:
    """The scene composited now, and each remaining instance's masks (full size)."""

    image: np.ndarray
    amodal: dict[int, np.ndarray]  # instance id -> H x W bool, as placed (cut at the border)
    visible: dict[int, np.ndarray]  # instance id -> H x W bool, what shows of it


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MaskgenError(f"{key}: expected an integer, got {v!r}")
    if int(v) != v:
        raise MaskgenError(f"{key}: expected an integer, got {v!r}")
    if not low <= int(v) <= high:
        raise MaskgenError(f"{key}: {int(v)} out of range [{low}, {high}]")
    return int(v)


def complete(
    visible_masks: np.ndarray,
    which: Sequence[int],
    predictor: AmodalPredictor,
    *,
    amodal_boxes: np.ndarray | None = None,
    samples: int = DEFAULT_SAMPLES,
) -> list[Completion]:
    """Completions of instances ``which``; every instance counts as a possible occluder. With
    all instances and no boxes this is exactly the scene's own call (same seed and samples)."""
    sel = np.zeros(len(visible_masks), bool)
    sel[list(which)] = True
    item = ImageInput(visible_masks, amodal_boxes=amodal_boxes, complete=sel)
    return next(
        iter(predictor.complete_images([item], samples=samples, seed=SEED, return_probability=True))
    )


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def layer_from_completion(
    image: np.ndarray,
    visible: np.ndarray,
    comp: Completion,
    hideable: np.ndarray,
    old: Layer,
    inpainter: Any,
) -> Layer:
    """A scene layer for ``old``'s instance from a new completion: alpha and samples kept only
    on its visible pixels and under ``hideable`` (what is drawn in front of it), colours inpainted
    from its own visible pixels; offset kept."""
    alpha = visible | (comp.amodal_mask & hideable)
    samples = comp.samples & hideable[None] | visible[None]
    hole = alpha & ~visible
    colour = np.where(visible[..., None], image, 0).astype(np.uint8)
    if hole.any():
        colour[hole] = inpainter.inpaint_instance(image, hole, visible, alpha, old.label)[hole]
    x0, y0, x1, y1 = box = _bbox(alpha | visible | samples.any(axis=0))
    sl = (slice(y0, y1), slice(x0, x1))
    return Layer(
        old.id, old.label, box, alpha[sl].copy(), colour[sl].copy(), visible[sl].copy(),
        samples[:, sl[0], sl[1]].copy(), offset=old.offset,
    )  # fmt: skip


class Session:
    """One scene being edited (see the module docstring)."""

    def __init__(
        self,
        scene_id: str,
        image: np.ndarray,
        visible_masks: np.ndarray,
        ids: Sequence[int],
        labels: Sequence[int],
        predictor: Any,
        inpainter: Any,
        *,
        depth: Sequence[int | None] | None = None,
        categories: list[dict[str, Any]] | None = None,
        file_name: str = "scene.png",
        samples: int = DEFAULT_SAMPLES,
        synthesizer: Any = None,
    ) -> None:
        self.id = scene_id
        self.image = image
        self.visible_masks = np.asarray(visible_masks, dtype=bool)
        self.ids = [int(i) for i in ids]
        self.labels = [int(v) for v in labels]
        self.predictor = predictor
        self.inpainter = inpainter
        self.categories = categories or [{"id": c, "name": str(c)} for c in sorted(set(labels))]
        self.file_name = file_name
        self.samples = samples
        self.synthesizer = synthesizer  # None: the shipped model, loaded on first use
        self.lock = threading.Lock()
        k = len(self.ids)
        comps = complete(self.visible_masks, range(k), predictor, samples=samples)
        order = None
        if depth is not None and k and all(d is not None for d in depth):
            ranking = sorted(range(k), key=lambda i: (-depth[i], i))  # type: ignore[operator]
            order = OcclusionOrder(pairs=[], confidence=[], ranking=ranking, evidence=None)  # type: ignore[arg-type]
        elif k > 1:
            order = occlusion_order(self.visible_masks, comps)
        self.scene = Scene.from_image(
            image, self.visible_masks, predictor, inpainter, labels=self.labels, ids=self.ids,
            samples=samples, seed=SEED, order=order,
        )  # fmt: skip
        self.extras = [
            Extra(c, 0, dataclasses.replace(layer))
            for c, layer in zip(comps, self.scene.layers, strict=True)
        ]
        self.history: list[Snapshot] = [self._snapshot()]
        self.cursor = 0
        self.version = 0  # counts applied operations (the page's image cache key)
        self._rendered: tuple[int, Rendered] | None = None

    # ---------------------------------------------------------------------------- state
    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def _snapshot(self) -> Snapshot:
        sc = self.scene
        return Snapshot(
            tuple(dataclasses.replace(ly) for ly in sc.layers), tuple(sc.order), tuple(self.extras)
        )

    def _restore(self, snap: Snapshot) -> None:
        self.scene.layers = [dataclasses.replace(ly) for ly in snap.layers]
        self.scene.order = list(snap.order)
        self.extras = list(snap.extras)

    def ranking(self) -> list[int]:
        """Indices of the remaining instances, nearest first."""
        return self.scene.ranking

    def index(self, instance_id: int) -> int:
        """The index of a remaining instance; :class:`NotFound` otherwise."""
        if instance_id in self.ids:
            i = self.ids.index(instance_id)
            if not self.scene.layers[i].erased:
                return i
        raise NotFound(f"instance {instance_id}: not in this scene (erased or never there)")

    def rendered(self) -> Rendered:
        """The scene composited now (cached until the next operation)."""
        if self._rendered is None or self._rendered[0] != self.version:
            sc = self.scene
            image = sc.render()
            own = sc.owner()
            amodal, visible = {}, {}
            for i in sc.ranking:
                ly = sc.layers[i]
                amodal[ly.id] = ly.full("alpha", sc.shape)
                visible[ly.id] = own == i
            self._rendered = (self.version, Rendered(image, amodal, visible))
        return self._rendered[1]

    def candidates(self, i: int) -> list[tuple[str, float, np.ndarray]]:
        """``(kind, consistency, crop mask)`` of instance ``i``'s candidates, in the layer's box."""
        ex, ly = self.extras[i], self.scene.layers[i]
        c = ex.completion
        out = [("mode", float(c.consistency), ex.mode.alpha)]
        for n, s in enumerate(ly.samples):
            out.append(("sample", float(c.sample_consistency[n]), s))
        return out

    def placed(self, i: int, crop: np.ndarray) -> np.ndarray:
        """A crop of instance ``i``'s box, pasted where the layer is drawn now."""
        ly = self.scene.layers[i]
        return dataclasses.replace(ly, alpha=crop).full("alpha", self.scene.shape)

    def probability(self, i: int) -> np.ndarray | None:
        """Instance ``i``'s decoder probabilities (``H x W``) where its layer is drawn now."""
        p = self.extras[i].completion.probability
        if p is None:
            return None
        dx, dy = self.scene.layers[i].offset
        h, w = p.shape
        out = np.zeros_like(p)
        ys, xs = slice(max(dy, 0), min(h + dy, h)), slice(max(dx, 0), min(w + dx, w))
        src = (slice(max(-dy, 0), min(h - dy, h)), slice(max(-dx, 0), min(w - dx, w)))
        if ys.start < ys.stop and xs.start < xs.stop:
            out[ys, xs] = p[src]
        return out

    # ---------------------------------------------------------------------------- ops
    def apply(self, body: Any) -> None:
        """Apply one operation (module docstring); the session is unchanged on error."""
        if not isinstance(body, dict):
            raise MaskgenError("operation: expected a JSON object")
        op = body.get("op")
        if op not in OPS:
            raise MaskgenError(f"op: unknown operation {op!r} (expected one of {', '.join(OPS)})")
        if op == "undo":
            if self.cursor == 0:
                raise MaskgenError("undo: nothing to undo")
            self.cursor -= 1
            self._restore(self.history[self.cursor])
        elif op == "redo":
            if self.cursor >= len(self.history) - 1:
                raise MaskgenError("redo: nothing to redo")
            self.cursor += 1
            self._restore(self.history[self.cursor])
        else:
            v = body.get("instance")
            if isinstance(v, bool) or not isinstance(v, int):
                raise MaskgenError(f"instance: expected an instance id (integer), got {v!r}")
            i = self.index(v)
            try:
                getattr(self, f"_op_{op}")(i, body)
            except Exception:
                self._restore(self.history[self.cursor])  # nothing half-done survives
                raise
            del self.history[self.cursor + 1 :]
            self.history.append(self._snapshot())
            if len(self.history) > MAX_HISTORY:
                del self.history[: len(self.history) - MAX_HISTORY]
            self.cursor = len(self.history) - 1
        self.version += 1

    def _op_erase(self, i: int, body: dict[str, Any]) -> None:
        self.scene.erase(i)

    def _op_move(self, i: int, body: dict[str, Any]) -> None:
        dx = _int(body, "dx", -MAX_SHIFT, MAX_SHIFT)
        dy = _int(body, "dy", -MAX_SHIFT, MAX_SHIFT)
        self.scene.move(i, dx, dy)

    def _op_front(self, i: int, body: dict[str, Any]) -> None:
        self.scene.bring_to_front(i)

    def _op_back(self, i: int, body: dict[str, Any]) -> None:
        self.scene.send_back(i)

    def _op_sample(self, i: int, body: dict[str, Any]) -> None:
        ex, ly = self.extras[i], self.scene.layers[i]
        n = 1 + len(ly.samples)
        k = (ex.choice + 1) % n if body.get("k") is None else _int(body, "k", 0, n - 1)
        if k == 0:
            ly.alpha, ly.colour = ex.mode.alpha, ex.mode.colour
        else:
            self.scene.use_sample(i, k - 1)
        self.extras[i] = dataclasses.replace(ex, choice=k)

    def _op_amodal_box(self, i: int, body: dict[str, Any]) -> None:
        box = body.get("box")
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in box
            )
        ):
            raise MaskgenError(f"box: expected [x0, y0, x1, y1] (4 numbers), got {box!r}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise MaskgenError(f"box: {box} is empty or smaller than 2 px (need x0 < x1, y0 < y1)")
        if x1 <= 0 or y1 <= 0 or x0 >= self.width or y0 >= self.height:
            raise MaskgenError(f"box: {box} lies outside the {self.width}x{self.height} image")
        if x1 - x0 > 4 * self.width or y1 - y0 > 4 * self.height:
            raise MaskgenError(f"box: {box} is more than 4 times the image's size")
        old = self.scene.layers[i]
        dx, dy = old.offset
        # The box is drawn where the layer is shown; the completion works on the input image.
        boxes = np.full((len(self.ids), 4), np.nan)
        boxes[i] = (x0 - dx, y0 - dy, x1 - dx, y1 - dy)
        (comp,) = complete(
            self.visible_masks, [i], self.predictor, amodal_boxes=boxes, samples=self.samples
        )
        # Order-consistent with what is drawn now: it may extend under every instance that is
        # not behind it (erased ones included: what they hid is what a re-completion is for).
        pos = self.scene.order.index(i)
        behind = set(self.scene.order[:pos])
        front = [j for j in range(len(self.ids)) if j != i and j not in behind]
        hideable = (
            self.visible_masks[front].any(axis=0) if front else np.zeros(self.image.shape[:2], bool)
        )
        new = layer_from_completion(
            self.image, self.visible_masks[i], comp, hideable, old, self.inpainter
        )
        self.scene.layers[i] = new
        self.extras[i] = Extra(comp, 0, dataclasses.replace(new))

    def _op_reshape(self, i: int, body: dict[str, Any]) -> None:
        from maskgen.editing.reshape import MAX_SCALE, ReshapeSpec

        kind = body.get("kind")
        if kind == "flip":
            new: Any = ReshapeSpec("flip")
        elif kind == "rotate":
            new = ReshapeSpec("rotate", _number(body, "degrees", -1e6, 1e6))
        elif kind == "scale":
            v = _number(body, "scale", 0.0, MAX_SCALE)
            if v <= 0:
                raise MaskgenError(f"scale: must be greater than 0, got {v}")
            new = ReshapeSpec("scale", v)
        elif kind == "sample":
            n = len(self.scene.layers[i].samples)
            if n == 0:
                raise MaskgenError("k: this instance keeps no posterior samples")
            new = ReshapeSpec("sample", _int(body, "k", 0, n - 1))
        elif kind == "prior":
            new = ReshapeSpec("prior", _int(body, "seed", 0, 2**31 - 1))
        elif kind == "mask":
            new = request_mask(body.get("mask"), self.height, self.width)
        else:
            raise MaskgenError(
                f"kind: expected flip, rotate, scale, sample, prior or mask, got {kind!r}"
            )
        synth = None
        if not (isinstance(new, ReshapeSpec) and new.rigid):
            synth = self.synthesizer if self.synthesizer is not None else shipped_synthesizer()
        self.scene.reshape(i, new, synthesizer=synth, predictor=self.predictor)
        ly = self.scene.layers[i]
        self.extras[i] = dataclasses.replace(self.extras[i], choice=0, mode=dataclasses.replace(ly))


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MaskgenError(f"{key}: expected a finite number, got {v!r}")
    if not low <= v <= high:
        raise MaskgenError(f"{key}: {v} out of range [{low:g}, {high:g}]")
    return float(v)


def request_mask(v: Any, height: int, width: int) -> np.ndarray:
    """A full mask from a request: COCO RLE or a PNG data URL (never a path); ``H x W`` bool.

    Raises:
        MaskgenError: anything else, a wrong size, not a two-valued image, an empty mask.
    """
    from maskgen.core.rle import decode_segmentation
    from maskgen.editing.reshape import read_user_mask

    if isinstance(v, dict):
        try:
            m = decode_segmentation(v, height, width)
        except (ValueError, TypeError, KeyError) as e:
            raise MaskgenError(f"mask: {e}") from None
        return read_user_mask(m, (height, width), "mask")
    if isinstance(v, str) and v.startswith("data:image/png;base64,"):
        import base64
        import binascii
        import io

        from PIL import Image, UnidentifiedImageError

        try:
            raw = base64.b64decode(v.split(",", 1)[1], validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                if img.width * img.height > 4 * height * width:
                    raise MaskgenError(f"mask: {img.width}x{img.height} PNG is far too large")
                arr = np.asarray(img.convert("L"))
        except (binascii.Error, OSError, UnidentifiedImageError, ValueError):
            raise MaskgenError("mask: not a readable PNG data URL") from None
        return read_user_mask(arr, (height, width), "mask")
    raise MaskgenError(
        'mask: expected a COCO RLE {"size": [H, W], "counts": ...} or a PNG data URL'
    )


_SHIPPED: list[Any] = []


def shipped_synthesizer() -> Any:
    """The shipped mask-conditioned synthesizer, loaded once per process.

    Raises:
        MaskgenError: no synthesizer in this installation.
    """
    if not _SHIPPED:
        try:
            from maskgen.synthesis import load_synthesizer
        except ImportError:
            raise MaskgenError(
                "reshape: this installation has no mask-conditioned synthesizer"
            ) from None
        _SHIPPED.append(load_synthesizer(None))
    return _SHIPPED[0]


class SessionStore:
    """At most ``max_sessions`` sessions, least recently used evicted; random ids."""

    def __init__(self, max_sessions: int = 8) -> None:
        self.max_sessions = int(max_sessions)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(8)

    def add(self, session: Session) -> None:
        with self._lock:
            self._sessions[session.id] = session
            self._sessions.move_to_end(session.id)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    def get(self, scene_id: str) -> Session:
        with self._lock:
            s = self._sessions.get(scene_id)
            if s is None:
                raise NotFound(f"scene {scene_id}: not found (unknown, or evicted: open it again)")
            self._sessions.move_to_end(scene_id)
            return s

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, scene_id: object) -> bool:
        return scene_id in self._sessions
