"""The lab's own OOD methods, as plain numpy / torch: arrays, tensors and ``nn.Module``s in; scores,
p-values and decisions out. Nothing here imports :mod:`oodbench.adapters` or :mod:`oodbench.benchmark`.

* :mod:`.pvalues` -- conformal p-values, p-value combinations, empirical calibration,
  Benjamini–Hochberg; :mod:`.grouped_reference` -- the fast multi-class channel look-up engine;
* :mod:`.stattest` -- Max-Simes-Fisher (lab spec §2) and the extra statistics of its variants;
* :mod:`.taps` -- per-layer statistics of any ``nn.Module``; :mod:`.images` -- uint8 images to tensors;
* :mod:`.guard` -- a deployment guard for any ``nn.Module``: predictions with p-values, refused when
  ``p <= alpha``;
* :mod:`.vae`, :mod:`.wgan`, :mod:`.dz_search` -- the generative models and Δz searches (lab spec §3, §4);
* :mod:`.sampling` -- the one seeded subsample.

Behind the detector contract (registered as ``stattest``, ``vae``, ``wgan_*``) in
:mod:`oodbench.adapters.lab`. Submodules are imported on demand (no imports here), so a missing
optional dependency of one method does not break the others.
"""
