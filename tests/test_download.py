"""`oodbench download`: every source format converted offline from small stand-in archives.

Each test builds, in a temporary folder, an archive with the file names and layout of the real source
(e.g. a tiny ``tiny-imagenet-200.zip``), serves it in place of the network (``download._open`` is replaced
and the published MD5s by the stand-ins' own), runs the download and loads the result through
``oodbench.benchmark.data.load``. No test touches the network.
"""
import dataclasses
import gzip
import hashlib
import importlib
import io
import json
import pickle
import re
import struct
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodbench.benchmark import data
from oodbench.benchmark.cli import main
from oodbench.benchmark.data import builders, sources, suites
from oodbench.benchmark.io import array_digest, sha256_file

dl = importlib.import_module("oodbench.benchmark.data.download")
RNG = np.random.default_rng(0)


def _tar(path: Path, members: dict) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as t:
        for name, b in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(b)
            t.addfile(info, io.BytesIO(b))
    return path


def _zip(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, b in members.items():
            z.writestr(name, b)
    return path


def _img(a: np.ndarray, fmt: str, mode=None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(a)
    (im.convert(mode) if mode else im).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _rand(*shape) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def serve(monkeypatch):
    """``serve({file name: local path})``: downloads of those names read the local files; each archive's
    expected MD5 becomes its stand-in's. Returns the list of URLs fetched."""
    fetched = []

    def install(files: dict):
        def fake_open(url):
            name = url.rsplit("/", 1)[-1]
            if name not in files:
                raise urllib.error.URLError("no stand-in for " + url)
            fetched.append(url)
            return open(files[name], "rb"), files[name].stat().st_size

        monkeypatch.setattr(dl, "_open", fake_open)
        for name, archives in sources.ARCHIVES.items():
            md5 = {a.filename: hashlib.md5(files[a.filename].read_bytes()).hexdigest()
                   for a in archives if a.filename in files}
            monkeypatch.setitem(sources.ARCHIVES, name,
                                [dataclasses.replace(a, md5=md5.get(a.filename, a.md5)) for a in archives])
        return fetched
    return install


def _download(name, root):
    (r,) = dl.download([name], root, progress=False, log=lambda *a: None)
    assert r.status == "written", r.error
    return r


def _check_manifest(root: Path, rel: str, dataset: str) -> dict:
    entry = json.loads((root / "oodbench-downloads.json").read_text())["files"][rel]
    assert entry["dataset"] == dataset and entry["sha256"] == sha256_file(root / rel)
    assert entry["bytes"] == (root / rel).stat().st_size and re.match(r"\d{4}-\d\d-\d\dT", entry["date"])
    assert entry["sources"] and all(s["url"].startswith("http") for s in entry["sources"])
    return entry


def _idx_gz(a: np.ndarray) -> bytes:
    head = struct.pack(">I", 2051 if a.ndim == 3 else 2049) + b"".join(struct.pack(">I", n) for n in a.shape)
    return gzip.compress(head + a.tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_idx_sets(serve, tmp_path, name, folder):
    arrays = {"train-images-idx3-ubyte.gz": _rand(12, 28, 28),
              "train-labels-idx1-ubyte.gz": np.arange(12, dtype=np.uint8) % 10,
              "t10k-images-idx3-ubyte.gz": _rand(5, 28, 28), "t10k-labels-idx1-ubyte.gz": np.arange(5, dtype=np.uint8)}
    src = tmp_path / "src"
    src.mkdir()
    for f, a in arrays.items():
        (src / f).write_bytes(_idx_gz(a))
    fetched = serve({f: src / f for f in arrays})
    root = tmp_path / "data"
    _download(name, root)
    assert fetched[0].startswith(sources.ARCHIVES[name][0].urls[0].rsplit("/", 1)[0])
    tr, te = data.load(name, "train", root), data.load(name, "test", root)
    assert np.array_equal(tr.x, arrays["train-images-idx3-ubyte.gz"]) and tr.y.dtype == np.int64
    assert te.x.shape == (5, 28, 28) and list(te.y) == [0, 1, 2, 3, 4]
    entry = _check_manifest(root, f"{folder}/raw/t10k-images-idx3-ubyte.gz", name)
    assert entry["arrays"] == {"idx": array_digest(arrays["t10k-images-idx3-ubyte.gz"])}
    assert not (root / dl.ARCHIVE_DIR).exists()  # archives removed after conversion


def py2_batch(data: np.ndarray, labels) -> bytes:
    """A CIFAR batch as Python 2's cPickle wrote them (protocol 2, byte strings, numpy.core globals)."""
    def s(b):
        return b"U" + bytes([len(b)]) + b
    raw = data.tobytes()
    out = b"\x80\x02}(" + s(b"data") + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b")
    out += b"\x87R(K\x01M" + struct.pack("<H", len(data)) + b"M\x00\x0c\x86cnumpy\ndtype\n" + s(b"u1")
    out += b"K\x00K\x01\x87R(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb" + s(b"labels")
    out += b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu."
    return out


def test_cifar10_batches(serve, tmp_path):
    batches = {f: _rand(4, 3072) for f in sources.CIFAR10_BATCHES[:-1]}
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    members = {f"cifar-10-batches-py/{f}": py2_batch(a, [1, 2, 3, 9]) for f, a in batches.items()}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": names}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html/>"
    serve({"cifar-10-python.tar.gz": _tar(tmp_path / "cifar-10-python.tar.gz", members)})
    root = tmp_path / "data"
    r = _download("cifar10", root)
    assert sorted(rel for rel, _ in r.files) == sorted(f"cifar-10-batches-py/{f}" for f in sources.CIFAR10_BATCHES)
    te, tr = data.load("cifar10", "test", root), data.load("cifar10", "train", root)
    x = batches["test_batch"].reshape(4, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(te.x, x) and list(te.y) == [1, 2, 3, 9] and te.classes == names
    assert tr.x.shape == (20, 32, 32, 3) and tr.y.dtype == np.int64
    entry = _check_manifest(root, "cifar-10-batches-py/test_batch", "cifar10")
    assert set(entry["arrays"]) == {"data", "labels"}


def test_cifar100_test_set(serve, tmp_path):
    test = _rand(6, 3072)
    members = {"cifar-100-python/test": pickle.dumps({"data": test, "fine_labels": [0, 5, 99, 1, 2, 3],
                                                      "coarse_labels": [0] * 6}, protocol=4),
               "cifar-100-python/meta": pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=2),
               "cifar-100-python/train": b"not read"}
    serve({"cifar-100-python.tar.gz": _tar(tmp_path / "cifar-100-python.tar.gz", members)})
    root = tmp_path / "data"
    _download("cifar100", root)
    s = data.load("cifar100", "test", root)
    assert s.x.shape == (6, 32, 32, 3) and list(s.y) == [0, 5, 99, 1, 2, 3]
    assert not (root / "cifar-100-python" / "train").exists()
    _check_manifest(root, "cifar-100-python/test", "cifar100")


def test_svhn_mat(serve, tmp_path):
    from scipy.io import savemat

    x = _rand(32, 32, 3, 7)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [3], [4], [5], [10]], np.uint8)})
    serve({"test_32x32.mat": tmp_path / "test_32x32.mat"})
    root = tmp_path / "data"
    _download("svhn", root)
    s = data.load("svhn", "test", root)
    assert s.x.shape == (7, 32, 32, 3) and np.array_equal(s.x[2], x[..., 2]) and list(s.y) == [0, 1, 2, 3, 4, 5, 0]
    _check_manifest(root, "test_32x32.mat", "svhn")


def test_notmnist_sample(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(builders, "NOTMNIST_PER_LETTER", 3)
    members = {}
    for letter in "ABCDEFGHIJ":
        for i in range(4 if letter != "C" else 3):
            members[f"notMNIST_small/{letter}/{letter}{i}.png"] = _img(_rand(28, 28), "PNG")
    members["notMNIST_small/C/empty.png"] = b""  # skipped, as in Flanagan's script
    members["notMNIST_small/C/C2.png"] = b"\x89PNG broken"  # drawn (C has 3 files), undecodable: dropped
    serve({"notMNIST_small.tar.gz": _tar(tmp_path / "notMNIST_small.tar.gz", members)})
    root = tmp_path / "data"
    r = _download("notmnist", root)
    assert "29 glyphs" in r.note and "identical to the offline copy: no" in r.note and "1 undecodable" in r.note
    s = data.load("notmnist", "test", root)
    assert s.x.shape == (29, 28, 28) and s.x.dtype == np.uint8 and s.classes == list("ABCDEFGHIJ")
    assert np.bincount(s.y).tolist() == [3, 3, 2, 3, 3, 3, 3, 3, 3, 3]
    assert sorted(_check_manifest(root, "notmnist.npz", "notmnist")["arrays"]) == ["classes", "x_test", "y_test"]


def test_omniglot_small_sets(serve, tmp_path):
    def drawing():
        return np.where(RNG.random((105, 105)) < 0.9, 255, 0).astype(np.uint8)
    z1 = {f"images_background_small1/{a}/character0{c}/0{c}0{i}_0{i}.png": _img(drawing(), "PNG", "1")
          for a in ("Greek", "Balinese") for c in (1, 2) for i in (1, 2)}
    z2 = {k.replace("small1", "small2"): v for k, v in z1.items() if "/Greek/" in k}  # Greek is in both zips
    z2["images_background_small2/Tagalog/character01/0901_01.png"] = _img(drawing(), "PNG", "1")
    serve({"images_background_small1.zip": _zip(tmp_path / "images_background_small1.zip", z1),
           "images_background_small2.zip": _zip(tmp_path / "images_background_small2.zip", z2)})
    root = tmp_path / "data"
    _download("omniglot", root)
    s = data.load("omniglot", "test", root)
    assert s.classes == ["Balinese/character01", "Balinese/character02", "Greek/character01", "Greek/character02",
                         "Tagalog/character01"]
    assert s.x.shape == (9, 28, 28) and list(s.y) == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    with np.load(root / "omniglot_small.npz") as z:
        x = z["x_test"]
        assert x.shape == (9, 105, 105) and set(np.unique(x)) <= {0, 255}
        assert s.x.mean() < 64 < x.mean()  # x_test_28 is inverted: ink is bright, like MNIST


def test_tinyimagenet_val(serve, tmp_path):
    wnids = ["n01443537", "n01629819", "n01641577"]
    words = "n00001740\tentity\nn01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n" \
            "n01641577\tbullfrog, Rana catesbeiana\n"
    order = [(2, "n01641577"), (0, "n01443537"), (1, "n01443537"), (3, "n01629819")]  # not in order of N
    members = {"tiny-imagenet-200/wnids.txt": "\n".join(wnids) + "\n", "tiny-imagenet-200/words.txt": words,
               "tiny-imagenet-200/val/val_annotations.txt": "".join(f"val_{n}.JPEG\t{w}\t0\t0\t63\t63\n"
                                                                     for n, w in order)}
    flat = {n: np.full((64, 64, 3), 40 * n + 20, np.uint8) for n, _ in order}
    for n, _ in order:
        members[f"tiny-imagenet-200/val/images/val_{n}.JPEG"] = _img(flat[n], "JPEG", "L" if n == 1 else None)
    members["tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG"] = _img(_rand(64, 64, 3), "JPEG")
    serve({"tiny-imagenet-200.zip": _zip(tmp_path / "tiny-imagenet-200.zip", members)})
    root = tmp_path / "data"
    _download("tinyimagenet", root)
    s = data.load("tinyimagenet", "test", root)
    assert s.x.shape == (4, 32, 32, 3) and list(s.y) == [0, 0, 2, 1] and s.classes == wnids
    assert np.abs(s.x.astype(int).mean(axis=(1, 2, 3)) - [20, 60, 100, 140]).max() <= 2  # 2x2 mean of flat images
    assert data.tinyimagenet_classes(root) == wnids
    with np.load(root / "tinyimagenet_val32.npz") as z:
        assert list(z["class_words"]) == ["goldfish, Carassius auratus", "European fire salamander",
                                          "bullfrog, Rana catesbeiana"]


def test_dtd_subset(serve, tmp_path):
    members = {"dtd/labels/train1.txt": b"banded/banded_0001.jpg\n"}
    for cls in builders.DTD_CLASSES + ("zigzagged",):
        for i, (w, h) in enumerate([(48, 40), (40, 64)]):
            members[f"dtd/images/{cls}/{cls}_000{i + 1}.jpg"] = _img(_rand(h, w, 3), "JPEG")
    serve({"dtd-r1.0.1.tar.gz": _tar(tmp_path / "dtd-r1.0.1.tar.gz", members)})
    root = tmp_path / "data"
    _download("dtd", root)
    s = data.load("dtd", "test", root)
    assert s.x.shape == (20, 32, 32, 3) and s.classes == list(builders.DTD_CLASSES)
    assert list(s.y) == [i // 2 for i in range(20)]
    # 48x40: shorter side 40 -> 32, long side round(48 * 0.8) = 38, centre crop from column 3
    im = Image.open(io.BytesIO(members["dtd/images/banded/banded_0001.jpg"])).convert("RGB")
    want = np.asarray(im.resize((38, 32), Image.BILINEAR))[:, 3:35]
    assert np.array_equal(s.x[0], want)


def test_places365_subset(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(builders, "PLACES365_N", 3)
    cats = "".join(f"/{c[0]}/{c} {i}\n" for i, c in enumerate(["airfield", "bakery", "canyon"]))
    val = "".join(f"Places365_val_0000000{i}.jpg {i % 3}\n" for i in range(1, 6))
    lists = _tar(tmp_path / "filelist_places365-standard.tar",
                 {"categories_places365.txt": cats.encode(), "places365_val.txt": val.encode(),
                  "places365_train_standard.txt": b""})
    images = _tar(tmp_path / "val_256.tar", {f"val_256/Places365_val_0000000{i}.jpg": _img(_rand(256, 256, 3), "JPEG")
                                             for i in (5, 3, 1, 2, 4)})
    serve({"filelist_places365-standard.tar": lists, "val_256.tar": images})
    root = tmp_path / "data"
    _download("places365", root)
    s = data.load("places365", "test", root)
    assert s.x.shape == (3, 32, 32, 3) and list(s.y) == [1, 2, 0]
    with np.load(root / "places365_32.npz") as z:
        assert list(z["classes"]) == ["/a/airfield", "/b/bakery", "/c/canyon"]


def _notmnist_root(serve, tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(builders, "NOTMNIST_PER_LETTER", 1)
    members = {f"notMNIST_small/{c}/{c}.png": _img(_rand(28, 28), "PNG") for c in "ABCDEFGHIJ"}
    serve({"notMNIST_small.tar.gz": _tar(tmp_path / "notMNIST_small.tar.gz", members)})
    root = tmp_path / "data"
    _download("notmnist", root)
    return root


def test_downloaded_file_is_checked(serve, tmp_path, monkeypatch):
    root = _notmnist_root(serve, tmp_path, monkeypatch)
    p = root / "notmnist.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(p, **arrays)  # other bytes (no compression), same arrays: accepted by the manifest's array checksums
    assert len(data.load("notmnist", "test", root)) == 10
    arrays["x_test"][0, 0, 0] ^= 1
    np.savez_compressed(p, **arrays)  # matches neither the offline copy nor the manifest
    with pytest.raises(data.DatasetError, match=r"notmnist.npz is corrupt.*offline copy.*oodbench-downloads.json"):
        data.load("notmnist", "test", root)


def test_present_sets_are_not_fetched_again(serve, tmp_path, monkeypatch):
    root = _notmnist_root(serve, tmp_path, monkeypatch)
    monkeypatch.setattr(dl, "_open", lambda url: pytest.fail("fetched again"))
    (r,) = dl.download(["notmnist"], root, progress=False, log=lambda *a: None)
    assert r.status == "present"


def test_archive_with_wrong_md5_is_rejected(serve, tmp_path, monkeypatch):
    serve({"test_32x32.mat": _tar(tmp_path / "test_32x32.mat", {"x": b"1"})})
    monkeypatch.setitem(sources.ARCHIVES, "svhn", [dataclasses.replace(sources.ARCHIVES["svhn"][0], md5="0" * 32)])
    (r,) = dl.download(["svhn"], tmp_path / "data", progress=False, log=lambda *a: None)
    assert r.status == "failed" and "test_32x32.mat: MD5" in r.error and "expected the published 000" in r.error
    assert not (tmp_path / "data" / "test_32x32.mat").exists()


def test_offline_is_one_error_line_per_set(monkeypatch, tmp_path, capsys):
    def offline(url):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))
    monkeypatch.setattr(dl, "_open", offline)
    assert main(["download", "DTD", "notmnist", "--data-dir", str(tmp_path / "d")]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "error: dtd: cannot download dtd-r1.0.1.tar.gz" in err and "needs the network" in err
    assert "error: notmnist: cannot download notMNIST_small.tar.gz" in err
    assert not (tmp_path / "d" / dl.ARCHIVE_DIR).exists()


def test_all_means_every_set_the_suites_need():
    assert dl.expand(["all", "svhn", "mnist"]) == list(sources.REQUIRED) + ["svhn"]
    names = {t["dataset"] for n in suites.names() for t in suites.get(n)["tests"]}
    names |= {suites.get(n)["id"] for n in suites.names()}
    assert names - {"gaussian", "uniform"} == set(sources.REQUIRED) | set(sources.OPTIONAL)


def test_sources_agree_with_torchvision():
    tv = pytest.importorskip("torchvision.datasets")
    assert sources.MNIST_MIRRORS == tuple(tv.MNIST.mirrors) and sources.MNIST_MD5 == tuple(tv.MNIST.resources)
    assert sources.FASHION_MIRRORS == tuple(tv.FashionMNIST.mirrors)
    assert sources.FASHION_MD5 == tuple(tv.FashionMNIST.resources)
    arch = {n: a[0] for n, a in sources.ARCHIVES.items()}
    for name, cls in (("cifar10", tv.CIFAR10), ("cifar100", tv.CIFAR100)):
        assert (arch[name].urls[0], arch[name].md5) == (cls.url, cls.tgz_md5)
        for f, md5 in cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]:
            assert sources.PUBLISHED_MD5.get(f"{cls.base_folder}/{f}", md5) == md5
    assert [arch["svhn"].urls[0], arch["svhn"].filename, arch["svhn"].md5] == tv.SVHN.split_list["test"]
    assert (arch["dtd"].urls[0], arch["dtd"].md5) == (tv.DTD._URL, tv.DTD._MD5)
    assert sources.OMNIGLOT_PREFIX == tv.Omniglot.download_url_prefix + "/"
    places = sources.ARCHIVES["places365"]
    assert sources.PLACES_BASE == tv.Places365._BASE_URL
    assert (places[0].filename, places[0].md5) == tv.Places365._DEVKIT_META["standard"]
    assert (places[1].filename, places[1].md5) == tv.Places365._IMAGES_META[("val", True)]


def test_damaged_archive_is_a_clear_error(serve, tmp_path):
    good = _tar(tmp_path / "x.tar.gz", {f"dtd/images/banded/banded_000{i}.jpg": _img(_rand(40, 40, 3), "JPEG")
                                        for i in range(5)}).read_bytes()
    (tmp_path / "dtd-r1.0.1.tar.gz").write_bytes(good[: len(good) // 2])
    serve({"dtd-r1.0.1.tar.gz": tmp_path / "dtd-r1.0.1.tar.gz"})
    (r,) = dl.download(["dtd"], tmp_path / "data", progress=False, log=lambda *a: None)
    assert r.status == "failed"
    assert re.search(r"cannot convert dtd from .*dtd-r1.0.1.tar.gz \((EOFError|ReadError)", r.error)
    assert "run the download again" in r.error and not (tmp_path / "data" / "dtd_subset32.npz").exists()
