"""p-value tools: exactness on ties, validity under a simulated null, combinations by hand."""
import numpy as np
import pytest
from scipy import stats

from oodbench.detectors import pvalues as pv
from oodbench.detectors.grouped_reference import GroupedReference


# --- conformal p-values ---------------------------------------------------------------------------
def test_exact_on_hand_made_ties():
    ref = pv.sort_reference([2.0, 0.0, 3.0, 0.0, 1.0, 2.0, 0.0])  # n = 7: 0,0,0,1,2,2,3
    t = np.array([0.0, 2.0, 3.5, -1.0, 1.5])
    # right: (1 + #{r >= t}) / 8
    np.testing.assert_allclose(pv.conformal_pvalues(ref, t, "right"), np.array([8, 4, 1, 8, 4]) / 8)
    # left: (1 + #{r <= t}) / 8
    np.testing.assert_allclose(pv.conformal_pvalues(ref, t, "left"), np.array([4, 7, 8, 1, 5]) / 8)
    # two-sided: min(1, 2 min(p+, p-)); a value on the point mass at 0 is not rejected
    np.testing.assert_allclose(pv.conformal_pvalues(ref, t, "two-sided"), [1.0, 1.0, 0.25, 0.25, 1.0])


def test_smallest_pvalue_and_multichannel():
    rng = np.random.default_rng(0)
    ref = pv.sort_reference(rng.normal(size=(99, 3)))
    p = pv.conformal_pvalues(ref, np.full((1, 3), 1e9), "right")
    np.testing.assert_allclose(p, 1 / 100)  # never 0, log finite
    t = rng.normal(size=(5, 3))
    for j in range(3):
        np.testing.assert_allclose(pv.conformal_pvalues(ref, t, "two-sided")[:, j],
                                   pv.conformal_pvalues(ref[:, j], t[:, j], "two-sided"))
    with pytest.raises(ValueError):
        pv.conformal_pvalues(ref, t, "both")


def test_uniform_under_simulated_null():
    """Gaussian features, reference and queries from the same law: conformal p-values are
    uniform on {1/(n+1), ..., 1} (KS test), two-sided ones are valid (P(p <= a) <= a)."""
    rng = np.random.default_rng(1)
    ref = pv.sort_reference(rng.normal(size=(999, 4)))
    q = rng.normal(size=(3000, 4))
    p = pv.conformal_pvalues(ref, q, "right")
    for j in range(4):
        assert stats.kstest(p[:, j], "uniform").pvalue > 0.001
    p2 = pv.conformal_pvalues(ref, q, "two-sided")
    for a in (0.01, 0.05, 0.1):
        assert (p2 <= a).mean() <= a + 3 * np.sqrt(a * (1 - a) / p2.size)


def test_engine_matches_searchsorted_with_ties_nan_constant():
    rng = np.random.default_rng(2)
    n, d, G = 300, 6, 3
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 1] = np.maximum(x[:, 1], 0)  # ReLU point mass
    x[:, 2] = np.round(x[:, 2] * 2) / 2  # many ties
    x[:, 3] = 5.0  # constant channel
    x[:, 4] = np.exp(3 * rng.normal(size=n))  # heavy tail: crowded grid buckets
    g = rng.integers(0, G, n)
    t = (rng.normal(size=(200, d)) * 2).astype(np.float32)
    t[:40] = x[rng.integers(0, n, 40)]  # exact hits
    t[40, 0], t[41, 0], t[42, 0] = np.nan, np.inf, -np.inf
    for side in pv.SIDES:
        eng = GroupedReference(x, g, side=side, grid_factor=2, max_scan=1, chunk=64)
        got = eng.pvalues(t)
        tt = t.copy()
        tt[40, 0] = np.inf  # NaN is treated as larger than every reference value
        for c in range(G):
            want = pv.conformal_pvalues(pv.sort_reference(x[g == c]), tt, side)
            np.testing.assert_allclose(got[:, c, :], want, err_msg=f"{side}, group {c}")


def test_engine_exact_when_an_outlier_crowds_every_bucket():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 3)).astype(np.float32)
    x[0] = 1e6  # one far outlier stretches the grid: all other values share a bucket
    x[1, 1] = -1e7
    g = rng.integers(0, 4, 2000)
    t = rng.normal(size=(500, 3)).astype(np.float32)
    t[:50] = x[rng.integers(0, 2000, 50)]
    got = GroupedReference(x, g, 4).pvalues(t)
    for c in range(4):
        np.testing.assert_allclose(got[:, c], pv.conformal_pvalues(pv.sort_reference(x[g == c]), t, "two-sided"))


def test_engine_memory_linear_in_reference_size():
    rng = np.random.default_rng(3)
    sizes = [500, 1000, 2000]
    nb = [GroupedReference(rng.normal(size=(n, 20)), rng.integers(0, 4, n), 4).nbytes for n in sizes]
    r = np.diff(nb) / np.diff(sizes)  # bytes per extra reference sample
    assert 0.8 < r[1] / r[0] < 1.25


# --- combinations ---------------------------------------------------------------------------------
P = np.array([0.01, 0.04, 0.3, 0.5])


def test_combinations_by_hand():
    # Simes: min(4*0.01/1, 4*0.04/2, 4*0.3/3, 4*0.5/4) = 0.04
    assert pv.simes(P) == pytest.approx(0.04)
    assert pv.simes(np.array([0.5, 0.6])) == pytest.approx(0.6)
    assert pv.bonferroni(P) == pytest.approx(0.04)
    f = -2 * (np.log(0.01) + np.log(0.04) + np.log(0.3) + np.log(0.5))
    assert pv.fisher_statistic(P) == pytest.approx(f)
    assert pv.fisher(P) == pytest.approx(stats.chi2.sf(f, 8))
    assert pv.fisher(P) == pytest.approx(stats.combine_pvalues(P, "fisher").pvalue)
    z = (stats.norm.isf(0.01) + stats.norm.isf(0.04) + stats.norm.isf(0.3) + stats.norm.isf(0.5)) / 2
    assert pv.stouffer(P) == pytest.approx(stats.norm.sf(z))
    assert pv.stouffer(P) == pytest.approx(stats.combine_pvalues(P, "stouffer").pvalue)
    assert pv.harmonic_mean(P) == pytest.approx(4 / (100 + 25 + 1 / 0.3 + 2))
    T = np.mean(np.tan((0.5 - P) * np.pi))
    assert pv.cauchy(P) == pytest.approx(0.5 - np.arctan(T) / np.pi)
    # vectorised along an axis
    M = np.stack([P, P[::-1]])
    np.testing.assert_allclose(pv.simes(M, axis=1), [0.04, 0.04])
    np.testing.assert_allclose(pv.combine(M.T, "fisher", axis=0), pv.fisher(P))
    # extreme inputs stay finite and in (0, 1]
    for name in pv.COMBINERS:
        v = pv.combine(np.array([1e-300, 1.0]), name)
        assert 0 <= v <= 1 and np.isfinite(v), name


def test_empirical_null_and_leave_one_out():
    null = pv.EmpiricalNull([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(null.pvalue([2.0, 5.0, 0.0]), [4 / 5, 1 / 5, 1.0])
    # each calibration value ranked among the other three: (1 + #{others >= v}) / 4
    np.testing.assert_allclose(null.leave_one_out(), [1 / 4, 1.0, 3 / 4, 3 / 4])


def test_calibrated_combination_is_valid_under_dependence():
    """Strongly dependent tests: raw Fisher is anti-conservative, the calibrated statistic is not."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6000, 1)) + 0.1 * rng.normal(size=(6000, 5))  # 5 nearly identical tests
    p = stats.norm.sf(z)
    cal, test = p[:3000], p[3000:]
    assert (pv.fisher(test) <= 0.05).mean() > 0.08  # nominal chi2 null is wrong here
    null = pv.EmpiricalNull(pv.combined_statistic(cal, "fisher"))
    pc = null.pvalue(pv.combined_statistic(test, "fisher"))
    assert abs((pc <= 0.05).mean() - 0.05) < 0.015


def test_benjamini_hochberg():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    rej, adj = pv.benjamini_hochberg(p, q=0.05)
    # by hand: p_(i) m / i = .01 .04 .13 .1025 .084 .1 .1057 .25625 .2356 .216, then running min from the right
    np.testing.assert_allclose(adj, [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.74 / 7, 0.216, 0.216, 0.216])
    if hasattr(stats, "false_discovery_control"):  # scipy >= 1.11
        np.testing.assert_allclose(adj, stats.false_discovery_control(p))
    assert rej.tolist() == [True, True] + [False] * 8
    _, adj_by = pv.benjamini_hochberg(p, q=0.05, dependence="arbitrary")
    np.testing.assert_allclose(adj_by, np.minimum(1, adj * np.sum(1 / np.arange(1, 11))))
    if hasattr(stats, "false_discovery_control"):
        np.testing.assert_allclose(adj_by, stats.false_discovery_control(p, method="by"))
    assert pv.benjamini_hochberg([], 0.1)[0].size == 0


def test_randomized_conformal_p_is_exactly_valid_on_a_point_mass_and_agrees_without_ties():
    from oodbench.detectors.pvalues import conformal_p, conformal_p_randomized

    rng = np.random.default_rng(0)
    # 40 % of the scores sit on one value (wgan_dz_fast's Δz = 0): the >= convention never rejects them
    cal = np.where(rng.random(2000) < 0.4, 0.0, -rng.exponential(size=2000))
    test = np.where(rng.random(20000) < 0.4, 0.0, -rng.exponential(size=20000))
    assert (conformal_p(cal, test) <= 0.10).mean() < 0.01  # the degenerate test
    p = conformal_p_randomized(cal, test, seed=1)
    for a in (0.01, 0.05, 0.10):
        assert abs((p <= a).mean() - a) < 0.01
    assert p.min() > 0 and p.max() <= 1
    assert np.array_equal(p, conformal_p_randomized(cal, test, seed=1))  # seeded
    cont_cal, cont = rng.normal(size=500), rng.normal(size=1000)  # no ties: within one rank of conformal_p
    assert np.all(np.abs(conformal_p_randomized(cont_cal, cont, 3) - conformal_p(cont_cal, cont)) <= 1 / 501 + 1e-12)
