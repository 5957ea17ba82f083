"""Every registered detector: contract on the separable problem (higher = more OOD, shape, dtype)."""
import numpy as np
import pytest

from oodbench import metrics
from oodbench.adapters import registry
from oodbench.adapters.base import DetectorError, check_scores
from oodbench.benchmark.tools import separable


@pytest.fixture(scope="module")
def sep():
    return separable.problem()


def test_template_net_is_accurate(sep):
    rep = sep.reps("id_test")
    assert (rep.preds == sep.id_test.y).mean() == 1.0


@pytest.mark.parametrize("name", registry.names())
def test_higher_means_more_ood(name, sep):
    if registry.get(name).info.extra.get("available") is False:  # an optional library that is not installed
        pytest.skip(f"{name}: {registry.get(name).info.extra.get('optional_dependency', 'optional dependency')} "
                    "not installed")
    why = registry.get(name).info.extra.get("separable_toy")
    if why:  # a documented reason why this detector cannot separate this toy (DetectorInfo.extra)
        pytest.xfail(f"{name}: {why}")
    det = registry.create(name)
    det.fit(sep.reps("fit"), sep.reps("cal"))
    s_id = check_scores(det.score(sep.reps("id_test")), len(sep.id_test), name)
    s_ood = check_scores(det.score(sep.reps("ood")), len(sep.ood), name)
    auroc = metrics.auroc(s_id, s_ood)
    assert auroc > 0.95, f"{name}: AUROC {auroc:.3f} on a trivially separable case (sign flipped?)"


@pytest.mark.parametrize("name", registry.names())
def test_metadata_and_clone(name):
    cls = registry.get(name)
    assert cls.info.library and cls.consumes, name
    assert cls.consumes <= {"logits", "features", "taps", "model", "images"}
    det = cls()
    twin = det.clone()
    assert twin is not det and twin.get_params() == det.get_params()


def test_check_scores_rejects_bad_output():
    assert check_scores(np.arange(3), 3).dtype == np.float64
    with pytest.raises(DetectorError, match="shape"):
        check_scores(np.zeros(4), 3)
    with pytest.raises(DetectorError, match="NaN"):
        check_scores(np.array([0.0, np.nan, 1.0]), 3)
    with pytest.raises(DetectorError, match="dtype"):
        check_scores(np.array(["a", "b", "c"]), 3)


def test_registry_patterns():
    names = registry.resolve(["pytorch_ood.m*"])
    assert "pytorch_ood.msp" in names and "pytorch_ood.maxlogit" in names
    with pytest.raises(KeyError, match="no detector matches"):
        registry.resolve(["nothing.*"])
    with pytest.raises(KeyError, match="unknown detector"):
        registry.create("nope")
