"""What a detector gets from the harness: a :class:`Representation` of each dataset and, through it, a
typed :class:`FitContext`.

A detector that trains its own model (the VAE, the WGAN-GP) needs the ID ``train`` split, the device,
the seed and somewhere to keep its checkpoints; it reads them from ``rep.context`` (a ``FitContext``).
The harness builds one per session (``oodbench.benchmark.evaluation.session``) and implements the
:class:`CheckpointStore` protocol (``oodbench.benchmark.models.generative``); outside the harness, build
one yourself: ``FitContext(train=images)`` trains without caching.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, runtime_checkable


@runtime_checkable
class TrainImages(Protocol):
    """The ID training images: uint8 ``x`` ``(N, H, W)`` / ``(N, H, W, 3)``, and a ``checksum`` naming them."""

    x: Any
    checksum: str

    def __len__(self) -> int: ...


@runtime_checkable
class CheckpointStore(Protocol):
    """Where generative models' checkpoints are kept: ``load_or_train`` returns ``(module, meta)``, the
    stored state of ``build()`` for this (kind, config, data, seed), or ``train(module)``'s result, stored.
    ``train`` trains the module in place and returns a JSON-able log (``meta`` holds it)."""

    def load_or_train(self, kind: str, config: dict, data_checksum: str, seed: int,
                      build: Callable[[], Any], train: Callable[[Any], dict]) -> tuple[Any, dict]: ...


@dataclass(frozen=True)
class FitContext:
    """``train`` (ID training images, or None), ``model`` (the classifier ``nn.Module``, or None),
    ``device``, ``seed``, ``checkpoints`` (a :class:`CheckpointStore`, or None: train, keep nothing),
    ``progress`` (show progress bars) and ``suite`` (its name, for messages)."""

    train: TrainImages | None = None
    model: Any = None
    device: str = "cpu"
    seed: int = 0
    checkpoints: CheckpointStore | None = None
    progress: bool = False
    suite: str = ""

    def require_train(self, who: str) -> TrainImages:
        if self.train is None:
            raise ValueError(f"{who} needs the ID train split in rep.context.train (a FitContext)")
        return self.train

    def load_or_train(self, kind: str, config: dict, data_checksum: str, seed: int, build, train):
        """Through :attr:`checkpoints`, or (none) build and train now, keeping nothing."""
        if self.checkpoints is not None:
            return self.checkpoints.load_or_train(kind, config, data_checksum, seed, build, train)
        module = build()
        log = train(module)
        return module.cpu().eval(), {"kind": kind, "config": config, "data_checksum": data_checksum,
                                     "seed": int(seed), **log, "cached": False}


@runtime_checkable
class Representation(Protocol):
    """What ``fit`` / ``score`` / ``p_value`` receive for one dataset (the harness's implementation:
    ``oodbench.benchmark.evaluation.features.Representation``). Arrays come from the representation
    cache, computed once per (classifier, dataset)."""

    images: Any  #: the dataset: uint8 ``x``, labels ``y``, ``checksum``, ``subset(idx)``
    role: str  #: ``fit``, ``cal``, ``id`` or an OOD test set's name
    store: Any  #: where the arrays come from: ``taps`` (the cached layers), ``representation(images, role)``

    def __len__(self) -> int: ...

    @property
    def labels(self) -> Any: ...  #: true labels (ID splits only; use ``preds`` on test sets)

    @property
    def logits(self) -> Any: ...  #: ``(N, C)`` float32

    @property
    def features(self) -> Any: ...  #: ``(N, D)`` float32, penultimate

    @property
    def preds(self) -> Any: ...  #: ``(N,)`` int64

    def taps(self) -> dict: ...  #: ``{layer: (N, d)}`` per-layer statistics

    @property
    def model(self) -> Any: ...  #: the classifier ``nn.Module``

    @property
    def device(self) -> Any: ...

    @property
    def context(self) -> FitContext: ...

    def inputs(self, batch_size: int | None = None) -> Iterator[Any]: ...  #: float batches in [0, 1]

    def input_tensor(self) -> Any: ...
