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


@dataclass(frozen=True)
class AirbenchRecipe(Recipe):
    """airbench94's training (Keller Jordan, arXiv 2404.00498; the ``hyp`` dict and ``main`` of
    legacy/airbench94.py in github.com/KellerJordan/cifar10-airbench), run by
    :func:`oodbench.benchmark.models.airbench.train`. Its own fields (the others as :class:`Recipe`):

    * ``lr`` and ``weight_decay`` are in airbench's *decoupled* form: the step size per 1024 examples
      (the loss is summed over the batch, not averaged) and the weight decay per 1024 examples,
      independent of the momentum and of the learning rate (see :func:`.airbench.sgd_groups`);
    * ``bias_scaler``: the BatchNorm shifts learn this many times faster (weight decay not scaled);
    * the learning rate rises linearly from ``lr_start`` to 1 (× ``lr``) over the first ``lr_peak``
      of the steps, then falls linearly to ``lr_end`` at the last step; ``warmup_epochs`` is unused;
    * ``epochs`` may be fractional (airbench94: 9.9): the run stops after ceil(steps per epoch × epochs)
      steps; an epoch is ``n // batch_size`` steps (the last partial batch is dropped);
    * ``lookahead_every``: every that many steps the weights move to an exponential moving average of
      themselves (Lookahead; the average's decay rises as (step / steps)³ to 0.95⁵); the trained model
      is that average;
    * ``translate``: random translation by up to that many pixels (reflect padding); flips alternate:
      each image is flipped or not at random once, then all are flipped on every odd epoch;
    * ``whiten_images``: that many training images, drawn at random (seeded), give the whitening
      layer's patch covariance; ``whiten_eps`` is added to its eigenvalues;
      ``whiten_bias_epochs``: the whitening bias is trained during the first that many epochs only;
    * ``autocast``: ``None`` trains in float32; ``"bfloat16"`` runs each training step's forward pass
      under ``torch.autocast`` in bfloat16 (convolutions and the head in bfloat16, the weights, their
      updates and the moving average in float32; airbench94 trains in float16 on a GPU). The trained
      model is float32 and is evaluated, and seen by detectors, in float32. On a CPU with bfloat16
      instructions (AVX512-BF16, AMX) this about halves the step time."""

    bias_scaler: float = 64.0
    lr_start: float = 0.2
    lr_peak: float = 0.23
    lr_end: float = 0.07
    lookahead_every: int = 5
    translate: int = 2
    whiten_images: int = 5000
    whiten_eps: float = 5e-4
    whiten_bias_epochs: int = 3
    autocast: str | None = None

    def __post_init__(self):
        if self.autocast not in (None, "bfloat16"):
            raise ValueError(f"recipe {self.name!r}: autocast must be None or 'bfloat16', not {self.autocast!r}")


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
    # airbench94's hyperparameters (legacy/airbench94.py ``hyp``), except 16 epochs instead of 9.9 and 2
    # training threads (the CPU recipe). On the cifar10 suite's 40,000-image split (39 steps an epoch) and
    # this 2-core machine, seed 0 (benchmarks/cifar_cpu_classifier.py, docs/cifar_cpu_classifier.md):
    # 10 epochs 88.91 % test accuracy after 1,011 s of training, 16 epochs 89.36 % after 1,551 s
    "airbench": AirbenchRecipe("airbench", epochs=16, batch_size=1024, lr=11.5, optimizer="sgd",
                               weight_decay=0.0153, momentum=0.85, label_smoothing=0.2, augment=True,
                               threads=2),
    # airbench95's hyperparameters (legacy/airbench95.py ``hyp``: lr 10, the network of
    # architectures.AirbenchWideNet), except 12 epochs instead of 15, 2 training threads and the forward pass
    # in bfloat16 (autocast; about half the float32 step time on this machine's AVX512-BF16 cores). On
    # the suite's 40,000-image split, seeds 0/1/2: 90.04 / 89.97 / 90.21 % test accuracy (mean 90.07 %) by
    # benchmarks/cifar_cpu_classifier.py, 1,886-1,914 s of training on one 2-core machine; 90.04 / 90.32 /
    # 89.80 % (mean 90.05 %) in the run of results/cifar10, seed 0 in 1,210 s on another
    # (docs/cifar_cpu_classifier.md). The cifar10 suite's default (cifar10-open stays on "airbench")
    "airbench_wide": AirbenchRecipe("airbench_wide", epochs=12, batch_size=1024, lr=10.0, optimizer="sgd",
                                    weight_decay=0.0153, momentum=0.85, label_smoothing=0.2, augment=True,
                                    threads=2, autocast="bfloat16"),
}


def recipe_for(arch: str, override: str | None = None) -> Recipe:
    r = RECIPES[arch]
    if override == "smoke":
        r = replace(r, name=r.name + "-smoke", epochs=1, warmup_epochs=0)
    return r
