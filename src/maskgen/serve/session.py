"""Editing sessions: one scene, its undo/redo history, a lock, and a bounded store of sessions.

A :class:`Session` holds the input (image, visible masks, ids, labels -- kept for re-completion
with a user-drawn amodal box) and a list of immutable
:class:`~maskgen.serve.layers.SceneState` s with a cursor: an operation appends a new state
(dropping any redo states), ``undo``/``redo`` move the cursor. States share unchanged layers, so
the history is cheap; it is capped at :data:`MAX_HISTORY` states (the oldest are dropped).

Operations (:meth:`Session.apply`; the API's ``POST /api/scenes/{id}/ops`` body)::

    {"op": "erase", "instance": ID}
    {"op": "move", "instance": ID, "dx": int, "dy": int}
    {"op": "front" | "back", "instance": ID}
    {"op": "sample", "instance": ID, "k": K}   # K: 0 = the mode, 1.. = posterior samples;
                                               # no K: the next candidate (cycles)
    {"op": "amodal_box", "instance": ID, "box": [x0, y0, x1, y1]}  # where the layer is drawn now
    {"op": "undo"} / {"op": "redo"}
    {"op": "reshape", ...}                     # pose change: not available (an error)

Every bad operation raises :class:`~maskgen.errors.MaskgenError` with a one-line message and
leaves the session unchanged. :class:`SessionStore` keeps at most ``max_sessions`` sessions
(least recently used evicted) and hands out random ids.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskgen.errors import MaskgenError
from maskgen.serve.layers import (
    DEFAULT_SAMPLES,
    Rendered,
    SceneState,
    complete_layers,
    decompose,
    render,
)

__all__ = ["MAX_HISTORY", "OPS", "Session", "SessionStore"]

MAX_HISTORY = 64
OPS = ("erase", "move", "front", "back", "sample", "amodal_box", "reshape", "undo", "redo")
MAX_SHIFT = 1 << 15


class NotFound(MaskgenError):
    """An unknown scene or instance (HTTP 404)."""


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MaskgenError(f"{key}: expected an integer, got {v!r}")
    if int(v) != v:
        raise MaskgenError(f"{key}: expected an integer, got {v!r}")
    if not low <= int(v) <= high:
        raise MaskgenError(f"{key}: {int(v)} out of range [{low}, {high}]")
    return int(v)


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
    ) -> None:
        self.id = scene_id
        self.image = image
        self.visible_masks = visible_masks
        self.ids = [int(i) for i in ids]
        self.labels = [int(v) for v in labels]
        self.predictor = predictor
        self.inpainter = inpainter
        self.categories = categories or [{"id": c, "name": str(c)} for c in sorted(set(labels))]
        self.file_name = file_name
        self.samples = samples
        self.lock = threading.Lock()
        state = decompose(
            image, visible_masks, self.ids, self.labels, predictor, inpainter,
            depth=depth, samples=samples,
        )  # fmt: skip
        self.history: list[SceneState] = [state]
        self.cursor = 0
        self._rendered: tuple[SceneState, Rendered] | None = None
        self.last_op: dict[str, Any] | None = None
        self.version = 0  # counts applied operations (the page's image cache key)

    # ---------------------------------------------------------------------------- state
    @property
    def state(self) -> SceneState:
        return self.history[self.cursor]

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def rendered(self) -> Rendered:
        """The current state composited (cached until the state changes)."""
        st = self.state
        if self._rendered is None or self._rendered[0] is not st:
            self._rendered = (st, render(st))
        return self._rendered[1]

    def _push(self, state: SceneState) -> None:
        del self.history[self.cursor + 1 :]
        self.history.append(state)
        if len(self.history) > MAX_HISTORY:
            del self.history[: len(self.history) - MAX_HISTORY]
        self.cursor = len(self.history) - 1

    def _instance(self, body: dict[str, Any]) -> int:
        v = body.get("instance")
        if isinstance(v, bool) or not isinstance(v, int):
            raise MaskgenError(f"instance: expected an instance id (integer), got {v!r}")
        try:
            self.state.index(v)
        except KeyError:
            raise NotFound(f"instance {v}: not in this scene (erased or never there)") from None
        return v

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
        elif op == "redo":
            if self.cursor >= len(self.history) - 1:
                raise MaskgenError("redo: nothing to redo")
            self.cursor += 1
        elif op == "reshape":
            raise MaskgenError("reshape: pose change is not available yet")
        else:
            iid = self._instance(body)
            self._push(getattr(self, f"_op_{op}")(iid, body))
        self.last_op = {k: body[k] for k in ("op", "instance") if k in body}
        self.version += 1

    def _op_erase(self, iid: int, body: dict[str, Any]) -> SceneState:
        st = self.state
        return st.with_layers([layer for layer in st.layers if layer.id != iid])

    def _op_move(self, iid: int, body: dict[str, Any]) -> SceneState:
        dx = _int(body, "dx", -MAX_SHIFT, MAX_SHIFT)
        dy = _int(body, "dy", -MAX_SHIFT, MAX_SHIFT)
        st = self.state
        i = st.index(iid)
        layer = st.layers[i]
        layers = list(st.layers)
        layers[i] = layer.replace(dx=layer.dx + dx, dy=layer.dy + dy)
        return st.with_layers(layers)

    def _op_front(self, iid: int, body: dict[str, Any]) -> SceneState:
        st = self.state
        layer = st.layer(iid)
        return st.with_layers([x for x in st.layers if x.id != iid] + [layer])

    def _op_back(self, iid: int, body: dict[str, Any]) -> SceneState:
        st = self.state
        layer = st.layer(iid)
        return st.with_layers([layer] + [x for x in st.layers if x.id != iid])

    def _op_sample(self, iid: int, body: dict[str, Any]) -> SceneState:
        st = self.state
        i = st.index(iid)
        layer = st.layers[i]
        n = len(layer.masks)
        k = (layer.choice + 1) % n if body.get("k") is None else _int(body, "k", 0, n - 1)
        layers = list(st.layers)
        layers[i] = layer.replace(choice=k)
        return st.with_layers(layers)

    def _op_amodal_box(self, iid: int, body: dict[str, Any]) -> SceneState:
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
        st = self.state
        i = st.index(iid)
        old = st.layers[i]
        # The box is drawn where the layer is shown; the completion works on the input image.
        boxes = np.full((len(self.ids), 4), np.nan)
        k = self.ids.index(iid)
        boxes[k] = (x0 - old.dx, y0 - old.dy, x1 - old.dx, y1 - old.dy)
        # Instances drawn behind it now: its completion may not claim their visible pixels.
        behind = [self.ids.index(layer.id) for layer in st.layers[:i]]
        (new,) = complete_layers(
            self.image, self.visible_masks, [k], self.ids, self.labels, self.predictor,
            self.inpainter, behind=[behind], amodal_boxes=boxes, samples=self.samples,
        )  # fmt: skip
        layers = list(st.layers)
        layers[i] = new.replace(dx=old.dx, dy=old.dy)
        return st.with_layers(layers)


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
