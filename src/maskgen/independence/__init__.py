"""The independence prior (Dai et al., AAAI 2019). Shared by both applications: ``discriminator``
(SN-GAN, Tables 1-2), ``losses`` (area penalty eq. 7, distillation smooth-L1 eq. 8), ``layout``,
``composition`` and ``gan`` (the named training phases). Application 1: ``providers``,
``segmentation``, ``distillation``, ``predict``. Application 2: ``cluster*``."""
