"""OpenOOD adapter. Without OpenOOD (CI): the module imports, every postprocessor is registered and
listed as unavailable, and fitting says how to install it. With OpenOOD: every wired postprocessor
fits and scores on tiny data through the CPU patch, cached features are served without a forward
pass, and the agreement table works."""
import numpy as np
import pytest
import torch

from oodbench.adapters import openood as oa
from oodbench.adapters import registry
from oodbench.adapters.base import check_scores

NAMES = [n for n in registry.names() if n.startswith("openood.")]
HAVE, WHY = oa.available()
needs_openood = pytest.mark.skipif(not HAVE, reason=f"OpenOOD not installed ({WHY}); see docs/openood.md")


def test_registered_without_importing_openood():
    core = {"msp", "temp_scaling", "ebo", "mls", "odin", "gen", "klm", "mds", "rmds", "knn", "vim", "react", "ash",
            "dice", "she", "gradnorm"}
    assert {f"openood.{n}" for n in core} <= set(NAMES)
    for n in NAMES:
        info = registry.get(n).info
        assert info.library == "openood" and "available" in info.extra
    assert registry.get("openood.knn")().get_params() == {"K": 50}
    assert registry.get("openood.react").hyperparameter_space() == {"percentile": [85, 90, 95, 99]}


@pytest.mark.skipif(HAVE, reason="OpenOOD is installed")
def test_missing_openood_says_how_to_install():
    from oodbench.benchmark.tools import separable

    sep = separable.problem(n_per_class=5)
    with pytest.raises(oa.OpenOODMissing, match="pip install"):
        registry.create("openood.msp").fit(sep.reps("fit"), sep.reps("cal"))


def test_cpu_patch_restores_torch():
    cuda_t, cuda_m = torch.Tensor.cuda, torch.nn.Module.cuda
    with oa.cpu_patch():
        assert torch.ones(2).cuda().device.type == "cpu"
        assert torch.ones(1, device="cuda").device.type == "cpu"
    assert torch.Tensor.cuda is cuda_t and torch.nn.Module.cuda is cuda_m


@needs_openood
@pytest.mark.parametrize("name", NAMES)
def test_smoke_fit_and_score(name, tiny_cnn):
    store, reps = tiny_cnn
    det = registry.create(name, **({"K": 10} if name == "openood.knn" else {}))
    det.fit(reps["fit"], reps["cal"])
    for key in ("id", "ood"):
        check_scores(det.score(reps[key]), len(reps[key]), name)


@needs_openood
def test_lookup_feeds_cost_no_forward_pass(tiny_cnn):
    store, reps = tiny_cnn
    for r in reps.values():
        r.logits  # noqa: B018 - extraction
    before = store.stats["forward_passes"]
    for name in ("openood.msp", "openood.mds", "openood.knn", "openood.react", "openood.ash"):
        det = registry.create(name, **({"K": 10} if name == "openood.knn" else {}))
        det.fit(reps["fit"], reps["cal"]).score(reps["id"])
    assert store.stats["forward_passes"] == before


@needs_openood
def test_agreement_on_the_separable_toy():
    from oodbench.benchmark.evaluation import agreement
    from oodbench.benchmark.tools import separable

    sep = separable.problem(n_per_class=20)
    tests = [type("T", (), {"name": "noise", "group": "far"})()]
    got = {}
    for name in ("pytorch_ood.msp", "openood.msp", "pytorch_ood.energy", "openood.ebo"):
        det = registry.create(name).fit(sep.reps("fit"), sep.reps("cal"))
        got[name] = {"id": det.score(sep.reps("id_test")), "noise": det.score(sep.reps("ood"))}
    rows = agreement.compare(got["pytorch_ood.msp"], got["openood.msp"], tests, "MSP", "a", "b")
    rows += agreement.compare(got["pytorch_ood.energy"], got["openood.ebo"], tests, "Energy", "a", "b")
    for r in rows:
        assert r["spearman"] > 0.999 or np.isnan(r["spearman"]), r
    assert abs(rows[1]["auroc_diff"]) < 1e-9


@pytest.mark.parametrize("arch", ["airbench", "smallcnn"])
def test_contract_net_pools_as_the_classifier_does(arch):
    """RankFeat's head is ``net.fc(flatten(net.avgpool(maps)))``: on our wrapper it must give the
    classifier's own logits (airbench max-pools, times 1/9; an average pool there would feed the head
    features it was never trained on)."""
    from oodbench.benchmark.models.architectures import build

    torch.manual_seed(0)
    model = build(arch, 3).eval()
    net = oa.ContractNet(model)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        maps = net.intermediate_forward(x, layer_index=4)
        logits = net.fc(torch.flatten(net.avgpool(net.layer4(maps)), 1))
        torch.testing.assert_close(logits, model(x))


def test_faiss_blas_sets_and_restores_the_threshold(monkeypatch):
    """faiss_blas lowers faiss's BLAS threshold inside and restores faiss's own value after, an error included
    (a stand-in faiss module, so this runs without OpenOOD's environment)."""
    import sys
    import types

    from oodbench.adapters.openood.adapter import FAISS_BLAS_THRESHOLD, faiss_blas

    fake = types.SimpleNamespace(cvar=types.SimpleNamespace(distance_compute_blas_threshold=128_000))
    monkeypatch.setitem(sys.modules, "faiss", fake)
    with faiss_blas():
        assert fake.cvar.distance_compute_blas_threshold == FAISS_BLAS_THRESHOLD == 20
    assert fake.cvar.distance_compute_blas_threshold == 128_000
    with pytest.raises(ValueError), faiss_blas():
        raise ValueError("a failing postprocessor")
    assert fake.cvar.distance_compute_blas_threshold == 128_000
    monkeypatch.setitem(sys.modules, "faiss", None)  # not installed: import fails, nothing to set
    with faiss_blas():
        pass


@needs_openood
def test_knn_searches_with_the_blas_kernel(tiny_cnn):
    """OpenOOD's KNN searches while faiss_blas is in force (faiss's own threshold sends its batches to the
    query-by-query loop), and faiss's setting is back afterwards."""
    import faiss

    from oodbench.adapters.openood.adapter import FAISS_BLAS_THRESHOLD

    store, reps = tiny_cnn
    det = registry.create("openood.knn", K=10).fit(reps["fit"], reps["cal"])
    index, seen = det._pp.index, []

    class Spy:
        def search(self, x, k):
            seen.append(faiss.cvar.distance_compute_blas_threshold)
            return index.search(x, k)

    det._pp.index = Spy()
    own = faiss.cvar.distance_compute_blas_threshold
    scores = det.score(reps["id"])
    assert seen and set(seen) == {FAISS_BLAS_THRESHOLD}
    assert faiss.cvar.distance_compute_blas_threshold == own
    check_scores(scores, len(reps["id"]), "openood.knn")
