"""Exemplar texture transfer: the instance's own high-frequency detail in the re-rendered part.

The generator (trained with L1 on a CPU budget, its adversarial part never getting going) gives
the right colours and shading in the new shape but no texture: where the appearance cannot be
predicted pixel by pixel, L1 pulls it to a smooth mean. This step -- a deviation from §3.4, which
relies on the GAN for texture -- splits the picture into a low band and a high band and takes
each from where it is known best:

- **low band** (colour, shading): the generator's output blurred by a Gaussian of
  ``texture_sigma`` px (normalised inside the new mask, so the background does not leak in);
- **high band** (texture): the instance's own visible pixels minus their Gaussian blur
  (normalised inside the visible mask: the *residual*), synthesised into the pixels the method
  has to invent (the new mask minus the visible pixels) by Efros & Freeman's image quilting /
  texture transfer (SIGGRAPH 2001): square ``texture_patch`` px tiles in raster order, each step
  ``patch - overlap`` (``overlap = max(1, patch // 3)``), each copied from a patch lying wholly
  inside the (1 px eroded) visible mask, the one chosen at random among those within 10 % of the
  lowest error -- the mean squared difference to what is already there (the visible residual and
  the tiles placed before; so the texture continues from the visible edge) plus
  ``texture_guide`` x the mean squared difference of the low bands' grey levels (the source
  patch's own low band against the generator's at the target: texture from similarly shaded
  parts, Efros & Freeman's correspondence term). Where a tile overlaps tiles placed before,
  ``texture_seam="straight"`` (the default) keeps the earlier tiles' pixels (a straight seam),
  ``"cut"`` takes Efros & Freeman's minimum-error boundary cut (a least-cost path of the squared
  difference through the left and the top overlap strips; the new tile beyond both paths; on
  validation it removes the seams' excess high-frequency energy but matches the truth's patches
  a little worse). Visible pixels are never overwritten.

Deterministic: the random choices come from ``numpy.random.default_rng(texture_seed)``, drawn
afresh for every new mask. Where no patch of the size fits in the visible mask the patch is
halved (down to single pixels: the visible residual's pixels drawn at random).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskgen.engine.config import param

TEXTURE_MODES = ("transfer", "none")
SEAMS = ("cut", "straight")
TOLERANCE = 0.1  # Efros & Freeman: any candidate within 10 % of the best error
MAX_CANDIDATES = 2048  # source patches considered per call (a random subset beyond)


@dataclass(frozen=True)
class TextureOptions:
    """How the re-rendered part gets its texture (module docstring). Defaults chosen on the
    built-in scenes' validation split (``scripts/synth_val_check.py``; RESULTS
    ``reshape-texture-val`` and ``reshape-texture-val-seam``)."""

    texture: str = param(
        "transfer",
        "texture of the re-rendered part: 'transfer' (the instance's own visible high-frequency "
        "detail, quilted into it) or 'none' (the generator's smooth output)",
        choices=TEXTURE_MODES,
    )
    texture_patch: int = param(
        13, "with --texture transfer: side of the quilted patches (px)", low=1, high=64
    )
    texture_sigma: float = param(
        3.0,
        "with --texture transfer: Gaussian sigma (px) splitting texture from colour/shading",
        low=0.3,
        high=16,
    )
    texture_guide: float = param(
        1.0,
        "with --texture transfer: weight of the shading match (source low band vs the "
        "generator's) in the patch choice",
        low=0,
        high=100,
    )
    texture_seed: int = param(0, "with --texture transfer: seed of the patch choices", low=0)
    texture_seam: str = param(
        "straight",
        "with --texture transfer: where quilted patches overlap, 'cut' (minimum-error boundary "
        "cut) or 'straight' (the earlier patch kept)",
        choices=SEAMS,
    )


def masked_blur(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``image`` normalised inside ``mask``: ``H x W x 3`` float32 (values
    outside the mask are never read; where no mask pixel is near, the plain blur's 0 / 0 is
    guarded and the result is meaningless -- callers read it only near the mask).

    Args:
        image: ``H x W x 3`` uint8 or float.
        mask: ``H x W`` bool.
    """
    m = mask.astype(np.float32)
    num = cv2.GaussianBlur(image.astype(np.float32) * m[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(m, (0, 0), sigma)
    return num / np.maximum(den, 1e-6)[..., None]


def _patch_table(
    residual: np.ndarray, grey: np.ndarray, ok: np.ndarray, p: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """The candidate patches: ``(N x p*p x 3 residual, N x p*p low-band grey)`` float32 of the
    ``p x p`` windows wholly inside ``ok``, at most :data:`MAX_CANDIDATES` (a random subset);
    None when no window fits."""
    inside = cv2.erode(ok.astype(np.uint8), np.ones((p, p), np.uint8), borderValue=0)
    r = p // 2
    ys, xs = np.nonzero(
        inside[r : inside.shape[0] - (p - 1 - r), r : inside.shape[1] - (p - 1 - r)]
    )
    if len(ys) == 0:
        return None
    if len(ys) > MAX_CANDIDATES:
        pick = np.sort(rng.choice(len(ys), MAX_CANDIDATES, replace=False))
        ys, xs = ys[pick], xs[pick]
    win_r = np.lib.stride_tricks.sliding_window_view(residual, (p, p), axis=(0, 1))
    win_g = np.lib.stride_tricks.sliding_window_view(grey, (p, p), axis=(0, 1))
    res = win_r[ys, xs].transpose(0, 2, 3, 1).reshape(len(ys), p * p, 3)  # N x p*p x 3
    return np.ascontiguousarray(res), win_g[ys, xs].reshape(len(ys), p * p)


def _cut_path(err: np.ndarray) -> np.ndarray:
    """Column per row of the least-cost 8-connected top-to-bottom path through ``err``
    (``rows x cols`` float), by dynamic programming (Efros & Freeman's boundary cut)."""
    rows, cols = err.shape
    cost = err.astype(np.float64, copy=True)
    for r in range(1, rows):
        prev = np.pad(cost[r - 1], 1, constant_values=np.inf)
        cost[r] += np.minimum(np.minimum(prev[:-2], prev[1:-1]), prev[2:])
    path = np.empty(rows, np.int64)
    path[-1] = int(np.argmin(cost[-1]))
    for r in range(rows - 2, -1, -1):
        c = path[r + 1]
        lo = max(c - 1, 0)
        path[r] = lo + int(np.argmin(cost[r, lo : min(c + 2, cols)]))
    return path


def boundary_cut(err: np.ndarray, overlap: int) -> np.ndarray:
    """``p x p`` bool: where a new tile replaces what is there, given the squared difference
    ``err`` (``p x p``) -- right of the least-cost vertical path through the left ``overlap``
    columns and below the least-cost horizontal path through the top ``overlap`` rows."""
    p = err.shape[0]
    idx = np.arange(p)
    left = idx[None, :] >= _cut_path(err[:, :overlap])[:, None]  # p x p (columns >= path)
    top = idx[:, None] >= _cut_path(err[:overlap, :].T)[None, :]
    return left & top


def _pick(
    cand_r: np.ndarray,
    cand_g: np.ndarray,
    have: np.ndarray,
    ref: np.ndarray,
    todo: np.ndarray,
    ref_g: np.ndarray,
    guide: float,
    rng: np.random.Generator,
) -> int:
    """The index of the candidate a tile copies: at random among those within
    :data:`TOLERANCE` of the least error -- the mean squared difference of its residual to
    ``ref`` (``n x 3``, on the tile's ``have`` pixels; flat ``p*p`` bool) plus ``guide`` x that of
    its low-band grey to ``ref_g`` (on the ``todo`` pixels)."""
    err = np.zeros(len(cand_r), np.float32)
    if have.any():
        err += ((cand_r[:, have] - ref) ** 2).mean(axis=(1, 2))
    if guide > 0:
        err += guide * ((cand_g[:, todo] - ref_g) ** 2).mean(axis=1)
    pool = np.flatnonzero(err <= float(err.min()) * (1 + TOLERANCE) + 1e-6)
    return int(pool[rng.integers(len(pool))])


def quilt_residual(
    residual: np.ndarray,
    known: np.ndarray,
    target: np.ndarray,
    grey_src: np.ndarray,
    grey_tgt: np.ndarray,
    patch: int,
    guide: float,
    rng: np.random.Generator,
    seam: str = "straight",
) -> np.ndarray:
    """The residual filled on ``target`` by quilting patches of it from ``known`` (module
    docstring).

    Args:
        residual: ``H x W x 3`` float32, valid on ``known``.
        known: ``H x W`` bool, the source (the visible pixels).
        target: ``H x W`` bool, disjoint from ``known``: the pixels to fill.
        grey_src, grey_tgt: ``H x W`` float32 low-band grey levels of the source (valid on
            ``known``) and of the base the residual is added to (valid on ``target``).
        patch: tile side (px), halved while no tile fits in ``known`` eroded by 1 px.
        guide: weight of the grey-level term.
        seam: ``"cut"`` (minimum-error boundary cut) or ``"straight"`` where tiles overlap.

    Returns:
        ``H x W x 3`` float32: ``residual`` on ``known``, the quilt on ``target``, 0 elsewhere.
    """
    src_ok = cv2.erode(known.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if not src_ok.any():
        src_ok = known
    table, p = None, max(1, int(patch))
    while table is None and p >= 1:
        table = _patch_table(residual, grey_src, src_ok, p, rng)
        p = p // 2 if table is None else p
    out = np.where(known[..., None], residual, 0.0).astype(np.float32)
    if table is None or not target.any():
        return out
    cand_r, cand_g = table
    overlap = max(1, p // 3)
    step = max(1, p - overlap)
    pad = ((p, p), (p, p))
    res = np.pad(out, (*pad, (0, 0)))
    filled = np.pad(known, pad)
    tgt = np.pad(target, pad)
    g_tgt = np.pad(grey_tgt.astype(np.float32), pad)
    ys, xs = np.nonzero(tgt)
    for y in range(ys.min(), ys.max() + 1, step):
        for x in range(xs.min(), xs.max() + 1, step):
            sl = (slice(y, y + p), slice(x, x + p))
            todo = (tgt[sl] & ~filled[sl]).reshape(-1)
            if not todo.any():
                continue
            have = filled[sl].reshape(-1)
            ref = res[sl].reshape(-1, 3)[have]
            ref_g = g_tgt[sl].reshape(-1)[todo]
            k = _pick(cand_r, cand_g, have, ref, todo, ref_g, guide, rng)
            write = todo.reshape(p, p)
            new = cand_r[k].reshape(p, p, 3)
            redo = tgt[sl] & filled[sl]  # quilted by earlier tiles (never visible pixels)
            if seam == "cut" and redo.any():
                diff = np.where(redo, ((new - res[sl]) ** 2).sum(axis=2), 0.0)
                write = write | (redo & boundary_cut(diff, overlap))
            res[sl][write] = new[write]
            filled[sl] |= todo.reshape(p, p)
    return res[p:-p, p:-p]


def transfer_texture(
    image: np.ndarray,
    visible: np.ndarray,
    new_mask: np.ndarray,
    rendered: np.ndarray,
    opts: TextureOptions,
) -> np.ndarray:
    """``rendered`` with its part on ``new_mask & ~visible`` replaced by its low band plus the
    instance's own texture quilted there (module docstring); unchanged elsewhere.

    Args:
        image: ``H x W x 3`` uint8, the window of the image (the texture's source).
        visible: ``H x W`` bool, the instance's visible pixels in the window (non-empty).
        new_mask: ``H x W`` bool, the new full mask in the window.
        rendered: ``H x W x 3`` float32 (0-255), the generator's rendering of the window.
        opts: the settings; ``opts.texture == "none"`` returns ``rendered`` as it is.

    Returns:
        ``H x W x 3`` float32.
    """
    target = new_mask & ~visible
    if opts.texture == "none" or not target.any() or not visible.any():
        return rendered
    sigma = float(opts.texture_sigma)
    src_low = masked_blur(image, visible, sigma)
    residual = image.astype(np.float32) - src_low
    low = masked_blur(rendered, new_mask, sigma)
    quilt = quilt_residual(
        residual, visible, target, src_low.mean(axis=2), low.mean(axis=2),
        opts.texture_patch, float(opts.texture_guide),
        np.random.default_rng(int(opts.texture_seed)), opts.texture_seam,
    )  # fmt: skip
    out = np.array(rendered, dtype=np.float32, copy=True)
    out[target] = low[target] + quilt[target]
    return out
