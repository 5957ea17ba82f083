"""VAE loss detector (spec ``lab_methods.md`` §3): a classifier-free OOD score.

Models
    * :class:`MLPVAE` for grey images (28×28 → 784): encoder 784-400 (ReLU) → μ, log σ² (20 each),
      decoder 20-400 (ReLU)-784 with a Bernoulli likelihood on [0, 1] pixels — the reference
      implementation's architecture (``DavidePosillipo/AI_Safety`` ``VAE/``).
    * :class:`ConvVAE` for 32×32 RGB: four stride-2 convolutions 32-64-128-256 → latent 64 and the
      mirrored transposed convolutions, Gaussian likelihood with a learned per-channel scale.

Training (§3.2): ID ``train`` split, Adam 1e-3, batch 128, 10 epochs (MLP) / 20 epochs (conv, on CUDA;
6 on CPU, where 20 take about 40 min on 2 cores; the spec suggests 50-100 for CIFAR), fixed seed; the epoch with the lowest
mean loss on the ID ``fit`` split (disjoint from ``train``) is kept. On tiny training sets the number of
epochs is raised so that at least ``min_steps`` optimiser steps are taken (this keeps the contract test
on a few hundred images meaningful and fast).

Score (higher = more OOD): the negative ELBO in nats, ``BCE_sum(x, D(z)) + KL(q(z|x) || N(0, I))`` with
``z = μ`` (``z_mode="mean"``, default, deterministic), the mean over ``k`` samples (``"sample"``) or the
importance-weighted bound with ``k`` samples (``"iw"``). ``statistic="recon"`` / ``"kl"`` give the two terms
alone; ``"typicality"`` (|ELBO - mean train ELBO|), ``"score_test"`` (gᵀ diag(F)⁻¹ g with g the
per-sample gradient of the ELBO and F the mean of g² on train) and ``"bergamin"`` (Fisher combination
of the typicality and score-test p-values, both calibrated on the ``fit`` split) are the variants of
§3.3-1. The detector (``vae`` in the registry) is :class:`oodbench.adapters.lab.vae.VAEDetector`;
checkpoints are cached by the harness under ``<cache>/generative/``.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oodbench.detectors.images import to_tensor

SCORES = ("elbo", "recon", "kl", "typicality", "score_test", "bergamin")
Z_MODES = ("mean", "sample", "iw")


class MLPVAE(nn.Module):
    """784-400-20 VAE, Bernoulli decoder (returns logits)."""

    likelihood = "bernoulli"

    def __init__(self, d_in: int = 784, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.d_in, self.latent = d_in, latent
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_lv = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, d_in)

    def encode(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc_mu(h), self.fc_lv(h)

    def decode(self, z):
        return self.fc4(F.relu(self.fc3(z)))

    def forward(self, x):
        """Per-sample −ELBO with z = μ."""
        mu, logvar = self.encode(x)
        return self.nll(x, self.decode(mu)) + kl_term(mu, logvar)

    def nll(self, x, out):
        """−log p(x|z) summed over pixels, per sample; ``out`` = decoder logits."""
        return F.binary_cross_entropy_with_logits(out, x.flatten(1), reduction="none").sum(1)


class ConvVAE(nn.Module):
    """Small conv VAE for 3×32×32: convs 32-64-128-256 (k4 s2) → latent, mirrored decoder, Gaussian
    likelihood with a learned per-channel log-scale."""

    likelihood = "gaussian"

    def __init__(self, channels: int = 3, latent: int = 64, width=(32, 64, 128, 256)):
        super().__init__()
        self.latent = latent
        c = [channels, *width]
        enc = []
        for a, b in zip(c[:-1], c[1:]):
            enc += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.enc = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(c[-1] * 4, latent)
        self.fc_lv = nn.Linear(c[-1] * 4, latent)
        self.fc_dec = nn.Linear(latent, c[-1] * 4)
        dec = []
        rc = c[::-1]
        for i, (a, b) in enumerate(zip(rc[:-1], rc[1:])):
            dec.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
            if i < len(rc) - 2:
                dec.append(nn.LeakyReLU(0.2))
        self.dec = nn.Sequential(*dec)
        self.top = c[-1]
        self.log_scale = nn.Parameter(torch.full((1, channels, 1, 1), -2.0))

    def encode(self, x):
        h = self.enc(x).flatten(1)
        return self.fc_mu(h), self.fc_lv(h)

    def decode(self, z):
        h = F.leaky_relu(self.fc_dec(z), 0.2).view(len(z), self.top, 2, 2)
        return torch.sigmoid(self.dec(h))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.nll(x, self.decode(mu)) + kl_term(mu, logvar)

    def nll(self, x, out):
        ls = self.log_scale.clamp(min=math.log(1 / 256))
        r = (x - out) / ls.exp()
        return (0.5 * r * r + ls + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def as_input(x_uint8: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 images → the VAE's float input in [0, 1]: (N, 784) for the MLP, (N, 3, 32, 32) for the conv."""
    t = to_tensor(x_uint8)
    if isinstance(model, MLPVAE):
        return t.flatten(1)
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    if t.shape[-1] != 32 or t.shape[-2] != 32:
        t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False)
    return t


def build_vae(x_sample: np.ndarray, hidden: int = 400, latent: int | None = None) -> nn.Module:
    if x_sample.ndim == 3:  # grey
        return MLPVAE(int(np.prod(x_sample.shape[1:])), hidden, latent or 20)
    return ConvVAE(x_sample.shape[-1], latent or 64)


def kl_term(mu, logvar):
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def loss_terms(model, x, z_mode: str = "mean", k: int = 1, generator: torch.Generator | None = None):
    """Per-sample (recon, kl, neg_elbo) for a float batch ``x``. ``z_mode``: ``mean`` (z = μ), ``sample``
    (mean over ``k`` draws), ``iw`` (importance-weighted bound with ``k`` draws; recon/kl then are the
    mean-over-draws terms and neg_elbo the IW bound)."""
    mu, logvar = model.encode(x)
    kl = kl_term(mu, logvar)
    if z_mode == "mean":
        rec = model.nll(x, model.decode(mu))
        return rec, kl, rec + kl
    std = (0.5 * logvar).exp()
    recs, logws = [], []
    for _ in range(k):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device) if generator is not None \
            else torch.randn_like(mu)
        z = mu + std * eps
        rec = model.nll(x, model.decode(z))
        recs.append(rec)
        if z_mode == "iw":
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(1)
            logws.append(-rec + log_pz - log_qz)
    rec = torch.stack(recs).mean(0)
    if z_mode == "iw":
        neg = -(torch.logsumexp(torch.stack(logws), 0) - math.log(k))
    else:
        neg = rec + kl
    return rec, kl, neg


def train_vae(model, x_train: np.ndarray, x_val: np.ndarray | None, epochs: int, batch_size: int = 128,
              lr: float = 1e-3, seed: int = 0, device="cpu", progress: bool = True, min_steps: int = 0) -> dict:
    """Train in place on uint8 images (Adam, single-sample reparameterisation); keep the epoch with the
    lowest mean validation loss (z = μ). Returns a JSON-able log."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    model.to(dev)
    xt = as_input(x_train, model)
    xv = as_input(x_val, model) if x_val is not None and len(x_val) else None
    n = len(xt)
    spe = math.ceil(n / batch_size)
    epochs = max(int(epochs), math.ceil(min_steps / spe)) if min_steps else int(epochs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, best_epoch, hist = float("inf"), None, -1, []
    t0 = time.perf_counter()
    bar = tqdm(total=epochs * spe, desc=f"train {type(model).__name__}", disable=not progress, unit="step",
               leave=False)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for i in range(spe):
            xb = xt[perm[i * batch_size:(i + 1) * batch_size]].to(dev)
            mu, logvar = model.encode(xb)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            loss = (model.nll(xb, model.decode(z)) + kl_term(mu, logvar)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(xb)
            bar.update(1)
        train_loss = tot / n
        val_loss = float(neg_elbo(model, xv, batch_size=1024, device=dev).mean()) if xv is not None else train_loss
        hist.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
        bar.set_postfix(epoch=epoch + 1, train=f"{train_loss:.1f}", val=f"{val_loss:.1f}")
        if val_loss < best:
            best, best_epoch = val_loss, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"train_seconds": time.perf_counter() - t0, "epochs": epochs, "steps": epochs * spe,
            "best_epoch": best_epoch, "best_val_loss": best, "history": hist, "n_train": n,
            "n_val": 0 if xv is None else len(xv)}


def mutate(x_uint8: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """A copy of uint8 images with each value replaced, with probability ``rate``, by a uniform random
    value in 0…255 (seeded): the perturbed training data of the *background* model of Ren et al. (2019,
    "Likelihood ratios for out-of-distribution detection", §3.1), which learns the population-level
    statistics (e.g. how much background an image has) but not the semantics of the ID data."""
    if not 0 <= rate <= 1:
        raise ValueError(f"mutation rate must be in [0, 1], got {rate}")
    rng = np.random.default_rng([int(seed), 7])
    x = np.array(x_uint8, dtype=np.uint8, copy=True)
    hit = rng.random(x.shape) < rate
    x[hit] = rng.integers(0, 256, size=int(hit.sum()), dtype=np.uint8)
    return x


@torch.no_grad()
def neg_elbo(model, x: torch.Tensor, z_mode="mean", k=1, batch_size=1024, device="cpu", seed=0, parts=False):
    """Per-sample −ELBO (or (recon, kl, −ELBO) with ``parts``) of float inputs, in batches."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed) if z_mode != "mean" else None
    outs = []
    for i in range(0, len(x), batch_size):
        r, kl, ne = loss_terms(model, x[i:i + batch_size].to(device), z_mode, k, g)
        outs.append(torch.stack([r, kl, ne], 1).cpu())
    o = torch.cat(outs).double().numpy() if outs else np.zeros((0, 3))
    return (o[:, 0], o[:, 1], o[:, 2]) if parts else o[:, 2]


def per_sample_grads(model, x: torch.Tensor, batch_size: int = 64, device="cpu"):
    """Yield per-sample gradients of the −ELBO (z = μ) w.r.t. all parameters, flattened (B, P), in batches."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).sum()

    gfn = vmap(grad(loss_one), in_dims=(None, 0))
    for i in range(0, len(x), batch_size):
        gs = gfn(params, x[i:i + batch_size].to(device))
        yield torch.cat([v.flatten(1) for v in gs.values()], 1)
