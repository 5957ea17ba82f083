"""Where each built-in dataset comes from: its public archives, their published MD5s, the files the harness reads.

Sources (URLs and MD5s copied from torchvision 0.29.1's dataset classes where torchvision has the set;
``tests/test_download.py`` checks that they still agree with the installed torchvision):

==============  ===============================================================  =================================
name            archive(s)                                                       files written into the data folder
==============  ===============================================================  =================================
mnist           torchvision ``MNIST.mirrors`` + ``resources`` (4 IDX ``.gz``)     ``MNIST/raw/*.gz`` (unchanged)
fashionmnist    torchvision ``FashionMNIST`` (4 IDX ``.gz``)                      ``FashionMNIST/raw/*.gz``
cifar10         torchvision ``CIFAR10``: ``cifar-10-python.tar.gz``               ``cifar-10-batches-py/*``
notmnist        Y. Bulatov's ``notMNIST_small.tar.gz``                           ``notmnist.npz``
omniglot        ``images_background_small{1,2}.zip`` from torchvision's           ``omniglot_small.npz``
                ``Omniglot.download_url_prefix`` (B. Lake's GitHub repository)
tinyimagenet    CS231n's ``tiny-imagenet-200.zip``                                ``tinyimagenet_val32.npz``
dtd             torchvision ``DTD``: ``dtd-r1.0.1.tar.gz``                        ``dtd_subset32.npz``
cifar100        torchvision ``CIFAR100``: ``cifar-100-python.tar.gz`` (optional)  ``cifar-100-python/{test,meta}``
svhn            torchvision ``SVHN`` test split: ``test_32x32.mat`` (optional)    ``test_32x32.mat``
places365       torchvision ``Places365``: the standard file lists + ``val_256``  ``places365_32.npz``
                (small images; optional; 2.2 GB)
==============  ===============================================================  =================================

The Omniglot MD5s are those of the two zips in ``brendenlake/omniglot`` at commit ``057f034`` (torchvision
publishes MD5s only for the full ``images_background`` / ``images_evaluation`` zips, which the offline copy
does not use).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archive:
    """One file to fetch: tried at each URL in turn, accepted only when its MD5 is ``md5`` (when known)."""

    filename: str
    urls: tuple
    md5: str | None


def _mirrored(mirrors, resources) -> list:
    return [Archive(f, tuple(m + f for m in mirrors), md5) for f, md5 in resources]


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
MNIST_MD5 = (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
             ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
             ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))
FASHION_MD5 = (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
               ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
               ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
               ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))
OMNIGLOT_PREFIX = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
PLACES_BASE = "http://data.csail.mit.edu/places/places365/"

#: name, published MD5, URL: one line per archive (a name may have several)
_TABLE = f"""
cifar10      c58f30108f718f92721af3b95e74349a  https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
notmnist     c9890a473a9769fda4bdf314aaf500dd  http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz
omniglot     e704a628b5459e08445c13499850abc4  {OMNIGLOT_PREFIX}images_background_small1.zip
omniglot     b75a71a51d3b13f821f212756fe481fd  {OMNIGLOT_PREFIX}images_background_small2.zip
tinyimagenet 90528d7ca1a48142e341f4ef8d21d0de  http://cs231n.stanford.edu/tiny-imagenet-200.zip
dtd          fff73e5086ae6bdbea199a49dfb8a4c1  https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz
cifar100     eb9058c3a382ffc7106e4002c42a8d85  https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz
svhn         eb5a983be6a315427106f1b164d9cef3  http://ufldl.stanford.edu/housenumbers/test_32x32.mat
places365    35a0585fee1fa656440f3ab298f8479c  {PLACES_BASE}filelist_places365-standard.tar
places365    e27b17d8d44f4af9a78502beb927f808  {PLACES_BASE}val_256.tar
"""

ARCHIVES = {"mnist": _mirrored(MNIST_MIRRORS, MNIST_MD5), "fashionmnist": _mirrored(FASHION_MIRRORS, FASHION_MD5)}
for _name, _md5, _url in (line.split() for line in _TABLE.strip().splitlines()):
    ARCHIVES.setdefault(_name, []).append(Archive(_url.rsplit("/", 1)[1], (_url,), _md5))
del _name, _md5, _url

#: ``oodbench download all`` fetches these (every set the built-in suites need) ...
REQUIRED = ("mnist", "fashionmnist", "cifar10", "notmnist", "omniglot", "tinyimagenet", "dtd")
#: ... and these only when named (the suites skip them, with the reason, when absent).
OPTIONAL = ("cifar100", "svhn", "places365")

_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz")
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")

#: The files ``oodbench download NAME`` writes (relative to the data folder).
WRITES = {
    "mnist": [f"MNIST/raw/{f}" for f in _IDX],
    "fashionmnist": [f"FashionMNIST/raw/{f}" for f in _IDX],
    "cifar10": [f"cifar-10-batches-py/{f}" for f in CIFAR10_BATCHES],
    "notmnist": ["notmnist.npz"],
    "omniglot": ["omniglot_small.npz"],
    "tinyimagenet": ["tinyimagenet_val32.npz"],
    "dtd": ["dtd_subset32.npz"],
    "cifar100": ["cifar-100-python/test", "cifar-100-python/meta"],
    "svhn": ["test_32x32.mat"],
    "places365": ["places365_32.npz"],
}

#: Other files that hold a dataset (the offline copy's CIFAR-10), for naming the fix of a bad file.
ALSO_READS = {"cifar10": ["cifar10_jpeg.npz"]}

#: MD5s published for files the loader reads as they are (torchvision's ``CIFAR10.train_list`` etc.):
#: such a file is accepted when it matches, even without a download manifest.
PUBLISHED_MD5 = {
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}


def dataset_of(rel: str) -> str:
    """The ``oodbench download`` name that provides data file ``rel`` (e.g. ``"MNIST/raw/x.gz"`` -> ``"mnist"``)."""
    for name, files in WRITES.items():
        if rel in files or rel in ALSO_READS.get(name, ()):
            return name
    return "all"
