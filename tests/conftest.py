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

    from oodbench.benchmark.evaluation.session import Session

    torch.set_num_threads(1)
    s = Session("mnist-smoke", 0, "cpu", cache_dir, data_dir, progress=False)
    return s.data, s.store


def _striped_images(n, seed, name, k=4):
    """``n`` random 28×28 grey images of ``k`` classes with a little class structure (a white band per class)."""
    import numpy as np

    from oodbench.benchmark.data import ImageSet

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    y = np.arange(n) % k
    for i in range(n):
        x[i, 7 * y[i]:7 * y[i] + 7] = 255
    return ImageSet(name, x, y.astype(np.int64), f"{name}-{n}-{seed}")


@pytest.fixture(scope="session")
def striped_images():
    """The factory of small striped image sets (:func:`_striped_images`)."""
    return _striped_images


@pytest.fixture(scope="module")
def tiny_cnn():
    """A SmallCNN (4-D feature maps, BN, Conv2d/ReLU modules) on 28×28 grey, trained a few steps so that every
    class is predicted (SHE, Mahalanobis need correct predictions per class): ``(store, {split: representation})``
    for fit / cal / id / ood. Module-scoped: each test module gets its own."""
    import torch

    from oodbench.benchmark import models
    from oodbench.benchmark.evaluation.features import RepresentationStore

    torch.manual_seed(0)
    model = models.build("smallcnn", in_channels=1, num_classes=4)
    sets = {"fit": _striped_images(64, 1, "fit"), "cal": _striped_images(32, 2, "cal"),
            "id": _striped_images(24, 3, "id"), "ood": _striped_images(24, 4, "ood")}
    models.train(model, sets["fit"].x, sets["fit"].y, models.Recipe("tiny", epochs=15, batch_size=64, lr=0.01),
                 seed=0, progress=False)
    store = RepresentationStore(model.eval(), "tiny-cnn", cache=None, batch_size=64)
    return store, {k: store.representation(v, k) for k, v in sets.items()}
