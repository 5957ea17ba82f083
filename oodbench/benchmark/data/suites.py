"""Benchmark suites, declared as data.

A suite names its in-distribution (ID) set, the classifier (architecture + training recipe, per
device), how the ID training set is split, and its OOD test sets grouped as ``near``, ``far`` and
``covariate``. :func:`get` returns the declaration; :func:`materialise` loads it into arrays.

ID splits: the official training set is split once, with the suite's split seed, into ``train``
(trains the classifier), ``fit`` (ID reference data for detectors, e.g. class means, KNN banks,
per-class CDFs) and ``cal`` (held-out calibration: conformal p-values, temperature, thresholds).
The official test set is the ID test set. Sizes and seed are recorded with every result.

Each ``*-smoke`` suite is the same suite on small subsets with a one-epoch recipe, for tests.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from oodbench.benchmark import data as datamod
from oodbench.benchmark.data import openset, shifts as shiftmod

COVARIATE_SHIFTS = ("rotate", "noise", "blur", "contrast", "jpeg")
COVARIATE_SEVERITIES = (2, 4)

#: Tiny ImageNet classes that are CIFAR-10 classes (cats, dogs, frogs, birds, cars, trucks, a ship),
#: removed from the cifar10 suite's near-OOD set, as OpenOOD removes such overlap.
TIN_CIFAR10_OVERLAP = {
    "cat": ["n02123045", "n02123394", "n02124075"],
    "dog": ["n02085620", "n02094433", "n02099601", "n02099712", "n02106662", "n02113799"],
    "frog": ["n01641577", "n01644900"],
    "bird": ["n01855672", "n02002724", "n02056570", "n02058221"],
    "automobile": ["n02814533", "n03670208", "n04285008"],
    "truck": ["n03796401", "n03977966"],
    "ship": ["n03662601"],
}


def _covariate(id_name):
    return [{"name": f"{id_name}-{s}-{v}", "group": "covariate", "dataset": id_name, "shift": s, "severity": v}
            for s in COVARIATE_SHIFTS for v in COVARIATE_SEVERITIES]


def _grey_suite(id_name, near_first):
    """The 28×28 grey suites: ID ``id_name``; near-OOD the other digit-like set and notMNIST."""
    return {
        "id": id_name,
        "shape": (28, 28),
        "model": {"default": "lenet"},
        "splits": {"train": 50000, "fit": 5000, "cal": 5000, "seed": 0},
        "tests": [
            {"name": near_first, "group": "near", "dataset": near_first},
            {"name": "notmnist", "group": "near", "dataset": "notmnist"},
            {"name": "omniglot", "group": "far", "dataset": "omniglot"},
            {"name": "cifar10-grey", "group": "far", "dataset": "cifar10"},
            {"name": "tinyimagenet-grey", "group": "far", "dataset": "tinyimagenet"},
            {"name": "dtd-grey", "group": "far", "dataset": "dtd"},
            {"name": "gaussian", "group": "far", "dataset": "gaussian", "n": 5000},
            {"name": "uniform", "group": "far", "dataset": "uniform", "n": 5000},
            *_covariate(id_name),
        ],
    }


SUITES = {
    "mnist": _grey_suite("mnist", "fashionmnist"),
    "fashionmnist": _grey_suite("fashionmnist", "mnist"),
    "cifar10": {
        "id": "cifar10",
        "shape": (32, 32, 3),
        "model": {"default": "airbench_wide", "cuda": "resnet18"},
        "splits": {"train": 40000, "fit": 5000, "cal": 5000, "seed": 0},
        "tests": [
            {"name": "tinyimagenet", "group": "near", "dataset": "tinyimagenet",
             "exclude_classes": sorted(w for ws in TIN_CIFAR10_OVERLAP.values() for w in ws)},
            {"name": "cifar100", "group": "near", "dataset": "cifar100", "optional": True},
            {"name": "mnist-rgb", "group": "far", "dataset": "mnist"},
            {"name": "fashionmnist-rgb", "group": "far", "dataset": "fashionmnist"},
            {"name": "notmnist-rgb", "group": "far", "dataset": "notmnist"},
            {"name": "dtd", "group": "far", "dataset": "dtd"},
            {"name": "svhn", "group": "far", "dataset": "svhn", "optional": True},
            {"name": "places365", "group": "far", "dataset": "places365", "optional": True},
            {"name": "gaussian", "group": "far", "dataset": "gaussian", "n": 5000},
            {"name": "uniform", "group": "far", "dataset": "uniform", "n": 5000},
            *_covariate("cifar10"),
        ],
    },
}


#: mnist on OpenOOD v1.5's own LeNet-5 and MNIST recipe (issue: reproduce OpenOOD's published MNIST table)
SUITES["mnist-openood"] = {**_grey_suite("mnist", "fashionmnist"), "model": {"default": "lenet5_openood"}}

#: open-set suite (novelty detection, lab_methods.md §6): LeNet on digits 0-7, digits 8 and 9 held out
SUITES["mnist-open"] = {**_grey_suite("mnist", "fashionmnist"), "id_classes": list(range(8)), "tests": [
    *({"name": f"mnist-{c}", "group": "novel", "dataset": "mnist", "held_out": [c]} for c in (8, 9)),
    *(t for t in _grey_suite("mnist", "fashionmnist")["tests"] if t["name"] in ("omniglot", "dtd-grey", "gaussian", "uniform"))]}

#: open-set suite on CIFAR-10 (novelty detection): the CPU classifier on 6 known classes (airplane,
#: automobile, bird, cat, deer, dog), frog, horse, ship and truck held out — 6 known / 4 unknown, as the
#: open-set splits of the literature (Neal et al. 2018); junk: textures, notMNIST and noise
SUITES["cifar10-open"] = {**SUITES["cifar10"], "model": {"default": "airbench"}, "id_classes": list(range(6)),
                          "tests": [
    *({"name": f"cifar10-{n}", "group": "novel", "dataset": "cifar10", "held_out": [c]}
      for c, n in ((6, "frog"), (7, "horse"), (8, "ship"), (9, "truck"))),
    *(t for t in SUITES["cifar10"]["tests"] if t["name"] in ("dtd", "notmnist-rgb", "gaussian", "uniform"))]}


def _smoke(name):
    s = copy.deepcopy(SUITES[name])
    s["splits"] = {"train": 3000, "fit": 500, "cal": 500, "seed": 0}
    s["max_test"] = 300
    s["recipe_override"] = "smoke"
    s["model"] = {"default": s["model"]["default"]}
    # a handful of OOD sets keeps the smoke suites fast while covering every group
    keep = {"near": 2, "far": 3, "covariate": 2, "novel": 2}
    tests, seen = [], {}
    for t in s["tests"]:
        g = t["group"]
        if seen.get(g, 0) < keep[g] and not t.get("optional"):
            seen[g] = seen.get(g, 0) + 1
            tests.append(t)
    s["tests"] = tests
    return s


for _n in list(SUITES):
    SUITES[_n + "-smoke"] = _smoke(_n)
for _n, _s in SUITES.items():
    _s["name"] = _n


def names() -> list[str]:
    return list(SUITES)


def get(name: str) -> dict:
    """A built-in suite by name, or the suite declared in a TOML file (:mod:`.suite_file`) by its path."""
    if str(name).endswith(".toml"):
        from oodbench.benchmark.data import suite_file

        return suite_file.read(name)
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {names()}")
    return copy.deepcopy(SUITES[name])


def model_name(suite: dict, device: str = "cpu") -> str:
    dev = "cuda" if str(device).startswith("cuda") else "default"
    return suite["model"].get(dev, suite["model"]["default"])


@dataclass
class TestSet:
    name: str
    group: str  # "id", "near", "far" or "covariate"
    images: datamod.ImageSet


@dataclass
class Materialised:
    suite: dict
    train: datamod.ImageSet
    fit: datamod.ImageSet
    cal: datamod.ImageSet
    id_test: datamod.ImageSet
    tests: list  # list[TestSet], OOD sets in declaration order
    skipped: list  # list[(name, reason)]
    checksums: dict


def split_indices(n_total: int, splits: dict) -> dict[str, np.ndarray]:
    """Seeded disjoint split of ``range(n_total)`` into train / fit / cal of the declared sizes."""
    need = splits["train"] + splits["fit"] + splits["cal"]
    if need > n_total:
        raise ValueError(f"splits need {need} images, the ID training set has {n_total}")
    perm = np.random.default_rng(splits["seed"]).permutation(n_total)
    a, b = splits["train"], splits["train"] + splits["fit"]
    return {"train": np.sort(perm[:a]), "fit": np.sort(perm[a:b]), "cal": np.sort(perm[b:need])}


def materialise(suite: dict | str, data_dir=None, cache=None, progress=None) -> Materialised:
    """Load every set of ``suite`` as uint8 arrays in the suite's image shape."""
    if isinstance(suite, str):
        suite = get(suite)
    shape = tuple(suite["shape"])
    if "id_source" in suite:  # a suite file (or oodbench.evaluate): the user's own ID data
        from oodbench.benchmark.data import suite_file

        full, parts, id_test = suite_file.id_sets(suite, data_dir, cache)
    else:
        full = datamod.load(suite["id"], "train", data_dir, cache)
        idx = split_indices(len(full), suite["splits"])
        parts = {k: full.subset(v, f"{suite['id']}:{k}") for k, v in idx.items()}
        id_test = datamod.load(suite["id"], "test", data_dir, cache)
    if suite.get("id_classes") is not None:  # open-set suite (see data/openset.py)
        full_test, id_test = id_test, openset.restrict(id_test, suite["id_classes"])
        parts = {k: openset.restrict(v, suite["id_classes"]) for k, v in parts.items()}
    cap = suite.get("max_test")
    rng = np.random.default_rng(12345)

    def capped(s: datamod.ImageSet) -> datamod.ImageSet:
        if cap and len(s) > cap:
            return s.subset(np.sort(rng.choice(len(s), cap, replace=False)), s.name)
        return s

    id_test = capped(id_test)
    tests, skipped = [], []
    sums = {"id_train": full.checksum, "id_test": id_test.checksum}
    for t in suite["tests"]:
        try:
            if t.get("held_out"):
                s = capped(openset.held_out(full_test, t["name"], t["held_out"]))
            elif t.get("dataset") in ("gaussian", "uniform"):
                s = datamod.load(t["dataset"], "test", data_dir, n=min(t.get("n", 5000), cap or 10 ** 9),
                                 shape=shape, seed=suite["splits"]["seed"])
            elif "path" in t or "memory" in t:  # a user's image folder, .npz or arrays
                from oodbench.benchmark.data import suite_file

                s = capped(suite_file.load_test(t, shape, full.classes))
            elif t.get("shift"):
                s = id_test
                x = shiftmod.apply(s.x, t["shift"], t["severity"], seed=suite["splits"]["seed"])
                s = datamod.ImageSet(t["name"], x, s.y, f"{s.checksum}:{t['shift']}{t['severity']}", s.classes)
            else:
                s = datamod.load(t["dataset"], "test", data_dir, cache)
                if t.get("exclude_classes"):
                    excl = set(t["exclude_classes"])
                    keep = np.array([s.classes[c] not in excl for c in s.y])
                    s = s.subset(np.flatnonzero(keep), s.name)
                s = capped(s)
                x = datamod.convert(s.x, shape)
                s = datamod.ImageSet(t["name"], x, s.y, s.checksum, s.classes)
        except datamod.DatasetUnavailable as e:
            skipped.append((t["name"], str(e)))
            continue
        tests.append(TestSet(t["name"], t["group"], s))
        sums[t["name"]] = s.checksum
    return Materialised(suite, parts["train"], parts["fit"], parts["cal"], id_test, tests, skipped, sums)

