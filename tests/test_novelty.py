"""Novelty detection on synthetic features where the truth is known (oodbench.detectors.novelty).

World: K known classes, tight Gaussian clusters around directions in 64-d; junk uniform in a box
around the origin; one new class, a tight Gaussian around a direction no known class has. p-values are
conformal p-values of the distance to the nearest known-class mean (any score works).
"""
import numpy as np
import pytest

from oodbench.detectors import permtests
from oodbench.detectors.novelty import NoveltyDetector, score_pvalues
from oodbench.detectors.pvalues import conformal_pvalues, sort_reference

D, K = 64, 4
_r = np.random.default_rng(1000)
MEANS = _r.normal(size=(K + 1, D))
MEANS *= 5 / np.linalg.norm(MEANS, axis=1, keepdims=True)
ID, JUNK, NEW = 0, 1, 2


def _id(r, n):
    y = r.integers(0, K, n)
    return MEANS[y] + r.normal(scale=0.2, size=(n, D)), y


def _score(f):
    return np.linalg.norm(f[:, None] - MEANS[None, :K], axis=-1).min(1)


def _window(r, n_id, n_junk, n_new):
    f = np.concatenate([_id(r, n_id)[0], r.uniform(-1.5, 1.5, (n_junk, D)),
                        MEANS[K] + r.normal(scale=0.2, size=(n_new, D))])
    truth = np.r_[np.full(n_id, ID), np.full(n_junk, JUNK), np.full(n_new, NEW)]
    return f, truth


@pytest.fixture(scope="module")
def world():
    r = np.random.default_rng(0)
    ref, yref = _id(r, 2000)
    cal, _ = _id(r, 1000)
    return ref, yref, _score(cal)


def _detector(world, **kw):
    """The single-pool design (cohesion null, one window) unless ``kw`` says otherwise."""
    ref, yref, _ = world
    kw = {"null1": "cohesion", "memory": 1, **kw}
    return NoveltyDetector(n_components=16, n_ref_per_class=100, **kw).fit(ref, yref)


def _pv(world, f):
    return score_pvalues(world[2], _score(f))


@pytest.mark.parametrize("cluster", ["hdbscan", "gmm"])
def test_new_gaussian_cluster_among_junk_is_declared_pure(world, cluster):
    for seed in range(3):
        det = _detector(world, cluster=cluster, seed=seed)
        f, truth = _window(np.random.default_rng(seed), 150, 50, 30)
        res = det.process(f, _pv(world, f))
        assert len(res.declared) == 1, res.candidates
        c = res.declared[0]
        assert np.mean(truth[c.members] == NEW) >= 0.9
        assert np.sum(truth[c.members] == NEW) >= 0.9 * 30
        assert c.p_chance <= det.alpha and c.p_shift <= det.alpha
        assert set(c.as_dict()) >= {"members", "prototype", "p_chance", "p_shift", "radius"}


def test_junk_alone_is_not_declared_at_the_stated_rate(world):
    """alpha = 0.001 per window: at most 1 false declaration over 200 junk-only windows."""
    det = _detector(world)
    false = 0
    for seed in range(200):
        f, _ = _window(np.random.default_rng(10_000 + seed), 150, 50, 0)
        false += len(det.process(f, _pv(world, f)).declared)
    assert false <= 1


def test_a_known_class_is_not_declared_new(world):
    """A cluster drawn from a known class (its inputs flagged regardless) fails the shift test."""
    det = _detector(world)
    false = 0
    for seed in range(10):
        r = np.random.default_rng(20_000 + seed)
        f = np.concatenate([MEANS[1] + r.normal(scale=0.2, size=(40, D)), r.uniform(-1.5, 1.5, (40, D))])
        false += len(det.process(f, np.full(len(f), 1e-4)).declared)
    assert false == 0


def test_later_inputs_are_assigned_to_the_declared_class(world):
    det = _detector(world)
    f, _ = _window(np.random.default_rng(1), 150, 50, 30)
    (c,) = det.process(f, _pv(world, f)).declared
    f2, truth2 = _window(np.random.default_rng(2), 150, 50, 40)
    res = det.process(f2, _pv(world, f2))
    assert res.declared == []  # the class is known now: assigned, not declared again
    assert np.mean(res.assigned[truth2 == NEW] == c.id) >= 0.9
    assert np.mean(res.assigned[truth2 != NEW] == c.id) <= 0.02
    direct = det.assign(f2)
    assert np.array_equal(direct[res.flagged], res.assigned[res.flagged])


def test_score_pvalues_is_the_conformal_pvalue(world):
    cal = np.array([1.0, 2.0, 2.0, 3.0])
    t = np.array([2.0, 5.0, 0.0])
    assert np.allclose(score_pvalues(cal, t), conformal_pvalues(sort_reference(cal), t, "right"))


def test_energy_test_is_valid_and_powerful():
    r = np.random.default_rng(3)
    rej = sum(permtests.energy_test(r.normal(size=(20, 5)), r.normal(size=(40, 5)), 99, seed=i)[1] <= 0.1
              for i in range(60))
    assert rej <= 14  # ~6 expected at level 0.1
    _, p = permtests.energy_test(r.normal(size=(20, 5)) + 1.5, r.normal(size=(40, 5)), 199)
    assert p <= 1 / 200 + 1e-12
    x, y = r.normal(size=(7, 3)), r.normal(size=(9, 3))
    from scipy.spatial.distance import cdist
    e = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    assert permtests.energy_statistic(x, y) == pytest.approx(e)


def test_invalid_settings_are_refused(world):
    with pytest.raises(ValueError, match="n_perm"):
        NoveltyDetector(alpha=0.001, n_perm=99)
    with pytest.raises(ValueError, match="cluster"):
        NoveltyDetector(cluster="kmeans")
    with pytest.raises(RuntimeError, match="fit"):
        NoveltyDetector().process(np.zeros((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="p-values"):
        _detector(world).process(np.zeros((3, D)), np.ones(2))


def test_protocol_stream_and_metrics_on_a_synthetic_pool(world):
    """The protocol's stream, pipeline and metrics on a pool where held-out class 7 is the new cluster."""
    from oodbench.benchmark.evaluation import novelty_protocol as npr
    from oodbench.benchmark.evaluation import novelty_stream as ns

    r = np.random.default_rng(5)
    idf, _ = _id(r, 600)
    junk = r.uniform(-1.5, 1.5, (400, D))
    new = MEANS[K] + r.normal(scale=0.2, size=(300, D))
    parts = [("id", ns.ID, np.zeros(600), idf, {"s": _pv(world, idf)}),
             ("junk-a", ns.JUNK, np.zeros(200), junk[:200], {"s": _pv(world, junk[:200])}),
             ("junk-b", ns.JUNK, np.zeros(200), junk[200:], {"s": _pv(world, junk[200:])}),
             ("held-7", None, np.full(300, 7), new, {"s": _pv(world, new)})]
    pool = ns.build_pool(parts)
    o = npr.ProtocolOptions(window=200, n_before=10, n_after=3, junk_frac=0.25, novel_frac=0.15, n_components=16,
                            null1="cohesion", memory=1)
    stream = ns.make_stream(pool, 0, o.window, o.n_before, o.n_after, o.junk_frac, o.novel_frac)
    assert len(stream) == 13 and all(len(w) == 200 for w in stream)
    assert all(np.sum(pool.truth[w] >= 0) == 0 for w in stream[:10])
    assert all(np.sum(pool.truth[w] == 7) == 30 for w in stream[10:])
    assert np.array_equal(stream[3], ns.make_stream(pool, 0, 200, 10, 3, 0.25, 0.15)[3])
    f_ref, y_ref = _id(np.random.default_rng(6), 1000)
    ref = {"features": f_ref, "labels": y_ref, "pvalues": {"s": _pv(world, f_ref)}}
    run = npr.run_pipeline(pool, ref, stream, "s", o, seed=0)
    m = npr.pipeline_metrics(run, pool, stream, o)
    assert m["detected_7"] and m["delay_7"] == 30 and m["detection_rate"] == 1.0
    assert m["false_declarations"] == 0 and m["classes_found"] == 1
    assert m["purity"] >= 0.9 and m["coverage"] >= 0.8 and m["ari"] is not None  # ARI is 0 with one class
    fl = npr.flagging(pool, ["s"])["s"]
    assert fl["held-7"]["auroc"] > 0.99 and fl["held-7"]["p<=0.01"] > 0.9
    assert fl["id"]["auroc"] is None and fl["id"]["p<=0.05"] == pytest.approx(0.05, abs=0.03)
    alarm = npr.alarm_metrics(npr.run_alarm(pool, stream, "s", o), pool, stream, o)
    assert alarm["false_per_1000_junk_windows"] == 1000.0  # junk alone trips the naive alarm


def test_memory_pools_flagged_inputs_across_windows(world):
    """12 new-class inputs per window never make a cluster of 20 alone; with memory 2 they do."""
    got = {}
    for memory in (1, 2):
        det = _detector(world, memory=memory)
        declared, truth_all = [], []
        for w in range(3):
            f, truth = _window(np.random.default_rng(30 + w), 150, 40, 12)
            truth_all.append(truth)
            declared += det.process(f, _pv(world, f)).declared
        got[memory] = declared
    assert got[1] == []
    (c,) = got[2]
    truth = np.concatenate(truth_all)
    assert np.mean(truth[c.members] == NEW) >= 0.9 and c.members.min() < 202 <= c.members.max()


def test_window_enrichment_pvalue_is_exact():
    """The DP p-value equals the share of all m-subsets of windows whose counts reach the observed sum."""
    import itertools

    r = np.random.default_rng(7)
    for _ in range(25):
        c = r.integers(0, 6, 11)
        m = int(r.integers(1, 5))
        t = int(r.integers(0, 16))
        brute = np.mean([c[list(s)].sum() >= t for s in itertools.combinations(range(len(c)), m)])
        assert permtests.window_enrichment_pvalue(c, m, t) == pytest.approx(brute, abs=1e-12)
    assert permtests.window_enrichment_pvalue([0, 0, 0, 5], 1) == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        permtests.window_enrichment_pvalue([1, 2], 3)


def _history_stream(world, det, seed, n_windows, n_new_from=None, n_junk=40):
    """Feed ``n_windows`` windows (150 ID, ``n_junk`` junk — half uniform, half a tight junk cluster — and,
    from window ``n_new_from`` on, 12 new-class inputs); returns the declared classes and the truths."""
    r = np.random.default_rng(seed)
    junk_centre = r.uniform(-1.0, 1.0, D)
    declared, truths = [], []
    for w in range(n_windows):
        n_new = 12 if n_new_from is not None and w >= n_new_from else 0
        f, truth = _window(r, 150, n_junk // 2, n_new)
        blob = junk_centre + r.normal(scale=0.1, size=(n_junk - n_junk // 2, D))  # coherent junk (noise images)
        f = np.concatenate([f, blob])
        truth = np.r_[truth, np.full(len(blob), JUNK)]
        truths.append(truth)
        declared += det.process(f, _pv(world, f)).declared
    return declared, np.concatenate(truths)


def test_history_null_declares_a_new_class_not_coherent_junk(world):
    """Reference period of 20 windows with scattered and coherent junk; then a new class at 12 inputs per
    window: declared, pure, after the reference; the coherent junk blob alone is never declared."""
    for seed in range(2):
        det = _detector(world, null1="history", history=20, memory=5, seed=seed)
        declared, truth = _history_stream(world, det, 40 + seed, 28, n_new_from=22)
        assert len(declared) == 1, [c.as_dict()["size"] for c in declared]
        (c,) = declared
        assert c.window >= 22 and np.mean(truth[c.members] == NEW) >= 0.9 and c.p_chance <= det.alpha
        # later new-class inputs are assigned to it, junk is not
        f, t = _window(np.random.default_rng(90 + seed), 150, 40, 30)
        a = det.assign(f)
        assert np.mean(a[t == NEW] == c.id) >= 0.5 and np.mean(a[t == JUNK] == c.id) <= 0.05


def test_history_null_junk_alone_at_the_stated_rate(world):
    """alpha = 0.001 per window: no declaration over 150 junk-only windows after a 20-window reference
    (scattered and coherent junk; the cohesion null would be the one fooled by the blob)."""
    false = 0
    for seed in range(3):
        det = _detector(world, null1="history", history=20, memory=5, seed=seed)
        declared, _ = _history_stream(world, det, 60 + seed, 70)
        false += len(declared)
    assert false == 0
    # the single-pool cohesion null declares the coherent junk blob as a new class
    declared, truth = _history_stream(world, _detector(world, null1="cohesion", memory=5), 60, 30)
    assert declared and all(np.mean(truth[c.members] == JUNK) > 0.5 for c in declared)


def test_history_settings_that_cannot_reach_alpha_are_refused():
    with pytest.raises(ValueError, match="cannot reach alpha"):
        NoveltyDetector(alpha=0.001, history=3, memory=2)
    with pytest.raises(ValueError, match="null1"):
        NoveltyDetector(null1="other")


def test_open_set_restriction_renumbers_known_classes_and_keeps_held_out_labels():
    from oodbench.benchmark.data import ImageSet, openset, suites

    y = np.array([0, 8, 3, 9, 7, 8, 1])
    im = ImageSet("t", np.arange(7 * 4, dtype=np.uint8).reshape(7, 2, 2), y, "ck", [str(i) for i in range(10)])
    known = openset.restrict(im, range(8))
    assert known.y.tolist() == [0, 3, 7, 1] and known.classes == [str(i) for i in range(8)]
    assert known.checksum != im.checksum  # a different training set trains a different classifier
    held = openset.held_out(im, "t-8", [8])
    assert held.y.tolist() == [8, 8] and held.name == "t-8"
    s = suites.get("mnist-open")
    assert s["id_classes"] == list(range(8))
    assert {t["name"] for t in s["tests"] if t["group"] == "novel"} == {"mnist-8", "mnist-9"}


def test_a_suite_files_novel_set_is_streamed_as_a_new_class(data_dir, cache_dir, tmp_path, capsys):
    """A suite file's ``group = "novel"`` set (a folder of one class the classifier never saw, unlabelled)
    becomes one held-out class of the novelty protocol, named after the set; ``far`` sets are the junk."""
    from oodbench.benchmark.cli import main
    from oodbench.benchmark.data import datasets
    from oodbench.benchmark.evaluation.novelty_protocol import NOVEL_CODE_BASE

    fashion = datasets.load("fashionmnist", "test", data_dir, cache_dir)
    np.savez(tmp_path / "trousers.npz", x=fashion.x[fashion.y == 1][:300])
    suite = tmp_path / "novel.toml"
    suite.write_text("""name = "novel-demo"
max_test = 300
[id]
dataset = "mnist"
[model]
arch = "lenet"
recipe = "smoke"
[splits]
train = 2000
fit = 300
cal = 300
[[tests]]
name = "trousers"
group = "novel"
path = "trousers.npz"
[[tests]]
name = "gaussian"
group = "far"
dataset = "gaussian"
n = 300
""")
    out = tmp_path / "out"
    rc = main(["novelty", str(suite), "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--out", str(out),
               "--stream-seeds", "1", "--window", "100", "--before", "2", "--after", "2", "--detectors",
               "pytorch_ood.energy", "-q"])
    assert rc == 0, capsys.readouterr().err
    import json

    r = json.loads((out / "novelty.json").read_text())
    assert r["pool"]["novel_classes"] == [NOVEL_CODE_BASE]
    assert r["pool"]["class_names"] == {str(NOVEL_CODE_BASE): "trousers"}
    assert r["pool"]["junk_sets"] == ["gaussian"] and r["pool"]["novel_sets"] == ["trousers"]
    assert r["pool"]["sizes"]["trousers"] == 300
    md = (out / "novelty.md").read_text()
    assert "held-out classes trousers arrive" in md and "delay trousers" in md


def test_suite_file_refuses_a_shifted_novel_set(tmp_path):
    from oodbench.benchmark.data import suite_file

    p = tmp_path / "bad.toml"
    p.write_text('name = "bad"\n[id]\ndataset = "mnist"\n[model]\narch = "lenet"\n'
                 '[[tests]]\nname = "blurred"\ngroup = "novel"\nshift = "blur"\n')
    with pytest.raises(suite_file.SuiteFileError, match="group 'covariate'"):
        suite_file.read(p)
