"""What the library adapters (:mod:`.pytorch_ood`, :mod:`.openood`) share: the classifier's layers as
multi-layer detectors see them, and the ViM principal-space dimension."""
from __future__ import annotations

import torch


def vim_dim(d_features: int) -> int:
    """The ViM principal-space dimension both adapters use: OpenOOD's default 256 when D > 256, else D // 2."""
    return 256 if d_features > 256 else max(1, d_features // 2)


def layer_outputs(model, x, layers) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``model`` on ``x`` and return (logits, outputs of the named ``layers``) through forward hooks."""
    mods = dict(model.named_modules())
    got, hooks = {}, []
    for n in layers:
        hooks.append(mods[n].register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o)))
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, [got[n] for n in layers]


def feature_layers(model) -> list[str]:
    """The layers multi-layer detectors use: the model's ``tap_layers`` without the final ``fc``."""
    return [n for n in getattr(model, "tap_layers", ()) if n != "fc"]


def spatial_maps_reason(rep, method: str) -> str:
    """"" when the classifier behind ``rep`` has ``feature_maps`` with spatial extent, else why
    ``method`` (which needs them, as RankFeat's rank-1 removal does) cannot work on it."""
    model = rep.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps = model.feature_maps(next(iter(rep.inputs(batch_size=1))))
    finally:
        model.train(was_training)
    if maps.dim() == 4 and maps.shape[-1] * maps.shape[-2] > 1:
        return ""
    shape = "×".join(str(int(v)) for v in maps.shape[1:])
    return (f"{method} needs feature maps with spatial extent; this classifier's feature_maps are {shape} "
            f"({type(model).__name__}: a fully connected layer viewed as 1×1 maps), so removing their rank-1 "
            "part leaves nothing for the head")
