"""Training recipes of the classifiers, by architecture name."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Recipe:
    """A training recipe. ``optimizer`` is "adam" or "sgd" (Nesterov); the schedule is linear warm-up
    then cosine; ``augment`` is random crop (pad 4) + horizontal flip for RGB sets. ``threads`` is the
    number of CPU threads training runs with, whatever the run's ``--threads`` (float sums, hence the
    weights, depend on how the work is split), so the same recipe gives the same checkpoint bytes."""

    name: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = False
    threads: int = 1


RECIPES = {
    "lenet": Recipe("lenet", epochs=4, batch_size=128, lr=1e-3),
    "smallcnn": Recipe("smallcnn", epochs=12, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                       warmup_epochs=1, augment=True),
    # OpenOOD v1.5's MNIST recipe (configs/pipelines/train/baseline.yml, configs/datasets/mnist/mnist.yml,
    # openood/trainers/base_trainer.py, preprocessors/base_preprocessor.py): SGD Nesterov lr 0.1, momentum
    # 0.9, weight decay 5e-4, 100 epochs of batch 128, cosine per step, random horizontal flip + crop
    # 28 with padding 4 (OpenOOD's generic preprocessing, flips included)
    "lenet5_openood": Recipe("lenet5_openood", epochs=100, batch_size=128, lr=0.1, optimizer="sgd",
                             weight_decay=5e-4, augment=True),
    "resnet18": Recipe("resnet18", epochs=100, batch_size=512, lr=0.4, optimizer="sgd", weight_decay=5e-4,
                       warmup_epochs=5, label_smoothing=0.1, augment=True),
}


def recipe_for(arch: str, override: str | None = None) -> Recipe:
    r = RECIPES[arch]
    if override == "smoke":
        r = replace(r, name=r.name + "-smoke", epochs=1, warmup_epochs=0)
    return r
