"""The lab's own detectors as registry entries (library ``oodbench-lab``; methods in
:mod:`oodbench.detectors`, spec ``shared/specs/lab_methods.md``):

* ``stattest`` and its variants (:mod:`.stattest`, :mod:`.stattest_variants`) — §2;
* ``vae`` (:mod:`.vae`) — the negative ELBO of a VAE trained on the ID train split, §3;
  ``vae_typicality`` — the typicality test on the same VAE, and ``vae_llr`` — the likelihood ratio
  against a background VAE trained on mutated images (both address the fashionmnist-as-ID inversion);
* ``wgan_recon``, ``wgan_dz``, ``wgan_dz_fast`` (:mod:`.wgan`) — WGAN-GP + inverter, §4.
"""
from __future__ import annotations

from oodbench.adapters.lab import stattest_variants
from oodbench.adapters.lab.vae import VAEDetector, VAELikelihoodRatioDetector, VAETypicalityDetector
from oodbench.adapters.lab.wgan import DeltaZDetector, FastDeltaZDetector, ReconDetector

GENERATIVE = {"vae": VAEDetector, "vae_typicality": VAETypicalityDetector, "vae_llr": VAELikelihoodRatioDetector,
              "wgan_recon": ReconDetector, "wgan_dz": DeltaZDetector, "wgan_dz_fast": FastDeltaZDetector}


def register_all(registry) -> None:
    """Register the lab's detectors in ``registry`` (the generative ones first: ``stattest+vae`` needs ``vae``)."""
    for name, cls in GENERATIVE.items():
        registry.add(name, cls)
    stattest_variants.register_all(registry)
