"""OpenOOD's model contract over our classifiers: :class:`LookupNet` serves cached logits and features,
:class:`ContractNet` wraps the classifier for postprocessors that need the network; and the dict-batch
loaders OpenOOD's postprocessors read."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from oodbench.adapters.common import feature_layers, layer_outputs
from oodbench.adapters.openood.specs import BATCH

class LookupNet(nn.Module):
    """OpenOOD's model contract served from cached representations: ``data`` are row indices into
    ``logits``/``features`` loaded with :meth:`load`. ``fc`` is a copy of the classifier's last layer."""

    def __init__(self, fc: nn.Linear, device="cpu"):
        super().__init__()
        self.fc = copy.deepcopy(fc).float().to(device)
        self.dev = torch.device(device)
        self.logits = self.features = None

    def load(self, reps):
        self.logits = torch.cat([torch.from_numpy(np.asarray(r.logits, np.float32)) for r in reps]).to(self.dev)
        self.features = torch.cat([torch.from_numpy(np.asarray(r.features, np.float32)) for r in reps]).to(self.dev)

    def _idx(self, x):
        return x.reshape(-1).long().to(self.dev)

    def forward(self, x, return_feature=False, return_feature_list=False):
        i = self._idx(x)
        logits, feats = self.logits[i], self.features[i]  # advanced indexing copies: in-place edits are safe
        if return_feature_list:
            raise NotImplementedError("LookupNet serves pooled features only")
        return (logits, feats) if return_feature else logits

    def forward_threshold(self, x, threshold):
        return self.fc(self.features[self._idx(x)].clip(max=threshold))

    def get_fc(self):
        return self.fc.weight.detach().cpu().numpy(), self.fc.bias.detach().cpu().numpy()

    def get_fc_layer(self):
        return self.fc


class OwnPool(nn.Module):
    """What OpenOOD calls ``net.avgpool`` (RankFeat pools its rank-reduced maps with it, then
    ``torch.flatten(·, 1)`` and ``net.fc``), as the classifier's own pooling: ``model.pool(maps)`` shaped
    (N, C, 1, 1). OpenOOD's networks average-pool; ours need not (airbench takes the maximum over
    positions, times 1/9), and the head only means something on the pooling it was trained with."""

    def __init__(self, model):
        super().__init__()
        self.pool = model.pool

    def forward(self, maps):
        return self.pool(maps)[:, :, None, None]


class ContractNet(nn.Module):
    """OpenOOD's model contract around one of our classifiers (inputs in [0, 1]). With ``grey3`` the
    input has 3 replicated channels (ODIN indexes channels 0-2) and is averaged back to one."""

    def __init__(self, model, grey3: bool = False):
        super().__init__()
        self.model = model
        self.grey3 = grey3
        self.layer4 = nn.Identity()
        self.avgpool = OwnPool(model)

    @property
    def fc(self):
        return self.model.fc

    def _x(self, x):
        return x.mean(dim=1, keepdim=True) if self.grey3 else x

    def forward(self, x, return_feature=False, return_feature_list=False):
        x = self._x(x)
        if return_feature_list:
            return layer_outputs(self.model, x, feature_layers(self.model))
        logits, feats = self.model.forward_features(x)
        return (logits, feats) if return_feature else logits

    def forward_threshold(self, x, threshold):
        return self.model.fc(self.model.pool(self.model.feature_maps(self._x(x))).clip(max=threshold))

    def intermediate_forward(self, x, layer_index):
        # RankFeat asks for block 4 and block 3 (then applies layer4); ours have one "last block"
        return self.model.feature_maps(self._x(x))

    def get_fc(self):
        return self.fc.weight.detach().cpu().numpy(), self.fc.bias.detach().cpu().numpy()

    def get_fc_layer(self):
        return self.model.fc


# --- datasets -------------------------------------------------------------------------------------------------
class _DictSet(torch.utils.data.Dataset):
    def __init__(self, data, labels):
        self.data, self.labels = data, torch.as_tensor(np.asarray(labels, np.int64))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"data": self.data[i], "label": self.labels[i]}


def loader(data, labels):
    return torch.utils.data.DataLoader(_DictSet(data, labels), batch_size=BATCH, shuffle=False, num_workers=0)
