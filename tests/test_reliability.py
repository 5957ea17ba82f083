"""Caches that never mix models, training that gives the same bytes twice, cache writes that cannot
fail a detector, and one training per key across processes (issue 12, findings 1-3; issue 14's
first "Done when" bullet)."""
import importlib.util
import inspect
import io
import json
import multiprocessing as mp
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from oodbench.benchmark import cache as cachemod, io as iomod, machine
from oodbench.benchmark.evaluation import runner, scoring
from oodbench.benchmark.evaluation.features import CORE, RepresentationStore
from oodbench.benchmark.evaluation.session import Session
from oodbench.benchmark.io import load_arrays, sha256_bytes, sha256_file
from oodbench.benchmark.models import architectures, checkpoints, recipe_for, training
from oodbench.benchmark.data import ImageSet
from oodbench.benchmark.models import generative as gencache


def _live_core(model, images):
    """What the network computes for ``images`` now (no cache)."""
    return RepresentationStore(model, "live", None).get(images, CORE)


# ---------------------------------------------------------------------------------------------------
# 1. same seed, same model
# ---------------------------------------------------------------------------------------------------
def test_same_recipe_twice_from_scratch_gives_identical_checkpoint_bytes(data_dir, tmp_path):
    """Two fresh caches, the global RNG and the thread count disturbed in between: same sha256."""
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = Session("mnist-smoke", 0, "cpu", tmp_path / "a", data_dir)
        meta_a = a.model_meta
        torch.rand(1000)  # whatever ran before must not matter
        torch.set_num_threads(2)  # nor the run's --threads: training uses the recipe's thread count
        b = Session("mnist-smoke", 0, "cpu", tmp_path / "b", data_dir, data=a.data)
        meta_b = b.model_meta
    finally:
        torch.set_num_threads(prev)
    print(f"\ncheckpoint sha256: {meta_a['sha256']} / {meta_b['sha256']}")
    assert not meta_a["cached"] and not meta_b["cached"]
    assert meta_a["sha256"] == meta_b["sha256"]
    pa = tmp_path / "a" / "models" / f"lenet-{meta_a['key']}.pt"
    pb = tmp_path / "b" / "models" / f"lenet-{meta_b['key']}.pt"
    assert sha256_file(pa) == sha256_file(pb) == meta_a["sha256"]
    assert meta_a["threads"] == 1 and meta_a["deterministic"] is True
    assert meta_a["cpu"]["kind"] == machine.cpu()["kind"]  # which kind of CPU trained it
    assert np.array_equal(a.store.get(a.data.fit, CORE)["logits"], b.store.get(b.data.fit, CORE)["logits"])
    # training leaves the caller's RNG where it was: the same draws follow a cold and a warm load
    torch.manual_seed(5)
    Session("mnist-smoke", 0, "cpu", tmp_path / "c", data_dir, data=a.data).model
    after_cold = torch.rand(3)
    torch.manual_seed(5)
    Session("mnist-smoke", 0, "cpu", tmp_path / "c", data_dir, data=a.data).model
    assert torch.equal(after_cold, torch.rand(3))


def _module_from(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class LeNet(architectures.LeNet):
    """The same network with one more operation in its features: other code, same name."""

    def feature_maps(self, x):
        return super().feature_maps(x) * 1.0


def test_checkpoint_key_changes_when_the_training_code_changes(tmp_path, monkeypatch):
    recipe = recipe_for("lenet", "smoke")
    checkpoint_key = checkpoints.checkpoint_key
    k0 = checkpoint_key("lenet", recipe, "data", 0)
    src = inspect.getsource(training)
    (tmp_path / "same.py").write_text(src)
    (tmp_path / "edited.py").write_text(src.replace("opt.step()", "opt.step()  # edited", 1))
    monkeypatch.setattr(checkpoints, "training", _module_from(tmp_path / "same.py", "same_training"), raising=False)
    assert checkpoint_key("lenet", recipe, "data", 0) == k0  # the source counts, not where it lives
    monkeypatch.setattr(checkpoints, "training", _module_from(tmp_path / "edited.py", "edited_training"),
                        raising=False)
    assert checkpoint_key("lenet", recipe, "data", 0) != k0
    monkeypatch.undo()
    assert checkpoint_key("lenet", recipe, "data", 0) == k0
    # the network's code, and the training thread count, are in the key too
    monkeypatch.setitem(architectures.ARCHITECTURES, "lenet", LeNet)
    assert checkpoint_key("lenet", recipe, "data", 0) != k0
    monkeypatch.undo()
    assert checkpoint_key("lenet", replace(recipe, threads=2), "data", 0) != k0


def test_generative_checkpoints_are_seeded_before_the_build(tmp_path):
    """gencache (VAE, WGAN): two fresh caches give the same initial and trained weights."""
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))

    def fit(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
        return {}

    def build():
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    metas = []
    for sub in ("a", "b"):
        torch.rand(17)  # other RNG use in between
        metas.append(gencache.load_or_train("test", {"n": 1}, "data", 3, tmp_path / sub, build, fit)[1])
    assert not metas[0]["cached"] and metas[0]["sha256"] == metas[1]["sha256"]
    again = gencache.load_or_train("test", {"n": 1}, "data", 3, tmp_path / "a", build, fit)[1]
    assert again["cached"] and again["sha256"] == metas[0]["sha256"]


# ---------------------------------------------------------------------------------------------------
# 2. caches keyed by the weights, not by the recipe
# ---------------------------------------------------------------------------------------------------
def _checkpoint(session) -> Path:
    return session.cache / "models" / f"{session.arch}-{session.model_meta['key']}.pt"


def test_other_weights_under_the_same_key_never_meet_the_old_representations(data_dir, tmp_path):
    """A checkpoint replaced by other weights (another run, another machine): features and scores are
    computed again from the new weights, never served from the old model's entries."""
    cache = tmp_path / "cache"
    old = Session("mnist-smoke", 0, "cpu", cache, data_dir)
    old_logits = old.store.get(old.data.fit, CORE)["logits"]
    old_scores = scoring.score_cached(old, "pytorch_ood.msp").scores
    # other weights, with a valid sidecar: what a concurrent or another machine's training leaves
    path = _checkpoint(old)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) if v.is_floating_point()
             else v for k, v in torch.load(path, weights_only=True).items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    path.write_bytes(buf.getvalue())
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["sha256"] = sha256_bytes(buf.getvalue())
    path.with_suffix(".json").write_text(json.dumps(meta))

    new = Session("mnist-smoke", 0, "cpu", cache, data_dir, data=old.data)
    assert new.model_meta["cached"] and new.model_meta["key"] == old.model_meta["key"]
    got = new.store.get(new.data.fit, CORE)["logits"]
    assert np.array_equal(got, _live_core(new.model, new.data.fit)["logits"])
    assert not np.array_equal(got, old_logits)
    res = scoring.score_cached(new, "pytorch_ood.msp")
    assert not res.meta["cached"]
    fresh = scoring.fit_and_score(new, "pytorch_ood.msp").scores
    assert all(np.array_equal(res.scores[k], fresh[k]) for k in fresh)
    assert not np.array_equal(res.scores["id"], old_scores["id"])


def test_truncated_checkpoint_is_retrained_and_derived_entries_follow_the_new_weights(data_dir, tmp_path,
                                                                                       monkeypatch):
    cache = tmp_path / "cache"
    old = Session("mnist-smoke", 0, "cpu", cache, data_dir)
    old_feats = old.store.get(old.data.fit, CORE)["features"]
    path = _checkpoint(old)
    path.write_bytes(path.read_bytes()[:1000])  # "fails its checksum; retraining"
    real = training.train

    def other_weights(model, *a, **k):  # a retraining that gives other weights (another torch, another CPU)
        log = real(model, *a, **k)
        with torch.no_grad():
            model.fc1.weight.mul_(1.5)
        return log

    monkeypatch.setattr(training, "train", other_weights)
    monkeypatch.setattr(checkpoints, "train", other_weights, raising=False)
    new = Session("mnist-smoke", 0, "cpu", cache, data_dir, data=old.data)
    assert not new.model_meta["cached"] and new.model_meta["sha256"] != old.model_meta["sha256"]
    got = new.store.get(new.data.fit, CORE)["features"]
    assert new.store.stats["cache_hits"] == 0
    assert np.array_equal(got, _live_core(new.model, new.data.fit)["features"])
    assert not np.array_equal(got, old_feats)


@pytest.mark.parametrize("damage", ["sidecar", "weights"])
def test_damaged_checkpoint_is_retrained_to_the_same_bytes(tmp_path, damage):
    """A corrupt ``.json`` sidecar or a truncated ``.pt`` is retrained (not a crash), to the same bytes."""
    train, _ = _small_sets()
    recipe = replace(recipe_for("lenet", "smoke"), batch_size=64)
    _, first = checkpoints.load_or_train("lenet", recipe, train, 0, tmp_path, progress=False)
    pt = tmp_path / "models" / f"lenet-{first['key']}.pt"
    if damage == "sidecar":
        pt.with_suffix(".json").write_text("{not json")
    else:
        pt.write_bytes(pt.read_bytes()[:500])
    _, again = checkpoints.load_or_train("lenet", recipe, train, 0, tmp_path, progress=False)
    assert not again["cached"] and again["sha256"] == first["sha256"] == sha256_file(pt)


# ---------------------------------------------------------------------------------------------------
# 3. a cache write error is not a detector failure
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-classifier"])
def test_read_only_cache_computes_and_reports_without_failures(data_dir, tmp_path, monkeypatch, capsys, warm):
    """Nothing can be written to the cache (cold: not even the checkpoint; warm: classifier and
    representations cached, scores not): the run computes, reports every detector, warns once."""
    cache = tmp_path / "ro"
    cache.mkdir()
    if warm:
        s = Session("mnist-smoke", 0, "cpu", cache, data_dir)
        for images in s.all_sets():
            s.store.ensure(images, {CORE})
    os.chmod(cache, 0o555)
    if os.access(cache, os.W_OK):  # root writes anyway: make every write into the cache fail as it would
        real = iomod.atomic_write

        def refuse(path, data):
            if Path(path).resolve().is_relative_to(cache.resolve()):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, data)

        monkeypatch.setattr(iomod, "atomic_write", refuse)
        monkeypatch.setattr(checkpoints, "atomic_write", refuse)
        monkeypatch.setattr(gencache, "atomic_write", refuse)
    monkeypatch.setattr(cachemod, "_REPORTED", set(), raising=False)
    try:
        dets = ["pytorch_ood.msp", "pytorch_ood.energy"]
        res = runner.evaluate("mnist-smoke", detectors=dets, seeds=[0], data_dir=data_dir, cache_dir=cache,
                              out=tmp_path / "out", threads=1, n_boot=0, progress=False)
    finally:
        os.chmod(cache, 0o755)
    df = res.table
    assert (df["status"] == "ok").all(), df[df["status"] != "ok"][["detector", "error"]]
    assert set(df[df["metric"] == "auroc"]["detector"]) == set(dets)
    out = capsys.readouterr().out
    assert out.count("cannot write the cache entry") == 1  # one warning, not one per entry
    assert not list((cache / "scores").rglob("*.npz")) and warm == bool(list(cache.rglob("*.pt")))


def test_score_cache_write_error_keeps_the_scores(data_dir, cache_dir, monkeypatch, capsys):
    from oodbench.benchmark.evaluation import scorecache

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scorecache, "save_arrays", full_disk)
    monkeypatch.setattr(scorecache, "load", lambda path, warn=print: None)  # a miss, even if cached by another test
    monkeypatch.setattr(cachemod, "_REPORTED", set(), raising=False)
    session = Session("mnist-smoke", 0, "cpu", cache_dir, data_dir)
    res = scoring.score_cached(session, "pytorch_ood.maxlogit")
    assert not res.meta["cached"] and len(res.scores["id"]) == len(session.data.id_test)
    assert "No space left on device" in capsys.readouterr().out


def test_entry_lock_nests_and_a_cache_without_lock_files_runs_unlocked(tmp_path, monkeypatch, capsys):
    entry = tmp_path / "scores" / "x.npz"
    with cachemod.entry_lock(entry):
        with cachemod.entry_lock(entry):  # the same process again (nested): no deadlock
            pass
    assert (tmp_path / "scores" / "x.npz.lock").exists()
    monkeypatch.setattr(cachemod, "_REPORTED", set())

    def refuse(*a, **k):  # a read-only cache folder as a user other than root sees it
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cachemod.os, "open", refuse)
    ran = 0
    for name in ("a.npz", "b.npz"):
        with cachemod.entry_lock(tmp_path / "ro" / name):
            ran += 1
        assert not cachemod.write_or_warn(lambda: refuse(), tmp_path / "ro" / name)
    out = capsys.readouterr().out
    assert ran == 2 and out.count("cannot lock") == 1 and out.count("cannot write") == 1


# ---------------------------------------------------------------------------------------------------
# 4. two processes, one cold cache: one training, consistent entries
# ---------------------------------------------------------------------------------------------------
def _small_sets():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (512, 28, 28), dtype=np.uint8)
    y = np.arange(512) % 10
    train = SimpleNamespace(x=x, y=y, checksum="synthetic-train")
    images = ImageSet("probe", x[:128], y[:128], "synthetic-probe")
    return train, images


def _cold_worker(cache, barrier, queue):
    torch.set_num_threads(1)
    train, images = _small_sets()
    recipe = replace(recipe_for("lenet", "smoke"), batch_size=64)
    barrier.wait()
    model, meta = checkpoints.load_or_train("lenet", recipe, train, 0, Path(cache), progress=False)
    store = RepresentationStore(model, meta["sha256"], Path(cache))
    store.get(images, CORE)
    queue.put({"cached": meta["cached"], "sha256": meta["sha256"], "passes": store.stats["forward_passes"]})


def _two_at_once(target, *args) -> list:
    """Start ``target(*args, barrier, queue)`` in two fresh processes released together; their results."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


def test_two_concurrent_cold_processes_train_once_and_leave_a_consistent_cache(tmp_path):
    got = _two_at_once(_cold_worker, str(tmp_path))
    assert sorted(g["cached"] for g in got) == [False, True]  # one trained, the other waited and reused
    assert got[0]["sha256"] == got[1]["sha256"]
    assert sum(g["passes"] for g in got) == 1  # one extraction
    # the cache is consistent: the checkpoint is what both used, the features are its features
    (pt,) = (tmp_path / "models").glob("lenet-*.pt")
    assert sha256_file(pt) == got[0]["sha256"]
    train, images = _small_sets()
    model = architectures.build("lenet", 1, 10)
    model.load_state_dict(torch.load(pt, weights_only=True))
    store = RepresentationStore(model.eval(), got[0]["sha256"], tmp_path)
    (entry,) = store.root.glob("*-core.npz")
    assert np.array_equal(load_arrays(entry)["logits"], _live_core(model, images)["logits"])


def _run_worker(cache, data_dir, barrier, queue):
    barrier.wait()
    res = runner.evaluate("mnist-smoke", detectors=RUN_DETECTORS, seeds=[0], data_dir=data_dir, cache_dir=cache,
                          threads=1, n_boot=0, progress=False, write=False)
    queue.put({"table": res.table.to_dict("list"), "trained": not res.record["models"][0]["cached"]})


RUN_DETECTORS = ["pytorch_ood.msp", "pytorch_ood.knn"]


def _values(table) -> dict:
    import pandas as pd

    df = pd.DataFrame(table)
    df = df[df["status"] == "ok"]
    return {(r.detector, r.test_set, r.metric): r.value for r in df.itertuples()}


def test_two_concurrent_cold_runs_give_the_results_of_one_run(data_dir, tmp_path):
    shared = tmp_path / "shared"
    got = _two_at_once(_run_worker, str(shared), str(data_dir))
    one = runner.evaluate("mnist-smoke", detectors=RUN_DETECTORS, seeds=[0], data_dir=data_dir,
                          cache_dir=tmp_path / "alone", threads=1, n_boot=0, progress=False, write=False)
    want = _values(one.table.to_dict("list"))
    assert len(want) > 20
    assert _values(got[0]["table"]) == want and _values(got[1]["table"]) == want
    assert sorted(g["trained"] for g in got) == [False, True]  # one trained, the other waited and reused
    # one checkpoint, and every cached representation is what that checkpoint computes
    (pt,) = (shared / "models").glob("lenet-*.pt")
    session = Session("mnist-smoke", 0, "cpu", shared, data_dir)
    assert session.model_meta["cached"] and sha256_file(pt) == session.model_meta["sha256"]
    entries = sorted(session.store.root.glob("*-core.npz"))
    sets = session.all_sets() + [session.data.train]  # the baselines are fitted on the training split
    assert len(entries) == len(sets)
    by_path = {session.store._path(images, CORE): images for images in sets}
    for entry in entries:
        assert np.array_equal(load_arrays(entry)["logits"], _live_core(session.model, by_path[entry])["logits"])


def test_score_key_follows_the_code_of_a_detector_run_inside_another(monkeypatch):
    """``stattest+vae`` runs the ``vae`` detector inside it: editing the VAE's code must change its score key
    (or a cached score made with the old VAE would be served), and leave the keys of the others alone."""
    from types import SimpleNamespace

    from oodbench.adapters import registry
    from oodbench.benchmark.evaluation import scorecache

    ck = SimpleNamespace(checksum="c")
    data = SimpleNamespace(train=ck, fit=ck, cal=ck, id_test=ck, tests=[])
    combo, plain = registry.create("stattest+vae"), registry.create("stattest+knn")
    vae_cls = registry.get("vae")
    before = {n: scorecache.key(n, d, "rep", data) for n, d in (("stattest+vae", combo), ("stattest+knn", plain))}
    real = scorecache.code_hash
    monkeypatch.setattr(scorecache, "code_hash", lambda cls: "edited" if cls is vae_cls else real(cls))
    assert scorecache.key("stattest+vae", combo, "rep", data) != before["stattest+vae"]
    assert scorecache.key("stattest+knn", plain, "rep", data) == before["stattest+knn"]
    assert scorecache.extras_code(plain) == {}


def test_score_key_follows_the_modules_a_detector_imports(tmp_path, monkeypatch):
    """A detector's score key hashes its module and the oodbench modules it imports (transitively, function-
    level imports included): editing a helper such as ``oodbench.detectors.stattest`` must change the key
    of the adapter built on it, or a cached score made with the old helper would be served."""
    import sys

    from oodbench.adapters import registry
    from oodbench.benchmark import cache
    from oodbench.benchmark.evaluation import scorecache

    files = {p.as_posix().split("oodbench/")[-1] for p in cache.module_closure(registry.get("stattest").__module__,
                                                                                 stop=(registry.__name__,))}
    assert {"adapters/lab/stattest.py", "detectors/stattest.py", "detectors/pvalues.py", "adapters/base.py"} <= files
    assert "adapters/pytorch_ood.py" not in files  # the registry's imports are not followed
    pod = {p.as_posix().split("oodbench/")[-1] for p in cache.module_closure("oodbench.adapters.pytorch_ood")}
    assert "adapters/common.py" in pod and not any(f.startswith("detectors/") for f in pod)

    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("def f():\n    return 1\n")
    (pkg / "deep.py").write_text("X = 1\n")
    (pkg / "det.py").write_text("from pkgx import helper\n\n\nclass D:\n    def g(self):\n"
                                "        import pkgx.deep\n        return helper.f() + pkgx.deep.X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in [m for m in sys.modules if m == "pkgx" or m.startswith("pkgx.")]:
        monkeypatch.delitem(sys.modules, m)
    assert [p.name for p in cache.module_closure("pkgx.det", package="pkgx")] == ["det.py", "helper.py", "deep.py"]
    # the real chain: an edit of detectors/stattest.py (seen through Path.read_bytes) changes the key of
    # the stattest adapter and leaves the pytorch-ood wrappers' alone
    from pathlib import Path

    st, vim = registry.get("stattest"), registry.get("pytorch_ood.vim")
    before = scorecache.code_hash(st), scorecache.code_hash(vim)
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: real(self) + (
        b"# edited" if self.as_posix().endswith("oodbench/detectors/stattest.py") else b""))
    assert scorecache.code_hash(st) != before[0]
    assert scorecache.code_hash(vim) == before[1]
