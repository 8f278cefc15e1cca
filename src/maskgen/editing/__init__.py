"""Scene editing on top of Amodal-VAE (supplementary §3.3, Fig. 6): occlusion order, layers and
edit operations.

- :mod:`maskgen.editing.order` -- which instance is in front, decided from the completions;
- :mod:`maskgen.editing.scene` -- :class:`~maskgen.editing.scene.Scene`: an image decomposed into
  RGBA instance layers over an inpainted background plate, edited by re-compositing;
- :mod:`maskgen.editing.erase` -- :func:`~maskgen.editing.erase.erase_and_complete`, the one-shot
  erase of the first version (kept for its callers).

This package imports :mod:`maskgen.amodal` and :mod:`maskgen.inpainting`; neither imports it.
"""

from maskgen.editing.erase import EditResult, erase_and_complete

__all__ = ["EditResult", "erase_and_complete"]
