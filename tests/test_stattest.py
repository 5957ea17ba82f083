"""The statistical-test detector: a tiny MLP on synthetic data, the harness detector and its variants
on the separable problem, and the deployment guard."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from oodbench import metrics
from oodbench.adapters import registry
from oodbench.benchmark.tools import separable
from oodbench.benchmark.evaluation.features import RepresentationStore
from oodbench.adapters.lab import stattest_variants
from oodbench.adapters.lab.stattest import StatTest
from oodbench.adapters.registry import Registry
from oodbench.benchmark.evaluation.guard import Guard
from oodbench.detectors.guard import Accepted, ArrayGuard, OODRefusal, Refused
from oodbench.detectors.stattest import MaxSimesFisher
from oodbench.detectors.taps import module_taps

K, DIM = 3, 8


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, 32)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(32, 16)
        self.act2 = nn.ReLU()
        self.out = nn.Linear(16, K)

    def forward(self, x):
        return self.out(self.act2(self.fc2(self.act1(self.fc1(x)))))


def _clusters(n, rng, shift=0.0):
    y = rng.integers(0, K, n)
    centers = np.eye(K, DIM) * 3.0
    x = centers[y] + rng.normal(size=(n, DIM)) + shift
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def mlp_setup():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    xtr, ytr = _clusters(3000, rng)
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    layers = ("fc1", "fc2", "out")
    sets = {k: _clusters(n, rng) for k, n in (("fit", 1500), ("cal", 1500), ("id", 3000))}
    # OOD: the same cluster shape shifted off the data, to -2.5 in every coordinate (the classes sit
    # at +3 on one axis each)
    ood = (-2.5 + rng.normal(size=(1000, DIM))).astype(np.float32)
    taps = {k: module_taps(model, torch.from_numpy(x), layers) for k, (x, _) in sets.items()}
    taps["ood"] = module_taps(model, torch.from_numpy(ood), layers)
    core = MaxSimesFisher().fit(taps["fit"], sets["fit"][1], taps["cal"], sets["cal"][1])
    return model, layers, sets, taps, core, ood


def test_tiny_mlp_separates_a_shifted_cluster(mlp_setup):
    model, layers, sets, taps, core, _ = mlp_setup
    acc = (model(torch.from_numpy(sets["id"][0])).argmax(1).numpy() == sets["id"][1]).mean()
    assert acc > 0.9
    r_id, r_ood = core.evaluate(taps["id"]), core.evaluate(taps["ood"])
    assert metrics.auroc(r_id["score"], r_ood["score"]) > 0.95
    assert (r_ood["p"] <= 0.05).mean() > 0.8
    assert np.all((r_id["p"] > 0) & (r_id["p"] <= 1))


def test_mlp_pvalues_valid_and_uniform_on_id(mlp_setup):
    _, _, sets, taps, core, _ = mlp_setup
    r = core.evaluate(taps["id"])
    y = sets["id"][1]
    own = r["pc"][np.arange(len(y)), y]  # the true class's calibrated p-value: uniform under H0
    assert stats.kstest(own, "uniform").pvalue > 0.001
    for a in (0.01, 0.05, 0.1):  # max over classes: conservative
        assert (r["p"] <= a).mean() <= a + 3 * np.sqrt(a * (1 - a) / len(y))


def test_tiebreak_ranks_like_pvalue(mlp_setup):
    _, _, _, taps, core, _ = mlp_setup
    r = core.evaluate(taps["ood"])
    lp = -np.log(r["p"])
    o = np.argsort(r["score"], kind="stable")
    assert np.all(np.diff(lp[o]) >= -1e-12)  # score never contradicts the p-value order
    assert len(np.unique(r["score"])) > len(np.unique(r["p"]))  # ...and it breaks ties


def test_array_guard_on_any_module(mlp_setup):
    model, layers, sets, _, core, ood = mlp_setup
    guard = ArrayGuard(model, core, layers, alpha=0.05)
    res = guard.check(np.concatenate([sets["id"][0][:50], ood[:50]]))
    assert all(isinstance(r, (Accepted, Refused)) for r in res)
    assert sum(r.refused for r in res[:50]) <= 8 and sum(r.refused for r in res[50:]) >= 40
    with pytest.raises(OODRefusal) as e:
        guard.predict(ood[np.argmax([r.refused for r in res[50:]])])
    assert e.value.p_value <= 0.05 and isinstance(e.value, ValueError)


# --- the harness detector ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sep():
    return separable.problem(n_per_class=80)


def _auroc(det, sep):
    return metrics.auroc(det.score(sep.reps("id_test")), det.score(sep.reps("ood")))


def test_detector_outputs_and_predict(sep):
    det = StatTest().fit(sep.reps("fit"), sep.reps("cal"))
    rid, rood = sep.reps("id_test"), sep.reps("ood")
    p = det.p_value(rid)
    assert p.dtype == np.float64 and p.shape == (len(sep.id_test),) and np.all((p > 0) & (p <= 1))
    assert p.min() >= 1 / 81 - 1e-12
    assert _auroc(det, sep) > 0.99
    assert det.predict(rood, alpha=0.05).mean() > 0.95
    assert det.predict(rid).mean() <= 0.15
    with pytest.raises(ValueError, match="cal"):
        StatTest().fit(sep.reps("fit"))


def test_layers_not_in_the_cache_are_hooked_on_the_model(sep):
    store = RepresentationStore(sep.model, "template-net-fc-only", cache=None, taps=("fc",))
    reps = {k: store.representation(getattr(sep, k), k) for k in ("fit", "cal", "id_test", "ood")}
    det = StatTest(layers=("conv1", "fc")).fit(reps["fit"], reps["cal"])
    assert det.tap_layers == ["conv1", "fc"]
    s_id, s_ood = det.score(reps["id_test"]), det.score(reps["ood"])
    assert metrics.auroc(s_id, s_ood) > 0.99


@pytest.mark.parametrize("name", ["stattest.pred", "stattest.mondrian", "stattest.cluster", "stattest.hmp",
                                  "stattest+energy+maha", "stattest+energy+maha.hmp", "stattest+knn"])
def test_variants(name, sep):
    det = registry.create(name).fit(sep.reps("fit"), sep.reps("cal"))
    assert _auroc(det, sep) > 0.95
    p = det.p_value(sep.reps("id_test"))
    assert np.all((p > 0) & (p <= 1))
    assert type(det).clone(det).get_params() == det.get_params()


def test_unknown_extra_fails_cleanly(sep):
    with pytest.raises(KeyError, match="neither built in"):
        StatTest(extras=("no-such-detector",)).fit(sep.reps("fit"), sep.reps("cal"))


def test_guard_on_a_harness_classifier(sep):
    det = registry.create("stattest").fit(sep.reps("fit"), sep.reps("cal"))
    guard = Guard(sep.model, det, alpha=0.05)
    res = guard.check(sep.ood.x[:20])
    assert all(isinstance(r, Refused) and r.p_value <= 0.05 for r in res)
    batch = guard.check_batch(sep.id_test.x)
    assert batch.refused.mean() <= 0.15
    assert (batch.labels[~batch.refused] == sep.id_test.y[~batch.refused]).all()
    i = int(np.flatnonzero(~batch.refused)[0])
    assert guard.predict(sep.id_test.x[i]) == sep.id_test.y[i]
    with pytest.raises(OODRefusal, match="out-of-distribution"):
        guard.predict(sep.ood.x[0])
    with pytest.raises(TypeError, match="p-values"):
        Guard(sep.model, registry.create("pytorch_ood.msp"))


def test_vae_variant_is_skipped_cleanly_without_vae():
    reg = Registry(builtins=False)
    stattest_variants.register_all(reg)
    assert "stattest+vae" not in reg and "stattest" in reg and "stattest.pred" in reg
    reg.add("vae", registry.get("vae"))
    stattest_variants.register_all(reg)
    assert "stattest+vae" in reg and reg.get("stattest+vae").consumes == frozenset({"taps", "images"})
