"""Shared fixtures: the offline data folder (../shared/data) and a per-session cache folder.

No test touches the network. The mnist-smoke classifier is trained once per session (seconds)."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("OODBENCH_DATA", REPO.parent / "shared" / "data")).resolve()

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def data_dir():
    if not (DATA / "MNIST").is_dir():
        pytest.skip(f"offline data folder not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("oodbench-cache")


@pytest.fixture(scope="session")
def mnist_smoke(data_dir, cache_dir):
    """(materialised mnist-smoke suite, RepresentationStore with a trained LeNet)."""
    import torch

    from oodbench.benchmark import models
    from oodbench.benchmark.data import suites
    from oodbench.benchmark.evaluation.features import RepresentationStore

    torch.set_num_threads(1)
    mat = suites.materialise("mnist-smoke", data_dir, cache_dir)
    recipe = models.recipe_for("lenet", "smoke")
    model, meta = models.load_or_train("lenet", recipe, mat.train, 0, cache_dir, "cpu", progress=False)
    store = RepresentationStore(model, meta["key"], cache_dir)
    store.context = {"train": mat.train, "cache": cache_dir, "seed": 0, "device": "cpu", "suite": "mnist-smoke",
                     "progress": False}
    return mat, store
