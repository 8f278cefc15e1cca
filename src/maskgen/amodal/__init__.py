"""Amodal-VAE (Ling et al., NeurIPS 2020): ``model`` (encoders, decoder, box head), ``data``
(complete-instance rule, synthetic occlusion, known pixels), ``training`` (the three named stages),
``io`` (model folders), ``predictor`` (numpy API), ``completion`` (datasets -> results),
``analysis`` (the supplementary's figures) and ``corruption`` (Table 1's corrupted masks)."""
