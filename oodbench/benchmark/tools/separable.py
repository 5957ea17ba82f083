"""A trivially separable OOD problem with a hand-built classifier, for contract tests.

``TemplateNet`` classifies 28×28 grey images into 4 classes: class k is a bright horizontal stripe
(rows 7k..7k+6). Its only conv layer has 16 fixed 28×28 masks (stripe k × column quarter j), so the
16-d features of an ID image are ~49 on its class's four masks and ~0 elsewhere, and its logits are
confident. OOD images are dim uniform noise: small, flat features and flat logits. Every sensible
detector separates them (AUROC ≈ 1); a detector with the wrong sign scores AUROC ≈ 0.

It follows the harness's classifier contract (``forward_features``, ``feature_maps``, ``head``,
``fc``, ``tap_layers``), so detectors that run the network (gradients) work on it too.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn

from oodbench.adapters.context import FitContext
from oodbench.benchmark.data import ImageSet
from oodbench.benchmark.evaluation.features import RepresentationStore
from oodbench.benchmark.models import Classifier
from oodbench.benchmark.models.generative import GenerativeCheckpoints

K = 4


class TemplateNet(Classifier):
    tap_layers = ("conv1", "fc")
    num_classes = K

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4 * K, kernel_size=28, bias=False)
        self.fc = nn.Linear(4 * K, K)
        with torch.no_grad():
            w = torch.zeros(4 * K, 1, 28, 28)
            for k in range(K):
                for j in range(4):
                    w[4 * k + j, 0, 7 * k:7 * k + 7, 7 * j:7 * j + 7] = 1.0
            self.conv1.weight.copy_(w)
            fc = torch.full((K, 4 * K), -0.05)
            for k in range(K):
                fc[k, 4 * k:4 * k + 4] = 0.2
            self.fc.weight.copy_(fc)
            self.fc.bias.zero_()
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def feature_maps(self, x):
        return torch.relu(self.conv1(x))


def images(n_per_class: int, seed: int, name: str) -> ImageSet:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, size=(n_per_class * K, 28, 28)).astype(np.int64)
    y = np.repeat(np.arange(K), n_per_class)
    for i, k in enumerate(y):
        x[i, 7 * k:7 * k + 7] += rng.integers(170, 215)
    x = np.clip(x, 0, 255).astype(np.uint8)
    return ImageSet(name, x, y.astype(np.int64), f"{name}-{n_per_class}-{seed}")


def ood_images(n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 80, size=(n, 28, 28)).astype(np.uint8)
    return ImageSet("noise", x, np.full(n, -1, np.int64), f"sep-ood-{n}-{seed}")


def problem(n_per_class: int = 60, seed: int = 0) -> SimpleNamespace:
    """``store`` (representations of TemplateNet, in memory), ImageSets ``train``, ``fit``, ``cal``,
    ``id_test``, ``ood``, and ``reps``: a function giving the Representation of one of them."""
    model = TemplateNet()
    store = RepresentationStore(model, "template-net", cache=None, batch_size=256)
    sets = {
        "train": images(n_per_class * 2, seed, "sep-train"),
        "fit": images(n_per_class, seed + 1, "sep-fit"),
        "cal": images(n_per_class, seed + 2, "sep-cal"),
        "id_test": images(n_per_class, seed + 3, "sep-id"),
        "ood": ood_images(n_per_class * K, seed + 4),
    }
    store.context = FitContext(train=sets["train"], model=model, seed=seed, checkpoints=GenerativeCheckpoints(None),
                               suite="separable")
    return SimpleNamespace(store=store, model=model, reps=lambda k: store.representation(sets[k], k), **sets)
