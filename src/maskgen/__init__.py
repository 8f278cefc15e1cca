"""maskgen: learn object masks with generative models, without mask labels.

Two systems share one toolkit (``maskgen.core``):

* ``maskgen.amodal`` -- Amodal-VAE (variational amodal mask completion).
* ``maskgen.independence`` -- the independence prior (masks learned by generating composites).
"""

__version__ = "0.1.0"
