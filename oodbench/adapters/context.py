"""What a detector may get from the harness besides its representations: a typed :class:`FitContext`.

A detector that trains its own model (the VAE, the WGAN-GP) needs the ID ``train`` split, the device,
the seed and somewhere to keep its checkpoints; it reads them from ``rep.context`` (a ``FitContext``).
The harness builds one per session (``oodbench.benchmark.evaluation.session``) and implements the
:class:`CheckpointStore` protocol (``oodbench.benchmark.models.generative``); outside the harness, build
one yourself: ``FitContext(train=images)`` trains without caching.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable


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
