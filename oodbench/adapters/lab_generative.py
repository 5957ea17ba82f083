"""The lab's generative-model detectors (spec ``lab_methods.md`` §3, §4), library ``oodbench-lab``:

* ``vae`` — negative ELBO of a VAE trained on the ID train split (classifier-free), with a conformal
  p-value on ``cal``;
* ``wgan_recon`` — reconstruction consistency through a WGAN-GP generator + inverter (§4.4-1);
* ``wgan_dz`` — Δz, the latent distance to the nearest generation the classifier labels differently,
  by the reference recursive search (expensive; on CPU only a seeded subsample of each set);
* ``wgan_dz_fast`` — the same Δz by a batched per-direction bisection (same ranking, far cheaper).
"""
from __future__ import annotations

from oodbench.adapters.registry import register
from oodbench.detectors.vae import VAEDetector

register("vae")(VAEDetector)

try:  # the WGAN detectors live in their own module
    from oodbench.detectors import wgan as _wgan
except ModuleNotFoundError as e:  # pragma: no cover - while the module is being written
    if e.name != "oodbench.detectors.wgan":
        raise
else:
    register("wgan_recon")(_wgan.ReconDetector)
    register("wgan_dz")(_wgan.DeltaZDetector)
    register("wgan_dz_fast")(_wgan.FastDeltaZDetector)
