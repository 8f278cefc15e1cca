"""Inpainting: fill the pixels an edit uncovers (supplementary §3.3).

Two inpainters share one interface, :class:`~maskgen.inpainting.base.Inpainter`:

- :class:`~maskgen.inpainting.base.TeleaInpainter` -- OpenCV's fast-marching method, restricted
  to source pixels (no training; continues colours, makes no texture);
- the learned inpainter of §3.3 (a background and an instance network, trained on the user's own
  images by ``maskgen inpaint train``).

Editing (:mod:`maskgen.editing`) builds on this package; this package never imports editing.
"""

from maskgen.inpainting.base import Inpainter, TeleaInpainter, inpaint_from

__all__ = ["Inpainter", "TeleaInpainter", "inpaint_from"]
