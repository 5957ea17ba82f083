"""Classifiers: architectures (:mod:`.architectures`), their training recipes (:mod:`.recipes`),
training (:mod:`.training`; :mod:`.airbench` for the ``airbench`` network), the checkpoint cache
(:mod:`.checkpoints`) and the checkpoint store of the generative models lab detectors train
(:mod:`.generative`).

The names below are the package's public API: ``models.build``, ``models.recipe_for``,
``models.load_or_train`` and friends."""
from oodbench.benchmark.models.architectures import (  # noqa: F401
    ARCHITECTURES, AirbenchNet, AirbenchWideNet, BasicBlock, Classifier, LeNet, Normalize, ResNet18, SmallCNN, build)
from oodbench.benchmark.models.checkpoints import (  # noqa: F401
    architecture_code, checkpoint_key, load_or_train, own_training, training_code)
from oodbench.benchmark.models.recipes import RECIPES, AirbenchRecipe, Recipe, recipe_for  # noqa: F401
from oodbench.benchmark.models.training import reproducible, train, train_new  # noqa: F401
