"""The editor's ASGI app (Starlette): one page, its static files and a JSON API.

API (every error is JSON ``{"error": "<one line>"}`` with a 4xx status, never a traceback)::

    GET  /                                   the page (static/index.html)
    GET  /static/{app.js|style.css}          the page's assets (only these names)
    POST /api/scenes                         multipart: image (PNG/JPEG) and, optional,
                                             masks (COCO/KINS/COCOA JSON) or polygons (JSON
                                             [{"points": [x, y, ...], "label": int}, ...]);
                                             image_id picks an image of a many-image masks file
    POST /api/scenes/example                 the built-in example scene
    GET  /api/scenes/{id}                    the state (as an operation returns it)
    GET  /api/scenes/{id}/render.png         the edited image
    POST /api/scenes/{id}/ops                {"op": ..., "instance": ID, ...} -> the new state
    GET  /api/scenes/{id}/instances/{iid}    one instance: candidates (mode + samples) with their
                                             consistency scores and outlines, uncertainty
    GET  /api/scenes/{id}/instances/{iid}/uncertainty.png   RGBA map of 4 p (1 - p)
    GET  /api/scenes/{id}/export[?format=coco|kins2020]     amodal + visible masks and order
    GET  /api/scenes/{id}/layers.zip         edited.png, masks.json and the scene's layer files
                                             (background.png, layer_<id>.png, manifest.json)

The state: ``{"scene_id", "width", "height", "version", "can_undo", "can_redo",
"instances": [...]}`` with instances nearest the camera first, each ``{"id", "label",
"category", "order" (0 = nearest), "bbox" ([x, y, w, h] of the amodal mask as drawn),
"visible_area", "amodal_area", "visible" and "amodal" (outline polygons ``[x0, y0, x1, y1,
...]``), "dx", "dy", "choice", "candidates", "score", "uncertainty", "box_source",
"amodal_box"}``.

Sessions live in memory (:class:`~maskgen.serve.session.SessionStore`, least recently used
evicted); each session's lock serialises requests on one scene. No path ever comes from a
request: scenes are looked up by a random id and static files from a fixed table.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from maskgen.errors import MaskgenError
from maskgen.serve.security import Guard, allowed_host_values
from maskgen.serve.session import NotFound, Session, SessionStore

__all__ = ["ServeConfig", "create_app"]

log = logging.getLogger("maskgen.serve")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SCENE_ID = re.compile(r"[0-9a-f]{16}")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")


@dataclass
class ServeConfig:
    """Limits and binding of the server.

    Attributes:
        host, port: the bound address (the Host/Origin checks accept only it).
        allow_hosts: more Host names to accept (a LAN name when bound to ``0.0.0.0``).
        max_upload_mb: largest request body.
        max_side: largest image side in pixels.
        max_instances: most instances in one scene.
        max_scenes: scenes kept in memory (least recently used evicted).
        samples: posterior samples per instance.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    allow_hosts: list[str] = field(default_factory=list)
    max_upload_mb: float = 16.0
    max_side: int = 1024
    max_instances: int = 32
    max_scenes: int = 8
    samples: int = 6


class HttpError(MaskgenError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------- helpers


def polygons(mask: np.ndarray) -> list[list[int]]:
    """Outer outlines of a mask as flat ``[x0, y0, x1, y1, ...]`` lists (pixel corners)."""
    if not mask.any():
        return []
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1]).astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        if len(c) < 3:
            # Lines and points: use the pixel boxes' outline instead.
            cx, cy, cw, ch = cv2.boundingRect(c)
            c = np.array([[cx, cy], [cx + cw, cy], [cx + cw, cy + ch], [cx, cy + ch]])
            out.append((c + [x0, y0]).ravel().tolist())
            continue
        pts = c.reshape(-1, 2) + [x0, y0]
        out.append(pts.ravel().tolist())
    return out


def _box_xywh(mask: np.ndarray) -> list[int]:
    if not mask.any():
        return [0, 0, 0, 0]
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of an ``H x W x 3|4`` uint8 array (OpenCV: faster than PIL at this size)."""
    a = np.asarray(array)
    code = cv2.COLOR_RGBA2BGRA if a.ndim == 3 and a.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(".png", cv2.cvtColor(a, code), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 arrays
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _placed_box(s: Session, i: int) -> list[float]:
    """The amodal box of instance ``i``'s completion, where the layer is drawn now."""
    bx0, by0, bx1, by1 = (float(v) for v in s.extras[i].completion.amodal_box)
    dx, dy = s.scene.layers[i].offset
    return [round(bx0 + dx, 1), round(by0 + dy, 1), round(bx1 + dx, 1), round(by1 + dy, 1)]


def state_json(s: Session) -> dict[str, Any]:
    """The state an operation returns (module docstring)."""
    r = s.rendered()
    names = {c["id"]: c.get("name", str(c["id"])) for c in s.categories}
    instances = []
    for rank, i in enumerate(s.ranking()):
        ly, ex = s.scene.layers[i], s.extras[i]
        a, v = r.amodal[ly.id], r.visible[ly.id]
        comp = ex.completion
        scores = [float(comp.consistency), *(float(c) for c in comp.sample_consistency)]
        instances.append(
            {
                "id": ly.id,
                "label": ly.label,
                "category": names.get(ly.label, str(ly.label)),
                "order": rank,
                "bbox": _box_xywh(a),
                "visible_area": int(v.sum()),
                "amodal_area": int(a.sum()),
                "visible": polygons(v),
                "amodal": polygons(a),
                "dx": int(ly.offset[0]),
                "dy": int(ly.offset[1]),
                "choice": ex.choice,
                "candidates": 1 + len(ly.samples),
                "score": round(scores[ex.choice], 4) if ex.choice < len(scores) else None,
                "uncertainty": round(float(comp.uncertainty), 4),
                "box_source": str(comp.box_source),
                "amodal_box": _placed_box(s, i),
            }
        )
    return {
        "scene_id": s.id,
        "width": s.width,
        "height": s.height,
        "version": s.version,
        "can_undo": s.cursor > 0,
        "can_redo": s.cursor < len(s.history) - 1,
        "instances": instances,
    }


def instance_json(s: Session, iid: int) -> dict[str, Any]:
    i = s.index(iid)
    ex = s.extras[i]
    cands = [
        {"k": k, "kind": kind, "score": round(score, 4), "polygons": polygons(s.placed(i, m))}
        for k, (kind, score, m) in enumerate(s.candidates(i))
    ]
    return {
        "id": iid,
        "choice": ex.choice,
        "uncertainty": round(float(ex.completion.uncertainty), 4),
        "candidates": cands,
        "visible_input": polygons(s.placed(i, s.scene.layers[i].known)),
        "box_source": str(ex.completion.box_source),
        "amodal_box": _placed_box(s, i),
    }


def uncertainty_png(s: Session, iid: int) -> bytes:
    """RGBA map of ``4 p (1 - p)`` (1 where the decoder is least sure) over the instance."""
    p = s.probability(s.index(iid))
    out = np.zeros((s.height, s.width, 4), np.uint8)
    if p is not None:
        u = np.clip(4.0 * p * (1.0 - p), 0.0, 1.0)
        on = p > 0
        out[..., 0] = np.where(on, 255, 0)
        out[..., 1] = np.where(on, 160 * (1 - u), 0).astype(np.uint8)
        out[..., 3] = (200 * u).astype(np.uint8)
    return png_bytes(out)


def _occluders(s: Session, r: Any) -> dict[int, list[int]]:
    """Per remaining instance, the ids whose visible pixels cover part of its amodal mask."""
    out = {}
    for i in s.ranking():
        iid = s.ids[i]
        hidden = r.amodal[iid] & ~r.visible[iid]
        out[iid] = [
            s.ids[j] for j in s.ranking() if j != i and (r.visible[s.ids[j]] & hidden).any()
        ]
    return out


def export_json(s: Session) -> dict[str, Any]:
    """COCO JSON of the edited scene: ``segmentation`` the amodal mask (as drawn),
    ``visible_segmentation`` what shows, ``depth`` (larger is nearer) and ``order`` (0 =
    nearest), ``occluded_by`` (ids whose visible pixels cover some of its amodal mask)."""
    from maskgen.core.rle import encode_rle

    r = s.rendered()
    occ = _occluders(s, r)
    ranking = s.ranking()
    anns = []
    for rank, i in enumerate(ranking):
        iid = s.ids[i]
        a, v = r.amodal[iid], r.visible[iid]
        anns.append(
            {
                "id": iid,
                "image_id": 1,
                "category_id": s.labels[i],
                "segmentation": encode_rle(a),
                "area": int(a.sum()),
                "bbox": [float(x) for x in _box_xywh(a)],
                "visible_segmentation": encode_rle(v),
                "visible_area": int(v.sum()),
                "visible_bbox": [float(x) for x in _box_xywh(v)],
                "iscrowd": 0,
                "depth": len(ranking) - 1 - rank,
                "order": rank,
                "occluded_by": occ[iid],
            }
        )
    return {
        "info": {"description": "maskgen serve: edited scene", "edits": s.cursor},
        "images": [{"id": 1, "file_name": s.file_name, "height": s.height, "width": s.width}],
        "annotations": anns,
        "categories": list(s.categories),
    }


def export_kins(s: Session) -> bytes:
    """The same scene in the KINS 2020 layout, written by :func:`maskgen.data.kins.write_kins2020`."""
    from maskgen.core.rle import encode_rle
    from maskgen.data.kins import write_kins2020
    from maskgen.data.types import Dataset, ImageRecord, Instance

    r = s.rendered()
    rec = ImageRecord(id=1, file_name=s.file_name, height=s.height, width=s.width)
    ranking = s.ranking()
    for rank, i in enumerate(ranking):
        iid = s.ids[i]
        rec.instances.append(
            Instance(
                id=iid, category_id=s.labels[i],
                visible_segm=encode_rle(r.visible[iid]), amodal_segm=encode_rle(r.amodal[iid]),
                depth=len(ranking) - 1 - rank,
            )
        )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="maskgen-serve-") as tmp:
        path = Path(tmp) / "export.json"
        write_kins2020(Dataset([rec], list(s.categories), layout="kins-2020"), path)
        return path.read_bytes()


def layers_zip(s: Session) -> bytes:
    """``edited.png``, ``masks.json`` and the scene's own layer files
    (:meth:`maskgen.editing.scene.Scene.save_layers`: ``background.png``, ``layer_<id>.png``,
    ``manifest.json``)."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="maskgen-serve-") as tmp:
        folder = s.scene.save_layers(Path(tmp) / "layers")
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("edited.png", png_bytes(s.rendered().image))
            for f in sorted(folder.iterdir()):
                z.write(f, f.name)
            z.writestr("masks.json", json.dumps(export_json(s)))
    return buf.getvalue()


# ---------------------------------------------------------------------------------- inputs


def read_upload_image(data: bytes, max_side: int) -> np.ndarray:
    """Decode an uploaded image after checking its format and size from the header."""
    if not data:
        raise MaskgenError("image: the uploaded file is empty")
    try:
        im = Image.open(io.BytesIO(data))
    except Exception:
        raise MaskgenError("image: not an image PIL can read (PNG, JPEG, BMP or WebP)") from None
    if im.format not in IMAGE_FORMATS:
        raise MaskgenError(f"image: format {im.format} not accepted (PNG, JPEG, BMP or WebP)")
    w, h = im.size
    if w > max_side or h > max_side:
        raise HttpError(
            413, f"image: {w}x{h} px is larger than the {max_side}x{max_side} limit (--max-side)"
        )
    if w < 8 or h < 8:
        raise MaskgenError(f"image: {w}x{h} px is too small (at least 8x8)")
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception:
        raise MaskgenError("image: the file is truncated or corrupt") from None


def read_upload_masks(
    data: bytes, filename: str, image_name: str, height: int, width: int, image_id: str | None
) -> tuple[np.ndarray, list[int], list[int], list[int | None], list[dict[str, Any]]]:
    """Visible masks (+ ids, labels, depth, categories) from an uploaded annotation file, read
    by :func:`maskgen.data.loader.load_dataset` exactly as the CLI reads one."""
    from maskgen.data.loader import load_dataset

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "masks.json").name)[:80] or "masks.json"
    with tempfile.TemporaryDirectory(prefix="maskgen-serve-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        try:
            ds = load_dataset(path)
        except MaskgenError as e:
            raise MaskgenError(str(e).replace(str(path), f"masks ({safe})")) from None
    if not ds.images:
        raise MaskgenError(f"masks ({safe}): no images in the file")
    if image_id is not None:
        recs = [im for im in ds.images if str(im.id) == image_id]
        if not recs:
            raise MaskgenError(f"image_id {image_id!r}: no such image in masks ({safe})")
    elif len(ds.images) == 1:
        recs = ds.images
    else:
        recs = [im for im in ds.images if Path(im.file_name).name == image_name]
        if len(recs) != 1:
            raise MaskgenError(
                f"masks ({safe}): {len(ds.images)} images and none named {image_name!r}; "
                "pass image_id to choose one"
            )
    rec = recs[0]
    if (rec.height, rec.width) != (height, width):
        raise MaskgenError(
            f"masks ({safe}): image {rec.id} is {rec.width}x{rec.height} but the uploaded image "
            f"is {width}x{height}"
        )
    masks, ids, labels, depth = [], [], [], []
    taken = np.zeros((height, width), bool)
    for inst in rec.instances:
        m = rec.visible_mask(inst)
        m &= ~taken  # overlapping visible masks: the first one keeps the pixel
        if not m.any():
            continue
        taken |= m
        masks.append(m)
        ids.append(int(inst.id))
        labels.append(int(inst.category_id))
        depth.append(inst.depth)
    return (
        np.array(masks, bool).reshape(-1, height, width),
        ids,
        labels,
        depth,
        list(ds.categories),
    )


def read_polygons(text: str, height: int, width: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Visible masks from user-drawn polygons; a later polygon is drawn on top of earlier ones."""
    from maskgen.core.rle import decode_segmentation

    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise MaskgenError(f"polygons: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, list) or not obj:
        raise MaskgenError('polygons: expected a non-empty list of {"points": [x, y, ...]}')
    masks = []
    labels = []
    for n, p in enumerate(obj):
        pts = p.get("points") if isinstance(p, dict) else None
        if (
            not isinstance(pts, list)
            or len(pts) < 6
            or len(pts) % 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pts)
        ):
            raise MaskgenError(f'polygons[{n}]: expected "points": [x, y, ...] with 3+ points')
        # A COCO polygon (pixel-corner coordinates), rasterised as every reader does.
        masks.append(decode_segmentation([[float(v) for v in pts]], height, width).astype(bool))
        lab = p.get("label", 1)
        labels.append(int(lab) if isinstance(lab, int) and not isinstance(lab, bool) else 1)
    covered = np.zeros((height, width), bool)
    for m in reversed(masks):
        m &= ~covered
        covered |= m
    keep = [i for i, m in enumerate(masks) if m.any()]
    if not keep:
        raise MaskgenError("polygons: every polygon is empty or outside the image")
    return (
        np.array([masks[i] for i in keep], bool),
        [i + 1 for i in keep],
        [labels[i] for i in keep],
    )


# ---------------------------------------------------------------------------------- the app


def instance_id(request: Request) -> int:
    """The ``{iid}`` path parameter as an int (a 404 for anything that is not one)."""
    v = request.path_params["iid"]
    if not re.fullmatch(r"-?[0-9]{1,12}", v):
        raise NotFound(f"instance {v[:40]!r}: not found (instance ids are integers)")
    return int(v)


async def index(request: Request) -> Response:
    return static_file("index.html")


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES or name == "index.html":
        raise NotFound(f"static file {name[:40]!r}: not found")
    return static_file(name)


def get_state(s: Session, request: Request) -> Response:
    return JSONResponse(state_json(s))


def get_render(s: Session, request: Request) -> Response:
    return Response(png_bytes(s.rendered().image), media_type="image/png")


def get_instance(s: Session, request: Request) -> Response:
    return JSONResponse(instance_json(s, instance_id(request)))


def get_uncertainty(s: Session, request: Request) -> Response:
    return Response(uncertainty_png(s, instance_id(request)), media_type="image/png")


def get_export(s: Session, request: Request) -> Response:
    fmt = request.query_params.get("format", "coco")
    disp = {"content-disposition": f'attachment; filename="scene_{s.id}_{fmt}.json"'}
    if fmt == "coco":
        return JSONResponse(export_json(s), headers=disp)
    if fmt == "kins2020":
        return Response(export_kins(s), media_type="application/json", headers=disp)
    raise MaskgenError(f"format: {fmt[:40]!r} unknown (expected coco or kins2020)")


def get_zip(s: Session, request: Request) -> Response:
    disp = {"content-disposition": f'attachment; filename="scene_{s.id}_layers.zip"'}
    return Response(layers_zip(s), media_type="application/zip", headers=disp)


async def maskgen_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status", 404 if isinstance(exc, NotFound) else 400)
    return JSONResponse({"error": str(exc)}, status_code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    msg = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": f"{request.url.path[:80]}: {msg}"}, status_code=exc.status_code)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s", request.url.path)
    return JSONResponse(
        {"error": f"internal error ({type(exc).__name__}); see the server's log"},
        status_code=500,
    )


async def read_scene_form(request: Request, max_upload_mb: float) -> dict[str, Any]:
    """The parts of a ``POST /api/scenes`` multipart body: image bytes and name, masks bytes
    and name (or None), polygons text (or None), image_id (or None)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise MaskgenError(
            "request: expected multipart/form-data with an 'image' file "
            "(and optional 'masks' or 'polygons')"
        )
    max_part = int(max_upload_mb * 2**20) + 1
    try:
        form = await request.form(max_files=2, max_fields=8, max_part_size=max_part)
    except HTTPException as e:
        raise MaskgenError(f"request: malformed multipart body ({e.detail})") from None
    try:
        image_part = form.get("image")
        if image_part is None or isinstance(image_part, str):
            raise MaskgenError("image: missing (send the image as the multipart file 'image')")
        out: dict[str, Any] = {
            "image": await image_part.read(),
            "image_name": Path(image_part.filename or "scene.png").name[:80],
            "masks": None,
            "masks_name": None,
        }
        masks_part = form.get("masks")
        if masks_part is not None and not isinstance(masks_part, str):
            out["masks"] = await masks_part.read()
            out["masks_name"] = masks_part.filename or "masks.json"
        elif isinstance(masks_part, str) and masks_part:
            out["masks"], out["masks_name"] = masks_part.encode(), "masks.json"
        poly = form.get("polygons")
        if poly is not None and not isinstance(poly, str):
            poly = (await poly.read()).decode("utf-8", "replace")
        out["polygons"] = poly
        image_id = form.get("image_id")
        out["image_id"] = image_id if isinstance(image_id, str) and image_id else None
        return out
    finally:
        await form.close()


class Editor:
    """The app's state (models, limits, scenes) and the handlers that need it."""

    def __init__(self, predictor: Any, inpainter: Any, cfg: ServeConfig) -> None:
        self.predictor, self.inpainter, self.cfg = predictor, inpainter, cfg
        self.store = SessionStore(cfg.max_scenes)

    def new_session(self, image, masks, ids, labels, *, depth=None, categories=None,
                    name="scene.png") -> dict[str, Any]:  # fmt: skip
        """Decompose a scene, keep it in the store and return its state JSON."""
        cfg = self.cfg
        if len(masks) == 0:
            raise MaskgenError("masks: no instance with a visible mask in this image")
        if len(masks) > cfg.max_instances:
            raise MaskgenError(
                f"masks: {len(masks)} instances, more than the limit of {cfg.max_instances}"
            )
        s = Session(
            self.store.new_id(), image, masks, ids, labels, self.predictor, self.inpainter,
            depth=depth, categories=categories, file_name=name, samples=cfg.samples,
        )  # fmt: skip
        self.store.add(s)
        with s.lock:
            return state_json(s)

    def session(self, request: Request) -> Session:
        sid = request.path_params["scene_id"]
        if not SCENE_ID.fullmatch(sid):
            raise NotFound(f"scene {sid[:40]!r}: not found (scene ids are 16 hex digits)")
        return self.store.get(sid)

    async def open_example(self, request: Request) -> Response:
        from maskgen.serve.example import EXAMPLE_IMAGE, EXAMPLE_MASKS

        def work():
            image = read_upload_image(EXAMPLE_IMAGE.read_bytes(), 4096)
            masks, ids, labels, depth, cats = read_upload_masks(
                EXAMPLE_MASKS.read_bytes(), EXAMPLE_MASKS.name, EXAMPLE_IMAGE.name,
                image.shape[0], image.shape[1], None,
            )  # fmt: skip
            return self.new_session(image, masks, ids, labels, depth=depth, categories=cats,
                                    name=EXAMPLE_IMAGE.name)  # fmt: skip

        return JSONResponse(await run_in_threadpool(work))

    def _open_from_form(self, f: dict[str, Any]) -> dict[str, Any]:
        image = read_upload_image(f["image"], self.cfg.max_side)
        h, w = image.shape[:2]
        if f["masks"] is not None and f["polygons"]:
            raise MaskgenError("masks, polygons: send one of them, not both")
        if f["masks"] is not None:
            masks, ids, labels, depth, cats = read_upload_masks(
                f["masks"], f["masks_name"], f["image_name"], h, w, f["image_id"]
            )
            return self.new_session(image, masks, ids, labels, depth=depth, categories=cats,
                                    name=f["image_name"])  # fmt: skip
        if f["polygons"]:
            masks, ids, labels = read_polygons(f["polygons"], h, w)
            cats = [{"id": v, "name": f"object {v}"} for v in sorted(set(labels))]
            return self.new_session(image, masks, ids, labels, categories=cats,
                                    name=f["image_name"])  # fmt: skip
        raise MaskgenError(
            "masks: missing (send a COCO/KINS/COCOA 'masks' file or drawn 'polygons')"
        )

    async def open_scene(self, request: Request) -> Response:
        form = await read_scene_form(request, self.cfg.max_upload_mb)
        return JSONResponse(await run_in_threadpool(self._open_from_form, form))

    def locked(self, fn):
        """An endpoint that runs ``fn(session, request)`` in a thread, holding the scene's lock
        (requests on one scene are serialised)."""

        async def endpoint(request: Request) -> Response:
            s = self.session(request)

            def work():
                with s.lock:
                    return fn(s, request)

            return await run_in_threadpool(work)

        return endpoint

    async def post_op(self, request: Request) -> Response:
        s = self.session(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
            raise MaskgenError(f"operation: not valid JSON ({msg})") from None

        def work():
            with s.lock:
                s.apply(body)
                return JSONResponse(state_json(s))

        return await run_in_threadpool(work)

    def routes(self) -> list[Route]:
        scene = "/api/scenes/{scene_id}"
        return [
            Route("/", index),
            Route("/favicon.ico", favicon),
            Route("/static/{name}", static),
            Route("/api/scenes", self.open_scene, methods=["POST"]),
            Route("/api/scenes/example", self.open_example, methods=["POST"]),
            Route(scene, self.locked(get_state)),
            Route(f"{scene}/render.png", self.locked(get_render)),
            Route(f"{scene}/ops", self.post_op, methods=["POST"]),
            Route(f"{scene}/instances/{{iid}}", self.locked(get_instance)),
            Route(f"{scene}/instances/{{iid}}/uncertainty.png", self.locked(get_uncertainty)),
            Route(f"{scene}/export", self.locked(get_export)),
            Route(f"{scene}/layers.zip", self.locked(get_zip)),
        ]


def create_app(predictor: Any, inpainter: Any, config: ServeConfig | None = None) -> Any:
    """The ASGI app (Starlette, wrapped in :class:`~maskgen.serve.security.Guard`)."""
    cfg = config or ServeConfig()
    editor = Editor(predictor, inpainter, cfg)
    app = Starlette(
        routes=editor.routes(),
        exception_handlers={
            MaskgenError: maskgen_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.state.store = editor.store
    app.state.config = cfg
    hosts = allowed_host_values(cfg.host, cfg.port, cfg.allow_hosts)
    guard = Guard(app, hosts, int(cfg.max_upload_mb * 2**20))
    guard.store = editor.store  # type: ignore[attr-defined]
    return guard


def static_file(name: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name])
