"""An instance's material as a field over the whole image plane, for exact re-shape targets.

A built-in scene layer (:mod:`maskgen.data.scenes`) is filled for its box only: a flat colour
with per-pixel grey noise, or a tinted texture crop stretched onto the box. :class:`MaterialField`
extends that fill to any point of the plane, so the same material can be rendered into a new
mask (the ground truth of a re-shape, :mod:`maskgen.data.reshape_cases`):

- **texture**: the point maps into texture coordinates by the same stretch the crop used
  (``cv2.resize`` half-pixel convention, clamped to the crop inside the box as the resize does),
  beyond the box into the rest of the texture, and
  beyond the texture's edge by mirror reflection; sampled bilinearly, rounded to uint8 (as the
  resized crop was), then tinted;
- **flat**: the colour plus the layer's own noise inside its box and, outside it, fresh noise of
  the same law from a fixed seed (``[material.extension_seed, material.layer]``), wrapped
  periodically over the image size; noise is sampled at the nearest pixel.

Inside the layer's box the field reproduces the rendered layer (flat: exactly; texture: up to
the rounding of OpenCV's fixed-point resize). Coordinates are image pixels, ``x`` right and
``y`` down, pixel centres at integers.
"""

from __future__ import annotations

import numpy as np

from maskgen.data.scenes import Material

__all__ = ["MaterialField"]

NOISE_SIGMA = 5.0  # maskgen.data.scenes._flat


def _fold(i: np.ndarray, n: int) -> np.ndarray:
    """Integer indices mirrored into ``[0, n)`` (reflect-101, any distance)."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i > n - 1, period - i, i)


def _bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``img`` (``h x w x C``) sampled at float ``(xs, ys)`` (``N``), mirrored beyond its edge."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = (xs - x0)[:, None], (ys - y0)[:, None]
    xa, xb = _fold(x0.astype(np.int64), w), _fold(x0.astype(np.int64) + 1, w)
    ya, yb = _fold(y0.astype(np.int64), h), _fold(y0.astype(np.int64) + 1, h)
    f = img.astype(np.float64)
    top = f[ya, xa] * (1 - fx) + f[ya, xb] * fx
    bottom = f[yb, xa] * (1 - fx) + f[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


class MaterialField:
    """The material of one scene layer over the whole plane (module docstring).

    Args:
        material: the layer's :class:`~maskgen.data.scenes.Material`.
        textures: the scene generator's textures (:func:`maskgen.data.builtin.texture_images`
            values, in order).
        colours: the layer's rendered ``H x W x 3`` float32 colours (flat materials take their
            noise inside the box from it); shape: the image's ``(H, W)``.
    """

    def __init__(self, material: Material, textures: list[np.ndarray], colours: np.ndarray) -> None:
        self.material = material
        self.shape = colours.shape[:2]
        if material.kind == "texture":
            self.texture = textures[material.texture]
            return
        h, w = self.shape
        rng = np.random.default_rng([material.extension_seed, material.layer])
        noise = rng.normal(0.0, NOISE_SIGMA, size=(h, w)).astype(np.float32)
        x0, y0, bw, bh = material.origin
        assert material.colour is not None
        noise[y0 : y0 + bh, x0 : x0 + bw] = (
            colours[y0 : y0 + bh, x0 : x0 + bw, 0] - material.colour[0]
        )
        self.noise = noise

    def sample(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The material at image points ``(xs, ys)`` (float, ``N`` each): ``N x 3`` float32."""
        m = self.material
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        if m.kind == "flat":
            h, w = self.shape
            xi = np.mod(np.rint(xs).astype(np.int64), w)
            yi = np.mod(np.rint(ys).astype(np.int64), h)
            assert m.colour is not None
            return (m.colour[None] + self.noise[yi, xi][:, None]).astype(np.float32)
        x0, y0, bw, bh = m.origin
        ty0, tx0, ch, cw = m.crop
        sx = (xs - x0 + 0.5) * cw / bw - 0.5
        sy = (ys - y0 + 0.5) * ch / bh - 0.5
        # Inside the box the resize replicated the crop's edge; beyond it the texture goes on.
        sx = np.where((xs > x0 - 0.5) & (xs < x0 + bw - 0.5), np.clip(sx, 0, cw - 1), sx)
        sy = np.where((ys > y0 - 0.5) & (ys < y0 + bh - 0.5), np.clip(sy, 0, ch - 1), sy)
        tx = tx0 + (cw - 1 - sx if m.flip else sx)
        ty = ty0 + sy
        tex = np.rint(_bilinear(self.texture, tx, ty)).astype(np.float32)
        assert m.gain is not None and m.bias is not None
        return tex * m.gain * m.scale + m.bias

    def render(self, mask: np.ndarray, inverse: np.ndarray | None = None) -> np.ndarray:
        """The material inside ``mask``: ``H x W x 3`` float32, zero outside.

        Args:
            mask: ``H x W`` bool.
            inverse: optional ``2 x 3`` affine map from output pixels to material points (a
                rigid re-shape moves the material with the object: pass the inverse of its
                transform); identity when None (the material stays in place).
        """
        ys, xs = np.nonzero(mask)
        px, py = xs.astype(np.float64), ys.astype(np.float64)
        if inverse is not None:
            a = np.asarray(inverse, np.float64)
            px, py = a[0, 0] * px + a[0, 1] * py + a[0, 2], a[1, 0] * px + a[1, 1] * py + a[1, 2]
        out = np.zeros((*mask.shape, 3), np.float32)
        out[ys, xs] = self.sample(px, py)
        return out
