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
