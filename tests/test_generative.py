"""Generative-score detectors (VAE, WGAN-GP + inverter, Δz searches): small, CPU-only checks.

The Δz searches are checked on a synthetic generator + classifier whose decision boundary in latent
space is known exactly (a hyperplane), so no GAN needs training; the GAN training/cache path runs a
handful of iterations only. The end-to-end separable-problem checks live in tests/test_adapters.py.
"""
import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from oodbench import metrics
from oodbench.adapters import registry
from oodbench.adapters.lab import vae as lab_vae
from oodbench.adapters.lab import wgan as lab_wgan
from oodbench.benchmark.tools import separable
from oodbench.benchmark.data import ImageSet
from oodbench.benchmark.models.generative import GenerativeCheckpoints
from oodbench.detectors import dz_search, vae, wgan
from oodbench.detectors.pvalues import conformal_p

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sep():
    return separable.problem(n_per_class=40)


@pytest.fixture
def ctx(sep):
    """Temporarily give the separable problem's context a checkpoint cache folder (restored afterwards)."""
    saved = sep.store.context

    def set_(cache):
        sep.store.context = dataclasses.replace(saved, checkpoints=GenerativeCheckpoints(cache))

    yield set_
    sep.store.context = saved


# --------------------------------------------------------------------------------------------------
# conformal p-values
# --------------------------------------------------------------------------------------------------
def test_conformal_p_edge_cases():
    cal = np.array([1.0, 2.0, 2.0, 3.0])
    p = conformal_p(cal, np.array([0.0, 2.0, 3.0, 10.0]))
    # (1 + #{cal >= s}) / (n + 1); ties count against rejection
    np.testing.assert_allclose(p, [5 / 5, 4 / 5, 2 / 5, 1 / 5])
    rng = np.random.default_rng(0)
    null = conformal_p(rng.normal(size=2000), rng.normal(size=4000))
    assert abs((null <= 0.05).mean() - 0.05) < 0.015 and null.min() >= 1 / 2001


# --------------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------------
def test_vae_detector_separable_pvalues_and_cache(sep, ctx, tmp_path):
    fit, cal = sep.reps("fit"), sep.reps("cal")
    ctx(cache=tmp_path)
    det = registry.create("vae", min_steps=60).fit(fit, cal)
    s_id, s_ood = det.score(sep.reps("id_test")), det.score(sep.reps("ood"))
    assert s_id.dtype == np.float64 and s_id.shape == (len(sep.id_test),)
    assert metrics.auroc(s_id, s_ood) > 0.95
    p = det.p_value(sep.reps("id_test"))
    assert p.min() >= 1 / (len(sep.cal) + 1) and p.max() <= 1
    assert det.p_value(sep.reps("ood")).mean() < p.mean()
    # the checkpoint is cached with a checksum and reused
    ckpts = list((tmp_path / "generative").glob("vae-*.pt"))
    assert len(ckpts) == 1 and json.loads(ckpts[0].with_suffix(".json").read_text())["sha256"]
    again = registry.create("vae", min_steps=60).fit(fit, cal)
    assert again.train_log_["cached"] and np.array_equal(again.score(sep.reps("ood")), s_ood)
    # a corrupted checkpoint is retrained, not trusted
    ckpts[0].write_bytes(b"garbage")
    third = registry.create("vae", min_steps=60).fit(fit, cal)
    assert not third.train_log_["cached"]


def test_vae_variants_and_params(sep):
    fit, cal = sep.reps("fit"), sep.reps("cal")
    base = lab_vae.VAEDetector(min_steps=60).fit(fit, cal)
    rid = sep.reps("id_test")
    r, kl, ne = vae.neg_elbo(base.model_, vae.as_input(sep.id_test.x, base.model_), parts=True)
    np.testing.assert_allclose(r + kl, ne, rtol=1e-5)
    for kw in ({"statistic": "recon"}, {"statistic": "kl"}, {"z_mode": "sample", "k": 4}, {"z_mode": "iw", "k": 4},
               {"statistic": "typicality"}):
        d = lab_vae.VAEDetector(min_steps=60, **kw).fit(fit, cal)  # same key → same (memoised) model
        s1, s2 = d.score(rid), d.score(rid)
        assert s1.shape == (len(rid),) and np.isfinite(s1).all()
        np.testing.assert_array_equal(s1, s2)  # seeded: sampling modes are deterministic too
    twin = lab_vae.VAEDetector(statistic="kl", k=3).clone()
    assert twin.get_params()["statistic"] == "kl" and twin.get_params()["k"] == 3
    with pytest.raises(ValueError, match="statistic"):
        lab_vae.VAEDetector(statistic="nope").fit(fit, cal)


def test_mutation_is_seeded_and_hits_the_rate():
    x = np.full((50, 28, 28), 7, np.uint8)
    m = vae.mutate(x, 0.2, seed=3)
    assert m.dtype == np.uint8 and (x == 7).all()  # a copy
    assert abs((m != 7).mean() - 0.2 * 255 / 256) < 0.01
    assert np.array_equal(m, vae.mutate(x, 0.2, seed=3)) and not np.array_equal(m, vae.mutate(x, 0.2, seed=4))
    assert np.array_equal(vae.mutate(x, 0.0, 0), x)
    with pytest.raises(ValueError, match="mutation rate"):
        vae.mutate(x, 1.5, 0)


def test_vae_likelihood_ratio_trains_a_background_model_and_separates(sep, ctx, tmp_path):
    fit, cal = sep.reps("fit"), sep.reps("cal")
    ctx(cache=tmp_path)
    det = registry.create("vae_llr", min_steps=60).fit(fit, cal)
    plain = registry.create("vae", min_steps=60).fit(fit, cal)
    assert plain.train_log_["cached"]  # the ID VAE is the `vae` detector's checkpoint
    assert len(list((tmp_path / "generative").glob("vae-*.pt"))) == 2  # + the background model
    rid = sep.reps("id_test")
    s_id = det.score(rid)
    bg = vae.neg_elbo(det.background_, vae.as_input(sep.id_test.x, det.background_))
    np.testing.assert_allclose(s_id, plain.score(rid) - bg)  # -ELBO(ID VAE) - -ELBO(background)
    # semantic OOD: the ID images' dim noise background with a bright *vertical* stripe
    x = sep.id_test.x.copy()
    x[:] = np.minimum(x, 40)
    x[:, :, 10:17] = 200
    rood = sep.store.representation(ImageSet("vstripe", x, np.full(len(x), -1), "sep-vstripe"), "vstripe")
    assert metrics.auroc(s_id, det.score(rood)) > 0.6  # a 60-step toy VAE; the sign is what this checks
    p = det.p_value(rid)
    assert p.min() >= 1 / (len(sep.cal) + 1) and det.p_value(rood).mean() < p.mean()
    # pure noise is what the background model learnt: the ratio calls it ID-like (Ren et al. target
    # semantic shift), where the plain VAE flags it
    noise = sep.reps("ood")
    assert metrics.auroc(s_id, det.score(noise)) < 0.5 < metrics.auroc(plain.score(rid), plain.score(noise))
    assert registry.create("vae_llr", mutation=0.1).get_params()["mutation"] == 0.1


def test_conv_vae_trains_on_rgb():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(48, 32, 32, 3)).astype(np.uint8)
    m = vae.build_vae(x)
    assert isinstance(m, vae.ConvVAE)
    log = vae.train_vae(m, x[:32], x[32:], epochs=1, batch_size=16, progress=False)
    assert log["steps"] == 2 and np.isfinite(log["best_val_loss"])
    s = vae.neg_elbo(m, vae.as_input(x, m))
    assert s.shape == (48,) and np.isfinite(s).all()


# --------------------------------------------------------------------------------------------------
# Δz searches on a generator/classifier with a known boundary
# --------------------------------------------------------------------------------------------------
class _PlaneG(nn.Module):
    """G(z): a 32×32 image whose every pixel is z·w (so the classifier below sees z·w)."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, z):
        return (z @ self.w)[:, None, None, None].expand(-1, 1, 32, 32)


class _SignNet(nn.Module):
    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], 1)


def _plane_problem(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, generator=g)
    w = w / w.norm()
    z = torch.randn(n, 64, generator=g) * 0.6
    truth = (z @ w).abs()  # distance to the hyperplane z·w = 0
    y = ((z @ w) > 0).long()
    return _PlaneG(w), z, y, truth


def test_searches_recover_known_distance():
    G, z, y, truth = _plane_problem()
    oracle = dz_search.Oracle(_SignNet(), (28, 28), "cpu")
    faithful = torch.tensor([dz_search.recursive_search(G, oracle, z[i:i + 1], int(y[i]),
                                                   torch.Generator().manual_seed(i), nsamples=500)[0]
                             for i in range(len(z))])
    seeds = [dz_search.sample_seed(0, i) for i in range(len(z))]
    bis = dz_search.bisection_search(G, oracle, z, y, seeds, n_directions=64)
    grad = dz_search.gradient_search(G, oracle, z, y)
    # the gradient walk finds the nearest boundary point; random directions overestimate it
    np.testing.assert_allclose(grad.numpy(), truth.numpy(), atol=0.02)
    assert (faithful >= truth - 0.01).all() and (bis >= truth - 0.02).all()
    for est in (faithful, bis):
        assert spearmanr(est.numpy(), truth.numpy()).correlation > 0.9
    # a reconstruction that is already labelled differently gives Δz = 0
    assert float(dz_search.bisection_search(G, oracle, z[:1], 1 - y[:1], seeds[:1])[0]) == 0.0
    assert float(dz_search.gradient_search(G, oracle, z[:1], 1 - y[:1])[0]) == 0.0


def test_search_is_seeded_per_sample():
    G, z, y, _ = _plane_problem(n=4)
    oracle = dz_search.Oracle(_SignNet(), (28, 28), "cpu")
    seeds = [dz_search.sample_seed(0, i) for i in range(4)]
    a = dz_search.bisection_search(G, oracle, z, y, seeds, n_directions=16)
    b = dz_search.bisection_search(G, oracle, z[[2, 0, 3, 1]], y[[2, 0, 3, 1]], [seeds[i] for i in (2, 0, 3, 1)],
                              n_directions=16)
    np.testing.assert_array_equal(a[[2, 0, 3, 1]].numpy(), b.numpy())  # independent of batch composition


def test_subsample_is_seeded_and_without_replacement():
    a = lab_wgan.subsample(1000, 100, 0, "abc")
    assert len(np.unique(a)) == 100 and np.array_equal(a, lab_wgan.subsample(1000, 100, 0, "abc"))
    assert not np.array_equal(a, lab_wgan.subsample(1000, 100, 0, "abd"))
    assert np.array_equal(lab_wgan.subsample(50, 100, 0, "abc"), np.arange(50))
    assert np.array_equal(lab_wgan.subsample(5000, None, 0, "abc"), np.arange(5000))


# --------------------------------------------------------------------------------------------------
# WGAN-GP + inverter: training, cache, detectors' plumbing (a few iterations only)
# --------------------------------------------------------------------------------------------------
def test_wgan_training_cache_subsample_protocol_and_pvalues(sep, ctx, tmp_path):
    fit, cal = sep.reps("fit"), sep.reps("cal")
    ctx(cache=tmp_path)
    kw = {"dim": 4, "iterations": 6, "min_iterations": 6, "monitor_n": 32}
    det = registry.create("wgan_recon", **kw).fit(fit, cal)
    assert set(det.inversion_) >= {"recon_l2", "label_kept"} and det.train_log_["log"]
    assert det.train_log_["log"][-1]["iteration"] == 6
    s = det.score(sep.reps("ood"))
    assert s.shape == (len(sep.ood),) and np.isfinite(s).all()
    assert len(list((tmp_path / "generative").glob("wgan_inv-*.pt"))) == 1
    fast = registry.create("wgan_dz_fast", max_samples=10, n_directions=4, n_bisect=3, **kw).fit(fit, cal)
    assert fast.train_log_["cached"]  # same GAN config → the cached checkpoint
    assert fast.subsample_size("cpu") == 10 and registry.create("wgan_dz").subsample_size("cpu") == 500
    rep = sep.reps("ood")
    sc = fast.score(rep)
    assert sc.shape == (len(rep),) and np.isfinite(sc).all() and (sc <= 0).all()
    # directions are seeded by the image itself: the same input scores the same at any position
    sub = rep.store.representation(rep.images.subset(np.arange(len(rep))[::-1][:7]), "ood")
    # (to float rounding: the inverter's convolutions may round differently for another batch size)
    np.testing.assert_allclose(fast.score(sub), sc[::-1][:7], rtol=1e-5, atol=1e-6)
    p = fast.p_value(sep.reps("id_test"))
    assert p.shape == (len(sep.id_test),) and p.min() > 0 and p.max() <= 1  # ties broken at random
    np.testing.assert_array_equal(p, fast.p_value(sep.reps("id_test")))  # seeded
    assert set(fast.diagnostics()) >= {"cal_label_kept_share", "cal_samples", "fit_label_kept_share"}
    assert fast.diagnostics()["cal_samples"] == len(cal)  # the whole cal split is the reference by default
    few = registry.create("wgan_dz_fast", max_samples=10, cal_samples=5, n_directions=4, n_bisect=3, **kw)
    few.fit(fit, cal).p_value(sep.reps("id_test"))
    assert few.diagnostics()["cal_samples"] == 5 and registry.create("wgan_dz").cal_samples == 500


def test_inverter_tuning_keeps_labels_moves_only_the_inverter_and_is_cached(sep, ctx, tmp_path):
    """The label-keeping fine-tuning (lab spec: G(I(x)) keeps f(x) on ≥ 95 % of ID images before Δz is trusted):
    it raises the share of kept labels, leaves the generator and the classifier (weights and .grad) as they
    were, is cached per classifier, and is recorded in the diagnostics."""
    fit, cal = sep.reps("fit"), sep.reps("cal")
    ctx(cache=tmp_path)
    kw = {"dim": 4, "iterations": 6, "min_iterations": 6, "monitor_n": 64}
    off = registry.create("wgan_recon", tune_iterations=0, **kw).fit(fit, cal)
    assert off.tune_log_ is None and "fit_label_kept_share_untuned" not in off.diagnostics()
    before = {k: v.clone() for k, v in fit.model.state_dict().items()}
    det = registry.create("wgan_recon", tune_iterations=150, **kw).fit(fit, cal)
    d = det.diagnostics()
    assert d["fit_label_kept_share_untuned"] == off.inversion_["label_kept"] < 0.9
    assert d["fit_label_kept_share"] >= d["fit_label_kept_share_untuned"] + 0.1, d
    for k, v in off.net_.G.state_dict().items():
        torch.testing.assert_close(det.net_.G.state_dict()[k], v, rtol=0, atol=0)
    assert any(not torch.equal(det.net_.I.state_dict()[k], v) for k, v in off.net_.I.state_dict().items())
    for k, v in fit.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in fit.model.parameters())
    assert len(list((tmp_path / "generative").glob("wgan_inv_tuned-*.pt"))) == 1
    again = registry.create("wgan_dz_fast", tune_iterations=150, **kw).fit(fit, cal)
    assert again.tune_log_["cached"] and again.inversion_ == det.inversion_


def test_padding_round_trip():
    x = np.random.default_rng(0).integers(0, 255, size=(3, 28, 28)).astype(np.uint8)
    t = wgan.to32(x)
    assert t.shape == (3, 1, 32, 32) and float(t[..., :2, :].abs().sum()) == 0
    np.testing.assert_array_equal(wgan.from32(t, (28, 28)).numpy(), (torch.from_numpy(x)[:, None] / 255.0).numpy())
    rgb = ImageSet("r", np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64), "r")
    assert wgan.to32(rgb.x).shape == (2, 3, 32, 32)
