"""End to end on mnist-smoke: training, extraction, detectors, metrics, files, caching, failures."""
import json

import numpy as np
import pandas as pd
import pytest

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.adapters.registry import REGISTRY
from oodbench.benchmark import machine
from oodbench.benchmark.evaluation import runner
from oodbench.benchmark.cli import main

SIX = ["pytorch_ood.msp", "pytorch_ood.energy", "pytorch_ood.maxlogit", "pytorch_ood.mahalanobis",
       "pytorch_ood.knn", "pytorch_ood.odin"]


class _Broken(Detector):
    consumes = frozenset({"logits"})
    info = DetectorInfo(library="test")
    mode = "raise"

    def score(self, rep):
        n = len(rep)
        return {"raise": lambda: 1 / 0, "nan": lambda: np.full(n, np.nan), "shape": lambda: np.zeros(n + 1),
                "dtype": lambda: np.array(["x"] * n)}[self.mode]()


@pytest.fixture
def broken():
    with REGISTRY.scoped():
        names = []
        for mode in ("raise", "nan", "shape", "dtype"):
            n = f"test.broken_{mode}"
            REGISTRY.register(n)(type(f"B{mode}", (_Broken,), {"mode": mode}))
            names.append(n)
        yield names


def test_end_to_end_and_second_run_uses_the_cache(data_dir, cache_dir, tmp_path, broken):
    kw = dict(seeds=[0], data_dir=data_dir, cache_dir=cache_dir, out=tmp_path, threads=1, n_boot=20,
              progress=False)
    res = runner.evaluate("mnist-smoke", detectors=SIX + broken, **kw)
    df, rec = res.table, res.record
    for col in ["suite", "model", "seed", "library", "detector", "test_set", "group", "metric", "value"]:
        assert col in df.columns
    ok = df[df["status"] == "ok"]
    tests = {t["name"] for t in rec["test_sets"]}
    for d in SIX:
        got = set(ok[(ok["detector"] == d) & (ok["metric"] == "auroc")]["test_set"])
        assert tests | {"near-mean", "far-mean", "covariate-mean"} == got, d
    # failures are recorded, with their reason, and did not stop the run
    failed = df[df["status"] == "failed"].set_index("detector")["error"]
    assert set(failed.index) == set(broken)
    assert "ZeroDivisionError" in failed["test.broken_raise"] and "NaN" in failed["test.broken_nan"]
    assert "shape" in failed["test.broken_shape"] and "dtype" in failed["test.broken_dtype"]
    acc = ok[ok["metric"] == "accuracy"].set_index("test_set")["value"]
    assert acc["id"] > 0.5 and any(t.startswith("mnist-") for t in acc.index)
    # files
    assert set(p.name for p in tmp_path.iterdir()) >= {"results.csv.gz", "curves.json.gz", "summary.csv", "run.json",
                                                       "leaderboard.md"}
    disk = pd.read_csv(tmp_path / "results.csv.gz")
    assert len(disk) == len(df)
    rj = json.loads((tmp_path / "run.json").read_text())
    assert rj["versions"]["pytorch-ood"] == "0.4.0" and rj["threads"] == 1 and rj["data_checksums"]
    assert rj["cpu"]["kind"] == machine.cpu()["kind"]  # the CPU kind: bitwise reproducible within one
    # every scored set has a content checksum, generated (shifted) sets included
    assert set(rj["data_content_sha256"]) == {"id_test"} | tests
    assert len({rj["data_content_sha256"][t] for t in tests if t.startswith("mnist-")}) == len(
        [t for t in tests if t.startswith("mnist-")])
    assert rj["detectors"]["pytorch_ood.knn"]["0"]["fit_seconds"] >= 0
    assert "pytorch_ood.msp" in (tmp_path / "leaderboard.md").read_text()
    # second run: no forward pass, scores from cache, identical numbers
    res2 = runner.evaluate("mnist-smoke", detectors=SIX, **kw)
    df2, rec2 = res2.table, res2.record
    assert rec2["extraction"][0]["forward_passes"] == 0
    assert all(v["0"]["cached"] for k, v in rec2["detectors"].items() if k in SIX)
    a = df[(df.detector.isin(SIX)) & (df.status == "ok")].set_index(["detector", "test_set", "metric"])["value"]
    b = df2[(df2.detector.isin(SIX)) & (df2.status == "ok")].set_index(["detector", "test_set", "metric"])["value"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())
    # the merged file keeps the broken detectors' rows from the first run
    assert set(broken) <= set(pd.read_csv(tmp_path / "results.csv.gz")["detector"])


def test_corrupt_representation_is_recomputed(mnist_smoke):
    mat, store = mnist_smoke
    store.ensure(mat.fit, {"core"})
    p = store._path(mat.fit, "core")
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    store._mem.clear()
    before = store.stats["forward_passes"]
    logits = store.representation(mat.fit, "fit").logits
    assert store.stats["forward_passes"] == before + 1 and logits.shape == (len(mat.fit), 10)


def test_taps_are_per_channel_statistics(mnist_smoke):
    mat, store = mnist_smoke
    taps = store.representation(mat.cal, "cal").taps()
    assert list(taps) == ["conv1", "conv2", "fc1", "fc"]
    assert taps["conv1"].shape == (len(mat.cal), 40)  # 20 channels x (max, mean)
    assert taps["fc1"].shape == (len(mat.cal), 500) and taps["fc"].shape == (len(mat.cal), 10)
    assert np.allclose(taps["fc"], store.representation(mat.cal, "cal").logits, atol=1e-5)


def test_live_store_runs_the_network_every_time(mnist_smoke):
    from oodbench.benchmark.evaluation.features import RepresentationStore

    mat, store = mnist_smoke
    live = RepresentationStore(store.model, "x", None, live=True)
    rep = live.representation(mat.cal, "cal")
    rep.logits
    rep.logits
    assert live.stats["forward_passes"] == 2


def test_cli_list_and_run(data_dir, cache_dir, tmp_path, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist-smoke" in out and "pytorch_ood.odin" in out and "omniglot" in out
    rc = main(["run", "mnist-smoke", "--detectors", "pytorch_ood.msp", "--data-dir", str(data_dir),
               "--cache-dir", str(cache_dir), "--out", str(tmp_path), "--threads", "1", "-q", "--bootstrap", "10"])
    assert rc == 0 and (tmp_path / "leaderboard.md").exists()


def test_cifar10_cpu_path_runs_with_the_wide_airbench_net(data_dir, cache_dir, tmp_path):
    from oodbench.benchmark import models
    from oodbench.benchmark.data import suites

    s = suites.get("cifar10-smoke")
    assert suites.model_name(s, "cpu") == suites.model_name(suites.get("cifar10"), "cpu") == "airbench_wide"
    assert suites.model_name(suites.get("cifar10-open"), "cpu") == "airbench"
    assert suites.model_name(suites.get("cifar10"), "cuda") == "resnet18"
    df = runner.evaluate("cifar10-smoke", detectors=["pytorch_ood.msp"], data_dir=data_dir, cache_dir=cache_dir,
                         out=tmp_path, threads=1, n_boot=0, progress=False).table
    ok = df[(df.status == "ok") & (df.metric == "auroc")]
    assert {"tinyimagenet", "near-mean", "far-mean"} <= set(ok.test_set)
    net = models.build("resnet18", 3)
    import torch

    logits, feats = net.eval().forward_features(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and feats.shape == (2, 512)
    assert net.feature_maps(torch.rand(1, 3, 32, 32)).shape == (1, 512, 4, 4)


def test_expensive_detector_is_scored_on_a_seeded_subsample(data_dir, cache_dir, tmp_path):
    class Sub(Detector):
        consumes = frozenset({"logits"})
        info = DetectorInfo(library="test", expensive=True)

        def subsample_size(self, device):
            return 40

        def score(self, rep):
            return -rep.logits.max(1).astype(np.float64)

    with REGISTRY.scoped():
        REGISTRY.register("test.subsampled")(Sub)
        res = runner.evaluate("mnist-smoke", detectors=["test.subsampled"], data_dir=data_dir, cache_dir=cache_dir,
                              out=tmp_path, threads=1, n_boot=0, progress=False, use_score_cache=False)
        df = res.table
    per = df[(df.detector == "test.subsampled") & (df.metric == "auroc") & ~df.test_set.str.endswith("-mean")]
    assert len(per) and (per.n_id == 40).all() and (per.n_ood == 40).all()
    assert res.record["detectors"]["test.subsampled"]["0"]["subsample"] == 40


def test_tuned_mode_selects_on_disjoint_ood_validation(data_dir, cache_dir, tmp_path):
    res = runner.evaluate("mnist-smoke", detectors=["pytorch_ood.knn", "pytorch_ood.msp"], data_dir=data_dir,
                          cache_dir=cache_dir, out=tmp_path, threads=1, n_boot=0, progress=False, tuning="tuned")
    df = res.table
    assert set(df["tuning"]) == {"tuned"}
    t = res.record["tuning"]
    assert t["mode"] == "tuned" and t["ood_val"].startswith("fashionmnist-train")
    knn = t["detectors"]["pytorch_ood.knn"]["0"]
    assert len(knn["grid"]) == 5 and knn["params"]["k"] in (50, 100, 200, 500, 1000)
    with pytest.raises(ValueError, match="tuning"):
        runner.evaluate("mnist-smoke", detectors=["pytorch_ood.msp"], tuning="bogus")
