"""The WGAN-GP + inverter detectors (lab spec §4), over the models of :mod:`oodbench.detectors.wgan` and the
searches of :mod:`oodbench.detectors.dz_search`.

Scores (higher = more OOD; the label compared against is always the classifier's **predicted** label):
    * :class:`ReconDetector` (``wgan_recon``, §4.4-1): CE(softmax f(x), softmax f(G(I(x)))) + ‖x − G(I(x))‖².
    * :class:`DeltaZDetector` (``wgan_dz``): −Δz with Δz the L2 radius found by the reference's recursive
      (hybrid shrinking) search: ``nsamples`` = 5000 random directions per round, radii uniform in the current
      shell [l, h) starting from [0, 10), halving around the best radius, then scanning down in steps of
      0.01 with a budget of ``stop`` = 5 failed rounds. Directions are seeded per sample.
    * :class:`FastDeltaZDetector` (``wgan_dz_fast``): the same quantity by a batched search of our design.
      ``method="gradient"`` (default): DeepFool-style walk in z along the gradient of the classifier's margin
      logit_y − max_{j≠y} logit_j of f(G(z)) until the label changes (≤ ``grad_steps``), then ``n_bisect``
      label-only halvings along the straight ray from I(x) to that point; 256 inputs per batch.
      ``method="bisection"`` (label-only, black-box): a fixed, per-sample-seeded set of ``n_directions``
      unit directions; predicate P(r) = "some direction flips the label at radius r"; P(0) is the
      reconstruction check, P(h0) brackets, then ``n_bisect`` halvings of [0, h0] (64 inputs × all
      directions in one batch). Measured on MNIST → FashionMNIST (``benchmarks/dz_search_speed.py``, 16
      inputs, CPU): gradient ≈ 2,000× faster than the recursive search at 1,000 directions/round, Spearman
      0.98; bisection ≈ 105×, Spearman 0.95.

Subsampling: Δz costs 10⁴–10⁵ generator + classifier forwards per input with the faithful search, so both Δz
detectors implement the runner's ``subsample_size(device)`` protocol: the runner scores a seeded subsample
(without replacement) of at most ``max_samples`` inputs of each OOD set (faithful: 500, the spec's protocol;
fast: 2,000) and of at most ``id_samples`` inputs of the ID test set (faithful: 500; fast: None, the whole ID
test set, so that the false-alarm rate of its p-values is measured to a standard error of about 0.002 at α =
0.05 rather than 0.005 on 2,000; the gradient search scores about 380 inputs/s on one CPU thread). ``None``
scores everything. The random directions of an input are seeded by (seed, a CRC of the image's bytes), so an
input gets the same directions wherever it appears. ``p_value`` is the left-tail conformal p-value of Δz on a
seeded subsample of at most ``cal_samples`` ``cal`` images (computed on first use; faithful: 500; fast: None,
the whole split, 5,000 images in mnist and fashionmnist). A larger reference narrows the spread of the
false-alarm rate around α that the draw of the reference adds: on fashionmnist's whole ID test at α = 0.05,
seeds 0 / 1 / 2 gave 0.058–0.060 / 0.050–0.052 / 0.052–0.055 with a 2,000-image reference (five tie-breaking
seeds each) and 0.051–0.054 / 0.054–0.058 / 0.051–0.054 with the whole split.
Δz is censored at the search's upper radius h0 = 10 when no label change is found.
"""
from __future__ import annotations

import hashlib
import math
import zlib

import numpy as np
import torch

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.detectors.dz_search import Oracle, bisection_search, gradient_search, recursive_search, sample_seed
from oodbench.detectors.pvalues import conformal_p, conformal_p_randomized
from oodbench.detectors.sampling import seeded_subset
from oodbench.detectors.state import state_hash
from oodbench.detectors.wgan import LATENT, SMALL_N, WGANInv, from32, to32, train_wgan, tune_inverter


def _on_cuda(device) -> bool:
    return str(device).startswith("cuda")


def subsample(n: int, max_samples: int | None, seed: int, checksum: str) -> np.ndarray:
    """The seeded subset of ``range(n)`` a Δz detector scores (all of it if ``max_samples`` is None or ≥ n)."""
    salt = int(hashlib.sha256(checksum.encode()).hexdigest()[:8], 16)
    return seeded_subset(n, max_samples, [int(seed), salt])


class _WGANBase(Detector):
    """Shared: train (or load) the WGAN-GP + inverter on the ID ``train`` split; check its inverter.

    The GAN's hyperparameters, common to the three detectors: ``dim`` / ``iterations`` / ``epochs``, its
    width and training budget (None = the defaults of :func:`_gan_config`); ``min_iterations``, the budget
    on tiny training sets; ``batch_size``; ``lr``; ``monitor_n``, ID fit images for the inverter check;
    ``tune_iterations`` / ``tune_weight``, the inverter's label-keeping fine-tuning against this classifier
    (:func:`oodbench.detectors.wgan.tune_inverter`; None = 3,000 iterations, 50 on tiny training sets; 0 = off)
    and the weight of its cross-entropy term."""

    def _gan_params(self, dim, iterations, epochs, min_iterations, batch_size, lr, monitor_n,
                    tune_iterations=None, tune_weight=10.0) -> None:
        self.dim, self.iterations, self.epochs, self.min_iterations = dim, iterations, epochs, min_iterations
        self.batch_size, self.lr, self.monitor_n = batch_size, lr, monitor_n
        self.tune_iterations, self.tune_weight = tune_iterations, tune_weight

    def _gan_config(self, train, device) -> dict:
        rgb = train.x.ndim == 4
        cuda = _on_cuda(device)
        n = len(train)
        small = n < SMALL_N
        dim = self.dim or (64 if rgb else 32 if cuda else 8 if small else 16)
        batch = self.batch_size or (32 if small else 64)
        if self.epochs is not None:
            its = math.ceil(self.epochs * n / batch)
        elif self.iterations is not None:
            its = int(self.iterations)
        else:
            its = math.ceil(20 * n / batch) if cuda else 1500
        if small:  # tiny training sets (tests): the CPU schedule, shortened
            its = self.min_iterations if (self.iterations is None and self.epochs is None) else its
        if self.lr is not None:
            lr, betas = float(self.lr), [0.9, 0.99]
        elif cuda and not small:
            lr, betas = 1e-4, [0.9, 0.99]  # the spec's
        else:
            lr, betas = 1e-4, [0.5, 0.9]
        # CPU budget: from noise, the spec's schedule leaves G collapsed (all-black generations, 10 % of labels
        # kept) after 3,000 iterations; an autoencoder warm-up of G∘I (codes pushed to N(0, I)) gives it a start
        explicit = self.iterations is not None or self.epochs is not None
        warm = 0 if ((cuda and not small) or explicit) else (400 if small else 1500)
        lr_inv = lr if (cuda and not small) else 5 * lr
        return {"channels": 3 if rgb else 1, "dim": dim, "latent": LATENT, "iterations": its,
                "batch_size": batch, "n_critic": 5, "gp_weight": 10.0, "lam_inv": 0.1, "lr": lr,
                "betas": betas, "ae_warmup": warm, "lr_inv": lr_inv, "pad": "zero-pad to 32x32"}

    def _fit_gan(self, fit):
        ctx = fit.context
        train = ctx.require_train(type(self).__name__)
        self.device_ = torch.device(ctx.device)
        self.seed_ = int(ctx.seed)
        progress = bool(ctx.progress)
        cfg = self._gan_config(train, self.device_)
        self.shape_ = tuple(train.x.shape[1:3])
        oracle = Oracle(fit.model, self.shape_, self.device_)
        mon_idx = seeded_subset(len(fit), self.monitor_n, self.seed_)
        mon_x = fit.images.x[mon_idx]
        mon_y = torch.as_tensor(fit.preds[mon_idx], device=self.device_)

        def monitor(net):
            return self._inversion_check(net, mon_x, mon_y, oracle)

        self.net_, self.train_log_ = ctx.load_or_train(
            "wgan_inv", cfg, train.checksum, self.seed_,
            build=lambda: WGANInv(cfg["channels"], cfg["latent"], cfg["dim"]),
            train=lambda net: train_wgan(net, train.x, cfg["iterations"], cfg["batch_size"], cfg["n_critic"],
                                         cfg["gp_weight"], cfg["lam_inv"], cfg["lr"], tuple(cfg["betas"]),
                                         self.seed_, self.device_, progress, monitor,
                                         log_every=max(100, cfg["iterations"] // 5),
                                         ae_warmup=cfg.get("ae_warmup", 0), lr_inv=cfg.get("lr_inv")))
        self.net_.to(self.device_).eval()
        # the check with *this* classifier (the cached log may come from training with another seed's model)
        self.inversion_untuned_ = self._inversion_check(self.net_, mon_x, mon_y, oracle)
        self.tune_log_ = self._tune(fit, train, cfg, monitor)
        self.net_.to(self.device_).eval()
        for p in self.net_.parameters():
            p.requires_grad_(False)
        self.inversion_ = self._inversion_check(self.net_, mon_x, mon_y, oracle)
        if self.inversion_["label_kept"] < 0.95 and progress:
            from tqdm.auto import tqdm

            tqdm.write(f"warning: the inverter keeps the predicted label of only {self.inversion_['label_kept']:.1%} "
                       "of ID fit images (the spec asks >= 95 % before trusting Δz)")
        return self

    def _tune(self, fit, train, cfg, monitor) -> dict | None:
        """The inverter fine-tuned to keep this classifier's labels (cached per GAN checkpoint and classifier)."""
        its = self.tune_iterations
        if its is None:
            its = 50 if len(train) < SMALL_N else 3000
        if not its:
            return None
        tcfg = {"base": self.train_log_.get("key") or cfg, "iterations": int(its),
                "label_weight": float(self.tune_weight), "lr": 5e-4, "batch_size": 64, "lam_inv": 0.1}
        base = {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()}
        model, shape = fit.model, self.shape_

        def build():
            net = WGANInv(cfg["channels"], cfg["latent"], cfg["dim"])
            net.load_state_dict(base)
            return net

        self.net_, log = fit.context.load_or_train(
            "wgan_inv_tuned", tcfg, f"{train.checksum}:{state_hash(model)[:16]}", self.seed_, build=build,
            train=lambda net: tune_inverter(net, train.x, lambda t: model(from32(t, shape)), tcfg["iterations"],
                                            tcfg["batch_size"], tcfg["lr"], tcfg["label_weight"], tcfg["lam_inv"],
                                            self.seed_, self.device_, bool(fit.context.progress), monitor,
                                            log_every=max(1, tcfg["iterations"] // 4)))
        return log

    def diagnostics(self) -> dict:
        """The inverter check on ID ``fit`` images (the lab spec asks that G(I(x)) keep the predicted label
        of ≥ 95 %), before and after the label-keeping tuning."""
        if getattr(self, "inversion_", None) is None:
            return {}
        out = {"fit_label_kept_share": self.inversion_["label_kept"], "fit_recon_l2": self.inversion_["recon_l2"],
               "fit_check_samples": self.inversion_["n"]}
        if self.tune_log_ is not None:
            out.update(fit_label_kept_share_untuned=self.inversion_untuned_["label_kept"],
                       fit_recon_l2_untuned=self.inversion_untuned_["recon_l2"],
                       tune_iterations=self.tune_log_.get("tune_iterations"))
        return out

    @torch.no_grad()
    def _inversion_check(self, net, x_uint8, y, oracle) -> dict:
        x = to32(x_uint8).to(self.device_)
        rec = torch.cat([net.G(net.I(x[i:i + 1024])) for i in range(0, len(x), 1024)])
        l2 = (rec - x).flatten(1).norm(dim=1)
        kept = oracle.model(from32(rec, self.shape_)).argmax(1) == y
        return {"recon_l2": float(l2.mean()), "label_kept": float(kept.float().mean()), "n": int(len(x))}

    @torch.no_grad()
    def _latents(self, x_uint8, batch: int = 1024) -> torch.Tensor:
        x = to32(x_uint8)
        return torch.cat([self.net_.I(x[i:i + batch].to(self.device_)) for i in range(0, len(x), batch)]) \
            if len(x) else torch.zeros(0, LATENT, device=self.device_)


class ReconDetector(_WGANBase):
    """Reconstruction consistency (§4.4-1): CE(softmax f(x), softmax f(G(I(x)))) + ‖x − G(I(x))‖² (32×32)."""

    consumes = frozenset({"images", "model", "logits"})
    info = DetectorInfo(library="oodbench-lab", paper="lab spec §4.4-1 (WGAN-GP + inverter)", needs_fit=True,
                        cpu_ok=True, notes="one inverter + generator + classifier forward per input; "
                                           "conformal p-value on cal")

    def __init__(self, terms: str = "ce+mse", dim: int | None = None, iterations: int | None = None,
                 epochs: float | None = None, min_iterations: int = 100, batch_size: int | None = None,
                 lr: float | None = None,
                 monitor_n: int = 1000,
                 tune_iterations: int | None = None, tune_weight: float = 10.0):
        self.terms = terms
        self._gan_params(dim, iterations, epochs, min_iterations, batch_size, lr, monitor_n, tune_iterations,
                         tune_weight)

    def fit(self, fit, cal=None):
        if self.terms not in ("ce+mse", "ce", "mse", "flip"):
            raise ValueError(f"terms must be ce+mse, ce, mse or flip, got {self.terms!r}")
        self._fit_gan(fit)
        self.cal_scores_ = self.score(cal) if cal is not None else None
        return self

    @torch.no_grad()
    def score(self, rep) -> np.ndarray:
        out = []
        x_all, logits_all = rep.images.x, rep.logits
        for i in range(0, len(rep), 1024):
            x = to32(x_all[i:i + 1024]).to(self.device_)
            rec = self.net_.G(self.net_.I(x))
            lr = rep.model(from32(rec, self.shape_))
            lx = torch.as_tensor(logits_all[i:i + 1024], device=self.device_).float()
            px = lx.softmax(1)
            ce = -(px * lr.log_softmax(1)).sum(1)
            mse = (rec - x).pow(2).flatten(1).sum(1)
            flip = (lr.argmax(1) != lx.argmax(1)).float()
            s = {"ce+mse": ce + mse, "ce": ce, "mse": mse, "flip": flip + 1e-3 * (ce + mse)}[self.terms]
            out.append(s.double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    def p_value(self, rep) -> np.ndarray:
        if self.__dict__.get("cal_scores_") is None:
            raise RuntimeError("p_value needs fit(..., cal)")
        return conformal_p(self.cal_scores_, self.score(rep))


class _DeltaZBase(_WGANBase):
    consumes = frozenset({"images", "model"})

    def fit(self, fit, cal=None):
        self.cal_, self.cal_scores_ = cal, None
        return self._fit_gan(fit)

    def _search(self, z, y, seeds, oracle) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def subsample_size(self, device) -> int | None:
        """The runner's subsample protocol: score at most this many inputs of each set (seeded by the runner)."""
        return self.max_samples

    def id_subsample_size(self, device) -> int | None:
        """At most this many inputs of the ID test set (the false-alarm rate's sample)."""
        return self.id_samples

    def delta_z(self, x_uint8, preds, seeds=None) -> np.ndarray:
        """Δz (L2 radius) of the given images against the given predicted labels. The random directions of
        each input are seeded by (seed, the image's bytes) unless ``seeds`` are given."""
        oracle = Oracle(self.model_for_search_, self.shape_, self.device_)
        out = np.empty(len(x_uint8))
        from tqdm.auto import tqdm

        if seeds is None:
            seeds = [sample_seed(self.seed_, zlib.crc32(np.ascontiguousarray(xi).tobytes())) for xi in x_uint8]
        bs = self.batch
        bar = tqdm(total=len(x_uint8), desc=f"{self.name or type(self).__name__}", disable=not self.progress_,
                   leave=False, unit="img")
        for i in range(0, len(x_uint8), bs):
            z = self._latents(x_uint8[i:i + bs])
            y = torch.as_tensor(np.asarray(preds[i:i + bs]), device=self.device_)
            out[i:i + bs] = self._search(z, y, seeds[i:i + bs], oracle).double().cpu().numpy()
            bar.update(len(z))
        bar.close()
        self.queries_ = getattr(self, "queries_", 0) + oracle.queries
        return out

    def score(self, rep) -> np.ndarray:
        """−Δz of every input of ``rep`` (the runner passes a seeded subsample of at most ``max_samples``)."""
        self.progress_ = bool(rep.context.progress)
        self.model_for_search_ = rep.model
        return -self.delta_z(rep.images.x, rep.preds)

    def p_value(self, rep) -> np.ndarray:
        """Left-tail conformal p-value of Δz on (a seeded subsample of ``cal_samples`` of) the ``cal`` split,
        computed on first use, ties broken at random: p = (#{Δz_cal < Δz} + U (1 + #{Δz_cal = Δz})) / (n + 1).
        Δz is 0 for every input whose reconstruction already changes the label — a point mass shared by
        ID and OOD inputs; counting those ties against rejection gave no false alarm at any α (a
        degenerate test), breaking them at random keeps the p-values exactly valid."""
        if self.cal_ is None:
            raise RuntimeError("p_value needs fit(..., cal)")
        if getattr(self, "cal_scores_", None) is None:
            idx = subsample(len(self.cal_), self.cal_samples, self.seed_, self.cal_.images.checksum)
            self.cal_scores_ = self.score(self.cal_.store.representation(self.cal_.images.subset(idx), "cal"))
        scores = self.score(rep)
        return conformal_p_randomized(self.cal_scores_, scores,
                                      sample_seed(self.seed_, zlib.crc32(np.ascontiguousarray(scores).tobytes())))

    def diagnostics(self) -> dict:
        """The share of calibration images whose label the inverter keeps (Δz > 0: the reconstruction is
        classified as the input was; the lab spec asks ≥ 95 %), once the p-values have been computed, and the
        inverter check on ``fit``."""
        cal = getattr(self, "cal_scores_", None)
        out = super().diagnostics()
        if cal is not None:
            out.update(cal_label_kept_share=float(np.mean(np.asarray(cal) < 0)), cal_samples=int(len(cal)))
        return out


class DeltaZDetector(_DeltaZBase):
    """−Δz by the reference recursive search (faithful, expensive): see the module docstring."""

    info = DetectorInfo(library="oodbench-lab", paper="Zhao, Dua & Singh, ICLR 2018 (search); lab spec §4",
                        needs_fit=True, cpu_ok=False, expensive=True,
                        notes="recursive search, 5000 directions/round, ~1e4-1e5 generator+classifier forwards "
                              "per input; scores a seeded subsample of max_samples inputs per set")

    def __init__(self, nsamples: int = 5000, step: float = 0.01, h0: float = 10.0, stop: int = 5,
                 max_samples: int | None = 500, cal_samples: int | None = 500, dim: int | None = None,
                 iterations: int | None = None,
                 epochs: float | None = None, min_iterations: int = 100, batch_size: int | None = None,
                 lr: float | None = None,
                 monitor_n: int = 1000,
                 tune_iterations: int | None = None, tune_weight: float = 10.0, id_samples: int | None = 500):
        self.nsamples, self.step, self.h0, self.stop = nsamples, step, h0, stop
        self.max_samples, self.cal_samples, self.id_samples = max_samples, cal_samples, id_samples
        self._gan_params(dim, iterations, epochs, min_iterations, batch_size, lr, monitor_n, tune_iterations,
                         tune_weight)

    batch = 1

    def fit(self, fit, cal=None):
        super().fit(fit, cal)
        # small-data schedule (tests): fewer directions per round, as the GAN's training budget scales
        n = len(fit.context.train)
        self.nsamples_ = self.nsamples if n >= SMALL_N else min(self.nsamples, 20)
        return self

    def _search(self, z, y, seeds, oracle):
        out = torch.empty(len(z))
        self.rounds_ = getattr(self, "rounds_", [])
        for i in range(len(z)):
            gen = torch.Generator().manual_seed(int(seeds[i]))
            d, r = recursive_search(self.net_.G, oracle, z[i:i + 1], int(y[i]), gen, self.nsamples_, self.step,
                                    self.h0, self.stop)
            out[i] = d
            self.rounds_.append(r)
        return out


class FastDeltaZDetector(_DeltaZBase):
    """−Δz by a batched search (``bisection`` over fixed directions, or ``gradient``): module docstring."""

    info = DetectorInfo(library="oodbench-lab", paper="lab spec §4 (fast Δz of our design)", needs_fit=True,
                        cpu_ok=True, expensive=True,
                        notes="batched label-only bisection on the radius over a fixed per-sample set of "
                              "directions (or DeepFool-style gradient walk); same ranking as the recursive search")

    def __init__(self, method: str = "gradient", n_directions: int = 64, n_bisect: int = 10, h0: float = 10.0,
                 grad_steps: int = 20, max_samples: int | None = 2000, cal_samples: int | None = None,
                 dim: int | None = None,
                 iterations: int | None = None, epochs: float | None = None, min_iterations: int = 100,
                 batch_size: int | None = None, lr: float | None = None, monitor_n: int = 1000,
                 tune_iterations: int | None = None, tune_weight: float = 10.0, id_samples: int | None = None):
        self.method, self.n_directions, self.n_bisect = method, n_directions, n_bisect
        self.h0, self.grad_steps, self.max_samples, self.cal_samples = h0, grad_steps, max_samples, cal_samples
        self.id_samples = id_samples
        self._gan_params(dim, iterations, epochs, min_iterations, batch_size, lr, monitor_n, tune_iterations,
                         tune_weight)

    @property
    def batch(self):
        return 64 if self.method == "bisection" else 256

    def _search(self, z, y, seeds, oracle):
        if self.method == "bisection":
            return bisection_search(self.net_.G, oracle, z, y, seeds, self.n_directions, self.n_bisect, self.h0)
        if self.method == "gradient":
            return gradient_search(self.net_.G, oracle, z, y, self.grad_steps, n_bisect=self.n_bisect, h0=self.h0)
        raise ValueError(f"method must be 'bisection' or 'gradient', got {self.method!r}")
