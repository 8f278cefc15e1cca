"""Inpainting: fill the pixels an edit uncovers (supplementary §3.3).

Two inpainters share one interface, :class:`~maskgen.inpainting.base.Inpainter`:

- :class:`~maskgen.inpainting.base.TeleaInpainter` -- OpenCV's fast-marching method, restricted
  to source pixels (no training; continues colours, makes no texture);
- the learned inpainter of §3.3 (a background and an instance network, trained on the user's own
  images by ``maskgen inpaint train``): :class:`~maskgen.inpainting.learned.LearnedInpainter`.

:func:`load_inpainter` (``"telea"``, ``"builtin"``/None or a model folder) is how commands pick
one. Modules: ``model`` (the gated-conv network), ``samplers`` (training holes from visible
masks), ``training`` (config, trainer, ``train_inpainter``), ``learned`` (inference).

Editing (:mod:`maskgen.editing`) builds on this package; this package never imports editing.
"""

from typing import Any

from maskgen.inpainting.base import Inpainter, TeleaInpainter, inpaint_from

__all__ = [
    "BUILTIN_INPAINTER",
    "Inpainter",
    "LearnedInpainter",
    "TeleaInpainter",
    "inpaint_from",
    "load_inpainter",
]
_LAZY = ("BUILTIN_INPAINTER", "LearnedInpainter", "load_inpainter")


def __getattr__(name: str) -> Any:
    """The learned inpainter's names, imported on first use (they pull in torch)."""
    if name in _LAZY:
        from maskgen.inpainting import learned

        return getattr(learned, name)
    raise AttributeError(f"module 'maskgen.inpainting' has no attribute {name!r}")
