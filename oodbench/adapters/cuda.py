"""The one patch of torch's CUDA entry points, for code that hard-codes ``.cuda()``.

:func:`cuda_calls` patches ``Tensor.cuda`` / ``nn.Module.cuda`` for the duration of a block and restores
them on exit:

* ``mode="noop"`` (what the OpenOOD adapter runs OpenOOD under on a machine without CUDA): ``.cuda()``
  returns its receiver unchanged, and ``device='cuda…'`` keyword arguments and ``.to('cuda')`` are
  rewritten to the CPU;
* ``mode="refuse"`` (what the contract check and the ease probes run a detector under): ``.cuda()``
  raises :class:`CudaCall`, so a detector that would reach for a GPU fails at that line.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

MODES = ("noop", "refuse")


class CudaCall(RuntimeError):
    """A detector called ``.cuda()`` inside ``cuda_calls(mode="refuse")``."""


class _NoCuda(torch.overrides.TorchFunctionMode):
    """Rewrites ``device='cuda…'`` keyword arguments and ``.to('cuda')`` to the CPU."""

    @staticmethod
    def _fix(v):
        if isinstance(v, str) and v.startswith("cuda"):
            return "cpu"
        if isinstance(v, torch.device) and v.type == "cuda":
            return torch.device("cpu")
        return v

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "device" in kwargs:
            kwargs["device"] = self._fix(kwargs["device"])
        if func in (torch.Tensor.to,):
            args = tuple(self._fix(a) for a in args)
        return func(*args, **kwargs)


def _refuse(self, *a, **k):
    raise CudaCall("called .cuda(); fit and score must work on CPU (use the representation's device)")


def _noop(self, *a, **k):
    return self


@contextlib.contextmanager
def cuda_calls(mode: str = "noop", active: bool = True):
    """Patch ``.cuda()`` within the block (see the module docstring); ``active=False`` patches nothing."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not active:
        yield
        return
    saved = torch.Tensor.cuda, nn.Module.cuda
    patch = _noop if mode == "noop" else _refuse
    torch.Tensor.cuda, nn.Module.cuda = patch, patch
    try:
        if mode == "noop":
            with _NoCuda():
                yield
        else:
            yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = saved


def cpu_patch(active: bool = True):
    """Make hard-coded ``.cuda()`` calls no-ops on a machine without CUDA (restored on exit)."""
    return cuda_calls("noop", active)
