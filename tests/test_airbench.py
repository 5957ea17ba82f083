"""The ``airbench`` classifier (after airbench94) and its training loop, on tiny random data (seconds):
reproducible bytes, the classifier contract detectors rely on, the frozen whitening layer, and the
checkpoint key that follows the training module's source."""
import hashlib
import importlib.util
import inspect
import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from oodbench.benchmark.data.datasets import ImageSet
from oodbench.benchmark.models import airbench, architectures, checkpoints, recipe_for
from oodbench.detectors.taps import module_taps

WIDTHS = (8, 16, 16)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 256)


def _recipe(**kw):
    # 2 epochs of 4 steps: the whitening bias trains in the first only, a Lookahead update falls mid-run
    return replace(recipe_for("airbench"), epochs=2, batch_size=64, threads=1, whiten_bias_epochs=1, **kw)


def _train(data, seed=0, **kw):
    x, y = data
    return airbench.train_new("airbench", 3, 10, _recipe(), x, y, seed, progress=False, widths=WIDTHS, **kw)


def _sha(model) -> str:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def test_same_seed_same_bytes_and_evaluating_each_epoch_changes_nothing(data):
    m1, log = _train(data)
    m2, _ = _train(data)
    seen = []

    def on_epoch(epoch, seconds, model):  # what the benchmark script does: evaluate a copy, no grad
        with torch.no_grad():
            seen.append((epoch, model.training, model(torch.rand(4, 3, 32, 32)).shape))

    m3, _ = _train(data, on_epoch=on_epoch)
    assert _sha(m1) == _sha(m2) == _sha(m3)
    assert seen == [(1, False, (4, 10)), (2, False, (4, 10))]
    assert _sha(_train(data, seed=1)[0]) != _sha(m1)
    assert log["steps"] == 8 and log["deterministic"] and log["threads"] == 1
    assert not m1.training and all(p.is_contiguous() for p in m1.parameters())


def test_classifier_contract(data):
    model, _ = _train(data)
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        maps = model.feature_maps(x)
        logits, feats = model.forward_features(x)
        assert maps.shape == (5, WIDTHS[-1], 3, 3)  # spatial extent for ReAct/ASH/RankFeat/Gram
        assert feats.shape == (5, WIDTHS[-1]) and logits.shape == (5, 10)
        assert torch.equal(model.pool(maps), feats) and torch.equal(model.features(x), feats)
        assert torch.allclose(model.head(maps), logits) and torch.allclose(model(x), logits)
        assert torch.allclose(model.fc(feats), logits)  # detectors that read fc.weight / fc.bias
    assert isinstance(model.fc, torch.nn.Linear) and torch.count_nonzero(model.fc.bias) == 0
    taps = module_taps(model, x, model.tap_layers)
    assert [taps[n].shape for n in model.tap_layers] == [(5, 2 * WIDTHS[0]), (5, 2 * WIDTHS[1]),
                                                         (5, 2 * WIDTHS[2]), (5, 10)]
    # the default network (airbench94's widths) builds as a run builds it
    assert architectures.build("airbench", 3, 10).fc.in_features == 256


def test_whitening_weights_are_set_once_and_frozen(data, monkeypatch):
    made = []
    real = airbench.whitening_weights
    monkeypatch.setattr(airbench, "whitening_weights", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    model, _ = _train(data)
    assert len(made) == 1 and made[0].shape == (24, 3, 2, 2)
    assert torch.equal(model.whiten.weight, made[0])  # never trained, nor moved by the Lookahead average
    assert torch.equal(made[0][:12], -made[0][12:])
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn) == 6 and all(torch.all(m.weight == 1) for m in bn)  # BN scales frozen at 1
    assert any(torch.count_nonzero(m.bias) for m in bn)  # BN shifts trained
    assert torch.count_nonzero(model.whiten.bias)  # trained in the first epoch


def test_whitening_weights_whiten_the_patches():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(40, 3, 8, 8, generator=g) @ torch.randn(8, 8, generator=g)  # correlated columns
    w = airbench.whitening_weights(imgs, eps=0.0)
    p = torch.nn.functional.unfold(imgs, 2).transpose(1, 2).reshape(-1, 12)
    z = p @ w[:12].flatten(1).T
    assert torch.allclose(z.T @ z / len(z), torch.eye(12), atol=1e-3)


def test_lr_schedule_and_decoupled_groups():
    r = recipe_for("airbench")
    total = 100
    assert airbench.lr_factor(0, total, r) == pytest.approx(0.2)
    assert airbench.lr_factor(23, total, r) == pytest.approx(1.0)
    assert airbench.lr_factor(total, total, r) == pytest.approx(0.07)
    model = architectures.AirbenchNet(widths=WIDTHS)
    bn, other = airbench.sgd_groups(model, r, 1024)
    assert bn["lr"] == pytest.approx(64 * other["lr"]) and other["lr"] == pytest.approx(11.5 / (1024 * (1 + 1 / 0.15)))
    # weight decay per step = lr * weight_decay, the same for both groups (not scaled by bias_scaler)
    assert bn["lr"] * bn["weight_decay"] == pytest.approx(other["lr"] * other["weight_decay"])
    assert len(bn["params"]) == 6 and not any(p is model.whiten.weight or p is model.fc.bias for p in other["params"])


def _module_from(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_checkpoint_key_includes_the_airbench_training_module(tmp_path, monkeypatch):
    code, small = checkpoints.training_code("airbench"), checkpoints.training_code("smallcnn")
    assert code != small and checkpoints.own_training("airbench") is airbench
    assert checkpoints.own_training("smallcnn") is None
    src = inspect.getsource(airbench)
    (tmp_path / "same.py").write_text(src)
    (tmp_path / "edited.py").write_text(src.replace("opt.step()", "opt.step()  # edited", 1))
    monkeypatch.setattr(checkpoints, "airbench", _module_from(tmp_path / "same.py", "same_airbench"))
    assert checkpoints.training_code("airbench") == code  # the source counts, not where it lives
    monkeypatch.setattr(checkpoints, "airbench", _module_from(tmp_path / "edited.py", "edited_airbench"))
    assert checkpoints.training_code("airbench") != code
    assert checkpoints.training_code("smallcnn") == small  # other architectures' keys do not move


def test_load_or_train_dispatches_to_the_airbench_loop_and_reloads(tmp_path):
    rng = np.random.default_rng(1)
    train = ImageSet("tiny", rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64),
                     "tiny-data", [str(i) for i in range(10)])
    recipe = replace(recipe_for("airbench"), epochs=1, batch_size=32, threads=1)
    model, meta = checkpoints.load_or_train("airbench", recipe, train, 0, tmp_path, progress=False)
    assert not meta["cached"] and "init_seconds" in meta and meta["steps"] == 2
    again, meta2 = checkpoints.load_or_train("airbench", recipe, train, 0, tmp_path, progress=False)
    assert meta2["cached"] and meta2["sha256"] == meta["sha256"]
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_bfloat16_autocast_trains_float32_weights_reproducibly(data):
    x, y = data
    rec = _recipe(autocast="bfloat16")
    m1, _ = airbench.train_new("airbench", 3, 10, rec, x, y, 0, progress=False, widths=WIDTHS)
    m2, _ = airbench.train_new("airbench", 3, 10, rec, x, y, 0, progress=False, widths=WIDTHS)
    assert _sha(m1) == _sha(m2) != _sha(_train(data)[0])  # reproducible, and not the float32 training
    assert all(v.dtype == torch.float32 for v in m1.state_dict().values() if v.is_floating_point())
    with torch.no_grad():
        assert m1(torch.rand(2, 3, 32, 32)).dtype == torch.float32  # evaluated (and seen) in float32
    with pytest.raises(ValueError, match="autocast"):
        airbench.train_new("airbench", 3, 10, _recipe(autocast="float16"), x, y, 0, progress=False, widths=WIDTHS)


def test_airbench_wide_is_airbench95s_network_trained_by_the_airbench_loop(tmp_path):
    model = architectures.build("airbench_wide", 3, 10)
    assert isinstance(model, architectures.AirbenchNet) and model.fc.in_features == 384
    assert model.block1.conv1.out_channels == 128
    assert checkpoints.own_training("airbench_wide") is airbench
    assert checkpoints.training_code("airbench_wide") != checkpoints.training_code("airbench")
    assert recipe_for("airbench_wide").autocast == "bfloat16" and recipe_for("airbench").autocast is None
    rng = np.random.default_rng(2)
    train = ImageSet("tiny", rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64),
                     "tiny-data", [str(i) for i in range(10)])
    recipe = replace(recipe_for("airbench_wide"), epochs=1, batch_size=32, threads=1)
    trained, meta = checkpoints.load_or_train("airbench_wide", recipe, train, 0, tmp_path, progress=False)
    again, meta2 = checkpoints.load_or_train("airbench_wide", recipe, train, 0, tmp_path, progress=False)
    assert not meta["cached"] and meta2["cached"] and meta2["sha256"] == meta["sha256"]
    assert type(again) is architectures.AirbenchWideNet
