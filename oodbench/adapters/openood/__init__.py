"""OpenOOD adapter (a package: :mod:`.specs`, :mod:`.networks`, :mod:`.adapter`; the CPU patch is
:mod:`oodbench.adapters.cuda`): OpenOOD's own postprocessor classes, so that the numbers are OpenOOD's implementation.

OpenOOD is **optional** (not on PyPI, needs numpy < 2); see ``docs/openood.md`` for the install. This
module imports without it: every postprocessor is registered as ``openood.<name>`` either way (so
``oodbench list`` shows them, with ``available`` in their metadata), and ``fit`` raises
:class:`OpenOODMissing` with the install instructions when OpenOOD cannot be imported.

What the adapter supplies (details and measurements in ``docs/openood.md``):

* **Configs without network**: each postprocessor is constructed from an ``openood.utils.config.Config``
  built here from :data:`SPECS` (our table of OpenOOD's default hyperparameters; values are facts
  read from OpenOOD's ``configs/postprocessors/*.yml``, no file is copied or downloaded).
  ``get_postprocessor`` (which downloads missing YAML files) is never called.
* **Dataset name**: a name ``oodbench`` is registered in OpenOOD's ``num_classes_dict`` (with the
  classifier's class count) and ``normalization_dict`` (mean 0, std 1: our classifiers take [0, 1]
  pixels and normalise inside, so ODIN's perturbation is ``noise`` in pixel space, as in pytorch-ood).
* **Model contract**: :class:`LookupNet` serves *cached* logits and features to every postprocessor
  that only needs them (``forward(x, return_feature=True)``, ``forward_threshold``, ``get_fc``,
  ``fc``): the loader's ``data`` are row indices into the representation cache, so OpenOOD costs no
  extra forward pass. :class:`ContractNet` wraps the classifier for those that need the network
  (ODIN: input gradients, on 3 replicated channels for grey models; Gram: hooks; RankFeat:
  ``intermediate_forward``/``layer4``/``avgpool``).
* **CPU**: OpenOOD hard-codes ``.cuda()``. On a machine without CUDA, construction, ``setup`` and
  ``inference`` run inside :func:`oodbench.adapters.cuda.cpu_patch`, which turns ``Tensor.cuda`` /
  ``Module.cuda`` into no-ops and rewrites ``device='cuda'`` arguments to the CPU, and restores
  everything on exit.
* **Scores** are OpenOOD's confidence negated (higher = more OOD).
"""
from oodbench.adapters.cuda import cpu_patch  # noqa: F401
from oodbench.adapters.openood.adapter import (  # noqa: F401
    DETECTORS, INSTALLED, VERSION, OpenOODDetector, OpenOODMissing, available, register_all)
from oodbench.adapters.openood.networks import ContractNet, LookupNet  # noqa: F401
from oodbench.adapters.openood.specs import SPECS  # noqa: F401
