"""The content hash of a torch module's state, which names a network in cache keys."""
from __future__ import annotations

import hashlib

import torch
from torch import nn


def state_hash(module: nn.Module) -> str:
    """SHA-256 hex digest of a module's ``state_dict``: every entry's name and raw bytes, in order.

    Two modules with equal parameters and buffers get the same hash whatever their class or device; any
    dtype torch stores (bfloat16 included) is hashed byte for byte."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
