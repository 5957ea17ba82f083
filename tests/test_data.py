import gzip
import pickle
import re
import shlex
import shutil
import struct

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
        groups = {"far", "novel"} if s.get("id_classes") else {"near", "far", "covariate"}  # open-set: junk + held-out
        assert {t["group"] for t in s["tests"]} == groups, n


def test_corrupt_cache_entry_is_detected(tmp_path):
    p = tmp_path / "a.npz"
    save_arrays(p, {"x": np.arange(10)})
    assert np.array_equal(load_arrays(p)["x"], np.arange(10))
    b = bytearray(p.read_bytes())
    b[-30] ^= 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(CorruptCacheError, match="a.npz"):
        load_arrays(p)


# --- no code execution from the data folder; every decoding error names the file and a command that exists ---

def _commands_parse(message: str) -> None:
    """Every `oodbench ...` command quoted in an error message is accepted by the CLI's parser."""
    from oodbench.benchmark.cli import build_parser

    commands = re.findall(r"`(oodbench [^`]+)`", message)
    assert commands, message
    for c in commands:
        build_parser().parse_args(shlex.split(c)[1:])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this creates the marker file
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("rel,name", [("cifar-10-batches-py/test_batch", "cifar10"),
                                      ("cifar-100-python/test", "cifar100")])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, rel, name):
    marker = tmp_path / "marker"
    p = tmp_path / "d" / rel
    p.parent.mkdir(parents=True)
    p.write_bytes(pickle.dumps({"data": _RunsCode(str(marker)), "labels": [0], "fine_labels": [0]}, protocol=2))
    with pytest.raises(data.DatasetError, match=rf"{rel}.*global (io|builtins).open.*refused") as e:
        data.load(name, "test", tmp_path / "d")
    assert not marker.exists()
    _commands_parse(str(e.value))


def _gz_cases():
    labels = gzip.compress(struct.pack(">II", 2049, 10000) + bytes(10000))
    crc = bytearray(labels)
    crc[-8] ^= 1
    deflate = bytearray(gzip.compress(struct.pack(">II", 2049, 10000) + bytes(range(100)) * 100))
    deflate[30] ^= 0xFF
    return {"truncated stream": labels[: len(labels) // 2], "bad CRC": bytes(crc), "corrupt deflate": bytes(deflate),
            "not gzip": b"not a gzip file",
            "wrong IDX magic": gzip.compress(struct.pack(">II", 2050, 10000) + bytes(10000)),
            "labels shorter than the header": gzip.compress(struct.pack(">II", 2049, 10000) + bytes(9999)),
            "images shorter than the header": gzip.compress(struct.pack(">IIII", 2051, 10000, 28, 28) + bytes(784))}


@pytest.mark.parametrize("case", list(_gz_cases()))
def test_corrupt_gz_names_the_file_and_a_valid_command(data_dir, tmp_path, case):
    raw = tmp_path / "d" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = "t10k-images-idx3-ubyte.gz" if case.startswith("images") else "t10k-labels-idx1-ubyte.gz"
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if f == bad:
            (raw / f).write_bytes(_gz_cases()[case])
        else:
            (raw / f).symlink_to(data_dir / "MNIST" / "raw" / f)
    with pytest.raises(data.DatasetError, match=re.escape(str(raw / bad))) as e:
        data.load("mnist", "test", tmp_path / "d")
    assert "oodbench download mnist --data-dir" in str(e.value)
    _commands_parse(str(e.value))


@pytest.mark.parametrize("case", ["truncated", "bad CRC", "missing key"])
def test_corrupt_npz_names_the_file_and_a_valid_command(data_dir, tmp_path, case):
    src = (data_dir / "notmnist.npz").read_bytes()
    p = tmp_path / "notmnist.npz"
    if case == "truncated":
        p.write_bytes(src[: len(src) // 2])
    elif case == "bad CRC":
        b = bytearray(src)
        b[len(b) // 2] ^= 0xFF
        p.write_bytes(bytes(b))
    else:
        with np.load(data_dir / "notmnist.npz") as z:
            np.savez(p, x_test=z["x_test"], classes=z["classes"])
    with pytest.raises(data.DatasetError, match="notmnist.npz") as e:
        data.load("notmnist", "test", tmp_path)
    assert "oodbench download notmnist --data-dir" in str(e.value)
    _commands_parse(str(e.value))


def test_missing_and_unavailable_sets_name_valid_commands(tmp_path):
    for name in ("mnist", "cifar10", "tinyimagenet", "omniglot", "cifar100", "svhn", "places365"):
        with pytest.raises(data.DatasetError) as e:
            data.load(name, "test", tmp_path)
        assert f"oodbench download {name} --data-dir" in str(e.value), name
        _commands_parse(str(e.value))
