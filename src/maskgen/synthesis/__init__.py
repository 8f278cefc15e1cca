"""Mask-conditioned instance synthesis (Amodal-VAE supplementary §3.4, GauGAN/SPADE).

Re-render an instance into a new full mask -- another completion sample, a prior sample, a mask
the user drew -- keeping its colours and texture::

    from maskgen.synthesis import load_synthesizer
    syn = load_synthesizer(None)                     # the shipped model (SHIPPED_SYNTH)
    out = syn.synthesize(image, visible, new_mask)   # H x W x 3 uint8

Modules: ``model`` (SPADE generator, style encoder, multi-scale discriminator), ``data``
(training pairs from unoccluded instances of a visible-mask data set; no amodal labels),
``training`` (config, trainer, ``train_synthesizer``: ``maskgen synth train``), ``predictor``
(:class:`MaskSynthesizer`, :func:`load_synthesizer`), ``transfer`` (the instance's own texture
quilted into the re-rendered part: :class:`~maskgen.synthesis.transfer.TextureOptions`),
``texture`` (texture measures and loss).

Editing (:mod:`maskgen.editing`) builds on this package; this package never imports editing.
"""

from typing import Any

__all__ = ["SHIPPED_SYNTH", "MaskSynthesizer", "load_synthesizer"]


def __getattr__(name: str) -> Any:
    """The predictor's names, imported on first use (they pull in torch)."""
    if name in __all__:
        from maskgen.synthesis import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'maskgen.synthesis' has no attribute {name!r}")
