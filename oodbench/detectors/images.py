"""The image convention shared by the harness and the lab's methods: uint8 arrays in, float tensors
in [0, 1] out."""
from __future__ import annotations

import numpy as np
import torch


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W) or (N,H,W,3) → float (N,C,H,W) in [0, 1]."""
    x = np.ascontiguousarray(x)
    t = torch.from_numpy(x if x.flags.writeable else x.copy())
    t = t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(255.0)
