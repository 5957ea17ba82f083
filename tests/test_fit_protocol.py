"""The fit protocol (``--fit-split``) and the adapters' not-applicable declaration.

Third-party baselines are fitted on the classifier's training split by default (OpenOOD v1.5's
protocol) or on the held-out ``fit`` split; the lab's conformal methods always on ``fit``. Each row
records the split; the score cache keeps the two apart. RankFeat declares that a classifier whose
``feature_maps`` are 1×1 cannot serve it."""
import numpy as np
import pandas as pd
import pytest
import torch

from oodbench.benchmark.evaluation import scorecache
from oodbench.benchmark.evaluation.scoring import fit_and_score, fit_split_of


def test_baselines_follow_the_fit_split_and_the_lab_methods_keep_fit():
    assert fit_split_of("pytorch_ood.knn", "train") == "train"
    assert fit_split_of("pytorch_ood.knn", "fit") == "fit"
    assert fit_split_of("openood.knn", "train") == "train"
    assert fit_split_of("stattest", "train") == "fit"
    assert fit_split_of("vae", "train") == "fit"
    with pytest.raises(ValueError, match="fit split"):
        fit_split_of("pytorch_ood.knn", "test")


def test_knn_is_fitted_on_the_split_asked_for_and_the_cache_keeps_them_apart(data_dir, cache_dir):
    from oodbench.benchmark.evaluation.session import Session

    s = Session("mnist-smoke", 0, "cpu", cache_dir, data_dir)
    on_train = fit_and_score(s, "pytorch_ood.knn", fit_split="train")
    on_fit = fit_and_score(s, "pytorch_ood.knn", fit_split="fit")
    assert on_train.meta["fit_split"] == "train" and on_train.meta["fit_samples"] == len(s.data.train)
    assert on_fit.meta["fit_split"] == "fit" and on_fit.meta["fit_samples"] == len(s.data.fit)
    assert len(s.data.train) != len(s.data.fit)
    # another neighbour bank gives other distances
    assert not np.allclose(on_train.scores["id"], on_fit.scores["id"])
    assert scorecache.path_for(s, "pytorch_ood.knn", None, "train") != scorecache.path_for(s, "pytorch_ood.knn",
                                                                                          None, "fit")
    lab = fit_and_score(s, "stattest", fit_split="train")
    assert lab.meta["fit_split"] == "fit" and lab.meta["fit_samples"] == len(s.data.fit)


def test_rows_record_the_fit_split_and_fit_goes_to_its_own_folder(data_dir, cache_dir, tmp_path):
    from oodbench.benchmark.evaluation import runner

    o = runner.RunOptions(data_dir=data_dir, cache_dir=cache_dir, out=tmp_path / "o", progress=False, n_boot=0,
                          fit_split="fit")
    res = runner.evaluate("mnist-smoke", detectors=["pytorch_ood.msp", "stattest"], seeds=[0], options=o)
    got = res.table[res.table["metric"] == "auroc"].groupby("detector")["fit_split"].unique()
    assert list(got["pytorch_ood.msp"]) == ["fit"] and list(got["stattest"]) == ["fit"]
    assert res.record["fit_split"]["baselines"] == "fit"
    written = pd.read_csv(tmp_path / "o" / "results.csv.gz")
    assert set(written["fit_split"].dropna()) == {"fit"}
    assert runner.out_dir(runner.RunOptions(fit_split="fit"), {"name": "mnist"}).name == "mnist-fitsplit-fit"
    assert runner.out_dir(runner.RunOptions(), {"name": "mnist"}).name == "mnist"
    from oodbench.benchmark.evaluation.arguments import ArgumentError, check_run

    with pytest.raises(ArgumentError, match="--fit-split"):
        check_run("mnist-smoke", ["pytorch_ood.msp"], [0], runner.RunOptions(fit_split="val"), lambda d: [])


class _Rep:
    """The two things the applicability probe reads: the model and one input."""

    def __init__(self, model, shape):
        self.model, self.shape = model, shape

    def inputs(self, batch_size=1):
        yield torch.zeros((batch_size, *self.shape))


@pytest.mark.parametrize("name", ["pytorch_ood.rankfeat", "openood.rankfeat"])
def test_rankfeat_declares_one_by_one_feature_maps_not_applicable(name):
    from oodbench.adapters import registry
    from oodbench.benchmark.models.architectures import LeNet, SmallCNN

    det = registry.create(name)
    why = det.not_applicable(_Rep(LeNet(), (1, 28, 28)))
    assert "spatial extent" in why and "1×1" in why
    assert det.not_applicable(_Rep(SmallCNN(), (3, 32, 32))) == ""
    assert registry.create("pytorch_ood.react").not_applicable(_Rep(LeNet(), (1, 28, 28))) == ""
