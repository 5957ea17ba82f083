"""Per-layer statistics ("taps") of any ``nn.Module``, through forward hooks: the reduction the
statistical-test detector reads and the representation cache stores."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def tap_stats(t: torch.Tensor) -> torch.Tensor:
    """Per-channel spatial max and mean of a 4-D activation, (N, 2C); 2-D activations as they are."""
    if t.ndim == 4:
        return torch.cat([t.amax(dim=(2, 3)), t.mean(dim=(2, 3))], dim=1)
    return t.flatten(1)


def module_taps(model, inputs, layers: Sequence[str], device=None, return_outputs: bool = False):
    """Per-layer statistics of any ``nn.Module`` through forward hooks on the named ``layers``:
    per-channel spatial max and mean for 4-D outputs, the flattened values otherwise (the same
    reduction as the representation cache). ``inputs``: a tensor/array or an iterable of batches.
    Returns ``{layer: (N, d) float32}`` (and the model's outputs, float32, with ``return_outputs``)."""
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise KeyError(f"layers {missing} not in the model; layers: {list(modules)[1:]}")
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        x = torch.as_tensor(inputs)
        inputs = [x[i:i + 512] for i in range(0, len(x), 512)]
    got: dict[str, list] = {n: [] for n in layers}
    outs = []
    cur: dict = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: cur.__setitem__(n, tap_stats(o.float()).cpu()))
             for n in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for xb in inputs:
                xb = torch.as_tensor(xb)
                if device is not None:
                    xb = xb.to(device)
                o = model(xb)
                if return_outputs:
                    outs.append(o.float().cpu())
                for n in layers:
                    got[n].append(cur[n])
                cur.clear()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    taps = {n: torch.cat(v).numpy().astype(np.float32) for n, v in got.items()}
    if return_outputs:
        return taps, torch.cat(outs).numpy()
    return taps
