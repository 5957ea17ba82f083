"""pytorch-ood 0.4.0 adapter: every wired detector fits and scores on tiny data through each feed
(cached logits / features, feature maps, taps, the network), defaults are the library's, and the
coverage table lists every detector the library exports."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from oodbench.adapters import pytorch_ood as pa
from oodbench.adapters import registry
from oodbench.adapters.base import check_scores
from oodbench.benchmark import models
from oodbench.benchmark.evaluation.features import RepresentationStore

NAMES = [n for n in registry.names() if n.startswith("pytorch_ood.")]
DOC = Path(__file__).resolve().parents[1] / "docs" / "pytorch_ood_coverage.md"


@pytest.mark.parametrize("name", NAMES)
def test_smoke_fit_and_score_on_a_cnn(name, tiny_cnn):
    store, reps = tiny_cnn
    assert set(np.unique(reps["fit"].preds)) == {0, 1, 2, 3}
    params = {"k": 10} if name == "pytorch_ood.knn" else {}
    det = registry.create(name, **params)
    det.fit(reps["fit"], reps["cal"])
    for key in ("id", "ood"):
        s = check_scores(det.score(reps[key]), len(reps[key]), name)
        assert s.dtype == np.float64


def test_defaults_are_the_librarys_and_recorded():
    assert registry.create("pytorch_ood.knn").get_params()["k"] == 50
    assert registry.create("pytorch_ood.odin").get_params()["temperature"] == 1000.0
    assert registry.create("pytorch_ood.react").get_params()["percentile"] == 0.9
    assert registry.create("pytorch_ood.dice").get_params()["p"] == 0.9  # no library default: ours, recorded
    assert registry.get("pytorch_ood.dice").info.extra["policy_defaults"] == {"p": 0.9}
    assert registry.create("pytorch_ood.knn", k=7).get_params()["k"] == 7
    assert pa.vim_dim(500) == 256 and pa.vim_dim(128) == 64
    assert registry.get("pytorch_ood.knn").info.extra["hyperparameter_space"]["k"] == [50, 100, 200, 500, 1000]


def test_cached_feeds_do_not_run_the_network(tiny_cnn):
    store, reps = tiny_cnn
    for r in reps.values():
        r.logits  # noqa: B018 - extraction
    before = store.stats["forward_passes"]
    for name in ("pytorch_ood.msp", "pytorch_ood.mahalanobis", "pytorch_ood.vim", "pytorch_ood.nnguide"):
        det = registry.create(name).fit(reps["fit"], reps["cal"])
        det.score(reps["id"])
    assert store.stats["forward_passes"] == before


def test_lenet_maps_come_from_the_feature_cache(striped_images):
    lenet = models.build("lenet", 1, 10).eval()
    rep = RepresentationStore(lenet, "lenet-probe", cache=None).representation(striped_images(8, 0, "probe"), "id")
    assert pa.maps_are_features(rep)
    maps = torch.cat(list(pa.feature_maps(rep)))
    with torch.no_grad():
        direct = lenet.feature_maps(rep.input_tensor())
    assert torch.allclose(maps, direct, atol=1e-5)


def test_coverage_table_lists_every_library_detector():
    from pytorch_ood import detector as pod

    text = DOC.read_text()
    for cls in pod.__all__:
        if cls[0].isupper() or cls == "fDBD":
            assert re.search(rf"`{cls}`", text), f"{cls} missing from {DOC.name}"
    wired = {registry.get(n).target for n in NAMES}
    assert len(wired) >= 20


def test_tuned_mode_grid_search_and_disjointness():
    from oodbench.benchmark.tools import separable
    from oodbench.benchmark.evaluation import tuning

    sep = separable.problem(n_per_class=20)
    assert len(tuning.grid_of("pytorch_ood.odin")) == 8  # temperature x eps, the library's space
    res = tuning.tune("pytorch_ood.knn", sep.reps("fit"), sep.reps("cal"), sep.reps("cal"), sep.reps("ood"),
                      space={"k": [5, 10, 1000]})
    assert res.params["k"] in (5, 10) and res.auroc > 0.95 and len(res.grid) == 3
    assert "error" in res.grid[2]  # k > number of fit samples: recorded, not chosen
    with pytest.raises(ValueError, match="shares"):
        tuning.assert_disjoint(sep.ood.subset(np.arange(5), name="val"), [sep.ood])
    tuning.assert_disjoint(sep.cal, [sep.ood, sep.id_test])


def test_channels_last_feature_maps_are_made_contiguous(striped_images):
    """``airbench`` runs channels-last, so its feature maps are strided: pytorch-ood's SCALE (``x.view``) failed
    on them in the cifar10 grid. The wrappers hand the library contiguous maps."""
    torch.manual_seed(0)
    model = models.build("smallcnn", in_channels=1, num_classes=4).eval()
    plain = model.feature_maps
    model.feature_maps = lambda x: plain(x).contiguous(memory_format=torch.channels_last)
    store = RepresentationStore(model, "channels-last", cache=None, batch_size=16)
    reps = {k: store.representation(striped_images(n, i, k), k) for i, (k, n) in enumerate((("fit", 32), ("id", 8)))}
    assert not pa.maps_are_features(reps["id"])
    with torch.no_grad():
        assert not model.feature_maps(reps["id"].input_tensor()[:2]).is_contiguous()
    det = registry.create("pytorch_ood.scale").fit(reps["fit"], reps["fit"])
    check_scores(det.score(reps["id"]), 8, "pytorch_ood.scale")


def test_a_half_consumed_feature_map_stream_leaves_gradients_on(tiny_cnn):
    """The stream of feature maps runs the network without gradients, but never yields inside
    ``torch.no_grad()``: a detector that raised after the first batch (SCALE on channels-last maps) left its
    stream suspended there, with gradients off for every later job of that worker process."""
    _, reps = tiny_cnn
    stream = pa.feature_maps(reps["id"])
    first = next(stream)
    assert torch.is_grad_enabled() and not first.requires_grad
    del stream


def test_spatial_maps_are_extracted_once_per_dataset_and_give_the_live_scores(striped_images, tmp_path,
                                                                                 monkeypatch):
    """ReAct, ASH, SCALE, VRA and RankFeat transform the maps before the head: each ran the network over
    every dataset itself (on cifar10, one extraction's cost per detector and seed). The harness now keeps
    the maps in its cache: one forward pass per dataset whichever of them asks, the same scores as the
    network's own maps; datasets whose maps exceed the limit are computed from the network as before."""
    from oodbench.benchmark.evaluation import features

    torch.manual_seed(0)
    model = models.build("smallcnn", in_channels=1, num_classes=4).eval()
    sets = {k: striped_images(n, i, k) for i, (k, n) in enumerate((("fit", 48), ("id", 16)))}

    def scores(store, names=("pytorch_ood.react", "pytorch_ood.scale", "pytorch_ood.rankfeat")):
        reps = {k: store.representation(v, k) for k, v in sets.items()}
        assert not pa.maps_are_features(reps["id"])
        return {n: registry.create(n).fit(reps["fit"], reps["fit"]).score(reps["id"]) for n in names}

    cached = RepresentationStore(model, "maps-cache", cache=tmp_path, batch_size=16)
    got = scores(cached)
    assert cached.stats["forward_passes"] == 2  # fit and id, once each for the three detectors
    assert len(list((tmp_path / "features" / cached.key).glob("*-maps-*.npz"))) == 2
    again = RepresentationStore(model, "maps-cache", cache=tmp_path, batch_size=16)
    assert {n: s.tolist() for n, s in scores(again).items()} == {n: s.tolist() for n, s in got.items()}
    # every read of the second store is a cache hit: the first store's two extractions become hits
    assert again.stats["forward_passes"] == 0 and again.stats["cache_hits"] == cached.stats["cache_hits"] + 2

    monkeypatch.setattr(features, "MAPS_LIMIT_BYTES", 0)  # too large to keep: the network's own maps
    live = RepresentationStore(model, "maps-live", cache=tmp_path / "live", batch_size=16)
    for n, s in scores(live).items():
        np.testing.assert_allclose(s, got[n], rtol=1e-5, atol=1e-5, err_msg=n)
    assert live.stats["forward_passes"] == 0 and not (tmp_path / "live" / "features").exists()
