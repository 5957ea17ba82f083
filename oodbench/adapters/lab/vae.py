"""The ``vae`` detector (lab spec §3): the negative ELBO of a VAE trained on the ID ``train`` split,
classifier-free, with a conformal p-value on ``cal``. The VAE itself (models, training, the ELBO and
its per-sample gradients) is plain torch in :mod:`oodbench.detectors.vae`; its checkpoint comes
through the :class:`~oodbench.adapters.context.FitContext` (``rep.context``).
"""
from __future__ import annotations

import numpy as np
import torch

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.detectors.pvalues import conformal_p
from oodbench.detectors.sampling import seeded_subset
from oodbench.detectors.vae import (SCORES, Z_MODES, as_input, build_vae, mutate, neg_elbo, per_sample_grads,
                                    train_vae)



class VAEDetector(Detector):
    """Negative-ELBO OOD score of a VAE trained on the ID ``train`` split (see the module docstring)."""

    consumes = frozenset({"images"})
    info = DetectorInfo(library="oodbench-lab", paper="Kingma & Welling 2014 (VAE); lab spec §3",
                        needs_fit=True, cpu_ok=True,
                        notes="MLP VAE 784-400-20 (Bernoulli) on grey sets, conv VAE on RGB; trained on ID train, "
                              "best epoch on ID fit; score = -ELBO (z = mu); conformal p-value on cal")

    def __init__(self, statistic: str = "elbo", z_mode: str = "mean", k: int = 16, epochs: int | None = None,
                 hidden: int = 400, latent: int | None = None, lr: float = 1e-3, batch_size: int = 128,
                 min_steps: int = 200, ref_max: int = 10000):
        self.statistic = statistic
        self.z_mode = z_mode
        self.k = k
        self.epochs = epochs
        self.hidden = hidden
        self.latent = latent
        self.lr = lr
        self.batch_size = batch_size
        self.min_steps = min_steps
        self.ref_max = ref_max

    # ------------------------------------------------------------------------------------------
    def _config(self, x, device="cpu") -> dict:
        conv = x.ndim == 4
        # 20 epochs for the conv VAE on every device (6 epochs of cifar10's 40,000 images took 236 s on one
        # CPU thread; 6 left its validation loss still falling fast), 10 for the MLP VAE
        return {"arch": "conv" if conv else "mlp", "shape": list(x.shape[1:]), "hidden": self.hidden,
                "latent": self.latent or (64 if conv else 20), "epochs": self.epochs or (20 if conv else 10),
                "lr": self.lr, "batch_size": self.batch_size, "min_steps": self.min_steps}

    def fit(self, fit, cal=None):
        if self.statistic not in SCORES:
            raise ValueError(f"statistic must be one of {SCORES}, got {self.statistic!r}")
        if self.z_mode not in Z_MODES:
            raise ValueError(f"z_mode must be one of {Z_MODES}, got {self.z_mode!r}")
        ctx = fit.context
        train = ctx.require_train("the VAE detector")
        self.device_ = str(ctx.device)
        seed = int(ctx.seed)
        progress = bool(ctx.progress)
        cfg = self._config(train.x, self.device_)
        val = fit.images
        self.model_, self.train_log_ = ctx.load_or_train(
            "vae", cfg, f"{train.checksum}|val:{val.checksum}", seed,
            build=lambda: build_vae(train.x, cfg["hidden"], cfg["latent"]),
            train=lambda m: train_vae(m, train.x, val.x, cfg["epochs"], cfg["batch_size"], cfg["lr"], seed,
                                      self.device_, progress, cfg["min_steps"]))
        self.model_.to(self.device_).eval()
        self.seed_ = seed
        if self.statistic in ("typicality", "score_test", "bergamin"):
            self._fit_bergamin(train, fit)
        self.cal_scores_ = self._score_images(cal.images.x) if cal is not None else None
        return self

    # --- Bergamin et al. (2022): typicality + score test -----------------------------------------
    def _ref_subset(self, images, salt: int):
        n = len(images)
        if n <= self.ref_max:
            return images.x
        return images.x[seeded_subset(n, self.ref_max, self.seed_ + salt)]

    def _elbo_neg(self, x_uint8):
        return neg_elbo(self.model_, as_input(x_uint8, self.model_), self.z_mode, self.k, device=self.device_,
                        seed=self.seed_)

    def _score_stat(self, x_uint8):
        x = as_input(x_uint8, self.model_)
        out = []
        for gb in per_sample_grads(self.model_, x, device=self.device_):
            out.append(((gb * gb) / self.fisher_diag_).sum(1).double().cpu())
        return torch.cat(out).numpy()

    def _fit_bergamin(self, train, fit):
        xr = self._ref_subset(train, 1)
        self.elbo_mean_ = float(self._elbo_neg(xr).mean())
        if self.statistic in ("score_test", "bergamin"):
            acc, n = None, 0
            for gb in per_sample_grads(self.model_, as_input(xr, self.model_), device=self.device_):
                s = (gb * gb).sum(0)
                acc = s if acc is None else acc + s
                n += len(gb)
            self.fisher_diag_ = acc / n + 1e-8
        if self.statistic == "bergamin":  # empirical nulls of both statistics on the fit split
            xf = self._ref_subset(fit.images, 2)
            self.ref_typ_ = np.abs(self._elbo_neg(xf) - self.elbo_mean_)
            self.ref_st_ = self._score_stat(xf)

    def _score_images(self, x_uint8) -> np.ndarray:
        st = self.statistic
        if st in ("elbo", "recon", "kl"):
            r, kl, ne = neg_elbo(self.model_, as_input(x_uint8, self.model_), self.z_mode, self.k,
                                 device=self.device_, seed=self.seed_, parts=True)
            return {"elbo": ne, "recon": r, "kl": kl}[st]
        if st == "typicality":
            return np.abs(self._elbo_neg(x_uint8) - self.elbo_mean_)
        if st == "score_test":
            return self._score_stat(x_uint8)
        p1 = conformal_p(self.ref_typ_, np.abs(self._elbo_neg(x_uint8) - self.elbo_mean_))
        p2 = conformal_p(self.ref_st_, self._score_stat(x_uint8))
        return -2.0 * (np.log(p1) + np.log(p2))

    def score(self, rep) -> np.ndarray:
        return self._score_images(rep.images.x).astype(np.float64)

    def p_value(self, rep) -> np.ndarray:
        """Right-sided conformal p-value of the score on the ``cal`` split (small = OOD)."""
        if self.__dict__.get("cal_scores_") is None:
            raise RuntimeError("p_value needs fit(..., cal) with a calibration split")
        return conformal_p(self.cal_scores_, self.score(rep))


class VAETypicalityDetector(VAEDetector):
    """The typicality test on the same VAE: ``|−ELBO(x) − mean −ELBO of ID train|`` (Nalisnick et al.
    2019; the typicality half of Bergamin et al. 2022). A likelihood model can give OOD data a *higher*
    likelihood than ID data (a VAE on FashionMNIST finds MNIST digits "more likely"), which inverts the
    ``vae`` score; the typicality test flags inputs whose likelihood is atypical in either direction."""

    info = DetectorInfo(library="oodbench-lab", paper="Nalisnick et al. 2019 (typicality test); lab spec §3",
                        needs_fit=True, cpu_ok=True,
                        notes="same VAE checkpoint as `vae`; score = |-ELBO - mean -ELBO on an ID train subset|, "
                              "two-sided in the likelihood; conformal p-value on cal")

    def __init__(self, statistic: str = "typicality", z_mode: str = "mean", k: int = 16, epochs: int | None = None,
                 hidden: int = 400, latent: int | None = None, lr: float = 1e-3, batch_size: int = 128,
                 min_steps: int = 200, ref_max: int = 10000):
        super().__init__(statistic, z_mode, k, epochs, hidden, latent, lr, batch_size, min_steps, ref_max)


class VAELikelihoodRatioDetector(VAEDetector):
    """The likelihood ratio of Ren et al. (2019) with VAEs: ``−ELBO(x) under the ID VAE − (−ELBO(x) under
    a background VAE)``, i.e. minus the log-likelihood ratio (higher = more OOD). The background VAE has
    the same architecture and schedule but is trained on the ID train split with every pixel value
    replaced, with probability ``mutation``, by a random one (:func:`~oodbench.detectors.vae.mutate`;
    validation on the equally mutated ``fit`` split). Both models explain the population-level part of
    the likelihood (how much of the image is background, overall intensity) — what makes a VAE on
    FashionMNIST find MNIST digits "more likely" — and the ratio keeps the ID-specific part.
    ``mutation = 0.2``: the middle of the 0.1-0.3 range Ren et al. searched (their choice was made on
    OOD validation data, which this detector does not use)."""

    info = DetectorInfo(library="oodbench-lab", paper="Ren et al., NeurIPS 2019 (likelihood ratios); lab spec §3",
                        needs_fit=True, cpu_ok=True,
                        notes="same ID VAE as `vae` + a background VAE trained on mutated ID train images "
                              "(rate 0.2); score = -ELBO_ID - (-ELBO_background); conformal p-value on cal",
                        extra={"separable_toy": "the toy's OOD set is pixel noise, which the background model "
                                                "learns from the mutated images: the ratio calls noise ID-like "
                                                "(the method targets semantic shift; tests/test_generative.py "
                                                "checks a semantic shift and this inversion)"})

    def __init__(self, mutation: float = 0.2, z_mode: str = "mean", k: int = 16, epochs: int | None = None,
                 hidden: int = 400, latent: int | None = None, lr: float = 1e-3, batch_size: int = 128,
                 min_steps: int = 200):
        super().__init__("elbo", z_mode, k, epochs, hidden, latent, lr, batch_size, min_steps)
        self.mutation = mutation

    def fit(self, fit, cal=None):
        super().fit(fit, None)  # the ID VAE (shared with `vae` through the checkpoint cache)
        ctx = fit.context
        train, val, seed = ctx.require_train("the VAE likelihood-ratio detector"), fit.images, int(ctx.seed)
        cfg = {**self._config(train.x, self.device_), "background_mutation": float(self.mutation)}
        self.background_, self.background_log_ = ctx.load_or_train(
            "vae", cfg, f"{train.checksum}|val:{val.checksum}", seed,
            build=lambda: build_vae(train.x, cfg["hidden"], cfg["latent"]),
            train=lambda m: train_vae(m, mutate(train.x, self.mutation, seed), mutate(val.x, self.mutation, seed + 1),
                                      cfg["epochs"], cfg["batch_size"], cfg["lr"], seed, self.device_,
                                      bool(ctx.progress), cfg["min_steps"]))
        self.background_.to(self.device_).eval()
        self.cal_scores_ = self._score_images(cal.images.x) if cal is not None else None
        return self

    def _score_images(self, x_uint8) -> np.ndarray:
        bg = neg_elbo(self.background_, as_input(x_uint8, self.background_), self.z_mode, self.k,
                      device=self.device_, seed=self.seed_)
        return self._elbo_neg(x_uint8) - bg
