"""A :class:`Session`: one suite, one classifier seed, one device, one cache.

It materialises, once and on first use, the three things every evaluation needs:

* ``session.data`` — the suite's data (:class:`~oodbench.benchmark.data.suites.Materialised`: the ID
  ``train`` / ``fit`` / ``cal`` splits, the ID test set and every OOD test set);
* ``session.model`` / ``session.model_meta`` — the trained classifier (from the checkpoint cache, or
  trained now);
* ``session.store`` — the :class:`~oodbench.benchmark.evaluation.features.RepresentationStore` that
  extracts each representation once and serves it from the cache.

``session.representation(images, role)`` is what a detector receives. The runner, the agreement
tables, the tuning step, the contract check's suite mode, the tests and the benchmark scripts all set
up through a Session, so the set-up lives in one place::

    from oodbench.benchmark.evaluation.session import Session
    s = Session("mnist-smoke", seed=0)
    fit, cal = s.representation(s.data.fit, "fit"), s.representation(s.data.cal, "cal")
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

from oodbench.adapters.context import FitContext
from oodbench.benchmark import config, models
from oodbench.benchmark.data import suites
from oodbench.benchmark.evaluation.features import RepresentationStore
from oodbench.benchmark.models.generative import GenerativeCheckpoints


class Session:
    """Data, classifier and representation store of one (suite, seed, device, cache)."""

    def __init__(self, suite: str | dict, seed: int = 0, device: str = "cpu", cache=None, data_dir=None,
                 batch_size: int = 512, progress: bool = False, data: suites.Materialised | None = None):
        self.suite = suites.get(suite) if isinstance(suite, str) else suite
        self.name = self.suite["name"]
        self.seed = int(seed)
        self.device = str(device)
        self.cache: Path = config.cache_dir(cache)
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.progress = progress
        if data is not None:  # several seeds of one suite share the materialised data
            self.__dict__["data"] = data

    @cached_property
    def data(self) -> suites.Materialised:
        return suites.materialise(self.suite, self.data_dir, self.cache)

    @property
    def arch(self) -> str:
        return suites.model_name(self.suite, self.device)

    @property
    def recipe(self) -> models.Recipe:
        return models.recipe_for(self.arch, self.suite.get("recipe_override"))

    @cached_property
    def _classifier(self):
        if "user" in self.suite["model"]:  # a user's own classifier (suite file, oodbench.evaluate)
            from oodbench.benchmark.models import user_model

            return user_model.load(self.suite["model"]["user"], self.data, self.device)
        return models.load_or_train(self.arch, self.recipe, self.data.train, self.seed, self.cache, self.device,
                                    self.progress)

    @property
    def model(self):
        return self._classifier[0]

    @property
    def model_meta(self) -> dict:
        return self._classifier[1]

    @cached_property
    def store(self) -> RepresentationStore:
        # keyed by the weights themselves (their sha256), not by the recipe that made them
        store = RepresentationStore(self.model, self.model_meta["sha256"], self.cache, self.device,
                                    batch_size=self.batch_size, progress=self.progress)
        store.context = FitContext(train=self.data.train, model=self.model, device=self.device, seed=self.seed,
                                   checkpoints=GenerativeCheckpoints(self.cache), progress=self.progress,
                                   suite=self.name)
        return store

    def representation(self, images, role: str):
        """What a detector sees of ``images`` (an ImageSet of this suite) in ``role``
        (``fit``, ``cal``, ``id`` or an OOD test set's name)."""
        return self.store.representation(images, role)

    def all_sets(self) -> list:
        """Every ImageSet a run scores or fits on: fit, cal, ID test, then the OOD sets in order."""
        d = self.data
        return [d.fit, d.cal, d.id_test] + [t.images for t in d.tests]
