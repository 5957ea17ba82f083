"""Suites declared in a TOML file: ``oodbench run my-suite.toml``, ``suites.get("my-suite.toml")``.

A suite file is read into the same kind of declaration as the built-in suites (:mod:`.suites`), so the
Session and the runner run it unchanged::

    name = "my-suite"
    [id]
    dataset = "mnist"          # a built-in set with a training split, or
    # path = "data/train"      # an image folder with one sub-folder per class, or an .npz with x and y
    # test_path = "data/test"  # the ID test set (else a seeded hold-out of path, [splits] test images)
    # fit_path / cal_path      # or the ID fit and cal sets given separately (then test_path too)
    # channels = 3             # 1 (grey) or 3 (RGB); default: 1 when every ID image is grey
    [model]
    arch = "lenet"             # a built-in recipe trained by the harness (recipe = "smoke": one epoch), or
    # torchscript = "model.pt" # a TorchScript classifier, or
    # factory = "my_pkg.nets:make"  and  weights = "w.pt"
    # features = "layer4"  /  taps = ["layer2", "layer3"]  /  input_size = [32, 32]  /  mean = [...]  /  std = [...]
    [splits]                   # optional: train / fit / cal (and test) sizes and the seed
    [[tests]]
    name = "printed-digits"
    group = "covariate"        # near | far | covariate | novel (images of one class the classifier never
                               # saw: `oodbench novelty` streams it as a new class; far sets are its junk)
    path = "data/printed"      # image folder (with or without class sub-folders) or .npz; or
    # dataset = "omniglot"     # a built-in set; or shift = "blur" and severity = 2 (of the ID test set)
    labels = true              # ID labels are valid: accuracy is computed

Paths are relative to the suite file. Every field is checked: an unknown key, a missing or mistyped field
or a missing file raises :class:`SuiteFileError` naming the file, the field and what is expected.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from oodbench.benchmark.data import datasets as datamod
from oodbench.benchmark.data import shifts as shiftmod
from oodbench.benchmark.data import user_images

GROUPS = ("near", "far", "covariate", "novel")
TOP = {"name": str, "description": str, "max_test": int, "id": dict, "model": dict, "splits": dict, "tests": list}
ID = {"dataset": str, "path": str, "test_path": str, "fit_path": str, "cal_path": str, "train_path": str,
      "channels": int}
MODEL = {"arch": str, "recipe": str, "torchscript": str, "factory": str, "weights": str, "features": str,
         "taps": list, "input_size": list, "mean": list, "std": list, "name": str}
SPLITS = {"train": int, "fit": int, "cal": int, "test": int, "seed": int}
TEST = {"name": str, "group": str, "path": str, "dataset": str, "shift": str, "severity": int, "labels": bool,
        "n": int}
_TYPE = {str: "a string", int: "an integer", bool: "true or false", dict: "a table", list: "an array"}


class SuiteFileError(user_images.UserInputError):
    """A suite file is malformed; the message names the file, the field and what is expected."""


class _Checker:
    def __init__(self, file: Path):
        self.file = file

    def fail(self, where: str, msg: str):
        raise SuiteFileError(f"{self.file}: {where}: {msg}")

    def table(self, d, schema: dict, where: str, required=()) -> dict:
        if not isinstance(d, dict):
            self.fail(where, f"expected a table, got {type(d).__name__}")
        for k, v in d.items():
            if k not in schema:
                self.fail(_at(where, k), f"unknown key (known keys: {', '.join(schema)})")
            t = schema[k]
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                self.fail(_at(where, k), f"expected {_TYPE[t]}, got {v!r}")
        for k in required:
            if k not in d:
                self.fail(_at(where, k), f"missing (required: {', '.join(required)})")
        return d

    def one_of(self, d: dict, keys, where: str) -> str:
        got = [k for k in keys if k in d]
        if len(got) != 1:
            self.fail(where, f"expected exactly one of {', '.join(keys)}, got {', '.join(got) or 'none'}")
        return got[0]

    def only_with(self, d: dict, keys, need: str, where: str):
        for k in keys:
            if k in d:
                self.fail(_at(where, k), f"only allowed with {need}")

    def path(self, d: dict, k: str, where: str, kind: str = "any") -> str:
        p = Path(d[k]).expanduser()
        p = p if p.is_absolute() else (self.file.parent / p)
        ok = p.is_dir() or p.suffix == ".npz" and p.is_file() if kind == "images" else p.is_file()
        if not ok:
            what = "an image folder or an .npz file" if kind == "images" else "a file"
            self.fail(_at(where, k), f"expected {what}; {p} does not exist" if not p.exists()
                      else f"expected {what}, got {p}")
        return str(p.resolve())


def _at(where: str, k: str) -> str:
    return f"{where}.{k}" if where else k


def read(path) -> dict:
    """The suite declaration of the TOML file at ``path``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise SuiteFileError(f"suite file {file} does not exist")
    try:
        raw = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SuiteFileError(f"{file}: not valid TOML: {e}") from e
    return declare(raw, file)


def declare(raw: dict, file: Path) -> dict:
    """Check the parsed TOML ``raw`` of ``file`` field by field and build the suite declaration."""
    c = _Checker(Path(file))
    c.table(raw, TOP, "", required=("name", "id", "model", "tests"))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", raw["name"]):
        c.fail("name", "expected letters, digits, '.', '_', '+' or '-' (it names the results folder), "
                       f"got {raw['name']!r}")
    idd = c.table(raw["id"], ID, "id")
    mod = c.table(raw["model"], MODEL, "model")
    splits = c.table(raw.get("splits", {}), SPLITS, "splits")
    for k, v in splits.items():
        if v < 0:
            c.fail(f"splits.{k}", f"expected an integer >= 0, got {v}")
    kind = c.one_of(idd, ("dataset", "path", "fit_path"), "id")
    suite: dict = {"name": raw["name"], "source_file": str(c.file)}
    if "max_test" in raw:
        if raw["max_test"] < 1:
            c.fail("max_test", f"expected an integer >= 1, got {raw['max_test']}")
        suite["max_test"] = raw["max_test"]
    model_kind = c.one_of(mod, ("arch", "torchscript", "factory"), "model")
    src, channels, native, n_train = _id_source(c, idd, kind)
    size = _size(c, mod, model_kind, native)
    suite.update(id=idd.get("dataset", raw["name"] + "-id"), id_source=src,
                 shape=tuple(size) + ((3,) if channels == 3 else ()))
    suite["model"] = _model(c, mod, model_kind, channels)
    if mod.get("recipe") == "smoke":
        suite["recipe_override"] = "smoke"
    suite["splits"] = _splits(c, splits, kind, idd, n_train)
    suite["tests"] = _tests(c, raw["tests"], suite)
    return suite


def _id_source(c: _Checker, idd: dict, kind: str):
    """``(id_source, channels, native (H, W), images in the training source)``."""
    if kind == "dataset":
        c.only_with(idd, ("test_path", "cal_path", "train_path", "channels"), "path or fit_path", "id")
        name = idd["dataset"]
        trainable = [n for n, d in datamod.DATASETS.items() if "train" in d["splits"]]
        if name not in trainable:
            c.fail("id.dataset", f"expected a built-in set with a training split ({', '.join(trainable)}), "
                                 f"got {name!r}")
        shape = datamod.DATASETS[name]["shape"]
        return {"dataset": name}, (3 if len(shape) == 3 else 1), shape[:2], None
    if kind == "path":
        c.only_with(idd, ("cal_path", "train_path"), "fit_path", "id")
        src = {"path": c.path(idd, "path", "id", "images")}
        if "test_path" in idd:
            src["test"] = {"path": c.path(idd, "test_path", "id", "images")}
    else:
        for k in ("cal_path", "test_path"):
            if k not in idd:
                c.fail(f"id.{k}", "missing (required with id.fit_path)")
        src = {part: {"path": c.path(idd, f"{part}_path", "id", "images")}
               for part in ("fit", "cal", "test", "train") if f"{part}_path" in idd}
    first = {"path": src["path"]} if "path" in src else src["fit"]
    try:
        (h, w), ch = user_images.probe(first)
    except user_images.UserDataError as e:
        c.fail("id", str(e))
    if "channels" in idd:
        if idd["channels"] not in (1, 3):
            c.fail("id.channels", f"expected 1 (grey) or 3 (RGB), got {idd['channels']}")
        ch = idd["channels"]
    n = None
    if kind == "path":
        p = Path(src["path"])
        n = len(user_images._npz(p)[0]) if p.suffix == ".npz" else sum(map(len, user_images.folder_layout(p)[1]))
    return src, ch, (h, w), n


def _size(c: _Checker, mod: dict, model_kind: str, native) -> tuple:
    if "input_size" in mod:
        s = mod["input_size"]
        if len(s) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s):
            c.fail("model.input_size", f"expected [height, width] (two positive integers), got {s!r}")
        return tuple(s)
    if mod.get("arch") == "lenet":
        return (28, 28)
    return tuple(native)


def _model(c: _Checker, mod: dict, kind: str, channels: int) -> dict:
    if kind == "arch":
        from oodbench.benchmark.models.architectures import ARCHITECTURES

        c.only_with(mod, ("weights", "features", "taps", "mean", "std", "name"), "torchscript or factory", "model")
        if mod["arch"] not in ARCHITECTURES:
            c.fail("model.arch", f"expected one of {', '.join(ARCHITECTURES)}, got {mod['arch']!r}")
        if mod.get("recipe", "default") not in ("default", "smoke"):
            c.fail("model.recipe", f"expected 'default' or 'smoke', got {mod['recipe']!r}")
        return {"default": mod["arch"]}
    c.only_with(mod, ("recipe",), "arch", "model")
    spec: dict = {}
    if kind == "torchscript":
        c.only_with(mod, ("weights",), "factory", "model")
        spec["torchscript"] = c.path(mod, "torchscript", "model")
        default_name = Path(spec["torchscript"]).stem
    else:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", mod["factory"]):
            c.fail("model.factory", f"expected 'package.module:function', got {mod['factory']!r}")
        spec["factory"] = mod["factory"]
        spec["base"] = str(c.file.parent)  # the factory's module may sit beside the suite file
        if "weights" in mod:
            spec["weights"] = c.path(mod, "weights", "model")
        default_name = mod["factory"].split(":")[1]
    if "features" in mod:
        spec["features"] = mod["features"]
    if "taps" in mod:
        if not all(isinstance(t, str) for t in mod["taps"]):
            c.fail("model.taps", f"expected an array of module names, got {mod['taps']!r}")
        spec["taps"] = list(mod["taps"])
    for k in ("mean", "std"):
        if k in mod:
            v = mod[k]
            if len(v) != channels or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
                c.fail(f"model.{k}", f"expected {channels} number(s), one per channel of the ID images, got {v!r}")
            if k == "std" and min(v) <= 0:
                c.fail("model.std", f"expected positive numbers, got {v!r}")
            spec[k] = [float(a) for a in v]
    spec["name"] = mod.get("name", default_name)
    return {"default": spec["name"], "user": spec}


def _splits(c: _Checker, splits: dict, kind: str, idd: dict, n: int | None) -> dict:
    from oodbench.benchmark.data.suites import SUITES

    seed = splits.get("seed", 0)
    if kind == "fit_path":
        c.only_with(splits, ("train", "fit", "cal", "test"), "id.path or id.dataset (sizes of a split)", "splits")
        return {"seed": seed}
    if "test" in splits and (kind == "dataset" or "test_path" in idd):
        c.fail("splits.test", "only allowed with id.path and no id.test_path (the size of the held-out ID test set)")
    if kind == "dataset":
        base = dict(SUITES[idd["dataset"]]["splits"]) if idd["dataset"] in SUITES else {}
        out = {**base, **splits, "seed": seed}
        missing = [k for k in ("train", "fit", "cal") if k not in out]
        if missing:
            c.fail("splits", f"missing {', '.join(missing)} (sizes for id.dataset = {idd['dataset']!r})")
        return out
    test = 0 if "test_path" in idd else splits.get("test", max(1, n // 5))
    rest = n - test
    fit = splits.get("fit", min(5000, max(1, rest // 5)))
    cal = splits.get("cal", min(5000, max(1, rest // 5)))
    out = {"train": splits.get("train", rest - fit - cal), "fit": fit, "cal": cal, "seed": seed, "test": test}
    if out["train"] < 0 or out["train"] + fit + cal > rest:
        c.fail("splits", f"train + fit + cal = {out['train'] + fit + cal} but id.path holds {n} images"
                         + (f" of which {test} are held out as the ID test set" if test else ""))
    return out


def _tests(c: _Checker, tests: list, suite: dict) -> list:
    if not tests:
        c.fail("tests", "expected at least one [[tests]] table")
    out, seen = [], set()
    for i, t in enumerate(tests):
        where = f"tests[{i}]" + (f" ({t['name']})" if isinstance(t, dict) and isinstance(t.get("name"), str) else "")
        c.table(t, TEST, where, required=("name", "group"))
        if t["group"] not in GROUPS:
            c.fail(f"{where}.group", f"expected one of {', '.join(GROUPS)}, got {t['group']!r}")
        if t["name"] in seen or t["name"] == "id" or t["name"].endswith("-mean"):
            c.fail(f"{where}.name", f"expected a unique name other than 'id' and '<group>-mean', got {t['name']!r}")
        seen.add(t["name"])
        kind = c.one_of(t, ("path", "dataset", "shift"), where)
        d = {"name": t["name"], "group": t["group"]}
        if kind == "path":
            c.only_with(t, ("severity", "n"), "dataset or shift", where)
            d.update(path=c.path(t, "path", where, "images"), labels=t.get("labels", False))
        elif kind == "dataset":
            c.only_with(t, ("severity", "labels"), "path or shift", where)
            if t["dataset"] not in datamod.DATASETS:
                c.fail(f"{where}.dataset", f"expected a built-in set ({', '.join(datamod.DATASETS)}), "
                                           f"got {t['dataset']!r}")
            if t["group"] == "covariate" and t["dataset"] != suite["id"]:
                c.fail(f"{where}.group", f"{t['dataset']!r} has no ID labels, so it cannot be a covariate shift of "
                                         f"the ID set: use near or far, or shift = ... for a shift of the ID test set")
            if "n" in t and t["dataset"] not in ("gaussian", "uniform"):
                c.fail(f"{where}.n", "only allowed with dataset = 'gaussian' or 'uniform'")
            d.update(dataset=t["dataset"], **({"n": t["n"]} if "n" in t else {}))
            if datamod.DATASETS[t["dataset"]].get("optional"):
                d["optional"] = True
        else:
            c.only_with(t, ("labels", "n"), "path or dataset", where)
            if t["shift"] not in shiftmod.PARAMS:
                c.fail(f"{where}.shift", f"expected one of {', '.join(shiftmod.PARAMS)}, got {t['shift']!r}")
            if t["group"] != "covariate":
                c.fail(f"{where}.group", f"a shift of the ID test set is group 'covariate', got {t['group']!r}")
            sev = t.get("severity", 2)
            if not 1 <= sev <= 5:
                c.fail(f"{where}.severity", f"expected an integer 1..5, got {sev}")
            d.update(dataset=suite["id"], shift=t["shift"], severity=sev)
        out.append(d)
    return out


def id_sets(suite: dict, data_dir=None, cache=None):
    """``(full training set, {"train", "fit", "cal"}, ID test set)`` of a suite-file declaration."""
    from oodbench.benchmark.data.suites import split_indices

    src, shape, name, splits = suite["id_source"], tuple(suite["shape"]), suite["name"], suite["splits"]
    if "dataset" in src:
        full = _shaped(datamod.load(src["dataset"], "train", data_dir, cache), shape)
        test = _shaped(datamod.load(src["dataset"], "test", data_dir, cache), shape)
    elif "path" in src or "memory" in src:
        full = user_images.load(_only(src), shape, f"{name}:id", labels=True)
        if "test" in src:
            test = user_images.load(src["test"], shape, f"{name}:id_test", full.classes, _labels(src["test"]))
        else:
            perm = np.random.default_rng([splits["seed"], 7]).permutation(len(full))
            test = full.subset(np.sort(perm[:splits["test"]]), f"{name}:id_test")
            full = full.subset(np.sort(perm[splits["test"]:]), f"{name}:id")
    else:
        parts = {"fit": user_images.load(src["fit"], shape, f"{name}:fit", None, _labels(src["fit"]))}
        classes = parts["fit"].classes
        for k in ("cal", "test", "train"):
            if k in src:
                parts[k] = user_images.load(src[k], shape, f"{name}:{k}", classes, _labels(src[k]))
        parts.setdefault("train", parts["fit"])
        return parts["train"], {k: parts[k] for k in ("train", "fit", "cal")}, parts["test"]
    idx = split_indices(len(full), splits)
    return full, {k: full.subset(v, f"{name}:{k}") for k, v in idx.items()}, test


def _only(src: dict) -> dict:
    return {k: v for k, v in src.items() if k in ("path", "memory")}


def _labels(src: dict) -> bool:
    return src.get("labels", True)


def _shaped(s: datamod.ImageSet, shape: tuple) -> datamod.ImageSet:
    if s.x.shape[1:] == shape:
        return s
    return datamod.ImageSet(s.name, datamod.convert(s.x, shape), s.y, f"{s.checksum}:{shape}", s.classes)


def load_test(t: dict, shape: tuple, id_classes) -> datamod.ImageSet:
    """An OOD test set of a suite file given by ``path`` (or in-memory arrays), in the suite's image shape."""
    return user_images.load({k: t[k] for k in ("path", "memory") if k in t}, shape, t["name"], id_classes,
                            t.get("labels", False))
