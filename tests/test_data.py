import gzip
import shutil

import numpy as np
import pytest

from oodbench.benchmark import data
from oodbench.benchmark.data import shifts
from oodbench.benchmark.data import suites
from oodbench.benchmark.io import CorruptCacheError, load_arrays, save_arrays


def test_every_dataset_loads_with_its_shape(data_dir):
    for name, spec in data.DATASETS.items():
        if spec.get("optional") or name == "cifar10":
            continue
        s = data.load(name, "test", data_dir, n=50, shape=(28, 28))
        assert s.x.dtype == np.uint8 and s.y.dtype == np.int64 and len(s) == len(s.y) > 0, name
        if spec["shape"] != "any":
            assert s.x.shape[1:] == tuple(spec["shape"]), name
    m = data.load("mnist", "train", data_dir)
    assert m.x.shape == (60000, 28, 28) and set(np.unique(m.y)) == set(range(10))
    c = data.load("cifar10", "test", data_dir)
    assert c.x.shape == (10000, 32, 32, 3)


def _copy_mnist(data_dir, tmp_path):
    dst = tmp_path / "d"
    shutil.copytree(data_dir / "MNIST", dst / "MNIST")
    for p in (dst / "MNIST" / "raw").iterdir():
        p.chmod(0o644)
    return dst


def test_reencoded_copy_is_accepted(data_dir, tmp_path):
    dst = _copy_mnist(data_dir, tmp_path)
    f = dst / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    raw = gzip.open(f).read()
    with gzip.open(f, "wb", compresslevel=1) as g:  # other bytes, same arrays
        g.write(raw)
    s = data.load("mnist", "test", dst)
    assert len(s) == 10000


def test_corrupt_file_is_named_with_its_checksum(data_dir, tmp_path):
    dst = _copy_mnist(data_dir, tmp_path)
    f = dst / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.open(f).read())
    raw[100] = (raw[100] + 1) % 10
    with gzip.open(f, "wb") as g:
        g.write(bytes(raw))
    with pytest.raises(data.DatasetError, match="t10k-labels-idx1-ubyte.gz.*corrupt.*f7ae60f9"):
        data.load("mnist", "test", dst)


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetError, match=r"missing \(expected sha256 [0-9a-f]{64}\).*oodbench download"):
        data.load("mnist", "test", tmp_path)
    with pytest.raises(data.DatasetError, match="notmnist.npz is missing"):
        data.load("notmnist", "test", tmp_path)


def test_optional_sets_are_reported_unavailable(tmp_path):
    for n in ("cifar100", "svhn", "places365"):
        with pytest.raises(data.DatasetUnavailable, match="not in the offline data"):
            data.load(n, "test", tmp_path)


def test_noise_is_seeded():
    a = data.load("gaussian", n=20, shape=(28, 28), seed=1)
    b = data.load("gaussian", n=20, shape=(28, 28), seed=1)
    c = data.load("gaussian", n=20, shape=(28, 28), seed=2)
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
    assert data.load("uniform", n=5, shape=(32, 32, 3)).x.shape == (5, 32, 32, 3)


def test_convert_grey_and_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    g = data.convert(rgb, (28, 28))
    assert g.shape == (4, 28, 28) and g.dtype == np.uint8
    back = data.convert(g, (32, 32, 3))
    assert back.shape == (4, 32, 32, 3) and np.array_equal(back[..., 0], back[..., 2])


@pytest.mark.parametrize("shift", shifts.SHIFTS)
def test_shifts_are_deterministic_and_grow_with_severity(shift, data_dir):
    x = data.load("mnist", "test", data_dir).x[:64]
    a = shifts.apply(x, shift, 2, seed=0)
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert np.array_equal(a, shifts.apply(x, shift, 2, seed=0))
    d2 = np.abs(a.astype(int) - x).mean()
    d5 = np.abs(shifts.apply(x, shift, 5, seed=0).astype(int) - x).mean()
    assert 0 < d2 < d5
    with pytest.raises(ValueError):
        shifts.apply(x, shift, 6)


def test_splits_are_disjoint_and_recorded(data_dir):
    s = suites.get("mnist")
    idx = suites.split_indices(60000, s["splits"])
    assert {k: len(v) for k, v in idx.items()} == {"train": 50000, "fit": 5000, "cal": 5000}
    allidx = np.concatenate(list(idx.values()))
    assert len(np.unique(allidx)) == len(allidx)
    assert np.array_equal(idx["fit"], suites.split_indices(60000, s["splits"])["fit"])


def test_cifar10_near_ood_excludes_overlapping_classes(data_dir):
    t = next(t for t in suites.get("cifar10")["tests"] if t["name"] == "tinyimagenet")
    assert "n03662601" in t["exclude_classes"] and "n02124075" in t["exclude_classes"]
    classes = data.tinyimagenet_classes(data_dir)
    assert set(t["exclude_classes"]) <= set(classes)


def test_every_suite_declares_all_groups():
    for n in suites.names():
        s = suites.get(n)
        assert {t["group"] for t in s["tests"]} == {"near", "far", "covariate"}, n


def test_corrupt_cache_entry_is_detected(tmp_path):
    p = tmp_path / "a.npz"
    save_arrays(p, {"x": np.arange(10)})
    assert np.array_equal(load_arrays(p)["x"], np.arange(10))
    b = bytearray(p.read_bytes())
    b[-30] ^= 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(CorruptCacheError, match="a.npz"):
        load_arrays(p)
