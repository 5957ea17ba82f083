"""The Python API for notebooks: your own classifier and data through the same runner as ``oodbench run``.

    import oodbench
    res = oodbench.evaluate("model.pt", fit="data/fit", cal="data/cal", id_test="data/test",
                            tests={"printed": ("data/printed", "covariate"), "noise": (x_noise, "far")},
                            detectors=["pytorch_ood.msp", "pytorch_ood.energy"])
    res.table        # the results table (pandas), as results.csv.gz
    res.record       # the run record, as run.json

    suite = oodbench.Suite.from_file("my-suite.toml")
    res = suite.evaluate(detectors=["pytorch_ood.msp"])

``evaluate`` builds an in-memory suite declaration (as a suite file would, :mod:`.benchmark.data.suite_file`)
and the user model (:mod:`.benchmark.models.user_model`) and hands them to the runner
(:func:`oodbench.benchmark.evaluation.runner.evaluate`): one evaluation loop for the CLI and Python.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from oodbench.benchmark.data import suite_file, user_images
from oodbench.benchmark.data.suite_file import GROUPS, SuiteFileError

__all__ = ["Suite", "evaluate", "declaration"]


class Suite:
    """A suite declaration (from a TOML file, or built in Python) and what you can do with it."""

    def __init__(self, declaration: dict):
        self.declaration = declaration

    @classmethod
    def from_file(cls, path) -> "Suite":
        return cls(suite_file.read(path))

    @property
    def name(self) -> str:
        return self.declaration["name"]

    def materialise(self, data_dir=None, cache=None):
        """The suite's data as arrays (:class:`~oodbench.benchmark.data.suites.Materialised`)."""
        from oodbench.benchmark import config
        from oodbench.benchmark.data import suites

        return suites.materialise(self.declaration, data_dir, config.cache_dir(cache))

    def evaluate(self, detectors=None, seeds=(0,), **options):
        """Run ``detectors`` on this suite; ``options`` are :class:`RunOptions` fields (``n_boot``, ``out``,
        ``write``, ``device``...). Nothing is written unless ``write=True``. Returns a ``RunResult``."""
        from oodbench.benchmark.evaluation import runner

        options.setdefault("write", False)
        options.setdefault("progress", False)
        return runner.evaluate(self.declaration, detectors=detectors, seeds=seeds, **options)

    def __repr__(self) -> str:
        d = self.declaration
        return f"Suite({d['name']!r}, model={d['model']['default']!r}, tests={[t['name'] for t in d['tests']]})"


def _source(images, what: str) -> dict:
    """A data source of a declaration: ``{"path": ...}`` for a folder / .npz, ``{"memory": key}`` otherwise."""
    if isinstance(images, (str, Path)):
        p = Path(images).expanduser().resolve()
        if not (p.is_dir() or (p.suffix == ".npz" and p.is_file())):
            raise user_images.UserDataError(f"{what}: expected an image folder or an .npz file; {p} does not exist")
        if p.suffix == ".npz":
            labels = user_images._npz(p)[1] is not None
        else:
            labels = user_images.folder_layout(p)[0] != [""]
        return {"path": str(p), "labels": labels}
    x, y = _arrays(images, what)
    return {"memory": user_images.register(x, y)}


def _arrays(images, what: str):
    """``(x, y or None)`` from an array / tensor, an ``(x, y)`` pair or a torch dataset of ``(image, label)``."""
    if isinstance(images, tuple) and len(images) == 2:
        return _np(images[0]), _np(images[1])
    if hasattr(images, "__getitem__") and hasattr(images, "__len__") and not hasattr(images, "shape"):
        items = [images[i] for i in range(len(images))]
        if not items:
            raise user_images.UserDataError(f"{what}: the dataset is empty")
        pairs = isinstance(items[0], (tuple, list))
        xs = [_np(it[0] if pairs else it) for it in items]
        ys = np.array([int(_np(it[1])) for it in items], np.int64) if pairs and len(items[0]) > 1 else None
        return np.stack(xs), ys
    return _np(images), None


def _np(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    if hasattr(a, "mode") and hasattr(a, "size"):  # a PIL image
        return np.asarray(a.convert("RGB") if a.mode not in ("L", "RGB") else a)
    return np.asarray(a)


def _model_spec(model, **kw) -> dict:
    spec: dict = {}
    if isinstance(model, (str, Path)) and ":" in str(model) and not Path(model).exists():
        spec.update(factory=str(model), name=str(model).split(":")[1])
        if kw.get("weights"):
            spec["weights"] = str(Path(kw["weights"]).expanduser().resolve())
    elif isinstance(model, (str, Path)):
        p = Path(model).expanduser().resolve()
        if not p.is_file():
            raise SuiteFileError(f"model: expected a TorchScript file, a 'module:function' factory or an nn.Module; "
                                 f"{p} does not exist")
        spec.update(torchscript=str(p), name=p.stem)
    else:
        from oodbench.benchmark.models import user_model

        spec.update(object=user_model.register(model), name=type(model).__name__.lower())
    for k in ("features", "taps", "mean", "std"):
        if kw.get(k) is not None:
            spec[k] = list(kw[k]) if k != "features" else kw[k]
    if kw.get("model_name"):
        spec["name"] = kw["model_name"]
    return spec


def declaration(model, fit, cal, id_test, tests: dict, *, train=None, name: str = "notebook", input_size=None,
                channels=None, features=None, taps=None, mean=None, std=None, weights=None, model_name=None,
                seed: int = 0, max_test: int | None = None) -> dict:
    """The suite declaration :func:`evaluate` runs (the same kind a suite file gives)."""
    src = {"fit": _source(fit, "fit"), "cal": _source(cal, "cal"), "test": _source(id_test, "id_test")}
    if train is not None:
        src["train"] = _source(train, "train")
    (h, w), ch = user_images.probe(src["fit"])
    ch = channels or ch
    if ch not in (1, 3):
        raise SuiteFileError(f"channels: expected 1 (grey) or 3 (RGB), got {ch}")
    size = tuple(input_size or (h, w))
    spec = _model_spec(model, features=features, taps=taps, mean=mean, std=std, weights=weights,
                       model_name=model_name)
    decl = {"name": name, "id": name + "-id", "id_source": src, "shape": size + ((3,) if ch == 3 else ()),
            "model": {"default": spec["name"], "user": spec}, "splits": {"seed": int(seed)}, "tests": []}
    if max_test:
        decl["max_test"] = int(max_test)
    if not tests:
        raise SuiteFileError("tests: expected at least one OOD test set, {name: (images, group)}")
    for tname, val in tests.items():
        if not (isinstance(val, tuple) and len(val) == 2 and isinstance(val[1], str)):
            raise SuiteFileError(f"tests[{tname!r}]: expected (images, group), got {type(val).__name__}")
        images, group = val
        if group not in GROUPS:
            raise SuiteFileError(f"tests[{tname!r}]: group expected one of {', '.join(GROUPS)}, got {group!r}")
        s = _source(images, f"tests[{tname!r}]")
        decl["tests"].append({"name": tname, "group": group, **{k: v for k, v in s.items() if k != "labels"},
                              "labels": s.get("labels", "memory" in s)})
    return decl


def evaluate(model, fit, cal, id_test, tests: dict, detectors=None, *, train=None, name: str = "notebook",
             input_size=None, channels=None, features=None, taps=None, mean=None, std=None, weights=None,
             model_name=None, seed: int = 0, max_test=None, **options):
    """Evaluate OOD ``detectors`` on your classifier ``model`` and your data.

    ``model``: an ``nn.Module``, a TorchScript file, or a ``"module:function"`` factory (with ``weights``).
    ``fit`` / ``cal`` / ``id_test`` (and optionally ``train``, for detectors that train a generative model):
    ID images with labels — an image folder with one sub-folder per class, an ``.npz`` with ``x`` and ``y``,
    an ``(x, y)`` pair of arrays or tensors ((N,H,W), (N,H,W,3) or (N,C,H,W); uint8 or floats in [0, 1]), or
    a torch dataset of ``(image, label)``. ``tests``: ``{name: (images, group)}``, group ``near``, ``far``
    or ``covariate``; labels (class sub-folders named as the ID classes, or ``(x, y)``) give accuracy rows.
    Images are converted to the ID channels and resized to ``input_size`` (default: the fit images' size).
    ``options``: :class:`~oodbench.benchmark.evaluation.runner.RunOptions` fields (``n_boot``, ``device``,
    ``write``, ``out``...; nothing is written by default). Returns a ``RunResult`` (``.table``, ``.record``).
    """
    decl = declaration(model, fit, cal, id_test, tests, train=train, name=name, input_size=input_size,
                       channels=channels, features=features, taps=taps, mean=mean, std=std, weights=weights,
                       model_name=model_name, seed=seed, max_test=max_test)
    return Suite(decl).evaluate(detectors=detectors, seeds=(seed,), **options)
