"""The lab's own OOD methods.

* :mod:`.pvalues` -- conformal p-values, p-value combinations, empirical calibration,
  Benjamini–Hochberg, and the fast multi-class channel look-up engine;
* :mod:`.stattest` -- the statistical-test detector (Max-Simes-Fisher, lab spec §2) and its variants;
* :mod:`.guard` -- a deployment guard: predictions with p-values, refused when ``p <= alpha``;
* :mod:`.vae`, :mod:`.wgan` (with :mod:`.gencache`) -- the generative detectors (lab spec §3, §4).

Registered in the detector registry by :mod:`oodbench.adapters.lab_stattest` and
:mod:`oodbench.adapters.lab_generative`. Submodules are imported on demand (no imports here), so a
missing optional dependency of one method does not break the others.
"""
