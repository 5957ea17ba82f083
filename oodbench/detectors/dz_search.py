"""Δz (lab spec §4): the L2 radius in the latent space of a generator ``G`` around ``z`` at which a
classifier's label of ``G(z + δ)`` changes, by three searches: :func:`recursive_search` (the
reference's hybrid shrinking search), :func:`bisection_search` (label-only, batched) and
:func:`gradient_search` (DeepFool-style walk, batched). The classifier is reached through an
:class:`Oracle` (label-only or differentiable access on 32×32 generations, counting queries).
"""
from __future__ import annotations

import numpy as np
import torch

from oodbench.detectors.wgan import from32

class Oracle:
    """Label-only (and, for the gradient search, differentiable) access to the suite's classifier on
    32×32 generations: crops them back to the classifier's input shape. Counts queries."""

    def __init__(self, model, shape, device, chunk: int = 4096):
        self.model = model.eval()
        self.shape = shape
        self.device = device
        self.chunk = chunk
        self.queries = 0

    @torch.no_grad()
    def labels_of_z(self, G, z: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(z), self.chunk):
            out.append(self.model(from32(G(z[i:i + self.chunk]), self.shape)).argmax(1))
        self.queries += len(z)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=z.device)

    def logits_of_z(self, G, z: torch.Tensor) -> torch.Tensor:
        self.queries += len(z)
        return self.model(from32(G(z), self.shape))


def sample_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------------
# the searches
# --------------------------------------------------------------------------------------------------
def _shell(z, gen, nsamples, lo, hi):
    u = torch.randn(nsamples, z.shape[1], generator=gen).to(z.device)
    d = (torch.rand(nsamples, generator=gen) * (hi - lo) + lo).to(z.device)
    return z + u * (d / u.norm(dim=1)).unsqueeze(1), d


def recursive_search(G, oracle: Oracle, z: torch.Tensor, y: int, gen: torch.Generator, nsamples: int = 5000,
                     step: float = 0.01, h0: float = 10.0, stop: int = 5) -> tuple[float, int]:
    """The reference hybrid shrinking search for one latent ``z`` (1, d) and label ``y``; returns the smallest
    radius ‖δ‖₂ found with f(G(z + δ)) ≠ y (``h0`` if none) and the number of rounds. Phase 1 halves the
    shell [l, h) (to [d/2, d) when a closer success is found, to its upper half when none is found, to its
    lower half when successes are not closer) until it is narrower than ``step`` or ``stop`` rounds give no
    improvement; phase 2 scans down in shells of width ``step`` below the best radius until ``stop``
    consecutive empty shells or the radius falls below 1e-4."""
    lo, hi, best, counter, rounds = 0.0, float(h0), None, 1, 0
    while True:
        zt, d = _shell(z, gen, nsamples, lo, hi)
        rounds += 1
        hit = oracle.labels_of_z(G, zt) != y
        if not bool(hit.any()):
            if hi - lo < step:
                break
            lo = lo + (hi - lo) * 0.5
            counter = 1
        else:
            dmin = float(d[hit].min())
            if best is None or dmin < best:
                best = dmin
                lo, hi = best * 0.5, best
                counter = 1
            else:
                hi = lo + (hi - lo) * 0.5
                counter += 1
            if counter > stop or hi - lo < step:
                break
    if best is not None:
        hi = best
    lo, counter = max(0.0, hi - step), 1
    while counter <= stop and hi > 1e-4:
        zt, d = _shell(z, gen, nsamples, lo, hi)
        rounds += 1
        hit = oracle.labels_of_z(G, zt) != y
        if not bool(hit.any()):
            counter += 1
        else:
            dmin = float(d[hit].min())
            if best is None or dmin < best:
                best = dmin
            hi = lo
            lo = max(0.0, hi - step)
            counter = 1
    return (float(h0) if best is None else best), rounds


@torch.no_grad()
def bisection_search(G, oracle: Oracle, z: torch.Tensor, y: torch.Tensor, seeds, n_directions: int = 64,
                     n_bisect: int = 10, h0: float = 10.0) -> torch.Tensor:
    """Batched label-only Δz: for each row of ``z`` (B, d) a fixed set of unit directions (seeded by
    ``seeds[i]``); returns the smallest radius r in [0, h0] at which some direction changes the label,
    found by bisection of the predicate "some direction flips at r" (0 if G(z) itself is labelled
    differently, h0 if no direction flips at h0)."""
    b, dz = z.shape
    m = n_directions
    u = torch.empty(b, m, dz)
    for i, s in enumerate(seeds):
        gi = torch.Generator().manual_seed(int(s))
        v = torch.randn(m, dz, generator=gi)
        u[i] = v / v.norm(dim=1, keepdim=True)
    u = u.to(z.device)

    def flips(idx, r):  # any direction flips for rows idx at radii r (len(idx),)
        zz = (z[idx, None, :] + r[:, None, None] * u[idx]).reshape(-1, dz)
        lab = oracle.labels_of_z(G, zz).view(len(idx), m)
        return (lab != y[idx, None]).any(1)

    out = torch.full((b,), float(h0), device=z.device)
    at0 = oracle.labels_of_z(G, z) != y
    out[at0] = 0.0
    act = torch.nonzero(~at0).flatten()
    if len(act) == 0:
        return out
    ok = flips(act, torch.full((len(act),), float(h0), device=z.device))
    act = act[ok]
    lo = torch.zeros(len(act), device=z.device)
    hi = torch.full((len(act),), float(h0), device=z.device)
    for _ in range(n_bisect):
        if len(act) == 0:
            break
        mid = 0.5 * (lo + hi)
        f = flips(act, mid)
        hi = torch.where(f, mid, hi)
        lo = torch.where(f, lo, mid)
    out[act] = hi
    return out


def gradient_search(G, oracle: Oracle, z: torch.Tensor, y: torch.Tensor, steps: int = 20, overshoot: float = 0.02,
                    n_bisect: int = 10, h0: float = 10.0) -> torch.Tensor:
    """Batched DeepFool-style Δz in latent space: linearise the margin logit_y − max_{j≠y} logit_j of
    f(G(z)) and step to its zero (with overshoot) until the label changes (≤ ``steps``), then bisect along
    the straight ray from z to the first flipped point. Radius 0 if G(z) is already labelled differently,
    h0 if no change is found within ``steps`` or within radius h0."""
    b = len(z)
    with torch.no_grad():
        at0 = oracle.labels_of_z(G, z) != y
    out = torch.full((b,), float(h0), device=z.device)
    out[at0] = 0.0
    act = torch.nonzero(~at0).flatten()
    z0, ya = z[act], y[act]
    zc = z0.clone()
    state = torch.zeros(len(act), dtype=torch.long, device=z.device)  # 0 searching, 1 found, 2 given up
    for _ in range(steps + 1):
        live = torch.nonzero(state == 0).flatten()
        if len(live) == 0:
            break
        zl = zc[live].detach().requires_grad_(True)
        logits = oracle.logits_of_z(G, zl)
        yl = ya[live]
        margin = logits.gather(1, yl[:, None]).squeeze(1) - logits.scatter(1, yl[:, None], float("-inf")).amax(1)
        flipped = (margin < 0).detach()
        state[live[flipped]] = 1
        grad = torch.autograd.grad(margin.sum(), zl)[0]
        gn2 = grad.pow(2).sum(1).clamp_min(1e-12)
        step = -((margin.detach().clamp_min(0) + 1e-4) / gn2)[:, None] * grad * (1 + overshoot)
        keep = ~flipped
        zc[live[keep]] = (zl + step).detach()[keep]
        far = ((zc[live] - z0[live]).norm(dim=1) > h0) & keep
        state[live[far]] = 2
    with torch.no_grad():
        idx = torch.nonzero(state == 1).flatten()
        if len(idx):
            a, b1, yy = z0[idx], zc[idx], ya[idx]
            lo = torch.zeros(len(idx), device=z.device)
            hi = torch.ones(len(idx), device=z.device)
            for _ in range(n_bisect):
                mid = 0.5 * (lo + hi)
                f = oracle.labels_of_z(G, a + mid[:, None] * (b1 - a)) != yy
                hi = torch.where(f, mid, hi)
                lo = torch.where(f, lo, mid)
            out[act[idx]] = (hi * (b1 - a).norm(dim=1)).clamp_max(h0)
    return out
